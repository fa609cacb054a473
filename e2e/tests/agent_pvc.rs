//! Issue 6 item 3 on the test bed: agent pods (our real binary, no DaemonSet) resolve a real
//! PVC of class `standard` on their own node through the API server with a least-privilege
//! ClusterRole, and the real worker binary pulls `<namespace>/<pvc>` from them; the agent on
//! the other node refuses the same volume, naming the node it is on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BED, CLUSTER, client, namespace, output_ok, poll_until, wait_for, yaml};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::conditions;
use serde_json::{Value, json};

/// Agent pods run the `dr-syncer-agent` binary of this build.
const AGENT_IMAGE: &str = "dr-syncer-agent:e2e";

fn bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_testbed"))
        .parent()
        .unwrap()
        .join(name)
}

/// An Ed25519 key pair from ssh-keygen: (private key file, public key line).
fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    output_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path),
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

/// ClusterRole + binding: exactly what the agent reads (get/list/watch PVCs, PVs, pods, nodes).
async fn grant_agent_rbac(client: &kube::Client, ns: &str) {
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": format!("agent-e2e-{ns}")},
        "rules": [{"apiGroups": [""], "resources":
            ["persistentvolumeclaims", "persistentvolumes", "pods", "nodes"],
            "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["volumeattachments"],
            "verbs": ["get", "list", "watch"]}]}))
    .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("agent-e2e-{ns}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": format!("agent-e2e-{ns}")},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}))
    .unwrap();
    let pp = PostParams::default();
    Api::<ClusterRole>::all(client.clone())
        .create(&pp, &role)
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&pp, &binding)
        .await
        .unwrap();
}

/// An agent pod pinned to `node`, env per the DaemonSet contract, node root at `/host`.
fn agent_pod(name: &str, node: &str, port: u16) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "hostNetwork": true,
            "restartPolicy": "Never",
            "containers": [{
                "name": "agent", "image": AGENT_IMAGE,
                "env": [
                    {"name": "DR_SYNCER_AGENT_LISTEN_IP",
                     "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "DR_SYNCER_AGENT_PORT", "value": port.to_string()},
                    {"name": "DR_SYNCER_AGENT_NODE_NAME",
                     "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "DR_SYNCER_AGENT_HOST_ROOT", "value": "/host"},
                    {"name": "DR_SYNCER_AGENT_HOST_KEY_FILE",
                     "value": "/etc/dr-syncer/ssh/ssh_host_ed25519_key"},
                    {"name": "DR_SYNCER_AGENT_AUTHORIZED_KEYS_FILE",
                     "value": "/etc/dr-syncer/ssh/authorized_keys"}],
                "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1},
                "volumeMounts": [
                    {"name": "host", "mountPath": "/host", "readOnly": true,
                     "mountPropagation": "HostToContainer"},
                    {"name": "ssh", "mountPath": "/etc/dr-syncer/ssh", "readOnly": true}]}],
            "volumes": [
                {"name": "host", "hostPath": {"path": "/"}},
                {"name": "ssh", "secret": {"secretName": "agent-ssh"}}]}}))
    .unwrap()
}

/// Runs the worker binary against `agent` for `volume`; returns (success, JSON result).
fn pull(dir: &Path, agent: &str, volume: &str, dest: &Path) -> (bool, Value) {
    let log = dir.join(format!(
        "result-{}",
        dest.file_name().unwrap().to_string_lossy()
    ));
    let out = Command::new(bin("dr-syncer-rsync-worker"))
        .args([
            "--agent",
            agent,
            "--volume",
            volume,
            "--retries",
            "0",
            "--timeout",
            "60",
        ])
        .arg("--host-key-file")
        .arg(dir.join("known_host"))
        .arg("--key-file")
        .arg(dir.join("worker"))
        .arg("--dest")
        .arg(dest)
        .arg("--termination-log")
        .arg(&log)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let result = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "no JSON result: {text:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_resolves_a_standard_pvc_on_its_node_and_the_other_node_refuses_it() {
    let client = client().await;
    let bed = tokio::task::spawn_blocking(|| &*BED).await.unwrap();
    let ns = namespace(&client, "agent-pvc").await;
    grant_agent_rbac(&client, &ns).await;

    // A claim of class `standard` bound by a consumer Deployment (placeholder image).
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let pvc: PersistentVolumeClaim = yaml(
        "metadata: {name: data}\nspec: {storageClassName: standard, accessModes: [ReadWriteOnce], \
         resources: {requests: {storage: 1Gi}}}\n",
    );
    pvcs.create(&pp, &pvc).await.unwrap();
    let app: Deployment = yaml(
        "metadata: {name: app}\nspec:\n  selector: {matchLabels: {app: app}}\n  template:\n    \
         metadata: {labels: {app: app}}\n    spec:\n      containers: [{name: c, image: \
         registry.example/app:1}]\n      volumes: [{name: d, persistentVolumeClaim: {claimName: \
         data}}]\n",
    );
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&pp, &app)
        .await
        .unwrap();
    let bound = wait_for(&pvcs, "data", |p: Option<&PersistentVolumeClaim>| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Bound")
    })
    .await;
    let pv_name = bound.spec.unwrap().volume_name.unwrap();
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .unwrap();
    let host_path = pv.spec.unwrap().host_path.unwrap().path;
    let selected =
        bound.metadata.annotations.unwrap()["volume.kubernetes.io/selected-node"].clone();

    // Data in the volume, as the app would write it: under that node's root.
    let cluster = bed
        .state()
        .clusters
        .iter()
        .find(|c| c.name == CLUSTER)
        .unwrap();
    let home = cluster.nodes.iter().find(|n| n.name == selected).unwrap();
    let other = cluster.nodes.iter().find(|n| n.name != selected).unwrap();
    let data = home.root.join(host_path.trim_start_matches('/'));
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("sub/hello.txt"), b"resolved through the API\n").unwrap();
    std::fs::write(data.join("big.bin"), vec![7u8; 3 << 20]).unwrap();

    // Keys: host key and authorized worker key in a Secret, like the controller writes.
    let keys = tempfile::tempdir().unwrap();
    let (host_key, host_pub) = keypair(keys.path(), "host");
    let (_worker, worker_pub) = keypair(keys.path(), "worker");
    std::fs::write(keys.path().join("known_host"), format!("{host_pub}\n")).unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "agent-ssh"},
        "stringData": {
            "ssh_host_ed25519_key": std::fs::read_to_string(&host_key).unwrap(),
            "authorized_keys": format!("{worker_pub}\n")}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&pp, &secret)
        .await
        .unwrap();

    let csi_pv = unmounted_csi_claim(&client, &ns).await;
    attach(&client, &csi_pv, &home.name).await;

    let port = 20000 + (std::process::id() % 20000) as u16;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for (name, node) in [("agent-home", &home.name), ("agent-other", &other.name)] {
        pods.create(&pp, &agent_pod(name, node, port))
            .await
            .unwrap();
    }
    for name in ["agent-home", "agent-other"] {
        wait_for(&pods, name, conditions::is_pod_running()).await;
        wait_for(&pods, name, |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref()?.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .await;
    }

    // The agent on the volume's node serves it: the tree arrives intact.
    let volume = format!("{ns}/data");
    let dest = keys.path().join("dest-home");
    std::fs::create_dir_all(&dest).unwrap();
    let (ok, result) = pull(keys.path(), &format!("{}:{port}", home.ip), &volume, &dest);
    assert!(ok, "{result}");
    assert_eq!(
        std::fs::read(dest.join("sub/hello.txt")).unwrap(),
        b"resolved through the API\n"
    );
    assert_eq!(
        std::fs::read(dest.join("big.bin")).unwrap(),
        vec![7u8; 3 << 20]
    );
    assert_eq!(result["files_transferred"], 2, "{result}");

    // The agent on the other node refuses it, naming both nodes.
    let dest = keys.path().join("dest-other");
    std::fs::create_dir_all(&dest).unwrap();
    let (ok, result) = pull(keys.path(), &format!("{}:{port}", other.ip), &volume, &dest);
    assert!(!ok, "{result}");
    let error = result["error"].as_str().unwrap();
    eprintln!("other node: {result}");
    let expected = format!(
        "volume {volume} is not on node {} (it is on node {})",
        other.name, home.name
    );
    assert!(error.contains(&expected), "{error}");
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);

    // Unknown claims and names that are not DNS-1123 are refused by name.
    let (_, result) = pull(
        keys.path(),
        &format!("{}:{port}", home.ip),
        &format!("{ns}/missing"),
        &dest,
    );
    let error = result["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("PVC {ns}/missing not found")),
        "{error}"
    );
    let (_, result) = pull(keys.path(), &format!("{}:{port}", home.ip), "../etc", &dest);
    let error = result["error"].as_str().unwrap();
    eprintln!("bad name: {result}");
    assert!(error.contains("invalid volume name \"../etc\""), "{error}");

    // A CSI volume no pod uses is mounted nowhere: refused, naming where it is attached.
    let csi_volume = format!("{ns}/csi-data");
    let expected = format!(
        "volume {csi_volume} not mounted on this node ({}): no running pod on this node uses \
         the claim (it is attached to node {})",
        other.name, home.name
    );
    // The attachment cache is not awaited at agent start; poll until it shows.
    let (keys, other, csi_volume, dest, expected) = (&keys, &other, &csi_volume, &dest, &expected);
    let result = poll_until(
        "the agent reports the CSI volume as not mounted on this node",
        common::DEADLINE,
        std::time::Duration::from_millis(200),
        || async move {
            let (ok, result) = pull(
                keys.path(),
                &format!("{}:{port}", other.ip),
                csi_volume,
                dest,
            );
            assert!(!ok, "{result}");
            let error = result["error"].as_str().unwrap().to_string();
            if error.contains(expected) {
                return Ok(result);
            }
            assert!(error.contains("not mounted on this node"), "{error}");
            Err(error)
        },
    )
    .await;
    eprintln!("unmounted CSI: {result}");
}

/// A statically bound CSI PV/PVC pair `csi-data` (no pod uses it); returns the PV name once
/// the PV controller has bound both (claimRef uid set).
async fn unmounted_csi_claim(client: &kube::Client, ns: &str) -> String {
    let pv_name = format!("csi-{ns}");
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
            "csi": {"driver": "csi.example.com", "volumeHandle": pv_name},
            "claimRef": {"namespace": ns, "name": "csi-data"}}}))
    .unwrap();
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "csi-data"},
        "spec": {"storageClassName": "", "volumeName": pv_name,
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
    .unwrap();
    let pp = PostParams::default();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pvs.create(&pp, &pv).await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    pvcs.create(&pp, &pvc).await.unwrap();
    wait_for(&pvcs, "csi-data", |p: Option<&PersistentVolumeClaim>| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Bound")
    })
    .await;
    wait_for(&pvs, &pv_name, |p: Option<&PersistentVolume>| {
        p.and_then(|p| p.spec.as_ref()?.claim_ref.as_ref()?.uid.as_ref())
            .is_some()
    })
    .await;
    pv_name
}

/// A VolumeAttachment saying `pv` is attached to `node` (as an external attacher would).
async fn attach(client: &kube::Client, pv: &str, node: &str) {
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    let va: VolumeAttachment = serde_json::from_value(json!({
        "metadata": {"name": format!("va-{pv}")},
        "spec": {"attacher": "csi.example.com", "nodeName": node,
            "source": {"persistentVolumeName": pv}}}))
    .unwrap();
    vas.create(&PostParams::default(), &va).await.unwrap();
    let status = json!({"status": {"attached": true}});
    vas.patch_status(
        &format!("va-{pv}"),
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .unwrap();
}

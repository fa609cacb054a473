//! Image mode of the simulated node against a real control plane: a tiny OCI archive built
//! here (the host's `sh` and `id` with their libraries, a marker file, `User 65532:65532`)
//! is unpacked like `make images` output, and its pods run inside the image's root
//! filesystem, not the host's: they see the marker, not the host's `/usr`; the image user
//! applies unless `runAsUser` overrides it; `imageID` is the manifest digest; a digest
//! reference runs it too; a tag that was not built waits with `ErrImagePull`.
//!
//! Needs root (mount namespaces) and the control-plane binaries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_syncer_e2e::alloc::IpSlot;
use dr_syncer_e2e::cluster::{Binaries, ControlPlane};
use dr_syncer_e2e::node::unpacked::UnpackedImage;
use dr_syncer_e2e::node::{NodeConfig, OurImages, SimNode, pod_log_dir};
use dr_syncer_e2e::oci::pack::digest as sha256;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::json;

const NODE: &str = "imgtest-node-1";
const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);
const REF: &str = "ghcr.io/dr-syncer/dr-syncer-agent:0.1.0";
/// Only the image has this file.
const MARKER: &str = "only-in-image";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_an_unpacked_image_run_in_its_root_as_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let archives = dir.path().join("images");
    std::fs::create_dir(&archives).unwrap();
    let digest = write_archive(&archives.join("dr-syncer-agent-0.1.0.oci.tar"));
    let image = UnpackedImage::prepare(&archives, "dr-syncer-agent", &dir.path().join("unpacked"))
        .expect("unpacking the test image");
    assert_eq!(image.manifest_digest, digest);
    assert!(image.rootfs.join(MARKER).is_file());

    let layout = dr_syncer_e2e::ctl::prepare_dir(dir.path()).unwrap();
    let bins = Binaries::new(dr_syncer_e2e::testbed::default_controlplane_dir());
    let slot = IpSlot::claim().unwrap();
    let cp = ControlPlane::start(&layout, "imgtest", (&slot, 0), &bins)
        .await
        .expect("control plane");
    let client = dr_syncer_e2e::kubeconfig::client(&cp.kubeconfig)
        .await
        .unwrap();
    let state_dir = dir.path().join("nodes").join(NODE).join("state");
    let rootfs = image.rootfs.clone();
    let mut images = OurImages::new();
    images.insert_unpacked("dr-syncer-agent", image);
    let cfg = NodeConfig {
        name: NODE.into(),
        ip: slot.node_ip(0, 0),
        root: dir.path().join("nodes").join(NODE).join("root"),
        state_dir: state_dir.clone(),
        api_host: "127.0.0.1".into(),
        api_port: cp.ports.apiserver,
        images,
        labels: BTreeMap::new(),
    };
    let node = SimNode::start(client.clone(), cfg).await.unwrap();
    let outcome = std::panic::AssertUnwindSafe(scenarios(&client, &state_dir, &digest))
        .catch_unwind()
        .await;
    let shutdown = node.shutdown().await;
    cp.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    shutdown.unwrap();
    // The runs' root was an overlay over the unpacked image: their mountpoints (and any
    // writes) went to per-run scratch, so the shared image stays as unpacked.
    assert!(
        !rootfs.join("proc").exists() && !rootfs.join("dev").exists(),
        "the unpacked image was written to: the overlay root fell back to a bind"
    );
}

async fn scenarios(client: &kube::Client, state_dir: &Path, digest: &str) {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    tokio::time::timeout(
        WAIT,
        await_condition(sas, "default", |sa: Option<&_>| sa.is_some()),
    )
    .await
    .expect("default service account")
    .unwrap();
    let script = format!(
        "echo uid=$(id -u) gid=$(id -g); test -e /{MARKER} && echo image; \
         test -e /usr && echo host-usr; test -e /etc/os-release && echo host-etc; echo PATH=$PATH"
    );

    // The entrypoint (/bin/sh) with args replacing the image's Cmd, as the image user.
    let pod = run(
        client,
        "as-image-user",
        REF,
        json!({"args": ["-c", script]}),
    )
    .await;
    let log = log_of(state_dir, &pod);
    assert!(
        log.contains("uid=65532 gid=65532"),
        "image User applies: {log}"
    );
    assert!(log.contains("image"), "runs in the image root: {log}");
    assert!(
        !log.contains("host-"),
        "sees nothing of the host's system dirs: {log}"
    );
    assert!(
        log.contains("PATH=/bin"),
        "PATH comes from the image: {log}"
    );
    let status = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        status.image_id,
        format!("ghcr.io/dr-syncer/dr-syncer-agent@{digest}")
    );

    // runAsUser overrides the image's uid (its gid stays).
    let pod = run(
        client,
        "run-as-user",
        REF,
        json!({"args": ["-c", script], "securityContext": {"runAsUser": 1000}}),
    )
    .await;
    let log = log_of(state_dir, &pod);
    assert!(log.contains("uid=1000 gid=65532"), "runAsUser wins: {log}");

    // A digest reference runs the same image; a command is looked up on the image's PATH.
    let pinned = format!("ghcr.io/dr-syncer/dr-syncer-agent@{digest}");
    let pod = run(
        client,
        "by-digest",
        &pinned,
        json!({"command": ["sh", "-c", "echo pinned"]}),
    )
    .await;
    assert!(log_of(state_dir, &pod).contains("pinned"));

    // A tag that was not built: ErrImagePull naming what the test bed has, never a fallback.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    create(
        client,
        "not-built",
        "ghcr.io/dr-syncer/dr-syncer-agent:0.2.0",
        json!({}),
    )
    .await;
    let waiting = await_condition(pods, "not-built", |p: Option<&Pod>| {
        waiting_reason(p).as_deref() == Some("ErrImagePull")
    });
    let pod = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("ErrImagePull")
        .unwrap()
        .unwrap();
    let message = container_status(&pod)
        .and_then(|s| s.state?.waiting?.message)
        .unwrap_or_default();
    assert!(
        message.contains("0.2.0") && message.contains(REF),
        "{message}"
    );
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));
}

/// Creates a one-container pod (fields of `extra` merged into the container) on the node.
async fn create(client: &kube::Client, name: &str, image: &str, extra: serde_json::Value) {
    let mut container = json!({"name": "c", "image": image});
    if let (Some(c), Some(e)) = (container.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": NODE, "restartPolicy": "Never",
                 "automountServiceAccountToken": false, "containers": [container]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

/// Creates the pod and waits until it Succeeded.
async fn run(client: &kube::Client, name: &str, image: &str, extra: serde_json::Value) -> Pod {
    create(client, name, image, extra).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let done = await_condition(pods, name, |p: Option<&Pod>| {
        let phase = p.and_then(|p| p.status.as_ref()?.phase.clone());
        matches!(phase.as_deref(), Some("Succeeded" | "Failed"))
    });
    let pod = tokio::time::timeout(WAIT, done)
        .await
        .unwrap_or_else(|_| panic!("pod {name} finished"))
        .unwrap()
        .unwrap();
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
    assert_eq!(
        phase.as_deref(),
        Some("Succeeded"),
        "{name}: {:?}",
        pod.status
    );
    pod
}

fn container_status(pod: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

fn waiting_reason(pod: Option<&Pod>) -> Option<String> {
    dr_syncer_e2e::node::status::first_waiting(pod?)?
        .reason
        .clone()
}

/// The container's log file (there is no `kubectl logs`).
fn log_of(state_dir: &Path, pod: &Pod) -> String {
    let path = pod_log_dir(state_dir, pod).join("c").join("current.log");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shared libraries `ldd` lists for a binary (absolute paths).
fn libraries(binary: &str) -> Vec<PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// Writes an OCI archive holding `/bin/sh`, `/bin/id` (copies of the host's, with their
/// libraries at the paths `ldd` names), the marker and an `/etc/passwd`; returns the
/// manifest digest.
fn write_archive(path: &Path) -> String {
    let mut layer = tar::Builder::new(Vec::new());
    let mut files: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for (inside, host) in [("bin/sh", "/bin/sh"), ("bin/id", "/usr/bin/id")] {
        files.insert(inside.into(), host.into());
        for lib in libraries(host) {
            files.insert(lib.strip_prefix("/").unwrap().to_path_buf(), lib);
        }
    }
    for (inside, host) in &files {
        layer.append_path_with_name(host, inside).unwrap();
    }
    let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&mut layer, MARKER, b"yes");
    add(
        &mut layer,
        "etc/passwd",
        b"root:x:0:0::/:/bin/sh\nnonroot:x:65532:65532::/:/bin/sh\n",
    );
    let layer = layer.into_inner().unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo default cmd"],
                   "Env": ["PATH=/bin"], "User": "65532:65532"},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let digest = sha256(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": REF}}],
    }))
    .unwrap();
    let blobs = [&layer, &config, &manifest].map(|b| (sha256(b), b.as_slice()));
    let blobs: Vec<(&str, &[u8])> = blobs.iter().map(|(d, b)| (d.as_str(), *b)).collect();
    dr_syncer_e2e::oci::pack::write_archive(path, &index, &blobs).unwrap();
    digest
}

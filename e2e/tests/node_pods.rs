//! The simulated node against a real control plane (etcd, kube-apiserver, controller
//! manager, scheduler from `scripts/build-controlplane.sh`): node registration and Lease,
//! then the pod runner's details with a shell standing in for one of our images: env and
//! downward API, secret/configMap/projected files, read-only mounts refusing writes,
//! termination messages (file and FallbackToLogsOnError), restarts per restartPolicy,
//! deletion with SIGTERM then SIGKILL after the grace period, configuration errors, and a
//! placeholder pod holding a PVC provisioned by the hostPath provisioner (and reclaimed).
//!
//! Needs root (mount namespaces) and the control-plane binaries; one cluster is shared by
//! the scenarios, which run in sequence inside one test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dr_syncer_e2e::alloc::IpSlot;
use dr_syncer_e2e::cluster::{Binaries, ControlPlane};
use dr_syncer_e2e::node::{NodeConfig, OurImages, SimNode, pod_log_dir};
use dr_syncer_e2e::readiness;
use dr_syncer_e2e::storage;
use dr_syncer_e2e::wait;
use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::wait::conditions;
use serde_json::json;

const NODE: &str = "nodetest-node-1";
const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);

struct Bed {
    client: kube::Client,
    ip: Ipv4Addr,
    state_dir: PathBuf,
    root: PathBuf,
    version: String,
    api_port: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_node_runs_pods_against_a_real_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dr_syncer_e2e::ctl::prepare_dir(dir.path()).unwrap();
    let bins = Binaries::new(dr_syncer_e2e::testbed::default_controlplane_dir());
    let slot = IpSlot::claim().unwrap();
    let ip = slot.node_ip(0, 0);
    let cp = ControlPlane::start(&layout, "nodetest", (&slot, 0), &bins)
        .await
        .expect("control plane");
    let client = dr_syncer_e2e::kubeconfig::client(&cp.kubeconfig)
        .await
        .unwrap();
    let root = dir.path().join("nodes").join(NODE).join("root");
    let state_dir = dir.path().join("nodes").join(NODE).join("state");
    let mut images = OurImages::new();
    images.insert("testbed-shell", "/bin/sh");
    images.insert("dr-syncer-e2e-probe", env!("CARGO_BIN_EXE_testbed"));
    let cfg = NodeConfig {
        name: NODE.into(),
        ip,
        root: root.clone(),
        state_dir: state_dir.clone(),
        api_host: "127.0.0.1".into(),
        api_port: cp.ports.apiserver,
        images,
        labels: BTreeMap::from([("testbed.dr-syncer.io/cluster".into(), "nodetest".into())]),
    };
    let provisioner = storage::start_provisioner(client.clone(), vec![(NODE.into(), root.clone())])
        .await
        .unwrap();
    let node = SimNode::start(client.clone(), cfg).await.unwrap();
    let version = client.apiserver_version().await.unwrap().git_version;
    let bed = Bed {
        client,
        ip,
        state_dir,
        root,
        version,
        api_port: cp.ports.apiserver,
    };

    let outcome = std::panic::AssertUnwindSafe(scenarios(&bed))
        .catch_unwind()
        .await;

    let shutdown = node.shutdown().await;
    provisioner.abort();
    cp.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    shutdown.unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*dir.path().to_string_lossy()),
        "no mount left behind"
    );
}

/// Runs the scenarios; returns the pid of a process left running for the shutdown check.
async fn scenarios(bed: &Bed) -> i32 {
    let lease = node_is_registered_ready_with_a_lease(bed).await;
    wait_default_service_account(bed).await;
    init_containers_run_first_in_order(bed).await;
    in_cluster_client_authenticates_with_the_projected_token(bed).await;
    env_volumes_and_termination_message(bed).await;
    failure_falls_back_to_logs_and_on_failure_restarts(bed).await;
    deletion_sends_sigterm_then_sigkill_after_grace(bed).await;
    tcp_readiness_probe_gates_ready(bed).await;
    unsupported_volume_is_a_config_error(bed).await;
    missing_secret_is_retried_until_created(bed).await;
    secret_updates_reach_a_running_pod(bed).await;
    active_deadline_fails_the_pod(bed).await;
    force_deleted_pod_is_stopped(bed).await;
    native_sidecar_runs_alongside_and_is_stopped_at_the_end(bed).await;
    failing_liveness_probe_restarts_the_container(bed).await;
    placeholder_holds_a_provisioned_claim_which_is_reclaimed(bed).await;
    lease_is_renewed(bed, lease).await;
    start_survivor(bed).await
}

async fn node_is_registered_ready_with_a_lease(bed: &Bed) -> Lease {
    let nodes: Api<Node> = Api::all(bed.client.clone());
    let node = nodes.get(NODE).await.unwrap();
    let ready = readiness::node_condition(&node, "Ready").unwrap();
    assert_eq!(ready.status, "True");
    let status = node.status.unwrap();
    let addresses = status.addresses.unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == bed.ip.to_string())
    );
    assert_eq!(status.node_info.unwrap().kubelet_version, bed.version);
    let labels = node.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["testbed.dr-syncer.io/cluster"], "nodetest");
    let leases: Api<Lease> = Api::namespaced(bed.client.clone(), "kube-node-lease");
    let lease = leases.get(NODE).await.unwrap();
    assert_eq!(
        lease.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some(NODE)
    );
    lease
}

/// The Lease's renewTime moves forward (renewed every 10 s).
async fn lease_is_renewed(bed: &Bed, first: Lease) {
    let leases: Api<Lease> = Api::namespaced(bed.client.clone(), "kube-node-lease");
    let renew_time = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.clone());
    let before = renew_time(&first).unwrap();
    let renewed = move |l: Option<&Lease>| l.and_then(renew_time).is_some_and(|t| t.0 > before.0);
    wait::object(&leases, NODE, "lease renewed", renewed, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn init_containers_run_first_in_order(bed: &Bed) {
    create_pod(bed, json!({
        "metadata": {"name": "with-init"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "initContainers": [
                {"name": "first", "image": "testbed-shell", "command": ["sh", "-c", "echo first >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                {"name": "foreign", "image": "busybox:1.36"},
                {"name": "second", "image": "testbed-shell", "command": ["sh", "-c", "echo second >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
            ],
            "containers": [{
                "name": "main", "image": "testbed-shell",
                "command": ["sh", "-c", "echo main >> /work/order; cat /work/order | tr '\\n' ' ' > /dev/termination-log"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }],
            "volumes": [{"name": "work", "emptyDir": {}}],
        },
    }))
    .await;
    let pod = finished(bed, "with-init").await;
    let status = pod.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let message = container(&pod)
        .state
        .unwrap()
        .terminated
        .unwrap()
        .message
        .unwrap();
    assert_eq!(message.trim(), "first second main");
    let inits = status.init_container_statuses.as_ref().unwrap();
    assert_eq!(inits.len(), 3);
    assert!(inits.iter().all(|c| {
        c.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code
            == 0
    }));

    create_pod(bed, json!({
        "metadata": {"name": "init-fails"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "initContainers": [{"name": "bad", "image": "testbed-shell", "command": ["sh", "-c", "exit 4"]}],
            "containers": [{"name": "main", "image": "testbed-shell", "command": ["sh", "-c", "true"]}],
        },
    }))
    .await;
    let pod = finished(bed, "init-fails").await;
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let init = &status.init_container_statuses.unwrap()[0];
    assert_eq!(
        init.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        4
    );
    let main = &status.container_statuses.unwrap()[0];
    assert!(
        main.state.as_ref().unwrap().running.is_none(),
        "app containers never started"
    );
}

/// A real Rust kube client in a pod (the `testbed probe` binary) reaches the API server
/// through KUBERNETES_SERVICE_HOST/PORT with the projected token and CA: forbidden without
/// RBAC, allowed with a RoleBinding.
async fn in_cluster_client_authenticates_with_the_projected_token(bed: &Bed) {
    let probe = |name: &str| {
        json!({
            "metadata": {"name": name},
            "spec": {
                "nodeName": NODE,
                "restartPolicy": "Never",
                "containers": [{"name": "probe", "image": "example.io/dr-syncer-e2e-probe:dev", "args": ["probe"]}],
            },
        })
    };
    create_pod(bed, probe("probe-denied")).await;
    let pod = finished(bed, "probe-denied").await;
    let terminated = container(&pod).state.unwrap().terminated.unwrap();
    let message = terminated.message.unwrap_or_default();
    assert_eq!(terminated.exit_code, 1, "forbidden without RBAC: {message}");
    assert!(message.contains("403"), "{message}");
    assert!(
        message.contains("system:serviceaccount:default:default"),
        "{message}"
    );

    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(bed.client.clone(), NS);
    let binding = serde_json::from_value(json!({
        "metadata": {"name": "default-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}],
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    create_pod(bed, probe("probe-allowed")).await;
    let pod = finished(bed, "probe-allowed").await;
    let terminated = container(&pod).state.unwrap().terminated.unwrap();
    let message = terminated.message.unwrap_or_default();
    assert_eq!(
        terminated.exit_code, 0,
        "allowed with the RoleBinding: {message}"
    );
    assert!(
        message.contains("probe-allowed"),
        "lists its own pod: {message}"
    );
}

/// A pod left running when the node shuts down; returns its process id.
async fn start_survivor(bed: &Bed) -> i32 {
    create_pod(bed, json!({
        "metadata": {"name": "survivor"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": "testbed-shell",
                "command": ["sh", "-c", "echo $$$$ > /out/pid; while :; do sleep 0.1; done"],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            }],
            "volumes": [{"name": "out", "hostPath": {"path": "/var/lib/survivor", "type": "DirectoryOrCreate"}}],
        },
    }))
    .await;
    let pid = wait_file(&bed.root.join("var/lib/survivor/pid"))
        .await
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    pid
}

async fn wait_default_service_account(bed: &Bed) {
    let sas: Api<ServiceAccount> = Api::namespaced(bed.client.clone(), NS);
    wait::object(&sas, "default", "created", conditions::is_created(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn pods(bed: &Bed) -> Api<Pod> {
    Api::namespaced(bed.client.clone(), NS)
}

async fn create_pod(bed: &Bed, pod: serde_json::Value) -> Pod {
    let pod: Pod = serde_json::from_value(pod).unwrap();
    pods(bed)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
}

/// Waits (by watch) until the pod is Succeeded or Failed.
async fn finished(bed: &Bed, name: &str) -> Pod {
    let cond = |p: Option<&Pod>| {
        let phase = p
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref());
        matches!(phase, Some("Succeeded" | "Failed"))
    };
    wait_pod(bed, name, cond).await
}

/// Waits (by watch) for a pod condition; on timeout fails with the pod's last state.
async fn wait_pod(bed: &Bed, name: &str, cond: impl Fn(Option<&Pod>) -> bool) -> Pod {
    wait::object(&pods(bed), name, "the test's condition", cond, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

async fn env_volumes_and_termination_message(bed: &Bed) {
    let secrets: Api<Secret> = Api::namespaced(bed.client.clone(), NS);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "stringData": {"password": "hunter2", "user": "admin"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(bed.client.clone(), NS);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"}, "data": {"mode": "fast", "level": "3"},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    let script = r#"
        set -e
        out=/out
        echo "$POD_NAME $POD_NS $NODE_NAME $POD_IP $HOST_IP $SA" > $out/downward
        echo "$PASSWORD $MODE $PLAIN $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT" > $out/refs
        echo "$CFG_level" > $out/envfrom
        cat /secret/pw > $out/secret-file
        stat -c %a /secret/pw > $out/secret-mode
        cat /config/mode > $out/config-file
        cat /podinfo/labels > $out/labels
        test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token > $out/token
        cat /var/run/secrets/kubernetes.io/serviceaccount/namespace > $out/sa-namespace
        grep -q "BEGIN CERTIFICATE" /var/run/secrets/kubernetes.io/serviceaccount/ca.crt && echo ca > $out/ca
        if touch /config/new 2>/dev/null; then echo wrote; else echo refused; fi > $out/config-ro
        if touch /readonly-host/new 2>/dev/null; then echo wrote; else echo refused; fi > $out/host-ro
        echo scratch > /scratch/f && cat /scratch/f > $out/emptydir
        hostname > $out/hostname
        pwd > $out/pwd
        echo "all checks written" > /dev/termination-log
    "#;
    create_pod(bed, json!({
        "metadata": {"name": "envcheck", "labels": {"app": "envcheck"}},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "containers": [{
                "name": "main",
                "image": "registry.example/team/testbed-shell:v1",
                "command": ["/bin/sh", "-c", script],
                "workingDir": "/scratch",
                "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                    {"name": "PLAIN", "value": "v-$(MODE)"},
                ],
                "volumeMounts": [
                    {"name": "out", "mountPath": "/out"},
                    {"name": "out", "mountPath": "/readonly-host", "readOnly": true},
                    {"name": "secret", "mountPath": "/secret"},
                    {"name": "config", "mountPath": "/config"},
                    {"name": "podinfo", "mountPath": "/podinfo"},
                    {"name": "scratch", "mountPath": "/scratch"},
                ],
            }],
            "volumes": [
                {"name": "out", "hostPath": {"path": "/var/lib/envcheck", "type": "DirectoryOrCreate"}},
                {"name": "secret", "secret": {"secretName": "creds", "items": [{"key": "password", "path": "pw", "mode": 0o400}]}},
                {"name": "config", "configMap": {"name": "settings"}},
                {"name": "podinfo", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "scratch", "emptyDir": {}},
            ],
        },
    }))
    .await;
    let done = finished(bed, "envcheck").await;
    let out = bed.root.join("var/lib/envcheck");
    let status = done.status.unwrap();
    let terminated = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        status.phase.as_deref(),
        Some("Succeeded"),
        "terminated: {terminated:?}"
    );
    assert_eq!(terminated.exit_code, 0);
    assert_eq!(
        terminated.message.as_deref().map(str::trim),
        Some("all checks written")
    );
    let ip = bed.ip.to_string();
    assert_eq!(status.pod_ip.as_deref(), Some(ip.as_str()));
    assert_eq!(status.host_ip.as_deref(), Some(ip.as_str()));
    assert!(status.start_time.is_some());
    assert_eq!(
        read(&out, "downward"),
        format!("envcheck default {NODE} {ip} {ip} default")
    );
    assert_eq!(
        read(&out, "refs"),
        format!("hunter2 fast v-fast 127.0.0.1:{}", bed.api_port)
    );
    assert_eq!(read(&out, "envfrom"), "3");
    assert_eq!(read(&out, "secret-file"), "hunter2");
    assert_eq!(read(&out, "secret-mode"), "400");
    assert_eq!(read(&out, "config-file"), "fast");
    assert_eq!(read(&out, "labels"), "app=\"envcheck\"");
    assert_eq!(read(&out, "token"), "token");
    assert_eq!(read(&out, "sa-namespace"), "default");
    assert_eq!(read(&out, "ca"), "ca");
    assert_eq!(
        read(&out, "config-ro"),
        "refused",
        "configMap volumes are read-only"
    );
    assert_eq!(
        read(&out, "host-ro"),
        "refused",
        "readOnly volumeMount refuses writes"
    );
    assert_eq!(read(&out, "emptydir"), "scratch");
    assert_eq!(read(&out, "hostname"), "envcheck");
    assert_eq!(read(&out, "pwd"), "/scratch");
}

/// The state of the first container.
fn container(pod: &Pod) -> k8s_openapi::api::core::v1::ContainerStatus {
    pod.status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .clone()
}

async fn failure_falls_back_to_logs_and_on_failure_restarts(bed: &Bed) {
    create_pod(
        bed,
        json!({
            "metadata": {"name": "failing"},
            "spec": {
                "nodeName": NODE,
                "restartPolicy": "Never",
                "containers": [{
                    "name": "main", "image": "testbed-shell",
                    "command": ["sh", "-c", "echo starting; echo 'boom: disk full' >&2; exit 2"],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }],
            },
        }),
    )
    .await;
    let pod = finished(bed, "failing").await;
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Failed")
    );
    let terminated = container(&pod).state.unwrap().terminated.unwrap();
    assert_eq!(terminated.exit_code, 2);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert!(
        terminated.message.unwrap().contains("boom: disk full"),
        "log tail as message"
    );
    pods(bed)
        .delete("failing", &DeleteParams::default())
        .await
        .unwrap();
    wait::gone(&pods(bed), "failing", pod.metadata.uid.as_deref(), WAIT)
        .await
        .expect("pod deleted");
    let log = pod_log_dir(&bed.state_dir, &pod).join("main/current.log");
    assert!(
        read(log.parent().unwrap(), "current.log").contains("boom: disk full"),
        "logs outlive the pod"
    );

    // Fails on the first run (no marker in the emptyDir yet), succeeds on the second.
    let script = "if [ -e /state/ran ]; then echo second > /dev/termination-log; exit 0; fi; touch /state/ran; exit 1";
    create_pod(
        bed,
        json!({
            "metadata": {"name": "flaky"},
            "spec": {
                "nodeName": NODE,
                "restartPolicy": "OnFailure",
                "containers": [{
                    "name": "main", "image": "testbed-shell",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                }],
                "volumes": [{"name": "state", "emptyDir": {}}],
            },
        }),
    )
    .await;
    let pod = finished(bed, "flaky").await;
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let status = container(&pod);
    assert_eq!(status.restart_count, 1);
    let last = status.last_state.unwrap().terminated.unwrap();
    assert_eq!(
        last.exit_code, 1,
        "the first run's failure is the last state"
    );
    let terminated = status.state.unwrap().terminated.unwrap();
    assert_eq!(terminated.message.as_deref().map(str::trim), Some("second"));
}

async fn deletion_sends_sigterm_then_sigkill_after_grace(bed: &Bed) {
    // `$$$$` because the kubelet (and the runner) expand `$(VAR)` in commands, `$$` -> `$`.
    let script = "trap 'echo TERM >> /out/signals' TERM; echo $$$$ > /out/pid; \
                  while :; do sleep 0.1; done";
    create_pod(bed, json!({
        "metadata": {"name": "stubborn"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main", "image": "testbed-shell",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            }],
            "volumes": [{"name": "out", "hostPath": {"path": "/var/lib/stubborn", "type": "DirectoryOrCreate"}}],
        },
    }))
    .await;
    let running = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| cs.iter().all(|c| c.ready))
    };
    let pod = wait_pod(bed, "stubborn", running).await;
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    let out = bed.root.join("var/lib/stubborn");
    let pid: i32 = wait_file(&out.join("pid")).await.parse().unwrap();
    let started = Instant::now();
    pods(bed)
        .delete("stubborn", &DeleteParams::default())
        .await
        .unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    wait::gone(&pods(bed), "stubborn", Some(&uid), WAIT)
        .await
        .expect("pod deleted");
    let elapsed = started.elapsed();
    assert!(read(&out, "signals").contains("TERM"), "SIGTERM first");
    assert!(
        elapsed >= Duration::from_secs(2),
        "SIGKILL only after the 2 s grace ({elapsed:?})"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the process is gone"
    );
}

async fn tcp_readiness_probe_gates_ready(bed: &Bed) {
    let listen = r#"use IO::Socket::INET;
        my $s = IO::Socket::INET->new(LocalAddr => $ENV{POD_IP}, LocalPort => 18081,
            Listen => 5, ReuseAddr => 1) or die "listen: $!";
        while (accept(my $c, $s)) { close $c }"#;
    let script = format!("while [ ! -e /out/go ]; do sleep 0.1; done; exec perl -e '{listen}'");
    create_pod(bed, json!({
        "metadata": {"name": "probed"},
        "spec": {
            "nodeName": NODE,
            "containers": [{
                "name": "server", "image": "testbed-shell",
                "command": ["sh", "-c", script],
                "ports": [{"name": "http", "containerPort": 18081}],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            }],
            "volumes": [{"name": "out", "hostPath": {"path": "/var/lib/probed", "type": "DirectoryOrCreate"}}],
        },
    }))
    .await;
    let running = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.running.is_some())
    };
    let pod = wait_pod(bed, "probed", running).await;
    assert!(!container(&pod).ready, "nothing listens yet: not ready");
    std::fs::write(bed.root.join("var/lib/probed/go"), "").unwrap();
    let ready = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .is_some_and(|c| c.ready)
    };
    let pod = wait_pod(bed, "probed", ready).await;
    let conditions = pod.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    pods(bed)
        .delete("probed", &DeleteParams::default())
        .await
        .unwrap();
}

async fn unsupported_volume_is_a_config_error(bed: &Bed) {
    create_pod(
        bed,
        json!({
            "metadata": {"name": "nfs-user"},
            "spec": {
                "nodeName": NODE,
                "containers": [{
                    "name": "main", "image": "testbed-shell", "command": ["sh", "-c", "true"],
                    "volumeMounts": [{"name": "share", "mountPath": "/share"}],
                }],
                "volumes": [{"name": "share", "nfs": {"server": "nfs.example", "path": "/export"}}],
            },
        }),
    )
    .await;
    let config_error = |p: Option<&Pod>| {
        p.and_then(dr_syncer_e2e::node::status::first_waiting)
            .is_some_and(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
    };
    let pod = wait_pod(bed, "nfs-user", config_error).await;
    let waiting = container(&pod).state.unwrap().waiting.unwrap();
    assert!(waiting.message.unwrap().contains("unsupported volume type"));
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));
    pods(bed)
        .delete("nfs-user", &DeleteParams::default())
        .await
        .unwrap();
}

fn waiting_reason(p: Option<&Pod>) -> Option<String> {
    let status = p?
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .clone();
    status.state?.waiting?.reason
}

async fn missing_secret_is_retried_until_created(bed: &Bed) {
    create_pod(bed, json!({
        "metadata": {"name": "late-secret"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": "testbed-shell",
                "command": ["sh", "-c", "echo \"token=$TOKEN\" > /dev/termination-log"],
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "t"}}}],
            }],
        },
    }))
    .await;
    let config_error =
        |p: Option<&Pod>| waiting_reason(p).as_deref() == Some("CreateContainerConfigError");
    let pod = wait_pod(bed, "late-secret", config_error).await;
    let message = container(&pod)
        .state
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap();
    assert!(message.contains("secret \"late\" not found"), "{message}");
    let secrets: Api<Secret> = Api::namespaced(bed.client.clone(), NS);
    let secret = serde_json::from_value(
        json!({"metadata": {"name": "late"}, "stringData": {"t": "s3cret"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let pod = finished(bed, "late-secret").await;
    let terminated = container(&pod).state.unwrap().terminated.unwrap();
    assert_eq!(
        terminated.message.as_deref().map(str::trim),
        Some("token=s3cret")
    );
    assert_eq!(
        container(&pod).restart_count,
        0,
        "a configuration retry is not a restart"
    );
}

async fn secret_updates_reach_a_running_pod(bed: &Bed) {
    let secrets: Api<Secret> = Api::namespaced(bed.client.clone(), NS);
    let secret = serde_json::from_value(
        json!({"metadata": {"name": "rotating"}, "stringData": {"key": "v1"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let script = "until [ \"$(cat /creds/key)\" = v2 ]; do sleep 0.1; done; echo rotated > /dev/termination-log";
    create_pod(
        bed,
        json!({
            "metadata": {"name": "rotation"},
            "spec": {
                "nodeName": NODE,
                "restartPolicy": "Never",
                "containers": [{
                    "name": "main", "image": "testbed-shell",
                    "command": ["sh", "-c", script.replace('$', "$$")],
                    "volumeMounts": [{"name": "creds", "mountPath": "/creds"}],
                }],
                "volumes": [{"name": "creds", "secret": {"secretName": "rotating"}}],
            },
        }),
    )
    .await;
    let running = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Running")
    };
    wait_pod(bed, "rotation", running).await;
    let patch = json!({"stringData": {"key": "v2"}});
    secrets
        .patch(
            "rotating",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let pod = finished(bed, "rotation").await;
    let terminated = container(&pod).state.unwrap().terminated.unwrap();
    assert_eq!(
        terminated.message.as_deref().map(str::trim),
        Some("rotated")
    );
}

async fn active_deadline_fails_the_pod(bed: &Bed) {
    create_pod(bed, json!({
        "metadata": {"name": "overdue"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 1,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "testbed-shell", "command": ["sh", "-c", "while :; do sleep 0.1; done"]}],
        },
    }))
    .await;
    let pod = finished(bed, "overdue").await;
    let status = pod.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    let terminated = container(&pod).state.unwrap().terminated.unwrap();
    assert_ne!(terminated.exit_code, 0, "the container was stopped");
}

async fn force_deleted_pod_is_stopped(bed: &Bed) {
    create_pod(bed, json!({
        "metadata": {"name": "forced"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": "testbed-shell",
                "command": ["sh", "-c", "echo $$$$ > /out/pid; while :; do sleep 0.1; done"],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            }],
            "volumes": [{"name": "out", "hostPath": {"path": "/var/lib/forced", "type": "DirectoryOrCreate"}}],
        },
    }))
    .await;
    let pid: i32 = wait_file(&bed.root.join("var/lib/forced/pid"))
        .await
        .parse()
        .unwrap();
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods(bed).delete("forced", &now).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "a pod gone from the API must be stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn native_sidecar_runs_alongside_and_is_stopped_at_the_end(bed: &Bed) {
    let sidecar =
        "echo $$$$ > /out/sidecar-pid; echo up > /shared/sidecar; while :; do sleep 0.1; done";
    let main =
        "until [ -e /shared/sidecar ]; do sleep 0.1; done; echo saw sidecar > /dev/termination-log";
    create_pod(bed, json!({
        "metadata": {"name": "with-sidecar"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "initContainers": [{
                "name": "sidecar", "image": "testbed-shell", "restartPolicy": "Always",
                "command": ["sh", "-c", sidecar],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}, {"name": "out", "mountPath": "/out"}],
            }],
            "containers": [{
                "name": "main", "image": "testbed-shell",
                "command": ["sh", "-c", main],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }],
            "volumes": [
                {"name": "shared", "emptyDir": {}},
                {"name": "out", "hostPath": {"path": "/var/lib/sidecar", "type": "DirectoryOrCreate"}},
            ],
        },
    }))
    .await;
    let pod = finished(bed, "with-sidecar").await;
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let message = container(&pod)
        .state
        .unwrap()
        .terminated
        .unwrap()
        .message
        .unwrap();
    assert_eq!(message.trim(), "saw sidecar");
    let pid: i32 = wait_file(&bed.root.join("var/lib/sidecar/sidecar-pid"))
        .await
        .parse()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the sidecar is stopped once the app is done"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn failing_liveness_probe_restarts_the_container(bed: &Bed) {
    create_pod(bed, json!({
        "metadata": {"name": "unhealthy"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": "testbed-shell",
                "command": ["sh", "-c", "while :; do sleep 0.1; done"],
                // Nothing listens on port 1 of the pod IP.
                "livenessProbe": {"tcpSocket": {"port": 1}, "periodSeconds": 1, "failureThreshold": 2},
            }],
        },
    }))
    .await;
    let restarted = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .is_some_and(|c| c.restart_count >= 1)
    };
    let pod = wait_pod(bed, "unhealthy", restarted).await;
    let last = container(&pod).last_state.unwrap().terminated.unwrap();
    assert!(
        last.message.unwrap().contains("liveness"),
        "killed for failing its liveness probe"
    );
    assert_eq!(last.exit_code, 143, "SIGTERM first");
    pods(bed)
        .delete("unhealthy", &DeleteParams::default())
        .await
        .unwrap();
}

async fn placeholder_holds_a_provisioned_claim_which_is_reclaimed(bed: &Bed) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(bed.client.clone(), NS);
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "fast",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();
    // No nodeName: the scheduler places it, which triggers WaitForFirstConsumer provisioning.
    create_pod(
        bed,
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "containers": [{
                    "name": "nginx", "image": "docker.io/library/nginx:1.27",
                    "volumeMounts": [{"name": "data", "mountPath": "/usr/share/nginx/html"}],
                }],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            },
        }),
    )
    .await;
    let ready = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let pod = wait_pod(bed, "web", ready).await;
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    let claim = claims.get("data").await.unwrap();
    assert_eq!(
        claim.status.as_ref().unwrap().phase.as_deref(),
        Some("Bound")
    );
    let pv_name = claim.spec.unwrap().volume_name.unwrap();
    let pvs: Api<PersistentVolume> = Api::all(bed.client.clone());
    let pv = pvs.get(&pv_name).await.unwrap();
    let host_path = pv.spec.unwrap().host_path.unwrap().path;
    assert_eq!(host_path, format!("/var/lib/testbed-storage/{pv_name}"));
    let dir = bed.root.join(host_path.trim_start_matches('/'));
    assert!(
        dir.is_dir(),
        "the PV's directory exists under the node root"
    );

    let uid = pod.metadata.uid.clone().unwrap();
    pods(bed)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait::gone(&pods(bed), "web", Some(&uid), WAIT)
        .await
        .expect("pod deleted");
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    let pv_uid = pv.metadata.uid.clone().unwrap();
    wait::gone(&pvs, &pv_name, Some(&pv_uid), WAIT)
        .await
        .expect("PV reclaimed");
    assert!(!dir.exists(), "the reclaimed PV's directory is removed");
}

/// Polls for a file the pod writes (bounded by a deadline), returning its trimmed content.
async fn wait_file(path: &Path) -> String {
    let what = format!("{} appears", path.display());
    wait::poll(&what, WAIT, Duration::from_millis(50), || async move {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        if content.trim().is_empty() {
            Err(format!("{} never appeared", path.display()))
        } else {
            Ok(content.trim().to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

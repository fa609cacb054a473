//! Node registration and the two heartbeats that keep a simulated node Ready: the node Lease
//! in `kube-node-lease` (what the node lifecycle controller watches) and the Ready condition
//! in the Node status (what `kubectl get nodes` and the scheduler look at).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::{NodeConfig, NodeError};

/// Field manager for everything the simulated node writes, so server-side apply keeps our
/// fields apart from the controllers'.
pub(crate) const FIELD_MANAGER: &str = "testbed-node";

/// How often the Lease is renewed; the kubelet's default is 10 s with a 40 s lease.
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// Lease duration announced to the node lifecycle controller.
const LEASE_SECONDS: i32 = 40;
/// How often the status (Ready condition heartbeat) is re-posted.
const STATUS_EVERY: Duration = Duration::from_secs(20);
/// The namespace the API server creates for node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Registers the Node, posts its first status and Lease, and spawns the heartbeat loop.
pub(crate) async fn start(
    client: kube::Client,
    cfg: &NodeConfig,
) -> Result<tokio::task::JoinHandle<()>, NodeError> {
    let api_err = |source| NodeError::Api {
        node: cfg.name.clone(),
        source,
    };
    let version = client
        .apiserver_version()
        .await
        .map_err(api_err)?
        .git_version;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = register(&nodes, cfg).await.map_err(api_err)?;
    let since = Timestamp::now();
    post_status(&nodes, cfg, &version, since)
        .await
        .map_err(api_err)?;
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let uid = node.metadata.uid.unwrap_or_default();
    renew_lease(&leases, &cfg.name, &uid)
        .await
        .map_err(api_err)?;
    let cfg = cfg.clone();
    Ok(tokio::spawn(async move {
        beat_forever(nodes, leases, cfg, version, uid, since).await;
    }))
}

/// Renews the Lease every [`LEASE_RENEW`] and the status every [`STATUS_EVERY`]; errors are
/// logged and retried on the next tick, as a kubelet does.
async fn beat_forever(
    nodes: Api<Node>,
    leases: Api<Lease>,
    cfg: NodeConfig,
    version: String,
    mut uid: String,
    since: Timestamp,
) {
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    lease_tick.tick().await;
    status_tick.tick().await;
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&leases, &cfg.name, &uid).await {
                    tracing::warn!(node = %cfg.name, error = %e, "lease renewal failed");
                }
            }
            _ = status_tick.tick() => {
                match post_status(&nodes, &cfg, &version, since).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        tracing::warn!(node = %cfg.name, "Node object deleted: registering again");
                        match register(&nodes, &cfg).await {
                            Ok(node) => {
                                uid = node.metadata.uid.unwrap_or_default();
                                let _ = post_status(&nodes, &cfg, &version, since).await;
                            }
                            Err(e) => tracing::warn!(node = %cfg.name, error = %e, "re-registration failed"),
                        }
                    }
                    Err(e) => tracing::warn!(node = %cfg.name, error = %e, "node status update failed"),
                }
            }
        }
    }
}

/// Creates or updates the Node object (metadata and spec; the status is posted separately).
async fn register(nodes: &Api<Node>, cfg: &NodeConfig) -> kube::Result<Node> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    nodes
        .patch(&cfg.name, &params, &Patch::Apply(node_object(cfg)))
        .await
}

/// The Node's metadata and spec as we own them: labels, no taints.
fn node_object(cfg: &NodeConfig) -> Value {
    let mut labels = serde_json::Map::new();
    for (k, v) in &cfg.labels {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert("kubernetes.io/hostname".into(), json!(cfg.name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!(go_arch()));
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": cfg.name, "labels": labels },
        "spec": {},
    })
}

/// Posts the full node status with fresh heartbeat times.
async fn post_status(
    nodes: &Api<Node>,
    cfg: &NodeConfig,
    version: &str,
    since: Timestamp,
) -> kube::Result<Node> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    nodes
        .patch_status(
            &cfg.name,
            &params,
            &Patch::Apply(node_status(cfg, version, since, Timestamp::now())),
        )
        .await
}

/// The status a healthy kubelet would report: addresses, capacity, node info, conditions.
pub(crate) fn node_status(
    cfg: &NodeConfig,
    version: &str,
    since: Timestamp,
    now: Timestamp,
) -> Value {
    let resources = json!({
        "cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi",
    });
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now.to_string(), "lastTransitionTime": since.to_string(),
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": cfg.name },
        "status": {
            "addresses": [
                { "type": "InternalIP", "address": cfg.ip.to_string() },
                { "type": "Hostname", "address": cfg.name },
            ],
            "capacity": resources,
            "allocatable": resources,
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
            "nodeInfo": {
                "machineID": machine_id(&cfg.name),
                "systemUUID": machine_id(&cfg.name),
                "bootID": machine_id(&cfg.name),
                "kernelVersion": kernel_version(),
                "osImage": "DR-Syncer test bed simulated node",
                "containerRuntimeVersion": "testbed://0.1.0",
                "kubeletVersion": version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": go_arch(),
            },
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "simulated node is posting ready status"),
            ],
        },
    })
}

/// The architecture in Go's spelling, as the `kubernetes.io/arch` label and nodeInfo use it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A stable per-node id (the node name hashed), for the nodeInfo ids.
fn machine_id(name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    format!("{:016x}{:016x}", h.finish(), h.finish().rotate_left(32))
}

/// The real kernel release, so nodeInfo does not lie about the machine.
fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Creates or renews the node Lease, owned by the Node so it goes away with it.
async fn renew_lease(leases: &Api<Lease>, name: &str, node_uid: &str) -> kube::Result<Lease> {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid,
            }],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        },
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    leases.patch(name, &params, &Patch::Apply(lease)).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::node::OurImages;
    use k8s_openapi::api::core::v1::Node;

    fn cfg() -> NodeConfig {
        NodeConfig {
            name: "source-node-1".into(),
            ip: std::net::Ipv4Addr::new(127, 1, 1, 1),
            root: "/r".into(),
            state_dir: "/s".into(),
            api_host: "127.0.0.1".into(),
            api_port: 6443,
            images: OurImages::new(),
            labels: [("zone".to_string(), "a".to_string())].into(),
        }
    }

    #[test]
    fn status_reports_a_ready_node_with_its_ip_and_the_server_version() {
        let since = Timestamp::UNIX_EPOCH;
        let value = node_status(&cfg(), "v1.35.4", since, Timestamp::now());
        let node: Node = serde_json::from_value(value).unwrap();
        let ready = crate::readiness::node_condition(&node, "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.last_transition_time.as_ref().unwrap().0, since);
        let status = node.status.unwrap();
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "127.1.1.1");
        assert_eq!(status.node_info.unwrap().kubelet_version, "v1.35.4");
        assert_eq!(status.allocatable.unwrap()["pods"].0, "110");
    }

    #[test]
    fn node_object_carries_hostname_os_and_extra_labels_and_no_taints() {
        let node: Node = serde_json::from_value(node_object(&cfg())).unwrap();
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "source-node-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["zone"], "a");
        assert!(node.spec.unwrap().taints.is_none());
    }
}

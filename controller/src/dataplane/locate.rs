//! Where a source PVC's data lives: the node holding the volume, the agent on that node and
//! the address a worker dials.
//!
//! The node is, in order: the node of a running pod using the claim (or a pending one that
//! already has a node: the volume is being attached there); else, for node-local volumes
//! (hostPath, local), the node named by the PV's node affinity. A CSI (or any other
//! attachable) volume that no pod uses is mounted nowhere, so there is nothing an agent can
//! read: that is [`LocateError::NotMounted`], reported, never skipped silently.
//!
//! The decisions are pure functions over API objects (unit-tested with JSON fixtures);
//! [`locate`] only fetches the objects and calls them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::agents::{self, AgentPod};
use crate::status::reasons;

/// Node label naming the host, used by node affinities of local and hostPath PVs.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Where a PVC's data can be pulled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Name of the bound PersistentVolume.
    pub pv: String,
    /// Node holding the volume.
    pub node: String,
    /// The agent pod on that node.
    pub agent_pod: String,
    /// `ip:port` the worker connects to.
    pub address: String,
}

/// Why a PVC could not be located; each maps to a condition reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// The source PVC does not exist.
    #[error("source PVC {0} not found")]
    PvcNotFound(String),
    /// The source PVC is not bound to a volume yet.
    #[error("source PVC {0} is not bound to a PersistentVolume yet; nothing to copy")]
    NotBound(String),
    /// No node holds the volume (attachable volume, no pod uses it).
    #[error(
        "volume of PVC {pvc} ({plugin}) is not mounted on any source node: no running pod uses the claim, so no agent can read it; start a workload that mounts it (or scale it up) and sync again"
    )]
    NotMounted {
        /// `namespace/name`.
        pvc: String,
        /// Volume plugin (`csi driver.example.com`, `nfs`, ...).
        plugin: String,
    },
    /// A node-local PV without a usable node affinity, and no pod using it.
    #[error(
        "PV {pv} of PVC {pvc} is node-local but names no node (no kubernetes.io/hostname node affinity) and no running pod uses the claim; start a pod that mounts it"
    )]
    NoNodeAffinity {
        /// `namespace/name` of the PVC.
        pvc: String,
        /// PV name.
        pv: String,
    },
    /// No agent pod on the node holding the volume.
    #[error(
        "no dr-syncer agent pod on node {node}, which holds PVC {pvc}; check the agent DaemonSet's nodeSelector and tolerations (RemoteCluster spec.pvcSync.deployment)"
    )]
    AgentNotFound {
        /// `namespace/name` of the PVC.
        pvc: String,
        /// Node name.
        node: String,
    },
    /// The agent pod exists but is not ready.
    #[error("dr-syncer agent pod {pod} on node {node} (holding PVC {pvc}) is not ready")]
    AgentNotReady {
        /// `namespace/name` of the PVC.
        pvc: String,
        /// Node name.
        node: String,
        /// Agent pod name.
        pod: String,
    },
    /// Neither the agent pod nor the node reports an address.
    #[error("node {node} has no InternalIP or ExternalIP and its agent pod no hostIP")]
    NoAddress {
        /// Node name.
        node: String,
    },
    /// Reading the source cluster failed.
    #[error("reading the source cluster: {0}")]
    Api(String),
}

impl LocateError {
    /// Condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotMounted { .. } | Self::NoNodeAffinity { .. } | Self::NotBound(_) => {
                reasons::VOLUME_NOT_MOUNTED
            }
            Self::AgentNotFound { .. } | Self::AgentNotReady { .. } => reasons::AGENT_NOT_FOUND,
            Self::NoAddress { .. } => reasons::AGENT_UNREACHABLE,
            Self::PvcNotFound(_) | Self::Api(_) => reasons::DATA_SYNC_FAILED,
        }
    }

    /// Whether waiting and trying again may help (an agent restarting, an API blip).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::AgentNotReady { .. } | Self::Api(_))
    }
}

impl From<kube::Error> for LocateError {
    fn from(e: kube::Error) -> Self {
        LocateError::Api(e.to_string())
    }
}

/// How a PV's data is reachable from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Node-local storage (hostPath, local): on the node whose hostname label is this value.
    NodeLocal(String),
    /// Node-local storage without a node affinity naming a host.
    NodeLocalUnknown,
    /// Attachable storage (CSI and other plugins): only where a pod mounts it.
    Attached(String),
}

/// The node of a pod using `claim`: running pods first, then pending ones already bound to
/// a node (the kubelet is mounting the volume there). Pods being deleted count last.
pub fn node_from_pods(pods: &[Pod], claim: &str) -> Option<String> {
    let users = pods.iter().filter(|p| uses_claim(p, claim));
    let mut best: Option<(u8, String)> = None;
    for pod in users {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let rank = match phase {
            Some("Running") => 0,
            Some("Pending") => 2,
            _ => continue,
        } + u8::from(pod.metadata.deletion_timestamp.is_some());
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, node));
        }
    }
    best.map(|(_, node)| node)
}

/// Whether the pod mounts the claim (directly; ephemeral volumes name their own claims).
pub fn uses_claim(pod: &Pod, claim: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vols| {
            vols.iter().any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim)
            })
        })
}

/// Where a PV lives, from its volume source and node affinity.
pub fn placement(pv: &PersistentVolume) -> Placement {
    let Some(spec) = pv.spec.as_ref() else {
        return Placement::Attached("unknown".into());
    };
    if spec.host_path.is_none() && spec.local.is_none() {
        return Placement::Attached(plugin_name(pv));
    }
    let hostname = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .into_iter()
        .flat_map(|r| r.node_selector_terms.iter())
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|e| e.key == HOSTNAME_LABEL && e.operator == "In")
        .and_then(|e| e.values.as_ref()?.first().cloned());
    match hostname {
        Some(h) => Placement::NodeLocal(h),
        None => Placement::NodeLocalUnknown,
    }
}

/// The volume plugin of a PV, for messages (`csi <driver>`, `nfs`, ...).
pub fn plugin_name(pv: &PersistentVolume) -> String {
    let Some(spec) = pv.spec.as_ref() else {
        return "unknown".into();
    };
    if let Some(csi) = &spec.csi {
        return format!("csi {}", csi.driver);
    }
    let value = serde_json::to_value(spec).unwrap_or_default();
    // Every PV spec field that is not a volume source; the one field left names the plugin.
    const NOT_PLUGINS: [&str; 9] = [
        "accessModes",
        "capacity",
        "claimRef",
        "mountOptions",
        "nodeAffinity",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "volumeAttributesClassName",
        "volumeMode",
    ];
    value
        .as_object()
        .and_then(|o| {
            o.keys()
                .find(|k| !NOT_PLUGINS.contains(&k.as_str()))
                .cloned()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The node whose `kubernetes.io/hostname` label is `hostname`; a node of that name when
/// no label matches (the two are the same on most clusters).
pub fn node_for_hostname(nodes: &[Node], hostname: &str) -> Option<String> {
    nodes
        .iter()
        .find(|n| n.labels().get(HOSTNAME_LABEL).map(String::as_str) == Some(hostname))
        .or_else(|| nodes.iter().find(|n| n.name_any() == hostname))
        .map(ResourceExt::name_any)
}

/// The node's InternalIP, else its ExternalIP.
pub fn node_address(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    ["InternalIP", "ExternalIP"].iter().find_map(|kind| {
        addresses
            .iter()
            .find(|a| a.type_ == *kind && !a.address.is_empty())
            .map(|a| a.address.clone())
    })
}

/// `host:port`, bracketing IPv6 literals.
pub fn dial_address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The whole decision: the node holding the volume and the agent serving it.
///
/// `node_ip` gives a node's address when the agent pod reports no hostIP.
pub fn decide(
    pvc_key: &str,
    pv: &PersistentVolume,
    pods: &[Pod],
    claim: &str,
    nodes: &[Node],
    agents: &BTreeMap<String, AgentPod>,
    port: u16,
) -> Result<Location, LocateError> {
    let node = match node_from_pods(pods, claim) {
        Some(node) => node,
        None => match placement(pv) {
            Placement::NodeLocal(hostname) => {
                node_for_hostname(nodes, &hostname).unwrap_or(hostname)
            }
            Placement::NodeLocalUnknown => {
                return Err(LocateError::NoNodeAffinity {
                    pvc: pvc_key.to_owned(),
                    pv: pv.name_any(),
                });
            }
            Placement::Attached(plugin) => {
                return Err(LocateError::NotMounted {
                    pvc: pvc_key.to_owned(),
                    plugin,
                });
            }
        },
    };
    let Some(agent) = agents.get(&node) else {
        return Err(LocateError::AgentNotFound {
            pvc: pvc_key.to_owned(),
            node,
        });
    };
    if !agent.ready {
        return Err(LocateError::AgentNotReady {
            pvc: pvc_key.to_owned(),
            node,
            pod: agent.pod.clone(),
        });
    }
    let host = agent
        .host_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .or_else(|| {
            nodes
                .iter()
                .find(|n| n.name_any() == node)
                .and_then(node_address)
        })
        .ok_or_else(|| LocateError::NoAddress { node: node.clone() })?;
    Ok(Location {
        pv: pv.name_any(),
        node,
        agent_pod: agent.pod.clone(),
        address: dial_address(&host, port),
    })
}

/// Fetches what [`decide`] needs from the source cluster and decides.
pub async fn locate(
    source: &Client,
    namespace: &str,
    claim: &str,
    port: u16,
) -> Result<Location, LocateError> {
    let pvc_key = format!("{namespace}/{claim}");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(source.clone(), namespace);
    let pvc = pvcs
        .get_opt(claim)
        .await?
        .ok_or_else(|| LocateError::PvcNotFound(pvc_key.clone()))?;
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| LocateError::NotBound(pvc_key.clone()))?;
    let pv = Api::<PersistentVolume>::all(source.clone())
        .get_opt(&pv_name)
        .await?
        .ok_or_else(|| LocateError::NotBound(pvc_key.clone()))?;
    let pods = Api::<Pod>::namespaced(source.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let nodes = Api::<Node>::all(source.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let agents = agents::agents_by_node(source).await?;
    decide(&pvc_key, &pv, &pods, claim, &nodes, &agents, port)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, claim: &str, node: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "app"},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "image": "x"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}],
            },
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn host_path_pv(node: Option<&str>) -> PersistentVolume {
        let affinity = node.map(|n| {
            json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}
            ]}]}})
        });
        serde_json::from_value(json!({
            "metadata": {"name": "pv-1"},
            "spec": {"hostPath": {"path": "/var/lib/x"}, "nodeAffinity": affinity,
                      "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]},
        }))
        .unwrap()
    }

    fn csi_pv() -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pv-csi"},
            "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"},
                      "capacity": {"storage": "1Gi"}},
        }))
        .unwrap()
    }

    fn node(name: &str, hostname: &str, addresses: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": hostname}},
            "status": {"addresses": addresses},
        }))
        .unwrap()
    }

    fn agent(node: &str, ip: Option<&str>, ready: bool) -> (String, AgentPod) {
        (
            node.to_owned(),
            AgentPod {
                pod: format!("agent-{node}"),
                node: node.to_owned(),
                host_ip: ip.map(str::to_owned),
                ready,
            },
        )
    }

    #[test]
    fn running_pod_beats_pending_and_other_claims() {
        let pods = vec![
            pod("other", "other-claim", Some("n3"), "Running"),
            pod("pending", "data", Some("n2"), "Pending"),
            pod("running", "data", Some("n1"), "Running"),
            pod("done", "data", Some("n4"), "Succeeded"),
        ];
        assert_eq!(node_from_pods(&pods, "data"), Some("n1".into()));
        assert_eq!(node_from_pods(&pods[..2], "data"), Some("n2".into()));
        assert_eq!(node_from_pods(&pods[3..], "data"), None);
        // Unscheduled pending pods say nothing.
        assert_eq!(
            node_from_pods(&[pod("p", "data", None, "Pending")], "data"),
            None
        );
    }

    #[test]
    fn placement_by_plugin() {
        assert_eq!(
            placement(&host_path_pv(Some("host-a"))),
            Placement::NodeLocal("host-a".into())
        );
        assert_eq!(placement(&host_path_pv(None)), Placement::NodeLocalUnknown);
        assert_eq!(
            placement(&csi_pv()),
            Placement::Attached("csi ebs.csi.aws.com".into())
        );
        let nfs: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"nfs": {"server": "s", "path": "/"}, "capacity": {"storage": "1Gi"}},
        }))
        .unwrap();
        assert_eq!(placement(&nfs), Placement::Attached("nfs".into()));
    }

    #[test]
    fn hostname_label_maps_to_node_name() {
        let nodes = vec![
            node("node-a", "host-a", json!([])),
            node("node-b", "node-b", json!([])),
        ];
        assert_eq!(node_for_hostname(&nodes, "host-a"), Some("node-a".into()));
        assert_eq!(node_for_hostname(&nodes, "node-b"), Some("node-b".into()));
        assert_eq!(node_for_hostname(&nodes, "nope"), None);
    }

    #[test]
    fn internal_ip_preferred_then_external() {
        let both = node(
            "n",
            "n",
            json!([{"type": "ExternalIP", "address": "1.2.3.4"},
                   {"type": "InternalIP", "address": "10.0.0.5"}]),
        );
        assert_eq!(node_address(&both).as_deref(), Some("10.0.0.5"));
        let ext = node(
            "n",
            "n",
            json!([{"type": "ExternalIP", "address": "1.2.3.4"}]),
        );
        assert_eq!(node_address(&ext).as_deref(), Some("1.2.3.4"));
        assert_eq!(dial_address("fd00::1", 2222), "[fd00::1]:2222");
    }

    #[test]
    fn decide_uses_pod_node_and_agent_host_ip() {
        let pods = vec![pod("app", "data", Some("n1"), "Running")];
        let nodes = vec![node("n1", "n1", json!([]))];
        let agents = BTreeMap::from([agent("n1", Some("127.0.10.1"), true)]);
        let loc = decide("app/data", &csi_pv(), &pods, "data", &nodes, &agents, 2222).unwrap();
        assert_eq!(loc.node, "n1");
        assert_eq!(loc.address, "127.0.10.1:2222");
        assert_eq!(loc.agent_pod, "agent-n1");
        assert_eq!(loc.pv, "pv-csi");
    }

    #[test]
    fn decide_falls_back_to_pv_affinity_and_node_ip() {
        let nodes = vec![node(
            "node-b",
            "host-b",
            json!([{"type": "InternalIP", "address": "10.1.1.2"}]),
        )];
        let agents = BTreeMap::from([agent("node-b", None, true)]);
        let loc = decide(
            "app/data",
            &host_path_pv(Some("host-b")),
            &[],
            "data",
            &nodes,
            &agents,
            2022,
        )
        .unwrap();
        assert_eq!(loc.node, "node-b");
        assert_eq!(loc.address, "10.1.1.2:2022");
    }

    #[test]
    fn decide_reports_each_failure_with_its_reason() {
        let nodes = vec![node("n1", "n1", json!([]))];
        let none = BTreeMap::new();
        let err = decide("app/data", &csi_pv(), &[], "data", &nodes, &none, 2222).unwrap_err();
        assert_eq!(err.reason(), reasons::VOLUME_NOT_MOUNTED);
        assert!(err.to_string().contains("app/data"), "{err}");
        assert!(err.to_string().contains("csi ebs.csi.aws.com"), "{err}");

        let err = decide(
            "app/data",
            &host_path_pv(None),
            &[],
            "data",
            &nodes,
            &none,
            2222,
        )
        .unwrap_err();
        assert!(matches!(err, LocateError::NoNodeAffinity { .. }));

        let pods = vec![pod("app", "data", Some("n1"), "Running")];
        let err = decide("app/data", &csi_pv(), &pods, "data", &nodes, &none, 2222).unwrap_err();
        assert_eq!(err.reason(), reasons::AGENT_NOT_FOUND);
        assert!(!err.is_transient());
        assert!(err.to_string().contains("node n1"), "{err}");

        let not_ready = BTreeMap::from([agent("n1", Some("127.0.0.1"), false)]);
        let err = decide("app/data", &csi_pv(), &pods, "data", &nodes, &not_ready, 1).unwrap_err();
        assert!(err.is_transient());

        let no_ip = BTreeMap::from([agent("n1", None, true)]);
        let err = decide("app/data", &csi_pv(), &pods, "data", &nodes, &no_ip, 1).unwrap_err();
        assert_eq!(err.reason(), reasons::AGENT_UNREACHABLE);
    }
}

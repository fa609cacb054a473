//! What the agents are doing, read back from the cluster: `RemoteCluster.status.pvcSync`
//! (phase, ready/total, a line per node) and the agent pods by node that `locate` uses.

use std::collections::BTreeMap;

use dr_syncer_crds::remote_cluster::{
    AgentPodStatus, PvcSyncAgentStatus, PvcSyncNodeStatus, PvcSyncStatus,
};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::{AGENT_NAME, AGENT_NAMESPACE, AGENT_SELECTOR, AgentPod, KEYS_HASH_ANNOTATION};
use crate::status::now;

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(KEYS_HASH_ANNOTATION))
        .map(String::as_str)
}

/// Agent pods by node name (ready or not), for `locate`.
pub async fn agents_by_node(source: &Client) -> Result<BTreeMap<String, AgentPod>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(AGENT_SELECTOR))
        .await?;
    Ok(agent_pods(&list.items, None))
}

/// Agent pods by node; with `hash`, only pods carrying it count as ready (a pod of the
/// previous roll still running with old keys is not usable).
pub(super) fn agent_pods(pods: &[Pod], hash: Option<&str>) -> BTreeMap<String, AgentPod> {
    let mut out: BTreeMap<String, AgentPod> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let current = hash.is_none_or(|h| pod_hash(pod) == Some(h));
        let agent = AgentPod {
            pod: pod.name_any(),
            node: node.clone(),
            host_ip: pod.status.as_ref().and_then(|s| s.host_ip.clone()),
            ready: pod_ready(pod) && current,
        };
        // Prefer a ready pod when a roll leaves two on one node.
        match out.get(&node) {
            Some(existing) if existing.ready && !agent.ready => {}
            _ => {
                out.insert(node, agent);
            }
        }
    }
    out
}

/// `RemoteCluster.status.pvcSync` from the DaemonSet and its pods: phase (Deploying,
/// Running, Degraded), ready/total and a line per node.
pub async fn status(source: &Client) -> Result<PvcSyncStatus, kube::Error> {
    let ds_api: Api<DaemonSet> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let ds = ds_api.get_opt(AGENT_NAME).await?;
    let list = pods
        .list(&ListParams::default().labels(AGENT_SELECTOR))
        .await?;
    Ok(status_from(ds.as_ref(), &list.items))
}

/// Phase, readiness, restarts and last readiness change of an agent pod.
fn pod_status(pod: &Pod) -> AgentPodStatus {
    let status = pod.status.clone().unwrap_or_default();
    let ready_condition = status
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    AgentPodStatus {
        phase: status.phase.clone().unwrap_or_default(),
        ready: pod_ready(pod),
        restart_count: status
            .container_statuses
            .as_ref()
            .map(|cs| cs.iter().map(|c| c.restart_count).sum()),
        last_transition_time: ready_condition.and_then(|c| c.last_transition_time.clone()),
    }
}

/// The pure part of [`status`].
pub fn status_from(ds: Option<&DaemonSet>, pods: &[Pod]) -> PvcSyncStatus {
    let hash = ds
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(KEYS_HASH_ANNOTATION))
        .cloned();
    let agents = agent_pods(pods, hash.as_deref());
    let desired = ds
        .and_then(|d| d.status.as_ref())
        .map(|s| s.desired_number_scheduled)
        .unwrap_or(0);
    let total = desired.max(agents.len() as i32);
    let ready = agents.values().filter(|a| a.ready).count() as i32;
    let heartbeat = now();
    let node_statuses = agents
        .values()
        .map(|a| {
            let message = if a.ready {
                format!("agent pod {} ready", a.pod)
            } else {
                format!(
                    "agent pod {} not ready (starting, failing its probe, or on old keys)",
                    a.pod
                )
            };
            (
                a.node.clone(),
                PvcSyncNodeStatus {
                    ready: a.ready,
                    last_heartbeat: a.ready.then(|| heartbeat.clone()),
                    message: Some(message),
                    pod_status: pods
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(a.pod.as_str()))
                        .map(pod_status),
                    ..PvcSyncNodeStatus::default()
                },
            )
        })
        .collect();
    let (phase, message) = match ds {
        None => ("Deploying", "agent DaemonSet not created yet".to_owned()),
        Some(_) if total == 0 => (
            "Degraded",
            "the agent DaemonSet schedules no pod; check nodeSelector and tolerations".to_owned(),
        ),
        Some(_) if ready == total => ("Running", format!("{ready}/{total} agents ready")),
        Some(_) => ("Deploying", format!("{ready}/{total} agents ready")),
    };
    PvcSyncStatus {
        phase: Some(phase.to_owned()),
        agent_status: Some(PvcSyncAgentStatus {
            ready_nodes: ready,
            total_nodes: total,
            node_statuses,
        }),
        message: Some(message),
        ..PvcSyncStatus::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dataplane::agents::render::tests::render_enabled;

    fn pod(name: &str, node: &str, ready: bool, hash: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": {KEYS_HASH_ANNOTATION: hash}},
            "spec": {"nodeName": node, "containers": []},
            "status": {"hostIP": format!("10.0.0.{}", node.len()),
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn status_counts_ready_agents_on_current_keys_per_node() {
        let ds = render_enabled("i", "new").daemon_set;
        let mut ds = ds;
        ds.status = Some(
            serde_json::from_value(serde_json::json!({
                "currentNumberScheduled": 2, "desiredNumberScheduled": 2,
                "numberMisscheduled": 0, "numberReady": 2
            }))
            .unwrap(),
        );
        let pods = [
            pod("a-1", "node-a", true, "new"),
            pod("b-1", "node-b", true, "old"),
        ];
        let s = status_from(Some(&ds), &pods);
        let agents = s.agent_status.unwrap();
        assert_eq!((agents.ready_nodes, agents.total_nodes), (1, 2));
        assert!(agents.node_statuses["node-a"].ready);
        assert!(agents.node_statuses["node-a"].last_heartbeat.is_some());
        assert!(
            !agents.node_statuses["node-b"].ready,
            "old keys do not count"
        );
        let pod_status = agents.node_statuses["node-b"].pod_status.clone().unwrap();
        assert!(pod_status.ready, "the pod itself is ready");
        assert_eq!(s.phase.as_deref(), Some("Deploying"));

        let pods = [
            pod("a-1", "node-a", true, "new"),
            pod("b-2", "node-b", true, "new"),
        ];
        let s = status_from(Some(&ds), &pods);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.agent_status.unwrap().ready_nodes, 2);
        assert_eq!(status_from(None, &[]).phase.as_deref(), Some("Deploying"));
    }

    #[test]
    fn agents_by_node_prefers_the_ready_pod_during_a_roll() {
        let pods = [pod("old", "n1", true, "h"), pod("new", "n1", false, "h")];
        let map = agent_pods(&pods, None);
        assert_eq!(map["n1"].pod, "old");
        assert!(map["n1"].ready);
        assert_eq!(map["n1"].host_ip.as_deref(), Some("10.0.0.2"));
    }
}

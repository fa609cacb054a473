//! `ClusterMapping`: pairs two RemoteClusters and reports whether the pair is usable.
//!
//! Both clusters must exist and be healthy for the mapping to be Connected. With
//! `verifyConnectivity` and a source with `pvcSync.enabled`, the controller also proves the
//! data path: it prepares the agents and keys, runs a short-lived check pod (the worker
//! image in `--check` mode) in the target cluster against every source agent, and reports
//! per-agent results in `connectionStatus` (condition `AgentsConnected`). The pod and its
//! per-run Secret are deleted afterwards. Running the pod is the data plane's worker-pod
//! runner ([`worker::run_check`]); this file only decides when to check and reports.

use std::sync::Arc;
use std::time::Duration;

use dr_syncer_crds::cluster_mapping::{
    AgentConnectionDetail, ClusterMapping, ClusterMappingPhase, ClusterMappingStatus,
    ConnectionStatus,
};
use dr_syncer_crds::remote_cluster::{ClusterHealth, RemoteCluster};
use dr_syncer_worker_wire::CheckReport;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use tracing::Instrument;

use crate::clusters::ClusterKey;
use crate::context::Context;
use crate::dataplane::agents;
use crate::dataplane::keys::{self, KeyScope};
use crate::dataplane::worker::{self, Destination};
use crate::k8s::{apply_status, requeue_after_error};
use crate::status::{condition, find_condition, now, reasons, set_condition, types};

/// Why a ClusterMapping reconcile failed (status could not be written, ...).
#[derive(Debug, thiserror::Error)]
pub enum ClusterMappingError {
    /// A call to the controller cluster failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// State of one side of the pair, as found.
#[derive(Debug, Clone, PartialEq)]
pub enum Side {
    /// The RemoteCluster does not exist.
    Missing,
    /// It exists with this health and Ready message.
    Found {
        /// Its `status.health`.
        health: Option<ClusterHealth>,
        /// Its Ready condition message.
        message: String,
    },
}

async fn side(api: &Api<RemoteCluster>, name: &str) -> Result<Side, kube::Error> {
    Ok(match api.get_opt(name).await? {
        None => Side::Missing,
        Some(rc) => {
            let status = rc.status.unwrap_or_default();
            Side::Found {
                health: status.health,
                message: find_condition(&status.conditions, types::READY)
                    .map(|c| c.message.clone())
                    .unwrap_or_else(|| "not checked yet".to_owned()),
            }
        }
    })
}

/// The problem with one side, in words; `None` when it is healthy.
pub fn side_problem(
    role: &str,
    namespace: &str,
    name: &str,
    side: &Side,
) -> Option<(&'static str, String)> {
    match side {
        Side::Missing => Some((
            reasons::REMOTE_CLUSTER_NOT_FOUND,
            format!(
                "{role} RemoteCluster {namespace}/{name} not found; create it or fix spec.{}Cluster",
                role.to_lowercase()
            ),
        )),
        Side::Found {
            health: Some(ClusterHealth::Healthy),
            ..
        } => None,
        Side::Found { health, message } => Some((
            reasons::CLUSTER_UNHEALTHY,
            format!(
                "{role} RemoteCluster {namespace}/{name} is {}: {message}",
                match health {
                    Some(ClusterHealth::Unhealthy) => "Unhealthy",
                    _ => "not checked yet",
                }
            ),
        )),
    }
}

/// The AgentsConnected condition: runs the connectivity check when due and records its
/// outcome. `Some(true)` verified, `Some(false)` failed, `None` not applicable/not checked.
async fn agents_condition(
    ctx: &Context,
    cm: &ClusterMapping,
    clusters: &Api<RemoteCluster>,
    status: &mut ClusterMappingStatus,
    api: &Api<ClusterMapping>,
) -> Result<Option<bool>, ClusterMappingError> {
    if !cm.spec.verify_connectivity {
        return Ok(None);
    }
    if !check_due(cm, status) && !client_rotation_pending(ctx, cm).await? {
        return Ok(Some(true));
    }
    let Some(source_rc) = clusters.get_opt(&cm.spec.source_cluster).await? else {
        return Ok(None);
    };
    if source_rc.spec.pvc_sync.as_ref().is_some_and(|p| p.enabled)
        && status.phase != Some(ClusterMappingPhase::Connected)
    {
        // The check can take a while (agents rolling out): say so meanwhile.
        status.phase = Some(ClusterMappingPhase::Connecting);
        status.message = Some("verifying agent connectivity from the target cluster".to_owned());
        apply_status(api, &cm.name_any(), &*status).await?;
    }
    let result = verify_connectivity(ctx, cm, &source_rc).await;
    let mut c = condition(
        types::AGENTS_CONNECTED,
        result.ok == Some(true),
        result.reason,
        result.message,
        cm.metadata.generation,
    );
    if result.ok.is_none() {
        c.status = "Unknown".to_owned();
    }
    set_condition(&mut status.conditions, c);
    if result.connection.is_some() {
        status.connection_status = result.connection;
    }
    if result.ok == Some(true) {
        status.last_verified = Some(now());
    }
    Ok(result.ok)
}

/// Whether the mapping asks (annotation) for a client key its generated Secret was not
/// generated for yet: the check then runs now, which rotates the key and proves the agents
/// accept the new one.
async fn client_rotation_pending(
    ctx: &Context,
    cm: &ClusterMapping,
) -> Result<bool, ClusterMappingError> {
    let Some(wanted) = cm.annotations().get(keys::ROTATE_ANNOTATION) else {
        return Ok(false);
    };
    if cm.spec.ssh_key_secret_ref.is_some() {
        return Ok(false);
    }
    let scope = KeyScope::for_cluster_mapping(cm);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &scope.namespace);
    let secret = secrets.get_opt(&scope.generated_secret_name()).await?;
    Ok(secret
        .as_ref()
        .and_then(|s| s.annotations().get(keys::ROTATED_FOR_ANNOTATION))
        != Some(wanted))
}

/// Reconciles one ClusterMapping.
pub async fn reconcile(
    cm: Arc<ClusterMapping>,
    ctx: Arc<Context>,
) -> Result<Action, ClusterMappingError> {
    let span = tracing::info_span!("clustermapping", mapping = %format!("{}/{}", cm.namespace().unwrap_or_default(), cm.name_any()));
    reconcile_inner(cm, ctx).instrument(span).await
}

async fn reconcile_inner(
    cm: Arc<ClusterMapping>,
    ctx: Arc<Context>,
) -> Result<Action, ClusterMappingError> {
    let namespace = cm.namespace().unwrap_or_default();
    let generation = cm.metadata.generation;
    let original = cm.status.clone().unwrap_or_default();
    let mut status: ClusterMappingStatus = original.clone();
    status.observed_generation = generation;
    let api: Api<ClusterMapping> = Api::namespaced(ctx.client.clone(), &namespace);

    if cm.spec.paused {
        set_condition(
            &mut status.conditions,
            condition(
                types::READY,
                false,
                reasons::PAUSED,
                "spec.paused is true: no checks and no replication through this mapping",
                generation,
            ),
        );
        if status != original {
            apply_status(&api, &cm.name_any(), &status).await?;
        }
        return Ok(Action::await_change());
    }

    let clusters: Api<RemoteCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let source = side(&clusters, &cm.spec.source_cluster).await?;
    let target = side(&clusters, &cm.spec.target_cluster).await?;
    let problems: Vec<(&str, String)> = [
        side_problem("Source", &namespace, &cm.spec.source_cluster, &source),
        side_problem("Target", &namespace, &cm.spec.target_cluster, &target),
    ]
    .into_iter()
    .flatten()
    .collect();

    status.last_attempt_time = Some(now());
    if let Some((reason, _)) = problems.first() {
        let message = problems
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        status.phase = Some(ClusterMappingPhase::Failed);
        status.message = Some(message.clone());
        status.consecutive_failures = status.consecutive_failures.saturating_add(1);
        set_condition(
            &mut status.conditions,
            condition(
                types::CLUSTERS_READY,
                false,
                reason,
                message.clone(),
                generation,
            ),
        );
        set_condition(
            &mut status.conditions,
            condition(types::READY, false, reason, message, generation),
        );
    } else {
        set_condition(
            &mut status.conditions,
            condition(
                types::CLUSTERS_READY,
                true,
                reasons::CLUSTERS_HEALTHY,
                "source and target RemoteClusters are healthy",
                generation,
            ),
        );
        let agents_ok = agents_condition(&ctx, &cm, &clusters, &mut status, &api).await?;
        let message = match (cm.spec.verify_connectivity, agents_ok) {
            (false, _) => "both clusters reachable".to_owned(),
            (true, None) => {
                "both clusters reachable; agent connectivity not checked (see AgentsConnected)"
                    .to_owned()
            }
            (true, Some(true)) => {
                "both clusters reachable; workers in the target authenticate to every source agent"
                    .to_owned()
            }
            (true, Some(false)) => find_condition(&status.conditions, types::AGENTS_CONNECTED)
                .map(|c| c.message.clone())
                .unwrap_or_default(),
        };
        let ok = agents_ok != Some(false);
        status.phase = Some(if ok {
            ClusterMappingPhase::Connected
        } else {
            ClusterMappingPhase::Failed
        });
        if ok {
            status.consecutive_failures = 0;
        } else {
            status.consecutive_failures = status.consecutive_failures.saturating_add(1);
        }
        status.message = Some(message.clone());
        let reason = if ok {
            reasons::CLUSTERS_HEALTHY.to_owned()
        } else {
            find_condition(&status.conditions, types::AGENTS_CONNECTED)
                .map(|c| c.reason.clone())
                .unwrap_or_else(|| reasons::CONNECTIVITY_FAILED.to_owned())
        };
        set_condition(
            &mut status.conditions,
            condition(types::READY, ok, &reason, message, generation),
        );
    }
    if problems.is_empty() && !cm.spec.verify_connectivity {
        status.connection_status = None;
    }
    if !cm.spec.verify_connectivity {
        set_condition(
            &mut status.conditions,
            condition(
                types::AGENTS_CONNECTED,
                false,
                reasons::VERIFICATION_DISABLED,
                "spec.verifyConnectivity is false",
                generation,
            ),
        );
    }

    // lastAttemptTime changes every time; only write when something else changed too
    // (lastVerified changes only when a connectivity check ran).
    let mut compare = status.clone();
    compare.last_attempt_time = original.last_attempt_time.clone();
    if compare != original {
        apply_status(&api, &cm.name_any(), &status).await?;
    }
    let failed = status.phase == Some(ClusterMappingPhase::Failed);
    Ok(Action::requeue(if failed {
        retry_after(status.consecutive_failures)
    } else {
        Duration::from_secs(60)
    }))
}

/// Wait before re-checking a failed mapping: 15 s doubling per failure in a row, capped at
/// 5 minutes, so a broken data path does not start a check pod every few seconds forever.
pub fn retry_after(consecutive_failures: i32) -> Duration {
    let doublings = consecutive_failures.saturating_sub(1).clamp(0, 5) as u32;
    Duration::from_secs(15u64 << doublings).min(Duration::from_secs(300))
}

/// How often a Connected mapping is re-verified.
pub const REVERIFY_AFTER: Duration = Duration::from_secs(600);

/// Outcome of the agent connectivity check of a ClusterMapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Connectivity {
    /// Condition status: `Some(true)` verified, `Some(false)` failed, `None` not checked.
    pub ok: Option<bool>,
    /// Condition reason.
    pub reason: &'static str,
    /// Condition message: what was found and what to do.
    pub message: String,
    /// Per-agent details (when a check pod ran).
    pub connection: Option<ConnectionStatus>,
}

impl Connectivity {
    fn failed(reason: &'static str, message: String) -> Self {
        Connectivity {
            ok: Some(false),
            reason,
            message,
            connection: None,
        }
    }
}

/// Builds the mapping's connection status from the check report: one line per source
/// agent (by node), matched by address.
pub fn connection_status(
    agents: &[(String, String)],
    report: &CheckReport,
    target_node: &str,
) -> ConnectionStatus {
    let details: Vec<AgentConnectionDetail> = agents
        .iter()
        .map(|(node, addr)| {
            let found = report.agents.iter().find(|a| &a.agent == addr);
            AgentConnectionDetail {
                source_node: node.clone(),
                target_node: target_node.to_owned(),
                connected: found.is_some_and(|a| a.connected),
                error: match found {
                    None => Some(format!("agent {addr} was not checked")),
                    Some(a) if !a.connected => Some(
                        a.error
                            .clone()
                            .unwrap_or_else(|| "not connected".to_owned()),
                    ),
                    Some(_) => None,
                },
            }
        })
        .collect();
    ConnectionStatus {
        total_source_agents: agents.len() as i32,
        total_target_agents: 1,
        connected_agents: details.iter().filter(|d| d.connected).count() as i32,
        connection_details: details,
    }
}

/// Verifies that a worker in the target cluster can reach and authenticate to every agent
/// of the source cluster: prepares the agents (keys, DaemonSet), runs a check pod, reads
/// its per-agent report.
pub async fn verify_connectivity(
    ctx: &Context,
    cm: &ClusterMapping,
    source_rc: &RemoteCluster,
) -> Connectivity {
    let namespace = cm.namespace().unwrap_or_default();
    if !source_rc.spec.pvc_sync.as_ref().is_some_and(|p| p.enabled) {
        return Connectivity {
            ok: None,
            reason: reasons::PVC_SYNC_DISABLED,
            message: format!(
                "not checked: source RemoteCluster {namespace}/{} does not have spec.pvcSync.enabled, so no agents run there; enable pvcSync to sync PVC data (resource replication does not need agents)",
                cm.spec.source_cluster
            ),
            connection: None,
        };
    }
    let key = |name: &str| ClusterKey {
        namespace: namespace.clone(),
        name: name.to_owned(),
    };
    let (Some(source), Some(target)) = (
        ctx.clusters.get(&key(&cm.spec.source_cluster)),
        ctx.clusters.get(&key(&cm.spec.target_cluster)),
    ) else {
        return Connectivity::failed(
            reasons::REMOTE_CLUSTER_NOT_READY,
            "no client for the source or target cluster yet".to_owned(),
        );
    };
    let timeout = Duration::from_secs(cm.spec.connectivity_timeout_seconds.max(1) as u64);
    let scope = KeyScope::for_cluster_mapping(cm);
    let creds = match agents::prepare_with_timeout(
        &ctx.agent_site(),
        &scope,
        source_rc,
        &source.client,
        timeout.max(agents::READY_TIMEOUT),
    )
    .await
    {
        Ok(c) => c,
        Err(error) => return Connectivity::failed(error.reason(), error.to_string()),
    };
    let port = agents::agent_port(source_rc);
    let found = match agents::agents_by_node(&source.client).await {
        Ok(a) => a,
        Err(e) => {
            return Connectivity::failed(
                reasons::AGENTS_NOT_READY,
                format!("cannot list agent pods in the source cluster: {e}"),
            );
        }
    };
    let agents: Vec<(String, String)> = found
        .values()
        .filter_map(|a| Some((a.node.clone(), format!("{}:{port}", a.host_ip.clone()?))))
        .collect();
    if agents.is_empty() {
        return Connectivity::failed(
            reasons::AGENTS_NOT_READY,
            "no agent pod with a node address in the source cluster".to_owned(),
        );
    }
    let addresses: Vec<String> = agents.iter().map(|(_, a)| a.clone()).collect();
    let dest = Destination {
        client: target.client.clone(),
        watch_client: target.watch_client.clone(),
    };
    let image = &ctx.dataplane.worker;
    let ran = worker::run_check(&dest, &cm.name_any(), image, &creds, &addresses, timeout).await;
    let connection = match ran {
        Ok(outcome) => connection_status(&agents, &outcome.report, &outcome.node),
        Err(error) => {
            return Connectivity::failed(reasons::CONNECTIVITY_FAILED, error.to_string());
        }
    };
    let failed: Vec<String> = connection
        .connection_details
        .iter()
        .filter(|d| !d.connected)
        .map(|d| {
            format!(
                "{}: {}",
                d.source_node,
                d.error.as_deref().unwrap_or("not connected")
            )
        })
        .collect();
    let total = connection.total_source_agents;
    if failed.is_empty() {
        Connectivity {
            ok: Some(true),
            reason: reasons::CONNECTIVITY_VERIFIED,
            message: format!(
                "a check pod in the target cluster authenticated to all {total} source agents"
            ),
            connection: Some(connection),
        }
    } else {
        Connectivity {
            ok: Some(false),
            reason: reasons::CONNECTIVITY_FAILED,
            message: format!(
                "{} of {total} source agents not reachable from the target cluster: {}",
                failed.len(),
                failed.join("; ")
            ),
            connection: Some(connection),
        }
    }
}

/// Whether the connectivity check is due: never verified, failed, spec changed, rotation
/// asked, or the last verification is older than [`REVERIFY_AFTER`].
pub fn check_due(cm: &ClusterMapping, status: &ClusterMappingStatus) -> bool {
    let condition = find_condition(&status.conditions, types::AGENTS_CONNECTED);
    let verified = condition
        .is_some_and(|c| c.status == "True" && c.observed_generation == cm.metadata.generation);
    let fresh = status
        .last_verified
        .as_ref()
        .and_then(crate::status::time_to_chrono)
        .is_some_and(|t| {
            chrono::Utc::now().signed_duration_since(t).num_seconds()
                < REVERIFY_AFTER.as_secs() as i64
        });
    !(verified && fresh)
}

/// Retry policy after a failed reconcile.
pub fn error_policy(
    _cm: Arc<ClusterMapping>,
    error: &ClusterMappingError,
    _ctx: Arc<Context>,
) -> Action {
    requeue_after_error("cluster mapping", error, Duration::from_secs(10))
}

/// Whether the ClusterMapping pairs the given RemoteCluster.
pub fn references_cluster(cm: &ClusterMapping, namespace: &str, name: &str) -> bool {
    cm.namespace().as_deref() == Some(namespace)
        && (cm.spec.source_cluster == name || cm.spec.target_cluster == name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_the_cluster_and_what_to_do() {
        let (reason, message) = side_problem("Source", "dr", "prod", &Side::Missing).unwrap();
        assert_eq!(reason, reasons::REMOTE_CLUSTER_NOT_FOUND);
        assert!(message.contains("dr/prod"));
        assert!(message.contains("spec.sourceCluster"));
        let unhealthy = Side::Found {
            health: Some(ClusterHealth::Unhealthy),
            message: "API server https://x did not answer".into(),
        };
        let (reason, message) = side_problem("Target", "dr", "dr-site", &unhealthy).unwrap();
        assert_eq!(reason, reasons::CLUSTER_UNHEALTHY);
        assert!(message.contains("did not answer"));
        let healthy = Side::Found {
            health: Some(ClusterHealth::Healthy),
            message: String::new(),
        };
        assert!(side_problem("Target", "dr", "x", &healthy).is_none());
    }

    #[test]
    fn check_report_becomes_per_agent_details() {
        let agents = vec![
            ("node-a".to_owned(), "10.0.0.1:2222".to_owned()),
            ("node-b".to_owned(), "10.0.0.2:2222".to_owned()),
        ];
        let report = r#"{"check":true,"connected":1,"total":2,"agents":[
            {"agent":"10.0.0.1:2222","connected":true},
            {"agent":"10.0.0.2:2222","connected":false,"error":"authentication refused","kind":"auth_rejected"}]}"#;
        let report = worker::check_report(report).unwrap();
        let status = connection_status(&agents, &report, "t-1");
        assert_eq!(status.total_source_agents, 2);
        assert_eq!(status.connected_agents, 1);
        let b = &status.connection_details[1];
        assert_eq!(
            (b.source_node.as_str(), b.target_node.as_str()),
            ("node-b", "t-1")
        );
        assert!(!b.connected);
        assert!(
            b.error
                .as_deref()
                .unwrap()
                .contains("authentication refused")
        );
        // A failure report from the worker is surfaced with its message.
        let err = worker::check_report(r#"{"error":"cannot read key file","kind":"key"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read key file"), "{err}");
    }

    #[test]
    fn failed_checks_back_off_to_five_minutes() {
        assert_eq!(retry_after(0), Duration::from_secs(15));
        assert_eq!(retry_after(1), Duration::from_secs(15));
        assert_eq!(retry_after(2), Duration::from_secs(30));
        assert_eq!(retry_after(5), Duration::from_secs(240));
        assert_eq!(retry_after(50), Duration::from_secs(300));
    }
}

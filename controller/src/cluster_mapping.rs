//! `ClusterMapping`: pairs two RemoteClusters and reports whether the pair is usable.
//!
//! Both clusters must exist and be healthy for the mapping to be Connected. Agent SSH
//! connectivity (the `verifyConnectivity` part) comes with PVC data sync; until then the
//! `AgentsConnected` condition says so explicitly instead of pretending.

use std::sync::Arc;
use std::time::Duration;

use dr_syncer_crds::cluster_mapping::{ClusterMapping, ClusterMappingPhase, ClusterMappingStatus};
use dr_syncer_crds::remote_cluster::{ClusterHealth, RemoteCluster};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use tracing::Instrument;

use crate::context::{Context, apply_status};
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
        status.phase = Some(ClusterMappingPhase::Connected);
        status.consecutive_failures = 0;
        status.last_verified = Some(now());
        let message = if cm.spec.verify_connectivity {
            "both clusters reachable; agent SSH connectivity is not verified yet (comes with PVC data sync)"
        } else {
            "both clusters reachable"
        };
        status.message = Some(message.to_owned());
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
        set_condition(
            &mut status.conditions,
            condition(
                types::READY,
                true,
                reasons::CLUSTERS_HEALTHY,
                message,
                generation,
            ),
        );
    }
    let agents = if cm.spec.verify_connectivity {
        let mut c = condition(
            types::AGENTS_CONNECTED,
            false,
            reasons::AGENTS_NOT_READY,
            "verifyConnectivity is set, but agent SSH connectivity checks are not implemented yet (they come with PVC data sync); resource replication does not need them",
            generation,
        );
        c.status = "Unknown".to_owned();
        c
    } else {
        condition(
            types::AGENTS_CONNECTED,
            false,
            reasons::VERIFICATION_DISABLED,
            "spec.verifyConnectivity is false",
            generation,
        )
    };
    set_condition(&mut status.conditions, agents);

    // lastAttemptTime changes every time; only write when something else changed too, or
    // at most once per requeue period.
    let mut compare = status.clone();
    compare.last_attempt_time = original.last_attempt_time.clone();
    compare.last_verified = original.last_verified.clone();
    if compare != original {
        apply_status(&api, &cm.name_any(), &status).await?;
    }
    let failed = status.phase == Some(ClusterMappingPhase::Failed);
    Ok(Action::requeue(Duration::from_secs(if failed {
        15
    } else {
        60
    })))
}

/// Retry policy after a failed reconcile.
pub fn error_policy(
    _cm: Arc<ClusterMapping>,
    error: &ClusterMappingError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(%error, "cluster mapping reconcile failed");
    Action::requeue(Duration::from_secs(10))
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
}

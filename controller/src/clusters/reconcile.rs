//! The RemoteCluster reconciler: keeps the cluster's client current, checks its health,
//! deploys (or removes) the PVC agents and writes the status. Requeues at the health interval.

use std::sync::Arc;
use std::time::Duration;

use dr_syncer_crds::remote_cluster::{ClusterHealth, PvcSyncStatus, RemoteCluster};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use tracing::Instrument;

use super::conditions::{conditions_for, health_interval, unsupported_fields};
use super::connect::{check_health, ensure_client, read_identity};
use super::registry::ClusterKey;
use crate::context::Context;
use crate::dataplane::agents;
use crate::k8s::{apply_status, requeue_after_error};
use crate::status::{condition, now, reasons, set_condition, types};

/// Why a RemoteCluster reconcile failed (status could not be written, ...).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A call to the controller cluster failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// The agents' part of a reconcile: deploy (or remove) them and say how they are doing.
/// `None` leaves `status.pvcSync` out (never enabled, or cleaned up).
async fn reconcile_agents(
    ctx: &Context,
    rc: &RemoteCluster,
    source: &Client,
    previous: Option<&PvcSyncStatus>,
) -> Option<PvcSyncStatus> {
    let enabled = rc.spec.pvc_sync.as_ref().is_some_and(|p| p.enabled);
    if !enabled {
        previous?;
        return match agents::remove(source).await {
            Ok(_) => None,
            Err(error) => Some(PvcSyncStatus {
                phase: Some("Failed".to_owned()),
                message: Some(format!(
                    "pvcSync disabled but removing the agent DaemonSet failed: {error}"
                )),
                ..PvcSyncStatus::default()
            }),
        };
    }
    let mut status = match agents::ensure_deployed(&ctx.agent_site(), rc, source).await {
        Err(error) => {
            tracing::warn!(%error, "deploying the agents failed");
            PvcSyncStatus {
                phase: Some("Failed".to_owned()),
                message: Some(error.to_string()),
                ..previous.cloned().unwrap_or_default()
            }
        }
        Ok(_) => match agents::status(source).await {
            Ok(mut s) => {
                s.last_deployment_time = previous
                    .and_then(|p| p.last_deployment_time.clone())
                    .or_else(|| Some(now()));
                s
            }
            Err(error) => PvcSyncStatus {
                phase: Some("Failed".to_owned()),
                message: Some(format!("cannot read the agent DaemonSet: {error}")),
                ..previous.cloned().unwrap_or_default()
            },
        },
    };
    if let Some(p) = previous {
        status.last_successful_sync = p.last_successful_sync.clone();
        status.failed_syncs = p.failed_syncs;
        // Keep a node's last heartbeat while it is not ready.
        if let (Some(new), Some(old)) = (status.agent_status.as_mut(), p.agent_status.as_ref()) {
            for (node, line) in new.node_statuses.iter_mut() {
                if line.last_heartbeat.is_none() {
                    line.last_heartbeat = old
                        .node_statuses
                        .get(node)
                        .and_then(|o| o.last_heartbeat.clone());
                }
            }
        }
    }
    Some(status)
}

/// Reconciles one RemoteCluster: client, health, status. Requeues at the health interval.
pub async fn reconcile(rc: Arc<RemoteCluster>, ctx: Arc<Context>) -> Result<Action, ClusterError> {
    let span = tracing::info_span!("remotecluster", cluster = %format!("{}/{}", rc.namespace().unwrap_or_default(), rc.name_any()));
    reconcile_inner(rc, ctx).instrument(span).await
}

async fn reconcile_inner(
    rc: Arc<RemoteCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ClusterError> {
    let namespace = rc.namespace().unwrap_or_default();
    let key = ClusterKey {
        namespace: namespace.clone(),
        name: rc.name_any(),
    };
    let generation = rc.metadata.generation;
    let mut status = rc.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let interval = health_interval(&rc);

    match ensure_client(&ctx.client, &ctx.clusters, &key, &rc).await {
        Err(problem) => {
            ctx.clusters.remove(&key);
            tracing::warn!(?problem, "remote cluster kubeconfig unusable");
            conditions_for(&mut status, &problem, &rc, generation);
        }
        Ok(remote) => {
            set_condition(
                &mut status.conditions,
                condition(
                    types::KUBECONFIG_AVAILABLE,
                    true,
                    reasons::SECRET_FOUND,
                    "kubeconfig Secret found",
                    generation,
                ),
            );
            set_condition(
                &mut status.conditions,
                condition(
                    types::KUBECONFIG_VALID,
                    true,
                    reasons::KUBECONFIG_PARSED,
                    format!("kubeconfig loads; API server {}", remote.server),
                    generation,
                ),
            );
            match check_health(&remote.client, Duration::from_secs(10)).await {
                Ok(version) => {
                    ctx.clusters.set_health(&key, true, None);
                    match read_identity(&remote).await {
                        Ok(identity) => {
                            ctx.clusters.set_identity(&key, identity.clone());
                            status.cluster_identity = Some(identity);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "reading the cluster's identity failed");
                        }
                    }
                    status.health = Some(ClusterHealth::Healthy);
                    status.last_sync_time = Some(now());
                    set_condition(
                        &mut status.conditions,
                        condition(
                            types::CLUSTER_AVAILABLE,
                            true,
                            reasons::API_SERVER_REACHABLE,
                            format!(
                                "API server {} answered (Kubernetes {version})",
                                remote.server
                            ),
                            generation,
                        ),
                    );
                }
                Err(error) => {
                    ctx.clusters.set_health(&key, false, Some(error.clone()));
                    status.health = Some(ClusterHealth::Unhealthy);
                    set_condition(
                        &mut status.conditions,
                        condition(
                            types::CLUSTER_AVAILABLE,
                            false,
                            reasons::API_SERVER_UNREACHABLE,
                            format!(
                                "API server {} did not answer GET /version: {error}; check the \
                                 server address, network and credentials in the kubeconfig",
                                remote.server
                            ),
                            generation,
                        ),
                    );
                }
            }
        }
    }
    let previous_agents = status.pvc_sync.take();
    if status.health == Some(ClusterHealth::Healthy)
        && let Some(remote) = ctx.clusters.get(&key)
    {
        status.pvc_sync =
            reconcile_agents(&ctx, &rc, &remote.client, previous_agents.as_ref()).await;
    } else {
        status.pvc_sync = previous_agents;
    }
    let agents_settling = status
        .pvc_sync
        .as_ref()
        .is_some_and(|p| p.phase.as_deref() != Some("Running"));
    let unsupported = unsupported_fields(&rc);
    let unsupported_condition = if unsupported.is_empty() {
        condition(
            types::UNSUPPORTED_FIELDS,
            false,
            reasons::ALL_FIELDS_SUPPORTED,
            "every field set is acted on",
            generation,
        )
    } else {
        condition(
            types::UNSUPPORTED_FIELDS,
            true,
            reasons::FIELDS_NOT_IMPLEMENTED,
            format!("accepted but not acted on yet: {}", unsupported.join("; ")),
            generation,
        )
    };
    set_condition(&mut status.conditions, unsupported_condition);
    let healthy = status.health == Some(ClusterHealth::Healthy);
    let ready_message = if healthy {
        "cluster reachable".to_owned()
    } else {
        crate::status::find_condition(&status.conditions, types::CLUSTER_AVAILABLE)
            .filter(|c| c.reason != reasons::NOT_CHECKED)
            .or_else(|| {
                status
                    .conditions
                    .iter()
                    .find(|c| c.status == "False" && c.reason != reasons::NOT_CHECKED)
            })
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "cluster not reachable".to_owned())
    };
    set_condition(
        &mut status.conditions,
        condition(
            types::READY,
            healthy,
            if healthy {
                reasons::API_SERVER_REACHABLE
            } else {
                reasons::API_SERVER_UNREACHABLE
            },
            ready_message,
            generation,
        ),
    );

    let api: Api<RemoteCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    apply_status(&api, &rc.name_any(), &status).await?;
    // Unhealthy clusters are re-checked sooner so recovery shows up quickly.
    Ok(Action::requeue(if healthy && agents_settling {
        // Agents rolling out: report progress every few seconds until they run.
        interval.min(Duration::from_secs(3))
    } else if healthy {
        interval
    } else {
        interval.min(Duration::from_secs(10))
    }))
}

/// Retry policy after a failed reconcile.
pub fn error_policy(_rc: Arc<RemoteCluster>, error: &ClusterError, _ctx: Arc<Context>) -> Action {
    requeue_after_error("remote cluster", error, Duration::from_secs(10))
}

/// Whether the RemoteCluster references the given Secret (for the Secret watch).
pub fn references_secret(rc: &RemoteCluster, namespace: &str, name: &str) -> bool {
    let r = &rc.spec.kubeconfig_secret_ref;
    r.namespace == namespace && r.name == name
}

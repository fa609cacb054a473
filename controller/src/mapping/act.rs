//! What a reconcile does to the world, around the pure decision: looking the references
//! up and keeping the Continuous-mode watchers in step ([`prepare`]), carrying out a
//! decision that runs no sync ([`perform`]), the resource sync ([`sync_resources`], via
//! [`crate::sync`]) and the PVC data copy ([`sync_data`], via
//! [`crate::dataplane::orchestrate`]), with their events and metrics, and the cleanup of
//! a deleted mapping. Nothing here writes the mapping's status: the outcomes go to
//! [`report`](super::report).

use std::sync::Arc;
use std::time::Duration;

use dr_syncer_crds::namespace_mapping::NamespaceMapping;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::decide::{CatchUp, Decision, Observed, References, Unresolvable, WatchStep, watch_step};
use super::report::{failed_message, foreign_message, synced_message};
use super::resolve::{ReferenceError, Resolved, resolve};
use crate::context::Context;
use crate::dataplane::orchestrate::{self, Clusters};
use crate::dataplane::outcome::DataSyncReport;
use crate::metrics::{MappingLabels, Metrics};
use crate::replicate::MappingId;
use crate::status::{find_condition, now, reasons, types};
use crate::sync::{SyncError, SyncPlan, SyncReport};
use crate::watchers::WatchSink;

/// How long a reconcile waits for fresh watches to list the source before a full sync.
const WATCH_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`prepare`] found and set up for the decision and the sync.
pub struct Prepared {
    /// The references (`None`: not looked up, the mapping is paused).
    pub resolved: Option<Result<Resolved, ReferenceError>>,
    /// The plan the watchers were started with, reused by the full sync.
    pub plan: Option<Arc<SyncPlan>>,
    /// The facts the decision needs.
    pub observed: Observed,
}

/// The mapping's `namespace/name` identity.
fn mapping_id(nm: &NamespaceMapping) -> MappingId {
    MappingId::of(nm)
}

/// The metric labels of the mapping.
fn mapping_labels(nm: &NamespaceMapping) -> MappingLabels {
    MappingLabels {
        namespace: nm.namespace().unwrap_or_default(),
        mapping: nm.name_any(),
    }
}

/// Looks the references up (unless paused) and, once resolved, stops or (re)starts the
/// Continuous-mode watchers per [`watch_step`]: a restart is an observation the decision
/// needs (it calls for a full sync).
pub async fn prepare(ctx: &Context, nm: &NamespaceMapping) -> Prepared {
    let key = mapping_id(nm).to_string();
    let mut plan = None;
    let mut observed = Observed {
        synced_here: ctx.has_synced_here(&key),
        ..Observed::default()
    };
    if nm.spec.paused {
        return Prepared {
            resolved: None,
            plan,
            observed,
        };
    }
    let resolved = resolve(
        nm,
        &ctx.client,
        &ctx.clusters,
        ctx.controller_namespace.as_deref(),
    )
    .await;
    observed.references = Some(match &resolved {
        Ok(r) => Ok(References {
            source_cluster: r.source_key.to_string(),
            default_schedule: r.source_rc.spec.default_schedule.clone(),
        }),
        Err(error) => Err(Unresolvable {
            reason: error.reason(),
            message: error.to_string(),
            permanent: error.is_permanent(),
            paused: error.is_paused(),
        }),
    });
    if let Ok(r) = &resolved {
        match watch_step(nm) {
            WatchStep::Stop => ctx.watchers.stop(&key),
            WatchStep::Run => {
                plan = start_watchers(ctx, nm, r, &key).await;
                observed.watchers_restarted = plan.is_some();
                observed.watch_prune_refusal = ctx.watchers.prune_refusal(&key);
            }
        }
    }
    Prepared {
        resolved: Some(resolved),
        plan,
        observed,
    }
}

/// Makes sure watchers run for the current spec and clusters; returns their plan when
/// this call (re)started them.
async fn start_watchers(
    ctx: &Context,
    nm: &NamespaceMapping,
    resolved: &Resolved,
    key: &str,
) -> Option<Arc<SyncPlan>> {
    let fingerprint = format!(
        "{:?}/{}/{}",
        nm.metadata.generation, resolved.source.kubeconfig_hash, resolved.dest.kubeconfig_hash
    );
    if ctx.watchers.is_running(key, &fingerprint) {
        return None;
    }
    match build_plan(nm, ctx, resolved).await {
        Ok(plan) => {
            let plan = Arc::new(plan);
            let sink = WatchSink {
                client: ctx.client.clone(),
                metrics: ctx.metrics.clone(),
                namespace: nm.namespace().unwrap_or_default(),
                name: nm.name_any(),
                budget: Arc::default(),
            };
            let ready = ctx.watchers.start(key, &fingerprint, plan.clone(), sink);
            if !ready.wait(WATCH_READY_TIMEOUT).await {
                tracing::warn!("watches did not list the source in time; syncing anyway");
            }
            Some(plan)
        }
        // The full sync reports the error (and retries).
        Err(error) => {
            tracing::warn!(%error, "cannot start watchers");
            None
        }
    }
}

/// Carries out what a decision does besides status: stops watchers, counts a missed
/// scheduled fire, notes a resumed sync, and announces a new reason the mapping cannot
/// run (a Warning event, once per change of reason, not on every requeue).
pub async fn perform(ctx: &Context, nm: &NamespaceMapping, decision: &Decision) {
    match decision {
        Decision::Paused => ctx.watchers.stop(&mapping_id(nm).to_string()),
        Decision::Unresolved {
            stop_watchers, why, ..
        } => {
            if *stop_watchers {
                ctx.watchers.stop(&mapping_id(nm).to_string());
            }
            announce(ctx, nm, types::READY, why.reason, "Resolve", &why.message).await;
        }
        Decision::Sync(run) => {
            if let Some(catch_up) = &run.catch_up {
                record_catch_up(&ctx.metrics, nm, catch_up);
            }
            if run.resumed {
                tracing::info!("resuming a sync interrupted by a controller restart");
            }
        }
        Decision::InvalidSchedule { message } => {
            let reason = reasons::INVALID_SCHEDULE;
            announce(ctx, nm, types::READY, reason, "Schedule", message).await;
        }
        Decision::Wait(wait) => {
            if let Some(why) = &wait.prune_refusal {
                let reason = reasons::CONTINUOUS_PRUNE_REFUSED;
                announce(ctx, nm, types::PRUNE_BLOCKED, reason, "Prune", why).await;
            }
        }
    }
}

/// Publishes a Warning event for `reason`, unless condition `type_` as read already has
/// that reason: the event marks the change, not every requeue.
async fn announce(
    ctx: &Context,
    nm: &NamespaceMapping,
    type_: &str,
    reason: &str,
    action: &str,
    message: &str,
) {
    let current = nm
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, type_))
        .map(|c| c.reason.as_str());
    if current != Some(reason) {
        ctx.event(nm, true, reason, action, message.to_owned())
            .await;
    }
}

/// Counts the fires a catch-up sync makes up for (`dr_syncer_missed_schedules_total`).
pub fn record_catch_up(metrics: &Metrics, nm: &NamespaceMapping, catch_up: &CatchUp) {
    metrics
        .missed_schedules
        .get_or_create(&mapping_labels(nm))
        .inc_by(catch_up.missed);
    tracing::info!(next = %catch_up.fire, missed = catch_up.missed, "catching up a missed scheduled sync");
}

/// Builds the sync plan: discovery on the source (cached), then the rules compiled.
async fn build_plan(
    nm: &NamespaceMapping,
    ctx: &Context,
    resolved: &Resolved,
) -> Result<SyncPlan, SyncError> {
    let cache_key = format!(
        "{}#{}",
        resolved.source_key, resolved.source.kubeconfig_hash
    );
    let discovered = ctx
        .discovery
        .kinds(&cache_key, &resolved.source.client)
        .await
        .map_err(|e| SyncError::SourceUnavailable {
            cluster: resolved.source_key.name.clone(),
            message: format!("discovery: {e}"),
        })?;
    let plan = SyncPlan::build(
        mapping_id(nm),
        &nm.spec,
        &resolved.source_key.name,
        &resolved.dest_key.name,
        resolved.source.client.clone(),
        resolved.source.watch_client.clone(),
        resolved.dest.client.clone(),
        &discovered,
        &resolved.source_rc.spec.default_resource_types,
    );
    if plan.is_err() {
        // A CRD may just have been installed: look again next time.
        ctx.discovery.invalidate(&cache_key);
    }
    plan
}

/// Runs the full resource sync (with the watchers' plan when they were just started) and
/// records its events and metrics; returns the result and when it ended.
pub async fn sync_resources(
    ctx: &Context,
    nm: &NamespaceMapping,
    resolved: &Resolved,
    plan: Option<Arc<SyncPlan>>,
) -> (Result<SyncReport, SyncError>, Time) {
    ctx.event(
        nm,
        false,
        "SyncStarted",
        "Sync",
        format!(
            "syncing {} from {} to {} in {}",
            nm.spec.source_namespace,
            resolved.source_key.name,
            nm.spec.effective_destination_namespace(),
            resolved.dest_key.name
        ),
    )
    .await;
    let result = match plan {
        Some(plan) => plan.full_sync().await,
        None => match build_plan(nm, ctx, resolved).await {
            Ok(plan) => plan.full_sync().await,
            Err(e) => Err(e),
        },
    };
    let key = mapping_id(nm).to_string();
    ctx.mark_synced_here(&key);
    if let Ok(report) = &result {
        // The watchers' deletions are counted again from what this sync saw.
        ctx.watchers.reset_budget(&key, report.managed);
    }
    let finished = now();
    let labels = mapping_labels(nm);
    match &result {
        Ok(report) => record_success(ctx, nm, &labels, report).await,
        Err(error) => record_failure(ctx, nm, &labels, error).await,
    }
    (result, finished)
}

/// Metrics and the event of a resource sync that ran.
async fn record_success(
    ctx: &Context,
    nm: &NamespaceMapping,
    labels: &MappingLabels,
    report: &SyncReport,
) {
    for (kind, counts) in &report.kinds {
        ctx.metrics
            .record_objects(labels, kind, "created", counts.created.into());
        ctx.metrics
            .record_objects(labels, kind, "updated", counts.updated.into());
        ctx.metrics
            .record_objects(labels, kind, "unchanged", counts.unchanged.into());
        ctx.metrics
            .record_objects(labels, kind, "deleted", counts.deleted.into());
        ctx.metrics
            .record_objects(labels, kind, "failed", counts.failed.into());
    }
    if !report.foreign.is_empty() {
        ctx.event(
            nm,
            true,
            reasons::FOREIGN_OBJECTS_FOUND,
            "Sync",
            foreign_message(&report.foreign),
        )
        .await;
    }
    let (ok, message) = synced_message(report);
    ctx.metrics
        .record_sync(labels, report.duration.as_secs_f64(), ok);
    if ok {
        ctx.event(nm, false, "SyncSucceeded", "Sync", message).await;
    } else {
        ctx.event(nm, true, "SyncFailed", "Sync", message).await;
    }
}

/// Metrics and the event of a resource sync that failed as a whole.
async fn record_failure(
    ctx: &Context,
    nm: &NamespaceMapping,
    labels: &MappingLabels,
    error: &SyncError,
) {
    tracing::warn!(%error, "sync failed");
    ctx.metrics.record_sync(labels, 0.0, false);
    ctx.event(nm, true, "SyncFailed", "Sync", failed_message(error))
        .await;
}

/// Copies the PVC data of the mapping (after a successful resource sync).
pub async fn sync_data(
    ctx: &Context,
    nm: &NamespaceMapping,
    resolved: &Resolved,
) -> DataSyncReport {
    let clusters = Clusters {
        source_key: &resolved.source_key,
        dest_key: &resolved.dest_key,
        source: &resolved.source,
        dest: &resolved.dest,
        source_rc: &resolved.source_rc,
        cluster_mapping: resolved.cluster_mapping.as_ref(),
    };
    orchestrate::sync_data(ctx, nm, &clusters).await
}

/// Deletion: stop watchers and forget metrics; replicated objects stay.
pub fn cleanup(ctx: &Context, nm: &NamespaceMapping) {
    let id = mapping_id(nm);
    ctx.watchers.stop(&id.to_string());
    ctx.metrics.forget(&mapping_labels(nm));
    let pvcs = nm.status.iter().flat_map(|s| s.pvc_sync_status.iter());
    ctx.metrics
        .forget_data(&mapping_labels(nm), pvcs.map(|e| e.pvc.as_str()));
    tracing::info!(mapping = %id, "mapping deleted; replicated objects are kept");
}

//! The NamespaceMapping reconciler: resolves the clusters, decides whether a sync is due in
//! the mapping's mode (Manual, Scheduled, Continuous), runs it, and writes status, events and
//! metrics.
//!
//! - Manual: a sync runs when `dr-syncer.io/sync-now` (or `dr-syncer.io/trigger-sync`) has
//!   a value not yet recorded in `status.lastSyncNowValue`. The same annotation forces an
//!   extra sync in the other modes.
//! - Scheduled: `status.nextSyncTime` is the next fire; a fire missed while the controller
//!   was down runs once on start (and counts in `dr_syncer_missed_schedules_total`).
//! - Continuous: watchers per kind apply each change; a full resync (with pruning) runs on
//!   start, on spec change and every `continuous.backgroundSyncInterval`.
//! - `paused` (on the mapping or its ClusterMapping) stops everything.
//!
//! Failed syncs are retried per `retryConfig` (`status.retryStatus`). Deleting a mapping
//! keeps the replicated objects (a DR copy must outlive its configuration), stops its
//! watchers and removes the finalizer.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dr_syncer_crds::annotations::{SYNC_NOW, TRIGGER_SYNC};
use dr_syncer_crds::cluster_mapping::ClusterMapping;
use dr_syncer_crds::namespace_mapping::{
    DeploymentScale, KindSyncCounts, NamespaceMapping, NamespaceMappingStatus, ReplicationMode,
    ResourceStatus, ResourceSyncState, RetryStatus, SyncError as StatusError, SyncPhase, SyncStats,
};
use dr_syncer_crds::remote_cluster::RemoteCluster;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use tracing::Instrument;

use crate::clusters::{ClusterKey, RemoteClient};
use crate::context::{Context, apply_status};
use crate::dataplane::orchestrate;
use crate::metrics::MappingLabels;
use crate::replicate::{MappingId, unsupported_fields};
use crate::schedule::Schedule;
use crate::status::{
    condition, find_condition, go_duration, now, reasons, remove_condition, set_condition,
    time_from_chrono, time_to_chrono, types,
};
use crate::sync::{Backoff, PruneOutcome, SyncError, SyncPlan, SyncReport};
use crate::watchers::WatchSink;

/// Finalizer on every NamespaceMapping, so deletion stops its watchers first.
pub const FINALIZER: &str = "dr-syncer.io/finalizer";

/// Entries of `status.resourceStatus` kept (failed objects).
const MAX_RESOURCE_STATUS: usize = 50;

/// How long a reconcile waits for fresh watches to list the source before a full sync.
const WATCH_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a NamespaceMapping reconcile failed (the sync's own failures go to status instead).
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// Writing status or the finalizer failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Why the clusters of a mapping could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The referenced ClusterMapping does not exist.
    #[error("ClusterMapping {0} not found; create it or fix spec.clusterMappingRef")]
    ClusterMappingNotFound(String),
    /// The referenced ClusterMapping is paused.
    #[error("ClusterMapping {0} is paused")]
    ClusterMappingPaused(String),
    /// A referenced RemoteCluster does not exist.
    #[error("RemoteCluster {0} not found; create it or fix the cluster reference")]
    RemoteClusterNotFound(String),
    /// A RemoteCluster exists but has no working client.
    #[error("RemoteCluster {name} is not usable yet: {message}")]
    RemoteClusterNotReady {
        /// `namespace/name`.
        name: String,
        /// Its Ready condition message.
        message: String,
    },
    /// The controller cluster could not be read.
    #[error("reading the cluster references failed: {0}")]
    Api(#[from] kube::Error),
}

impl ResolveError {
    fn reason(&self) -> &'static str {
        match self {
            ResolveError::ClusterMappingNotFound(_) => reasons::CLUSTER_MAPPING_NOT_FOUND,
            ResolveError::ClusterMappingPaused(_) => reasons::PAUSED,
            ResolveError::RemoteClusterNotFound(_) => reasons::REMOTE_CLUSTER_NOT_FOUND,
            ResolveError::RemoteClusterNotReady { .. } => reasons::REMOTE_CLUSTER_NOT_READY,
            ResolveError::Api(_) => reasons::SYNC_FAILED,
        }
    }
}

/// The two clusters of a mapping, with their clients.
pub struct Resolved {
    /// Source RemoteCluster.
    pub source_key: ClusterKey,
    /// Destination RemoteCluster.
    pub dest_key: ClusterKey,
    /// Source client.
    pub source: RemoteClient,
    /// Destination client.
    pub dest: RemoteClient,
    /// The source RemoteCluster object (defaults).
    pub source_rc: RemoteCluster,
    /// The ClusterMapping, when the mapping goes through one (PVC data keys are per
    /// ClusterMapping).
    pub cluster_mapping: Option<ClusterMapping>,
}

async fn remote_cluster(
    ctx: &Context,
    key: &ClusterKey,
) -> Result<(RemoteCluster, RemoteClient), ResolveError> {
    let api: Api<RemoteCluster> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let Some(rc) = api.get_opt(&key.name).await? else {
        return Err(ResolveError::RemoteClusterNotFound(key.to_string()));
    };
    match ctx.clusters.get(key) {
        Some(client) => Ok((rc, client)),
        None => {
            let message = rc
                .status
                .as_ref()
                .and_then(|s| find_condition(&s.conditions, types::READY))
                .map(|c| c.message.clone())
                .unwrap_or_else(|| "its kubeconfig has not been loaded yet".to_owned());
            Err(ResolveError::RemoteClusterNotReady {
                name: key.to_string(),
                message,
            })
        }
    }
}

/// Finds the source and destination clusters: through `clusterMappingRef`, or directly.
pub async fn resolve(nm: &NamespaceMapping, ctx: &Context) -> Result<Resolved, ResolveError> {
    let namespace = nm.namespace().unwrap_or_default();
    let mut cluster_mapping = None;
    let (source_key, dest_key) = match &nm.spec.cluster_mapping_ref {
        Some(r) => {
            let cm_namespace = r.namespace.clone().unwrap_or_else(|| namespace.clone());
            let api: Api<ClusterMapping> = Api::namespaced(ctx.client.clone(), &cm_namespace);
            let name = format!("{cm_namespace}/{}", r.name);
            let Some(cm) = api.get_opt(&r.name).await? else {
                return Err(ResolveError::ClusterMappingNotFound(name));
            };
            if cm.spec.paused {
                return Err(ResolveError::ClusterMappingPaused(name));
            }
            let keys = (
                ClusterKey {
                    namespace: cm_namespace.clone(),
                    name: cm.spec.source_cluster.clone(),
                },
                ClusterKey {
                    namespace: cm_namespace,
                    name: cm.spec.target_cluster.clone(),
                },
            );
            cluster_mapping = Some(cm);
            keys
        }
        None => (
            ClusterKey {
                namespace: namespace.clone(),
                name: nm.spec.source_cluster.clone().unwrap_or_default(),
            },
            ClusterKey {
                namespace: namespace.clone(),
                name: nm.spec.destination_cluster.clone().unwrap_or_default(),
            },
        ),
    };
    let (source_rc, source) = remote_cluster(ctx, &source_key).await?;
    let (_, dest) = remote_cluster(ctx, &dest_key).await?;
    Ok(Resolved {
        source_key,
        dest_key,
        source,
        dest,
        source_rc,
        cluster_mapping,
    })
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

fn mapping_id(nm: &NamespaceMapping) -> MappingId {
    MappingId::new(nm.namespace().unwrap_or_default(), nm.name_any())
}

fn mapping_labels(nm: &NamespaceMapping) -> MappingLabels {
    MappingLabels {
        namespace: nm.namespace().unwrap_or_default(),
        mapping: nm.name_any(),
    }
}

/// The manual trigger value, if the annotation is set: `sync-now` wins over `trigger-sync`.
pub fn trigger_value(nm: &NamespaceMapping) -> Option<String> {
    let annotations = nm.annotations();
    annotations
        .get(SYNC_NOW)
        .or_else(|| annotations.get(TRIGGER_SYNC))
        .filter(|v| !v.is_empty())
        .cloned()
}

/// Whether the trigger annotation holds a value not handled yet.
pub fn pending_trigger(nm: &NamespaceMapping, status: &NamespaceMappingStatus) -> Option<String> {
    trigger_value(nm).filter(|v| status.last_sync_now_value.as_deref() != Some(v.as_str()))
}

/// Reconciles one NamespaceMapping (with its finalizer).
pub async fn reconcile(
    nm: Arc<NamespaceMapping>,
    ctx: Arc<Context>,
) -> Result<Action, MappingError> {
    let namespace = nm.namespace().unwrap_or_default();
    let api: Api<NamespaceMapping> = Api::namespaced(ctx.client.clone(), &namespace);
    let span = tracing::info_span!("namespacemapping", mapping = %format!("{namespace}/{}", nm.name_any()));
    finalizer(&api, FINALIZER, nm, |event| async {
        match event {
            Finalizer::Apply(nm) => apply(nm, ctx.clone()).await,
            Finalizer::Cleanup(nm) => cleanup(nm, ctx.clone()).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| MappingError::Finalizer(e.to_string()))
}

/// Deletion: stop watchers and forget metrics; replicated objects stay.
async fn cleanup(nm: Arc<NamespaceMapping>, ctx: Arc<Context>) -> Result<Action, MappingError> {
    let id = mapping_id(&nm);
    ctx.watchers.stop(&id.to_string());
    ctx.metrics.forget(&mapping_labels(&nm));
    let pvcs = nm.status.iter().flat_map(|s| s.pvc_sync_status.iter());
    ctx.metrics
        .forget_data(&mapping_labels(&nm), pvcs.map(|e| e.pvc.as_str()));
    tracing::info!(mapping = %id, "mapping deleted; replicated objects are kept");
    Ok(Action::await_change())
}

/// What the mode logic decided for this reconcile.
#[derive(Debug, PartialEq)]
enum Decision {
    /// Run a full sync now.
    Sync,
    /// Nothing to do; come back after this long (`None`: only on change).
    Wait(Option<Duration>),
}

/// Reconciles a live mapping.
async fn apply(nm: Arc<NamespaceMapping>, ctx: Arc<Context>) -> Result<Action, MappingError> {
    let namespace = nm.namespace().unwrap_or_default();
    let api: Api<NamespaceMapping> = Api::namespaced(ctx.client.clone(), &namespace);
    let id = mapping_id(&nm);
    let key = id.to_string();
    let generation = nm.metadata.generation;
    let mut original = nm.status.clone().unwrap_or_default();
    // lastWatchEvent belongs to the watchers' field manager, never to this apply.
    original.last_watch_event = None;
    let mut status = original.clone();
    let spec_changed = status.observed_generation != generation;
    status.observed_generation = generation;
    if status.phase.is_none() {
        status.phase = Some(SyncPhase::Pending);
    }
    set_unsupported_condition(&nm, &mut status, generation);

    if nm.spec.paused {
        ctx.watchers.stop(&key);
        set_condition(
            &mut status.conditions,
            condition(
                types::READY,
                false,
                reasons::PAUSED,
                "spec.paused is true; no syncs run",
                generation,
            ),
        );
        write_status(&api, &nm, &original, &status).await?;
        return Ok(Action::await_change());
    }

    let resolved = match resolve(&nm, &ctx).await {
        Ok(resolved) => resolved,
        Err(error) => {
            let paused = matches!(error, ResolveError::ClusterMappingPaused(_));
            if paused {
                ctx.watchers.stop(&key);
            }
            let permanent = matches!(
                error,
                ResolveError::ClusterMappingNotFound(_) | ResolveError::RemoteClusterNotFound(_)
            );
            set_condition(
                &mut status.conditions,
                condition(
                    types::READY,
                    false,
                    error.reason(),
                    error.to_string(),
                    generation,
                ),
            );
            set_condition(
                &mut status.conditions,
                condition(
                    types::STALLED,
                    permanent,
                    error.reason(),
                    error.to_string(),
                    generation,
                ),
            );
            write_status(&api, &nm, &original, &status).await?;
            return Ok(Action::requeue(Duration::from_secs(if paused {
                60
            } else {
                15
            })));
        }
    };

    let mode = effective_mode(&nm, &resolved);
    if mode != ReplicationMode::Continuous {
        ctx.watchers.stop(&key);
    }
    let trigger = pending_trigger(&nm, &status);
    let retry_due = retry_due(&status);
    let now_utc = Utc::now();

    // Scheduled mode needs a valid schedule before anything else.
    let schedule = if mode == ReplicationMode::Scheduled {
        match schedule_of(&nm, &resolved) {
            Ok(schedule) => Some(schedule),
            Err(message) => {
                status.next_sync_time = None;
                set_condition(
                    &mut status.conditions,
                    condition(
                        types::READY,
                        false,
                        reasons::INVALID_SCHEDULE,
                        message.clone(),
                        generation,
                    ),
                );
                set_condition(
                    &mut status.conditions,
                    condition(
                        types::STALLED,
                        true,
                        reasons::INVALID_SCHEDULE,
                        message,
                        generation,
                    ),
                );
                write_status(&api, &nm, &original, &status).await?;
                return Ok(Action::await_change());
            }
        }
    } else {
        status.next_sync_time = None;
        None
    };

    let mut plan: Option<Arc<SyncPlan>> = None;
    let mut decision = match mode {
        ReplicationMode::Manual => {
            if trigger.is_some() {
                Decision::Sync
            } else {
                Decision::Wait(None)
            }
        }
        ReplicationMode::Scheduled => {
            let schedule = schedule
                .as_ref()
                .ok_or_else(|| MappingError::Finalizer("schedule missing".into()))?;
            scheduled_decision(
                &nm,
                &ctx.metrics,
                schedule,
                &mut status,
                spec_changed,
                now_utc,
            )
        }
        ReplicationMode::Continuous => {
            continuous_decision(
                &nm,
                &ctx,
                &resolved,
                &mut status,
                &mut plan,
                spec_changed,
                now_utc,
            )
            .await
        }
    };
    // A sync this process never ran is still marked Running: the previous controller died
    // mid-sync. Run it again so the target converges.
    let interrupted = status.phase == Some(SyncPhase::Running) && !ctx.has_synced_here(&key);
    if interrupted {
        tracing::info!("resuming a sync interrupted by a controller restart");
    }
    if trigger.is_some() || retry_due || interrupted {
        decision = Decision::Sync;
    }
    if let Decision::Wait(after) = decision {
        if mode == ReplicationMode::Manual
            && status.last_sync_time.is_none()
            && status.retry_status.is_none()
        {
            set_condition(
                &mut status.conditions,
                condition(
                    types::READY,
                    false,
                    reasons::AWAITING_TRIGGER,
                    format!("Manual mode: set the annotation {SYNC_NOW} to a new value to sync"),
                    generation,
                ),
            );
        }
        write_status(&api, &nm, &original, &status).await?;
        let after = after.or_else(|| retry_wait(&status));
        return Ok(after.map_or_else(Action::await_change, Action::requeue));
    }

    // Run the sync.
    if let Some(value) = &trigger {
        status.last_sync_now_value = Some(value.clone());
    }
    status.phase = Some(SyncPhase::Running);
    set_condition(
        &mut status.conditions,
        condition(
            types::SYNCED,
            false,
            reasons::SYNC_IN_PROGRESS,
            "sync in progress",
            generation,
        ),
    );
    write_status(&api, &nm, &original, &status).await?;
    let before_sync = status.clone();
    ctx.event(
        nm.as_ref(),
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
        None => match build_plan(&nm, &ctx, &resolved).await {
            Ok(plan) => plan.full_sync().await,
            Err(e) => Err(e),
        },
    };
    ctx.mark_synced_here(&key);
    let labels = mapping_labels(&nm);
    let mut before_sync = before_sync;
    let requeue = match result {
        Ok(report) => {
            record_success(&ctx, &nm, &labels, &report, &mut status, generation).await;
            if orchestrate::wants_data(&nm) {
                before_sync =
                    run_data_sync(&ctx, &api, &nm, &resolved, &before_sync, &mut status).await?;
            } else {
                orchestrate::clear_status(&mut status);
            }
            after_success(mode, &nm, schedule.as_ref(), &mut status)
        }
        Err(error) => {
            record_failure(&ctx, &nm, &labels, &error, &mut status, generation).await;
            after_failure(mode, &nm, &error, schedule.as_ref(), &mut status)
        }
    };
    write_status(&api, &nm, &before_sync, &status).await?;
    Ok(requeue)
}

/// The PVC data sync after a successful resource sync: writes the resource results first
/// (phase still Running, `DataSynced` in progress) so they are visible during the copy,
/// then runs the copy and folds its report into `status`. Returns the status as written.
async fn run_data_sync(
    ctx: &Context,
    api: &Api<NamespaceMapping>,
    nm: &NamespaceMapping,
    resolved: &Resolved,
    written: &NamespaceMappingStatus,
    status: &mut NamespaceMappingStatus,
) -> Result<NamespaceMappingStatus, MappingError> {
    let generation = nm.metadata.generation;
    let final_phase = status.phase;
    status.phase = Some(SyncPhase::Running);
    orchestrate::mark_in_progress(status, generation);
    write_status(api, nm, written, status).await?;
    let interim = status.clone();
    status.phase = final_phase;
    let report = orchestrate::sync_data(ctx, nm, resolved).await;
    orchestrate::apply_to_status(status, &report, generation);
    Ok(interim)
}

/// Writes status if it differs from what was read.
async fn write_status(
    api: &Api<NamespaceMapping>,
    nm: &NamespaceMapping,
    original: &NamespaceMappingStatus,
    status: &NamespaceMappingStatus,
) -> Result<(), MappingError> {
    if status == original {
        return Ok(());
    }
    apply_status(api, &nm.name_any(), status).await?;
    Ok(())
}

fn set_unsupported_condition(
    nm: &NamespaceMapping,
    status: &mut NamespaceMappingStatus,
    generation: Option<i64>,
) {
    let mut items = unsupported_fields(&nm.spec);
    // syncCRDs is built here (the runtime copies the CRDs of replicated custom resources).
    items.retain(|item| item.field != "spec.syncCRDs");
    match crate::replicate::unsupported::condition_message(&items) {
        Some(message) => set_condition(
            &mut status.conditions,
            condition(
                types::UNSUPPORTED_FIELDS,
                true,
                reasons::FIELDS_NOT_IMPLEMENTED,
                message,
                generation,
            ),
        ),
        None => remove_condition(&mut status.conditions, types::UNSUPPORTED_FIELDS),
    }
}

/// The mode in effect: unset means Scheduled.
fn effective_mode(nm: &NamespaceMapping, _resolved: &Resolved) -> ReplicationMode {
    nm.spec.effective_mode()
}

/// The schedule in effect: `spec.schedule`, else the source RemoteCluster's default.
fn schedule_of(nm: &NamespaceMapping, resolved: &Resolved) -> Result<Schedule, String> {
    let expr = nm
        .spec
        .schedule
        .clone()
        .or_else(|| resolved.source_rc.spec.default_schedule.clone())
        .ok_or_else(|| {
            format!(
                "Scheduled mode needs spec.schedule, or a defaultSchedule on RemoteCluster {}",
                resolved.source_key
            )
        })?;
    Schedule::parse(&expr, nm.spec.schedule_time_zone.as_deref())
        .map_err(|e| format!("spec.schedule {expr:?} is invalid: {e}"))
}

/// Scheduled mode: due when `nextSyncTime` has passed. Without a stored next time (first
/// reconcile, or status lost), a fire missed since the last sync is due at once.
fn scheduled_decision(
    nm: &NamespaceMapping,
    metrics: &crate::metrics::Metrics,
    schedule: &Schedule,
    status: &mut NamespaceMappingStatus,
    spec_changed: bool,
    now_utc: chrono::DateTime<Utc>,
) -> Decision {
    let stored = status.next_sync_time.as_ref().and_then(time_to_chrono);
    let next = match (stored, spec_changed) {
        (Some(next), false) => Some(next),
        _ => match status.last_sync_time.as_ref().and_then(time_to_chrono) {
            Some(last) if !spec_changed => schedule.next_after(last),
            _ => schedule.next_after(now_utc),
        },
    };
    let Some(next) = next else {
        status.next_sync_time = None;
        return Decision::Wait(None);
    };
    if next <= now_utc {
        let missed = schedule
            .upcoming(next)
            .take_while(|t| *t <= now_utc)
            .take(10_000)
            .count();
        // Later than a second past its time means the run was missed (controller down).
        if now_utc - next > chrono::Duration::seconds(1) {
            let count = u64::try_from(missed + 1).unwrap_or(1);
            metrics
                .missed_schedules
                .get_or_create(&mapping_labels(nm))
                .inc_by(count);
            tracing::info!(%next, missed = count, "catching up a missed scheduled sync");
        }
        return Decision::Sync;
    }
    status.next_sync_time = time_from_chrono(next);
    Decision::Wait(Some(until(next, now_utc)))
}

/// Time from `now` to `t`, plus a few milliseconds so the timer never fires early.
fn until(t: chrono::DateTime<Utc>, now: chrono::DateTime<Utc>) -> Duration {
    (t - now).to_std().unwrap_or_default() + Duration::from_millis(20)
}

fn background_interval(nm: &NamespaceMapping) -> Duration {
    nm.spec
        .continuous
        .as_ref()
        .and_then(|c| dr_syncer_crds::common::parse_duration(&c.background_sync_interval).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(3600))
}

fn watch_enabled(nm: &NamespaceMapping) -> bool {
    nm.spec
        .continuous
        .as_ref()
        .is_none_or(|c| c.watch_resources)
}

/// Continuous mode: makes sure watchers run for the current spec and clusters; a full
/// sync is due when they were (re)started or the background interval has passed.
async fn continuous_decision(
    nm: &NamespaceMapping,
    ctx: &Context,
    resolved: &Resolved,
    status: &mut NamespaceMappingStatus,
    plan_slot: &mut Option<Arc<SyncPlan>>,
    spec_changed: bool,
    now_utc: chrono::DateTime<Utc>,
) -> Decision {
    let key = mapping_id(nm).to_string();
    let fingerprint = format!(
        "{:?}/{}/{}",
        nm.metadata.generation, resolved.source.kubeconfig_hash, resolved.dest.kubeconfig_hash
    );
    let mut restarted = false;
    if !watch_enabled(nm) {
        ctx.watchers.stop(&key);
    } else if !ctx.watchers.is_running(&key, &fingerprint) {
        match build_plan(nm, ctx, resolved).await {
            Ok(plan) => {
                let plan = Arc::new(plan);
                let sink = WatchSink {
                    client: ctx.client.clone(),
                    metrics: ctx.metrics.clone(),
                    namespace: nm.namespace().unwrap_or_default(),
                    name: nm.name_any(),
                };
                let ready = ctx.watchers.start(&key, &fingerprint, plan.clone(), sink);
                if !ready.wait(WATCH_READY_TIMEOUT).await {
                    tracing::warn!("watches did not list the source in time; syncing anyway");
                }
                *plan_slot = Some(plan);
                restarted = true;
            }
            // The full sync below reports the error (and retries).
            Err(error) => tracing::warn!(%error, "cannot start watchers"),
        }
    }
    let interval = background_interval(nm);
    let last = status.last_sync_time.as_ref().and_then(time_to_chrono);
    let due = match last {
        None => true,
        Some(last) => (now_utc - last).to_std().unwrap_or_default() >= interval,
    };
    if restarted || due || spec_changed || status.last_sync_time.is_none() {
        return Decision::Sync;
    }
    let next = last.map(|l| l + chrono::Duration::from_std(interval).unwrap_or_default());
    Decision::Wait(next.map(|n| until(n, now_utc)))
}

fn retry_due(status: &NamespaceMappingStatus) -> bool {
    status
        .retry_status
        .as_ref()
        .and_then(|r| r.next_retry_time.as_ref())
        .and_then(time_to_chrono)
        .is_some_and(|t| t <= Utc::now())
}

fn retry_wait(status: &NamespaceMappingStatus) -> Option<Duration> {
    let t = status
        .retry_status
        .as_ref()?
        .next_retry_time
        .as_ref()
        .and_then(time_to_chrono)?;
    Some(until(t, Utc::now()))
}

async fn record_success(
    ctx: &Context,
    nm: &NamespaceMapping,
    labels: &MappingLabels,
    report: &SyncReport,
    status: &mut NamespaceMappingStatus,
    generation: Option<i64>,
) {
    let summary = report.summary();
    let failed = report.failed();
    let ok = failed == 0;
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
    ctx.metrics
        .record_sync(labels, report.duration.as_secs_f64(), ok);
    let now = now();
    status.sync_stats = Some(SyncStats {
        total_resources: i32::try_from(report.total()).unwrap_or(i32::MAX),
        successful_syncs: i32::try_from(report.succeeded()).unwrap_or(i32::MAX),
        failed_syncs: i32::try_from(failed).unwrap_or(i32::MAX),
        last_sync_duration: Some(go_duration(report.duration)),
        by_kind: report
            .kinds
            .iter()
            .map(|(kind, c)| {
                let n = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
                KindSyncCounts {
                    kind: kind.clone(),
                    created: n(c.created),
                    updated: n(c.updated),
                    unchanged: n(c.unchanged),
                    deleted: n(c.deleted),
                    failed: n(c.failed),
                    skipped: n(c.skipped),
                }
            })
            .collect(),
    });
    let mut scales: Vec<DeploymentScale> = report
        .scales
        .iter()
        .map(|(name, replicas)| DeploymentScale {
            name: name.clone(),
            original_replicas: *replicas,
            last_synced_at: Some(now.clone()),
        })
        .collect();
    scales.sort_by(|a, b| a.name.cmp(&b.name));
    status.deployment_scales = scales;
    status.resource_status = report
        .failures
        .iter()
        .take(MAX_RESOURCE_STATUS)
        .map(|f| ResourceStatus {
            kind: f.kind.clone(),
            name: f.name.clone(),
            namespace: Some(nm.spec.source_namespace.clone()),
            status: ResourceSyncState::Failed,
            last_sync_time: Some(now.clone()),
            error: Some(f.message.clone()),
        })
        .collect();
    match &report.prune {
        PruneOutcome::Disabled => remove_condition(&mut status.conditions, types::PRUNE_BLOCKED),
        PruneOutcome::Done(n) => set_condition(
            &mut status.conditions,
            condition(
                types::PRUNE_BLOCKED,
                false,
                reasons::PRUNE_ALLOWED,
                format!("last prune deleted {n} objects"),
                generation,
            ),
        ),
        PruneOutcome::Refused(why) => set_condition(
            &mut status.conditions,
            condition(
                types::PRUNE_BLOCKED,
                true,
                reasons::PRUNE_REFUSED,
                why.clone(),
                generation,
            ),
        ),
    }
    set_condition(
        &mut status.conditions,
        condition(types::STALLED, false, reasons::SUCCEEDED, "", generation),
    );
    if ok {
        status.phase = Some(SyncPhase::Completed);
        status.last_sync_time = Some(now);
        status.last_error = None;
        status.retry_status = None;
        let message = format!("synced in {}: {summary}", go_duration(report.duration));
        set_condition(
            &mut status.conditions,
            condition(
                types::SYNCED,
                true,
                reasons::SYNC_SUCCEEDED,
                message.clone(),
                generation,
            ),
        );
        set_condition(
            &mut status.conditions,
            condition(
                types::READY,
                true,
                reasons::SYNC_SUCCEEDED,
                message.clone(),
                generation,
            ),
        );
        ctx.event(nm, false, "SyncSucceeded", "Sync", message).await;
    } else {
        status.phase = Some(SyncPhase::Failed);
        let first = report.failures.first();
        let message = format!(
            "{failed} objects failed ({summary}); first: {}",
            first
                .map(|f| format!("{} {}: {}", f.kind, f.name, f.message))
                .unwrap_or_default()
        );
        status.last_error = Some(StatusError {
            message: crate::context::truncate(message.clone(), 2000),
            time: now,
            resource: first.map(|f| format!("{}/{}", f.kind, f.name)),
        });
        set_condition(
            &mut status.conditions,
            condition(
                types::SYNCED,
                false,
                reasons::SYNC_PARTIALLY_FAILED,
                crate::context::truncate(message.clone(), 2000),
                generation,
            ),
        );
        set_condition(
            &mut status.conditions,
            condition(
                types::READY,
                false,
                reasons::SYNC_PARTIALLY_FAILED,
                crate::context::truncate(message.clone(), 2000),
                generation,
            ),
        );
        ctx.event(nm, true, "SyncFailed", "Sync", message).await;
    }
}

async fn record_failure(
    ctx: &Context,
    nm: &NamespaceMapping,
    labels: &MappingLabels,
    error: &SyncError,
    status: &mut NamespaceMappingStatus,
    generation: Option<i64>,
) {
    tracing::warn!(%error, "sync failed");
    ctx.metrics.record_sync(labels, 0.0, false);
    let message = crate::context::truncate(error.to_string(), 2000);
    status.phase = Some(SyncPhase::Failed);
    status.last_error = Some(StatusError {
        message: message.clone(),
        time: now(),
        resource: None,
    });
    // Not synced, not ready, and stalled only when retrying cannot help.
    for (type_, holds) in [
        (types::SYNCED, false),
        (types::READY, false),
        (types::STALLED, error.is_permanent()),
    ] {
        set_condition(
            &mut status.conditions,
            condition(type_, holds, error.reason(), message.clone(), generation),
        );
    }
    ctx.event(nm, true, "SyncFailed", "Sync", message).await;
}

/// Next wake-up after a successful sync.
fn after_success(
    mode: ReplicationMode,
    nm: &NamespaceMapping,
    schedule: Option<&Schedule>,
    status: &mut NamespaceMappingStatus,
) -> Action {
    let now_utc = Utc::now();
    match mode {
        ReplicationMode::Manual => Action::await_change(),
        ReplicationMode::Scheduled => schedule_next(schedule, status, now_utc),
        ReplicationMode::Continuous => Action::requeue(background_interval(nm)),
    }
}

fn schedule_next(
    schedule: Option<&Schedule>,
    status: &mut NamespaceMappingStatus,
    now_utc: chrono::DateTime<Utc>,
) -> Action {
    match schedule.and_then(|s| s.next_after(now_utc)) {
        Some(next) => {
            status.next_sync_time = time_from_chrono(next);
            Action::requeue(until(next, now_utc))
        }
        None => {
            status.next_sync_time = None;
            Action::await_change()
        }
    }
}

/// Next wake-up after a failed sync: a retry per `retryConfig` while retries remain;
/// afterwards Scheduled waits for its next fire, Continuous keeps retrying at the longest
/// backoff (so it recovers by itself), Manual waits for a new trigger.
fn after_failure(
    mode: ReplicationMode,
    nm: &NamespaceMapping,
    error: &SyncError,
    schedule: Option<&Schedule>,
    status: &mut NamespaceMappingStatus,
) -> Action {
    let now_utc = Utc::now();
    if mode == ReplicationMode::Scheduled {
        // Keep the schedule running whatever happens to the retries.
        let _ = schedule_next(schedule, status, now_utc);
    }
    if error.is_permanent() {
        status.retry_status = None;
        // Discovery may change (a CRD installed): look again now and then.
        return Action::requeue(Duration::from_secs(60));
    }
    let backoff = Backoff::from_spec(nm.spec.retry_config.as_ref());
    let remaining = match &status.retry_status {
        Some(r) => r.retries_remaining - 1,
        None => i32::try_from(backoff.max_retries).unwrap_or(0),
    };
    let wait = if remaining > 0 {
        let attempt =
            u32::try_from(i32::try_from(backoff.max_retries).unwrap_or(0) - remaining).unwrap_or(0);
        Some(backoff.delay(attempt))
    } else if mode == ReplicationMode::Continuous {
        Some(backoff.max)
    } else {
        None
    };
    match wait {
        Some(wait) => {
            let next = now_utc + chrono::Duration::from_std(wait).unwrap_or_default();
            status.retry_status = Some(RetryStatus {
                next_retry_time: time_from_chrono(next),
                retries_remaining: remaining.max(0),
                backoff_duration: Some(go_duration(wait)),
            });
            Action::requeue(wait + Duration::from_millis(20))
        }
        None => {
            status.retry_status = None;
            match mode {
                ReplicationMode::Scheduled => status
                    .next_sync_time
                    .as_ref()
                    .and_then(time_to_chrono)
                    .map_or_else(Action::await_change, |n| Action::requeue(until(n, now_utc))),
                _ => Action::await_change(),
            }
        }
    }
}

/// Retry policy after a failed reconcile (API errors writing status).
pub fn error_policy(
    _nm: Arc<NamespaceMapping>,
    error: &MappingError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(%error, "namespace mapping reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Whether a mapping references the given RemoteCluster directly (for the RemoteCluster
/// watch: a cluster becoming healthy re-triggers its mappings).
pub fn references_cluster(nm: &NamespaceMapping, namespace: &str, name: &str) -> bool {
    nm.namespace().as_deref() == Some(namespace)
        && (nm.spec.source_cluster.as_deref() == Some(name)
            || nm.spec.destination_cluster.as_deref() == Some(name))
}

/// Whether a mapping references the given ClusterMapping.
pub fn references_cluster_mapping(nm: &NamespaceMapping, namespace: &str, name: &str) -> bool {
    nm.spec.cluster_mapping_ref.as_ref().is_some_and(|r| {
        r.name == name
            && r.namespace.clone().or_else(|| nm.namespace()).as_deref() == Some(namespace)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn nm(annotations: serde_json::Value, spec: serde_json::Value) -> NamespaceMapping {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dr-syncer.io/v1alpha1",
            "kind": "NamespaceMapping",
            "metadata": {"name": "web", "namespace": "dr", "annotations": annotations, "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }

    fn base_spec() -> serde_json::Value {
        serde_json::json!({"sourceNamespace": "web", "sourceCluster": "a", "destinationCluster": "b", "replicationMode": "Manual"})
    }

    #[test]
    fn manual_trigger_runs_once_per_value() {
        let m = nm(serde_json::json!({SYNC_NOW: "1"}), base_spec());
        let mut status = NamespaceMappingStatus::default();
        assert_eq!(pending_trigger(&m, &status), Some("1".to_owned()));
        status.last_sync_now_value = Some("1".into());
        assert_eq!(pending_trigger(&m, &status), None);
        let m2 = nm(serde_json::json!({SYNC_NOW: "2"}), base_spec());
        assert_eq!(pending_trigger(&m2, &status), Some("2".to_owned()));
    }

    #[test]
    fn older_trigger_annotation_is_honoured() {
        let m = nm(serde_json::json!({TRIGGER_SYNC: "x"}), base_spec());
        assert_eq!(trigger_value(&m), Some("x".to_owned()));
        let both = nm(
            serde_json::json!({TRIGGER_SYNC: "x", SYNC_NOW: "y"}),
            base_spec(),
        );
        assert_eq!(trigger_value(&both), Some("y".to_owned()));
        let none = nm(serde_json::json!({}), base_spec());
        assert_eq!(trigger_value(&none), None);
    }

    fn ctx_free_schedule_decision(
        status: &mut NamespaceMappingStatus,
        spec_changed: bool,
        now: chrono::DateTime<Utc>,
    ) -> Decision {
        let m = nm(serde_json::json!({}), base_spec());
        let schedule = Schedule::parse("*/1 * * * *", None).unwrap();
        let metrics = crate::metrics::Metrics::new();
        scheduled_decision(&m, &metrics, &schedule, status, spec_changed, now)
    }

    fn at(s: &str) -> chrono::DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn scheduled_first_run_waits_for_the_next_fire() {
        let mut status = NamespaceMappingStatus::default();
        let d = ctx_free_schedule_decision(&mut status, true, at("2026-01-01T10:00:30Z"));
        assert_eq!(d, Decision::Wait(Some(Duration::from_millis(30_020))));
        assert_eq!(
            status.next_sync_time.as_ref().and_then(time_to_chrono),
            Some(at("2026-01-01T10:01:00Z"))
        );
    }

    #[test]
    fn scheduled_due_when_next_time_passed() {
        let mut status = NamespaceMappingStatus {
            next_sync_time: time_from_chrono(at("2026-01-01T10:01:00Z")),
            ..Default::default()
        };
        let d = ctx_free_schedule_decision(&mut status, false, at("2026-01-01T10:00:59Z"));
        assert!(matches!(d, Decision::Wait(Some(_))));
        let d = ctx_free_schedule_decision(&mut status, false, at("2026-01-01T10:01:00Z"));
        assert_eq!(d, Decision::Sync);
    }

    #[test]
    fn missed_run_after_downtime_runs_once() {
        // Controller was down from 10:00:30 to 10:05:10: one catch-up sync, counted.
        let mut status = NamespaceMappingStatus {
            next_sync_time: time_from_chrono(at("2026-01-01T10:01:00Z")),
            last_sync_time: time_from_chrono(at("2026-01-01T10:00:00Z")),
            ..Default::default()
        };
        let m = nm(serde_json::json!({}), base_spec());
        let schedule = Schedule::parse("*/1 * * * *", None).unwrap();
        let metrics = crate::metrics::Metrics::new();
        let d = scheduled_decision(
            &m,
            &metrics,
            &schedule,
            &mut status,
            false,
            at("2026-01-01T10:05:10Z"),
        );
        assert_eq!(d, Decision::Sync);
        assert!(
            metrics
                .render()
                .contains(r#"dr_syncer_missed_schedules_total{namespace="dr",mapping="web"} 5"#),
            "{}",
            metrics.render()
        );
        // Status lost (no nextSyncTime) but lastSyncTime says a fire was missed: due.
        let mut lost = NamespaceMappingStatus {
            last_sync_time: time_from_chrono(at("2026-01-01T10:00:00Z")),
            ..Default::default()
        };
        let d = scheduled_decision(
            &m,
            &metrics,
            &schedule,
            &mut lost,
            false,
            at("2026-01-01T10:03:10Z"),
        );
        assert_eq!(d, Decision::Sync);
    }

    #[test]
    fn after_success_sets_next_sync_time() {
        let m = nm(serde_json::json!({}), base_spec());
        let schedule = Schedule::parse("0 3 * * *", None).unwrap();
        let mut status = NamespaceMappingStatus::default();
        let action = after_success(ReplicationMode::Scheduled, &m, Some(&schedule), &mut status);
        assert!(status.next_sync_time.is_some());
        assert_ne!(action, Action::await_change());
    }

    #[test]
    fn retries_count_down_then_manual_gives_up() {
        let m = nm(
            serde_json::json!({}),
            serde_json::json!({
                "sourceNamespace": "web", "sourceCluster": "a", "destinationCluster": "b",
                "replicationMode": "Manual",
                "retryConfig": {"maxRetries": 2, "initialBackoff": "1s", "maxBackoff": "10s"}
            }),
        );
        let error = SyncError::SourceUnavailable {
            cluster: "a".into(),
            message: "down".into(),
        };
        let mut status = NamespaceMappingStatus::default();
        after_failure(ReplicationMode::Manual, &m, &error, None, &mut status);
        let r = status.retry_status.clone().unwrap();
        assert_eq!(r.retries_remaining, 2);
        assert_eq!(r.backoff_duration.as_deref(), Some("1s"));
        after_failure(ReplicationMode::Manual, &m, &error, None, &mut status);
        let r = status.retry_status.clone().unwrap();
        assert_eq!(r.retries_remaining, 1);
        assert_eq!(r.backoff_duration.as_deref(), Some("2s"));
        let action = after_failure(ReplicationMode::Manual, &m, &error, None, &mut status);
        assert!(status.retry_status.is_none());
        assert_eq!(action, Action::await_change());
        // Continuous never gives up: it keeps retrying at the longest backoff.
        let mut status = NamespaceMappingStatus {
            retry_status: Some(RetryStatus {
                retries_remaining: 0,
                ..Default::default()
            }),
            ..Default::default()
        };
        after_failure(ReplicationMode::Continuous, &m, &error, None, &mut status);
        assert_eq!(
            status.retry_status.unwrap().backoff_duration.as_deref(),
            Some("10s")
        );
    }

    #[test]
    fn references() {
        let m = nm(serde_json::json!({}), base_spec());
        assert!(references_cluster(&m, "dr", "a"));
        assert!(references_cluster(&m, "dr", "b"));
        assert!(!references_cluster(&m, "other", "a"));
        let cm = nm(
            serde_json::json!({}),
            serde_json::json!({"sourceNamespace": "web", "clusterMappingRef": {"name": "pair"}}),
        );
        assert!(references_cluster_mapping(&cm, "dr", "pair"));
        assert!(!references_cluster_mapping(&cm, "dr", "other"));
    }
}

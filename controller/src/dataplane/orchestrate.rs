//! The data sync of one NamespaceMapping run: after the resource sync replicated the PVCs,
//! copy each one's data with a worker pod, within the concurrency limits, with retries,
//! and report per PVC (status, events, metrics).
//!
//! One run: sweep leftover workers of the mapping, check `pvcSync.enabled`, prepare the
//! agents and keys once ([`agents::prepare`]), then per PVC (at most
//! `dataSyncConfig.concurrentSyncs` of this mapping at once, and at most
//! [`DataSlots`] allow over every mapping): make sure the target PVC exists, locate the
//! source volume, run the worker; transient failures are retried per the source
//! RemoteCluster's `pvcSync.retryConfig`. [`apply_to_status`] turns the report into
//! `pvcSyncStatus`, the `DataSynced` condition and (on failure) `phase: Failed` with
//! `lastError`, without touching the resource sync's own `Synced` condition.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dr_syncer_crds::namespace_mapping::{
    NamespaceMapping, NamespaceMappingStatus, PvcSyncOutcome, PvcSyncResult,
    SyncError as StatusError, SyncPhase,
};
use dr_syncer_crds::remote_cluster::{PvcSyncRetryConfig, RemoteCluster};
use dr_syncer_worker_wire::SyncSummary;
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::agents::{self, AgentError};
use super::keys::{KeyScope, WorkerCredentials};
use super::locate::{self, LocateError};
use super::worker::{self, DataOptions, Destination, WorkerPodError, WorkerRequest};
use crate::clusters::ClusterKey;
use crate::context::{CONTROLLER_NAME, Context, truncate};
use crate::mapping::Resolved;
use crate::metrics::MappingLabels;
use crate::replicate::{MappingId, ObjectFilter, ResourceKind, Selection, select};
use crate::status::{condition, go_duration, now, reasons, remove_condition, set_condition, types};

/// How long a run waits for the target PVC the resource sync just applied to be readable.
const TARGET_PVC_WAIT: Duration = Duration::from_secs(15);

/// Concurrency limits shared by every mapping: one global semaphore (the controller's
/// `--concurrency`) and one per source cluster (`pvcSync.globalConcurrencyLimit`, lowered
/// by `pvcSync.concurrency`).
pub struct DataSlots {
    global: Arc<Semaphore>,
    per_cluster: Mutex<HashMap<ClusterKey, (usize, Arc<Semaphore>)>>,
}

/// The permits of one running copy; dropping it frees the slots.
pub struct Slot {
    _cluster: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl DataSlots {
    /// Limits with `global` copies at once over the whole controller (at least 1).
    pub fn new(global: usize) -> Self {
        DataSlots {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_cluster: Mutex::new(HashMap::new()),
        }
    }

    /// The semaphore of a source cluster, recreated when its limit changed (copies
    /// holding the old one finish under the old limit).
    fn cluster(&self, key: &ClusterKey, limit: usize) -> Arc<Semaphore> {
        let limit = limit.max(1);
        let mut map = match self.per_cluster.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = map
            .entry(key.clone())
            .or_insert_with(|| (limit, Arc::new(Semaphore::new(limit))));
        if entry.0 != limit {
            *entry = (limit, Arc::new(Semaphore::new(limit)));
        }
        entry.1.clone()
    }

    /// Waits for a slot of the source cluster and a global one.
    pub async fn acquire(&self, key: &ClusterKey, limit: usize) -> Option<Slot> {
        let cluster = self.cluster(key, limit).acquire_owned().await.ok()?;
        let global = self.global.clone().acquire_owned().await.ok()?;
        Some(Slot {
            _cluster: cluster,
            _global: global,
        })
    }
}

/// Copies of one source cluster at once: `globalConcurrencyLimit`, lowered by
/// `concurrency` when set.
pub fn cluster_limit(rc: &RemoteCluster) -> usize {
    let Some(p) = rc.spec.pvc_sync.as_ref() else {
        return 4;
    };
    let mut limit = p.global_concurrency_limit;
    if let Some(c) = p.concurrency {
        limit = limit.min(c);
    }
    usize::try_from(limit).unwrap_or(1).max(1)
}

/// PVCs of this mapping copied at once (`dataSyncConfig.concurrentSyncs`, default 2).
pub fn mapping_limit(nm: &NamespaceMapping) -> usize {
    let n = nm
        .spec
        .pvc_config
        .as_ref()
        .and_then(|p| p.data_sync_config.as_ref())
        .map_or(2, |c| c.concurrent_syncs);
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Whether the mapping asks for PVC data.
pub fn wants_data(nm: &NamespaceMapping) -> bool {
    nm.spec.pvc_config.as_ref().is_some_and(|p| p.sync_data)
}

/// Retry policy of PVC copies (`pvcSync.retryConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first failure.
    pub max_retries: u32,
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl RetryPolicy {
    /// From the source RemoteCluster (defaults 3 retries, 30s, 5m).
    pub fn from_rc(rc: &RemoteCluster) -> Self {
        let cfg = rc
            .spec
            .pvc_sync
            .as_ref()
            .and_then(|p| p.retry_config.clone());
        let cfg = cfg.unwrap_or_else(|| PvcSyncRetryConfig {
            max_retries: 3,
            initial_delay: "30s".into(),
            max_delay: "5m".into(),
        });
        let parse = |text: &str, default: u64| {
            dr_syncer_crds::common::parse_duration(text).unwrap_or(Duration::from_secs(default))
        };
        RetryPolicy {
            max_retries: u32::try_from(cfg.max_retries).unwrap_or(0),
            initial: parse(&cfg.initial_delay, 30),
            max: parse(&cfg.max_delay, 300),
        }
    }

    /// Wait before retry `n` (1-based): `initial`, doubling, capped at `max`.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Why a PVC was not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvcFailure {
    /// Condition reason (`AgentUnreachable`, `TargetPvcMissing`, ...).
    pub reason: &'static str,
    /// What happened and what to do.
    pub message: String,
}

/// The result of one PVC.
#[derive(Debug, Clone)]
pub struct PvcOutcome {
    /// PVC name.
    pub pvc: String,
    /// Source node that served it, when located.
    pub node: Option<String>,
    /// Attempts (1 + retries).
    pub attempts: u32,
    /// Wall time including retries.
    pub duration: Duration,
    /// When it ended.
    pub finished: Time,
    /// Summary or failure.
    pub result: Result<SyncSummary, PvcFailure>,
}

/// The result of a data sync run.
#[derive(Debug, Clone, Default)]
pub struct DataSyncReport {
    /// One entry per PVC, sorted by name.
    pub pvcs: Vec<PvcOutcome>,
    /// A failure before any PVC could be tried (disabled, keys, agents, listing).
    pub setup: Option<PvcFailure>,
    /// Wall time.
    pub duration: Duration,
}

impl DataSyncReport {
    /// The failed PVCs.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &PvcFailure)> {
        self.pvcs
            .iter()
            .filter_map(|o| o.result.as_ref().err().map(|f| (o.pvc.as_str(), f)))
    }

    /// Whether everything was copied.
    pub fn ok(&self) -> bool {
        self.setup.is_none() && self.failures().next().is_none()
    }

    /// Reason of the `DataSynced` condition.
    pub fn reason(&self) -> &'static str {
        if let Some(f) = &self.setup {
            return f.reason;
        }
        self.failures()
            .next()
            .map_or(reasons::DATA_SYNC_SUCCEEDED, |(_, f)| f.reason)
    }

    /// Message of the `DataSynced` condition: totals, or each failed PVC with its error.
    pub fn message(&self) -> String {
        if let Some(f) = &self.setup {
            return f.message.clone();
        }
        let failed: Vec<String> = self
            .failures()
            .map(|(pvc, f)| format!("PVC {pvc}: {} ({})", f.message, f.reason))
            .collect();
        if !failed.is_empty() {
            return format!(
                "{} of {} PVCs failed: {}",
                failed.len(),
                self.pvcs.len(),
                failed.join("; ")
            );
        }
        let sum = |f: fn(&SyncSummary) -> u64| {
            self.pvcs
                .iter()
                .filter_map(|o| o.result.as_ref().ok())
                .map(f)
                .sum::<u64>()
        };
        format!(
            "{} PVCs copied in {}: {} files transferred, {} bytes literal, {} bytes matched, {} bytes on the wire",
            self.pvcs.len(),
            go_duration(self.duration),
            sum(|s| s.files_transferred),
            sum(|s| s.literal_bytes),
            sum(|s| s.matched_bytes),
            sum(|s| s.wire_bytes),
        )
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The `pvcSyncStatus` entry of one outcome.
pub fn status_entry(o: &PvcOutcome) -> PvcSyncResult {
    let mut entry = PvcSyncResult {
        pvc: o.pvc.clone(),
        last_sync_time: Some(o.finished.clone()),
        result: PvcSyncOutcome::Succeeded,
        duration: Some(go_duration(o.duration)),
        files_transferred: 0,
        bytes_transferred: 0,
        wire_bytes: 0,
        last_error: None,
        matched_bytes: 0,
        literal_bytes: 0,
        files_scanned: 0,
        files_deleted: 0,
        node: o.node.clone(),
        attempts: i32::try_from(o.attempts).unwrap_or(i32::MAX),
        reason: None,
    };
    match &o.result {
        Ok(s) => {
            entry.files_transferred = to_i64(s.files_transferred);
            entry.bytes_transferred = to_i64(s.literal_bytes.saturating_add(s.matched_bytes));
            entry.wire_bytes = to_i64(s.wire_bytes);
            entry.matched_bytes = to_i64(s.matched_bytes);
            entry.literal_bytes = to_i64(s.literal_bytes);
            entry.files_scanned = to_i64(s.files_scanned);
            entry.files_deleted = to_i64(s.files_deleted);
            entry.reason = Some(reasons::DATA_SYNC_SUCCEEDED.into());
        }
        Err(f) => {
            entry.result = PvcSyncOutcome::Failed;
            entry.last_error = Some(truncate(f.message.clone(), 2000));
            entry.reason = Some(f.reason.into());
        }
    }
    entry
}

/// Marks the data sync as running (`DataSynced` False, `DataSyncInProgress`).
pub fn mark_in_progress(status: &mut NamespaceMappingStatus, generation: Option<i64>) {
    set_condition(
        &mut status.conditions,
        condition(
            types::DATA_SYNCED,
            false,
            reasons::DATA_SYNC_IN_PROGRESS,
            "copying PVC data",
            generation,
        ),
    );
}

/// Removes the data-sync status of a mapping that no longer asks for data.
pub fn clear_status(status: &mut NamespaceMappingStatus) {
    remove_condition(&mut status.conditions, types::DATA_SYNCED);
    status.pvc_sync_status.clear();
}

/// Writes the report into status: `pvcSyncStatus`, `DataSynced`, and on failure
/// `phase: Failed`, `lastError` and `Ready` False with the data reason. The resource
/// sync's `Synced` condition and counts are left as they are.
pub fn apply_to_status(
    status: &mut NamespaceMappingStatus,
    report: &DataSyncReport,
    generation: Option<i64>,
) {
    let mut entries: BTreeMap<String, PvcSyncResult> = BTreeMap::new();
    if report.setup.is_none() || !report.pvcs.is_empty() {
        for o in &report.pvcs {
            entries.insert(o.pvc.clone(), status_entry(o));
        }
    } else {
        // Nothing was tried: keep the last per-PVC results for reference.
        for e in &status.pvc_sync_status {
            entries.insert(e.pvc.clone(), e.clone());
        }
    }
    status.pvc_sync_status = entries.into_values().collect();
    let ok = report.ok();
    let message = truncate(report.message(), 2000);
    set_condition(
        &mut status.conditions,
        condition(
            types::DATA_SYNCED,
            ok,
            report.reason(),
            message.clone(),
            generation,
        ),
    );
    if ok {
        return;
    }
    status.phase = Some(SyncPhase::Failed);
    let resource = report
        .failures()
        .next()
        .map(|(pvc, _)| format!("PersistentVolumeClaim/{pvc}"));
    status.last_error = Some(StatusError {
        message: format!("data sync: {message}"),
        time: now(),
        resource,
    });
    set_condition(
        &mut status.conditions,
        condition(types::READY, false, report.reason(), message, generation),
    );
}

/// The PVC kind (only `is()` is consulted by the selection rules).
fn pvc_kind() -> ResourceKind {
    ResourceKind {
        group: String::new(),
        version: "v1".into(),
        kind: "PersistentVolumeClaim".into(),
        plural: "persistentvolumeclaims".into(),
        singular: "persistentvolumeclaim".into(),
        short_names: vec!["pvc".into()],
        namespaced: true,
        verbs: vec!["list".into()],
    }
}

/// Source PVCs the resource sync replicates (same selection rules), by name.
async fn source_pvcs(
    nm: &NamespaceMapping,
    resolved: &Resolved,
) -> Result<Vec<(String, BTreeMap<String, String>)>, PvcFailure> {
    let kind = pvc_kind();
    let filter = ObjectFilter::from_spec(&nm.spec).map_err(|e| PvcFailure {
        reason: reasons::INVALID_SPEC,
        message: e.to_string(),
    })?;
    let api: Api<DynamicObject> = Api::namespaced_with(
        resolved.source.client.clone(),
        &nm.spec.source_namespace,
        &kind.api_resource(),
    );
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| PvcFailure {
            reason: reasons::DATA_SYNC_FAILED,
            message: format!("listing source PVCs: {e}"),
        })?;
    let mut out: Vec<(String, BTreeMap<String, String>)> = list
        .items
        .iter()
        .filter(|o| select(o, &kind, &filter) == Selection::Keep)
        .map(|o| (o.name_any(), o.annotations().clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The key scope of the mapping: its ClusterMapping, or the implicit pair.
fn key_scope(nm: &NamespaceMapping, resolved: &Resolved) -> KeyScope {
    match &resolved.cluster_mapping {
        Some(cm) => KeyScope::for_cluster_mapping(cm),
        None => KeyScope::for_pair(
            &nm.namespace().unwrap_or_default(),
            &resolved.source_key.name,
            &resolved.dest_key.name,
        ),
    }
}

fn agent_failure(e: &AgentError) -> PvcFailure {
    PvcFailure {
        reason: e.reason(),
        message: e.to_string(),
    }
}

/// Everything the per-PVC tasks share.
struct Run<'a> {
    ctx: &'a Context,
    nm: &'a NamespaceMapping,
    resolved: &'a Resolved,
    mapping: MappingId,
    dest: Destination,
    dest_namespace: String,
    creds: WorkerCredentials,
    port: u16,
    retry: RetryPolicy,
    cluster_limit: usize,
    recorder: Recorder,
}

/// Runs the data sync of one mapping (after a successful resource sync) and records
/// events and metrics. Status is for the caller ([`apply_to_status`]).
pub async fn sync_data(
    ctx: &Context,
    nm: &NamespaceMapping,
    resolved: &Resolved,
) -> DataSyncReport {
    let started = Instant::now();
    let mut report = match run_all(ctx, nm, resolved).await {
        Ok(pvcs) => DataSyncReport {
            pvcs,
            ..Default::default()
        },
        Err(setup) => DataSyncReport {
            setup: Some(setup),
            ..Default::default()
        },
    };
    report.duration = started.elapsed();
    if let Some(f) = &report.setup {
        ctx.event(
            nm,
            true,
            "DataSyncFailed",
            "DataSync",
            format!("{}: {}", f.reason, f.message),
        )
        .await;
    }
    report
}

async fn run_all(
    ctx: &Context,
    nm: &NamespaceMapping,
    resolved: &Resolved,
) -> Result<Vec<PvcOutcome>, PvcFailure> {
    let rc = &resolved.source_rc;
    if !rc.spec.pvc_sync.as_ref().is_some_and(|p| p.enabled) {
        return Err(PvcFailure {
            reason: reasons::PVC_SYNC_DISABLED,
            message: format!(
                "spec.pvcConfig.syncData is set but RemoteCluster {} has no spec.pvcSync.enabled: true; enable it so the controller deploys the agents, or turn syncData off",
                resolved.source_key
            ),
        });
    }
    let mapping = MappingId::new(nm.namespace().unwrap_or_default(), nm.name_any());
    let dest = Destination {
        client: resolved.dest.client.clone(),
        watch_client: resolved.dest.watch_client.clone(),
    };
    let dest_namespace = nm.spec.effective_destination_namespace().to_owned();
    if let Err(e) = worker::sweep(&dest, &dest_namespace, &mapping).await {
        tracing::warn!(error = %e, "sweeping leftover workers failed");
    }
    let pvcs = source_pvcs(nm, resolved).await?;
    if pvcs.is_empty() {
        return Ok(Vec::new());
    }
    let scope = key_scope(nm, resolved);
    let creds = agents::prepare(ctx, &scope, rc, &resolved.source.client)
        .await
        .map_err(|e| agent_failure(&e))?;
    let run = Run {
        ctx,
        nm,
        resolved,
        mapping,
        dest,
        dest_namespace,
        creds,
        port: u16::try_from(agents::agent_port(rc)).unwrap_or(2222),
        retry: RetryPolicy::from_rc(rc),
        cluster_limit: cluster_limit(rc),
        recorder: Recorder::new(
            resolved.dest.client.clone(),
            Reporter {
                controller: CONTROLLER_NAME.to_owned(),
                instance: None,
            },
        ),
    };
    let run = &run;
    let mut outcomes: Vec<PvcOutcome> = futures::stream::iter(pvcs)
        .map(|(pvc, annotations)| async move { run.one(pvc, annotations).await })
        .buffer_unordered(mapping_limit(nm))
        .collect()
        .await;
    outcomes.sort_by(|a, b| a.pvc.cmp(&b.pvc));
    Ok(outcomes)
}

/// One attempt's failure, with whether to retry.
struct AttemptError {
    failure: PvcFailure,
    transient: bool,
    node: Option<String>,
}

impl From<LocateError> for AttemptError {
    fn from(e: LocateError) -> Self {
        AttemptError {
            transient: e.is_transient(),
            failure: PvcFailure {
                reason: e.reason(),
                message: e.to_string(),
            },
            node: None,
        }
    }
}

impl Run<'_> {
    fn labels(&self) -> MappingLabels {
        MappingLabels {
            namespace: self.mapping.namespace.clone(),
            mapping: self.mapping.name.clone(),
        }
    }

    /// Copies one PVC: slot, target check, attempts, events, metrics.
    async fn one(&self, pvc: String, annotations: BTreeMap<String, String>) -> PvcOutcome {
        let started = Instant::now();
        let slot = self
            .ctx
            .data_slots
            .acquire(&self.resolved.source_key, self.cluster_limit)
            .await;
        let target = self.target_pvc(&pvc).await;
        let started_note = format!(
            "copying PVC {}/{pvc} from cluster {} into {}/{pvc} in cluster {}",
            self.nm.spec.source_namespace,
            self.resolved.source_key.name,
            self.dest_namespace,
            self.resolved.dest_key.name
        );
        self.ctx
            .event(
                self.nm,
                false,
                "DataSyncStarted",
                "DataSync",
                started_note.clone(),
            )
            .await;
        if let Ok(target) = &target {
            self.publish_on(target, false, "DataSyncStarted", started_note)
                .await;
        }
        let (result, attempts, node) = match &target {
            Ok(_) => self.attempts(&pvc, &annotations).await,
            Err(f) => (Err(f.clone()), 0, None),
        };
        drop(slot);
        let outcome = PvcOutcome {
            pvc: pvc.clone(),
            node,
            attempts,
            duration: started.elapsed(),
            finished: now(),
            result,
        };
        self.report(&outcome, target.ok().as_ref()).await;
        outcome
    }

    /// The target PVC, polled briefly (the resource sync has just applied it).
    async fn target_pvc(&self, pvc: &str) -> Result<PersistentVolumeClaim, PvcFailure> {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.dest.client.clone(), &self.dest_namespace);
        let deadline = Instant::now() + TARGET_PVC_WAIT;
        loop {
            match api.get_opt(pvc).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) if Instant::now() < deadline => {}
                Ok(None) => {
                    return Err(PvcFailure {
                        reason: reasons::TARGET_PVC_MISSING,
                        message: format!(
                            "target PVC {}/{pvc} does not exist in cluster {}: include persistentvolumeclaims in spec.resourceTypes (or create the claim there) and sync again",
                            self.dest_namespace, self.resolved.dest_key.name
                        ),
                    });
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(PvcFailure {
                        reason: reasons::DATA_SYNC_FAILED,
                        message: format!("reading target PVC {}/{pvc}: {e}", self.dest_namespace),
                    });
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Attempts with retries; returns the result, attempts made and the node.
    async fn attempts(
        &self,
        pvc: &str,
        annotations: &BTreeMap<String, String>,
    ) -> (Result<SyncSummary, PvcFailure>, u32, Option<String>) {
        let mut attempt = 0;
        let mut node = None;
        loop {
            attempt += 1;
            match self.attempt(pvc, annotations, &mut node).await {
                Ok(summary) => return (Ok(summary), attempt, node),
                Err(e) if e.transient && attempt <= self.retry.max_retries => {
                    let delay = self.retry.delay(attempt);
                    tracing::warn!(pvc, attempt, error = %e.failure.message, retry_in = ?delay, "PVC copy failed; retrying");
                    // A retry delay, not a wait for a condition.
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return (Err(e.failure), attempt, e.node.or(node)),
            }
        }
    }

    async fn attempt(
        &self,
        pvc: &str,
        annotations: &BTreeMap<String, String>,
        node: &mut Option<String>,
    ) -> Result<SyncSummary, AttemptError> {
        let source_ns = &self.nm.spec.source_namespace;
        let location =
            locate::locate(&self.resolved.source.client, source_ns, pvc, self.port).await?;
        *node = Some(location.node.clone());
        let cfg = self
            .nm
            .spec
            .pvc_config
            .as_ref()
            .and_then(|p| p.data_sync_config.as_ref());
        let options = DataOptions::resolve(
            cfg,
            self.resolved.source_rc.spec.pvc_sync.as_ref(),
            annotations,
        )
        .map_err(|e| run_failure(WorkerPodError::from(e), node))?;
        let req = WorkerRequest {
            pod_name: worker::worker_name(pvc),
            namespace: self.dest_namespace.clone(),
            mapping: self.mapping.clone(),
            pvc: pvc.to_owned(),
            volume: format!("{source_ns}/{pvc}"),
            agent: location.address.clone(),
            image: self.ctx.dataplane.worker.clone(),
            options,
        };
        tracing::info!(pvc, node = %location.node, agent = %location.address, pod = %req.pod_name, "starting worker");
        worker::run(&self.dest, &req, &self.creds)
            .await
            .map_err(|e| run_failure(e, node))
    }

    /// Events on the mapping and the target PVC, and metrics.
    async fn report(&self, o: &PvcOutcome, target: Option<&PersistentVolumeClaim>) {
        let labels = self.labels();
        let seconds = o.duration.as_secs_f64();
        let (warning, reason, note) = match &o.result {
            Ok(s) => {
                self.ctx
                    .metrics
                    .record_data(&labels, &o.pvc, Some(s), seconds);
                (
                    false,
                    "DataSyncSucceeded",
                    format!(
                        "PVC {} copied in {} (node {}): {} files transferred, {} bytes literal, {} bytes matched, {} bytes on the wire",
                        o.pvc,
                        go_duration(o.duration),
                        o.node.as_deref().unwrap_or("?"),
                        s.files_transferred,
                        s.literal_bytes,
                        s.matched_bytes,
                        s.wire_bytes
                    ),
                )
            }
            Err(f) => {
                self.ctx.metrics.record_data(&labels, &o.pvc, None, seconds);
                (
                    true,
                    "DataSyncFailed",
                    format!(
                        "PVC {} not copied after {} attempt(s): {}: {}",
                        o.pvc, o.attempts, f.reason, f.message
                    ),
                )
            }
        };
        self.ctx
            .event(self.nm, warning, reason, "DataSync", note.clone())
            .await;
        if let Some(pvc) = target {
            self.publish_on(pvc, warning, reason, note).await;
        }
    }

    async fn publish_on(
        &self,
        pvc: &PersistentVolumeClaim,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(truncate(note, 1000)),
            action: "DataSync".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &pvc.object_ref(&())).await {
            tracing::warn!(%error, reason, "publishing an event on the target PVC failed");
        }
    }
}

fn run_failure(e: WorkerPodError, node: &Option<String>) -> AttemptError {
    AttemptError {
        transient: e.is_transient(),
        failure: PvcFailure {
            reason: e.reason(),
            message: e.to_string(),
        },
        node: node.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rc(pvc_sync: serde_json::Value) -> RemoteCluster {
        serde_json::from_value(json!({
            "apiVersion": "dr-syncer.io/v1alpha1", "kind": "RemoteCluster",
            "metadata": {"name": "a", "namespace": "dr"},
            "spec": {"kubeconfigSecretRef": {"name": "k", "namespace": "dr"}, "pvcSync": pvc_sync},
        }))
        .unwrap()
    }

    fn nm(pvc_config: serde_json::Value) -> NamespaceMapping {
        serde_json::from_value(json!({
            "apiVersion": "dr-syncer.io/v1alpha1", "kind": "NamespaceMapping",
            "metadata": {"name": "web", "namespace": "dr"},
            "spec": {"sourceNamespace": "app", "sourceCluster": "a", "destinationCluster": "b",
                     "pvcConfig": pvc_config},
        }))
        .unwrap()
    }

    fn ok(pvc: &str, matched: u64) -> PvcOutcome {
        PvcOutcome {
            pvc: pvc.into(),
            node: Some("n1".into()),
            attempts: 1,
            duration: Duration::from_millis(1500),
            finished: now(),
            result: Ok(SyncSummary {
                files_scanned: 5,
                files_transferred: 2,
                files_deleted: 1,
                literal_bytes: 100,
                matched_bytes: matched,
                wire_bytes: 150,
                duration_seconds: 1.0,
                total_size: 1000,
                ..SyncSummary::default()
            }),
        }
    }

    fn failed(pvc: &str, reason: &'static str) -> PvcOutcome {
        PvcOutcome {
            attempts: 4,
            result: Err(PvcFailure {
                reason,
                message: "connection refused; check the agent".into(),
            }),
            ..ok(pvc, 0)
        }
    }

    #[test]
    fn limits_from_specs() {
        assert_eq!(cluster_limit(&rc(json!({"enabled": true}))), 4);
        assert_eq!(
            cluster_limit(&rc(
                json!({"enabled": true, "globalConcurrencyLimit": 8, "concurrency": 3})
            )),
            3
        );
        assert_eq!(mapping_limit(&nm(json!({"syncData": true}))), 2);
        assert_eq!(
            mapping_limit(&nm(
                json!({"syncData": true, "dataSyncConfig": {"concurrentSyncs": 5}})
            )),
            5
        );
        assert!(wants_data(&nm(json!({"syncData": true}))));
        assert!(!wants_data(&nm(json!({"syncData": false}))));
    }

    #[test]
    fn retry_policy_doubles_to_the_cap() {
        let p = RetryPolicy::from_rc(&rc(json!({"enabled": true,
            "retryConfig": {"maxRetries": 2, "initialDelay": "1s", "maxDelay": "3s"}})));
        assert_eq!(p.max_retries, 2);
        assert_eq!(p.delay(1), Duration::from_secs(1));
        assert_eq!(p.delay(2), Duration::from_secs(2));
        assert_eq!(p.delay(3), Duration::from_secs(3));
        let d = RetryPolicy::from_rc(&rc(json!({"enabled": true})));
        assert_eq!(
            (d.max_retries, d.initial, d.max),
            (3, Duration::from_secs(30), Duration::from_secs(300))
        );
    }

    #[tokio::test]
    async fn slots_limit_per_cluster_and_globally() {
        let slots = DataSlots::new(3);
        let a = ClusterKey {
            namespace: "dr".into(),
            name: "a".into(),
        };
        let b = ClusterKey {
            namespace: "dr".into(),
            name: "b".into(),
        };
        let first = slots.acquire(&a, 2).await.unwrap();
        let _second = slots.acquire(&a, 2).await.unwrap();
        // Cluster a is full; b still has room (global 3).
        let third = tokio::time::timeout(Duration::from_millis(50), slots.acquire(&a, 2)).await;
        assert!(third.is_err(), "a third copy of cluster a must wait");
        let _b1 = slots.acquire(&b, 2).await.unwrap();
        // Global limit reached: even b waits now.
        let b2 = tokio::time::timeout(Duration::from_millis(50), slots.acquire(&b, 2)).await;
        assert!(b2.is_err(), "the global limit must hold");
        drop(first);
        let again = tokio::time::timeout(Duration::from_secs(5), slots.acquire(&a, 2)).await;
        assert!(again.is_ok(), "a freed slot is reusable");
    }

    #[test]
    fn success_sets_entries_and_condition_without_failing_the_phase() {
        let mut status = NamespaceMappingStatus {
            phase: Some(SyncPhase::Completed),
            ..Default::default()
        };
        let report = DataSyncReport {
            pvcs: vec![ok("b", 900), ok("a", 0)],
            setup: None,
            duration: Duration::from_secs(2),
        };
        apply_to_status(&mut status, &report, Some(3));
        assert_eq!(status.phase, Some(SyncPhase::Completed));
        assert_eq!(status.pvc_sync_status.len(), 2);
        let b = &status.pvc_sync_status[1];
        assert_eq!(b.pvc, "b");
        assert_eq!(b.result, PvcSyncOutcome::Succeeded);
        assert_eq!(b.matched_bytes, 900);
        assert_eq!(b.literal_bytes, 100);
        assert_eq!(b.bytes_transferred, 1000);
        assert_eq!(b.wire_bytes, 150);
        assert_eq!(b.files_scanned, 5);
        assert_eq!(b.files_deleted, 1);
        assert_eq!(b.node.as_deref(), Some("n1"));
        assert_eq!(b.attempts, 1);
        assert_eq!(b.duration.as_deref(), Some("1.5s"));
        let c = crate::status::find_condition(&status.conditions, types::DATA_SYNCED).unwrap();
        assert_eq!(c.status, "True");
        assert_eq!(c.reason, reasons::DATA_SYNC_SUCCEEDED);
        assert!(c.message.contains("2 PVCs copied"), "{}", c.message);
    }

    #[test]
    fn failure_fails_phase_names_pvc_and_keeps_synced() {
        let mut status = NamespaceMappingStatus {
            phase: Some(SyncPhase::Completed),
            ..Default::default()
        };
        set_condition(
            &mut status.conditions,
            condition(types::SYNCED, true, reasons::SYNC_SUCCEEDED, "ok", Some(1)),
        );
        let report = DataSyncReport {
            pvcs: vec![ok("a", 1), failed("b", reasons::AGENT_UNREACHABLE)],
            setup: None,
            duration: Duration::from_secs(2),
        };
        apply_to_status(&mut status, &report, Some(1));
        assert_eq!(status.phase, Some(SyncPhase::Failed));
        let err = status.last_error.as_ref().unwrap();
        assert_eq!(err.resource.as_deref(), Some("PersistentVolumeClaim/b"));
        assert!(
            err.message.contains("connection refused"),
            "{}",
            err.message
        );
        let data = crate::status::find_condition(&status.conditions, types::DATA_SYNCED).unwrap();
        assert_eq!(data.status, "False");
        assert_eq!(data.reason, reasons::AGENT_UNREACHABLE);
        assert!(data.message.contains("PVC b"), "{}", data.message);
        let synced = crate::status::find_condition(&status.conditions, types::SYNCED).unwrap();
        assert_eq!(synced.status, "True", "resources did sync");
        let ready = crate::status::find_condition(&status.conditions, types::READY).unwrap();
        assert_eq!(ready.reason, reasons::AGENT_UNREACHABLE);
        let b = &status.pvc_sync_status[1];
        assert_eq!(b.result, PvcSyncOutcome::Failed);
        assert_eq!(b.attempts, 4);
        assert_eq!(b.reason.as_deref(), Some(reasons::AGENT_UNREACHABLE));
    }

    #[test]
    fn setup_failure_keeps_previous_entries() {
        let mut status = NamespaceMappingStatus::default();
        apply_to_status(
            &mut status,
            &DataSyncReport {
                pvcs: vec![ok("a", 1)],
                ..Default::default()
            },
            None,
        );
        let report = DataSyncReport {
            setup: Some(PvcFailure {
                reason: reasons::PVC_SYNC_DISABLED,
                message: "enable pvcSync".into(),
            }),
            ..Default::default()
        };
        apply_to_status(&mut status, &report, None);
        assert_eq!(status.pvc_sync_status.len(), 1);
        let c = crate::status::find_condition(&status.conditions, types::DATA_SYNCED).unwrap();
        assert_eq!(c.reason, reasons::PVC_SYNC_DISABLED);
        assert_eq!(status.phase, Some(SyncPhase::Failed));
        clear_status(&mut status);
        assert!(status.pvc_sync_status.is_empty());
        assert!(crate::status::find_condition(&status.conditions, types::DATA_SYNCED).is_none());
    }
}

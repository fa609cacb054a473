//! The data sync of one NamespaceMapping run: after the resource sync replicated the PVCs,
//! copy each one's data with a worker pod, within the concurrency limits, with retries,
//! and report per PVC (events, metrics, and a [`DataSyncReport`] for the mapping's status).
//!
//! One run: sweep leftover workers of the mapping, check `pvcSync.enabled`, prepare the
//! agents and keys once ([`agents::prepare`]), then per PVC (at most
//! `dataSyncConfig.concurrentSyncs` of this mapping at once, and at most
//! [`DataSlots`](super::slots::DataSlots) allow over every mapping): make sure the target
//! PVC exists, locate the source volume, run the worker; transient failures are retried
//! per the source RemoteCluster's `pvcSync.retryConfig` ([`RetryPolicy`]). The mapping
//! module turns the report into `pvcSyncStatus`, the `DataSynced` condition and (on
//! failure) `phase: Failed` with `lastError`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dr_syncer_crds::cluster_mapping::ClusterMapping;
use dr_syncer_crds::namespace_mapping::NamespaceMapping;
use dr_syncer_crds::remote_cluster::RemoteCluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;

use super::agents::{self, AgentError};
use super::keys::{KeyScope, WorkerCredentials};
use super::locate::{self, LocateError};
use super::outcome::{DataSyncReport, PvcFailure, PvcOutcome};
use super::retry::RetryPolicy;
use super::slots::{cluster_limit, mapping_limit};
use super::worker::{self, DataOptions, Destination, WorkerPodError, WorkerRequest};
use crate::clusters::{ClusterKey, RemoteClient};
use crate::context::Context;
use crate::k8s::EventPublisher;
use crate::metrics::MappingLabels;
use crate::replicate::{MappingId, ObjectFilter, ResourceKind, Selection, select};
use crate::status::{go_duration, now, reasons};
use dr_syncer_worker_wire::SyncSummary;

/// How long a run waits for the target PVC the resource sync just applied to be readable.
const TARGET_PVC_WAIT: Duration = Duration::from_secs(15);

/// The two clusters of the mapping whose data is copied, as its reconciler resolved them.
/// Borrowed field by field so the data plane needs nothing of the mapping module (which
/// calls it).
pub struct Clusters<'a> {
    /// Source RemoteCluster.
    pub source_key: &'a ClusterKey,
    /// Destination RemoteCluster.
    pub dest_key: &'a ClusterKey,
    /// Source client.
    pub source: &'a RemoteClient,
    /// Destination client.
    pub dest: &'a RemoteClient,
    /// The source RemoteCluster object (`pvcSync` settings).
    pub source_rc: &'a RemoteCluster,
    /// The ClusterMapping, when the mapping goes through one (keys are per ClusterMapping).
    pub cluster_mapping: Option<&'a ClusterMapping>,
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
    resolved: &Clusters<'_>,
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
fn key_scope(nm: &NamespaceMapping, resolved: &Clusters<'_>) -> KeyScope {
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
    resolved: &'a Clusters<'a>,
    mapping: MappingId,
    dest: Destination,
    dest_namespace: String,
    creds: WorkerCredentials,
    port: u16,
    retry: RetryPolicy,
    cluster_limit: usize,
    events: EventPublisher,
}

/// Runs the data sync of one mapping (after a successful resource sync) and records
/// events and metrics. Status is for the caller (the mapping's report).
pub async fn sync_data(
    ctx: &Context,
    nm: &NamespaceMapping,
    resolved: &Clusters<'_>,
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
    resolved: &Clusters<'_>,
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
    let mapping = MappingId::of(nm);
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
    let creds = agents::prepare(&ctx.agent_site(), &scope, rc, &resolved.source.client)
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
        events: EventPublisher::new(resolved.dest.client.clone(), None),
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
            .acquire(&self.resolved.source_key.to_string(), self.cluster_limit)
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
                Ok(Some(found)) => return self.ours(found),
                Ok(None) if Instant::now() < deadline => {}
                Ok(None) => {
                    return Err(PvcFailure {
                        reason: reasons::TARGET_PVC_MISSING,
                        message: format!(
                            "target PVC {}/{pvc} does not exist in cluster {}: include persistentvolumeclaims in spec.resourceTypes (or create the claim there and set spec.safety.adoptExistingObjects: true) and sync again",
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

    /// The target PVC if this mapping may write into it: one it created, or any with
    /// `spec.safety.adoptExistingObjects`. A claim someone else made at the destination
    /// holds their data, not a copy of ours.
    fn ours(&self, found: PersistentVolumeClaim) -> Result<PersistentVolumeClaim, PvcFailure> {
        let adopt = self.nm.spec.safety().adopt_existing_objects;
        if crate::replicate::may_overwrite(&found.metadata, &self.mapping, adopt) {
            return Ok(found);
        }
        Err(PvcFailure {
            reason: reasons::FOREIGN_OBJECTS_FOUND,
            message: format!(
                "target PVC {}/{} in cluster {} was not created by this mapping; its data is left alone (set spec.safety.adoptExistingObjects: true to copy into it)",
                self.dest_namespace,
                found.metadata.name.as_deref().unwrap_or_default(),
                self.resolved.dest_key.name
            ),
        })
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
        let options = DataOptions {
            allow_mass_deletion: self.nm.spec.safety().allow_mass_data_deletion,
            ..DataOptions::resolve(
                cfg,
                self.resolved.source_rc.spec.pvc_sync.as_ref(),
                annotations,
            )
            .map_err(|e| run_failure(WorkerPodError::from(e), node))?
        };
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
        self.ctx.metrics.record_data(
            &labels,
            &o.pvc,
            o.result.as_ref().ok(),
            o.duration.as_secs_f64(),
        );
        let (warning, reason, note) = pvc_event(o);
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
        self.events
            .publish(pvc, warning, reason, "DataSync", note)
            .await;
    }
}

/// The event one PVC's outcome makes: (warning, reason, note).
fn pvc_event(o: &PvcOutcome) -> (bool, &'static str, String) {
    match &o.result {
        Ok(s) => {
            let copied = format!(
                "PVC {} copied in {} (node {}): {} files transferred, {} bytes literal, {} bytes matched, {} bytes on the wire",
                o.pvc,
                go_duration(o.duration),
                o.node.as_deref().unwrap_or("?"),
                s.files_transferred,
                s.literal_bytes,
                s.matched_bytes,
                s.wire_bytes
            );
            match &s.prune_refused {
                Some(why) => (
                    true,
                    reasons::DATA_PRUNE_REFUSED,
                    format!("{copied}; deletions refused: {why}"),
                ),
                None => (false, reasons::DATA_SYNC_SUCCEEDED, copied),
            }
        }
        Err(f) => (
            true,
            reasons::DATA_SYNC_FAILED,
            format!(
                "PVC {} not copied after {} attempt(s): {}: {}",
                o.pvc, o.attempts, f.reason, f.message
            ),
        ),
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

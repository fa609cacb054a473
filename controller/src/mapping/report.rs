//! The one place a NamespaceMapping's status is composed and written.
//!
//! [`compose`] is pure: it takes the status composed last (or as read), one [`Step`] of
//! the reconcile (its decision, the resource sync's result, the data copy's report, the
//! follow-up) and the time, and returns the next status. [`Writer`] writes a composed
//! status when it differs from what was written last: at most at the start (the decision,
//! `phase: Running`), during the data copy (the resource results, `DataSynced` in
//! progress) and at the end. `lastWatchEvent` belongs to the watchers' field manager and
//! is never part of it.

use dr_syncer_crds::namespace_mapping::{
    DeploymentScale, KindSyncCounts, NamespaceMapping, NamespaceMappingStatus, ResourceStatus,
    ResourceSyncState, SyncErrorRecord, SyncPhase, SyncStats,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::Api;

use super::decide::{Decision, FollowUp};
use super::pvc_status;
use crate::dataplane::outcome::DataSyncReport;
use crate::k8s::{apply_status, truncate};
use crate::replicate::unsupported_fields;
use crate::status::{condition, go_duration, reasons, remove_condition, set_condition, types};
use crate::sync::{PruneOutcome, SyncError, SyncReport};

/// Entries of `status.resourceStatus` kept (failed objects).
const MAX_RESOURCE_STATUS: usize = 50;

/// One step of a reconcile, folded into the status by [`compose`].
pub enum Step<'a> {
    /// The decision (always the first step, on the status as read).
    Decided(&'a Decision),
    /// The resource sync ended (at `now`); `copying`: the data copy starts now.
    Resources {
        /// Its result.
        result: &'a Result<SyncReport, SyncError>,
        /// PVC data is copied next (phase stays `Running`, `DataSynced` in progress).
        copying: bool,
    },
    /// The data copy after the resource sync `resources` ended.
    Data {
        /// The copy's report.
        report: &'a DataSyncReport,
        /// The resource sync before it.
        resources: &'a SyncReport,
    },
    /// The sync's follow-up: next fire, retries.
    Done(&'a FollowUp),
}

/// The status as read, without `lastWatchEvent` (the watchers' field manager owns it).
pub fn as_read(nm: &NamespaceMapping) -> NamespaceMappingStatus {
    let mut status = nm.status.clone().unwrap_or_default();
    status.last_watch_event = None;
    status
}

/// The status after `step`, from the status composed before it.
pub fn compose(
    prev: &NamespaceMappingStatus,
    nm: &NamespaceMapping,
    step: Step<'_>,
    now: &Time,
) -> NamespaceMappingStatus {
    let generation = nm.metadata.generation;
    let mut status = prev.clone();
    match step {
        Step::Decided(decision) => decided(&mut status, nm, decision),
        Step::Resources { result, copying } => match result {
            Ok(report) => {
                synced(&mut status, nm, report, generation, now);
                if copying {
                    status.phase = Some(SyncPhase::Running);
                    pvc_status::mark_in_progress(&mut status, generation);
                } else {
                    pvc_status::clear_status(&mut status);
                }
            }
            Err(error) => failed(&mut status, error, generation, now),
        },
        Step::Data { report, resources } => {
            status.phase = Some(resources_phase(resources));
            pvc_status::apply_to_status(&mut status, report, generation, now);
        }
        Step::Done(follow_up) => {
            status.next_sync_time = follow_up.next_sync_time.clone();
            status.retry_status = follow_up.retry_status.clone();
        }
    }
    status
}

/// The decision's status: generation, unsupported fields, and the decision's conditions.
fn decided(status: &mut NamespaceMappingStatus, nm: &NamespaceMapping, decision: &Decision) {
    let generation = nm.metadata.generation;
    status.observed_generation = generation;
    if status.phase.is_none() {
        status.phase = Some(SyncPhase::Pending);
    }
    set_unsupported_condition(nm, status, generation);
    match decision {
        Decision::Paused => set_condition(
            &mut status.conditions,
            condition(
                types::READY,
                false,
                reasons::PAUSED,
                "spec.paused is true; no syncs run",
                generation,
            ),
        ),
        Decision::Unresolved { why, .. } => {
            for (type_, holds) in [(types::READY, false), (types::STALLED, why.permanent)] {
                set_condition(
                    &mut status.conditions,
                    condition(type_, holds, why.reason, why.message.clone(), generation),
                );
            }
        }
        Decision::InvalidSchedule { message } => {
            status.next_sync_time = None;
            for (type_, holds) in [(types::READY, false), (types::STALLED, true)] {
                set_condition(
                    &mut status.conditions,
                    condition(
                        type_,
                        holds,
                        reasons::INVALID_SCHEDULE,
                        message.clone(),
                        generation,
                    ),
                );
            }
        }
        Decision::Wait(wait) => {
            status.next_sync_time = wait.next_sync_time.clone();
            if let Some(why) = &wait.prune_refusal {
                set_condition(
                    &mut status.conditions,
                    condition(
                        types::PRUNE_BLOCKED,
                        true,
                        reasons::CONTINUOUS_PRUNE_REFUSED,
                        truncate(why.clone(), 2000),
                        generation,
                    ),
                );
            }
            if wait.awaiting_trigger {
                set_condition(
                    &mut status.conditions,
                    condition(
                        types::READY,
                        false,
                        reasons::AWAITING_TRIGGER,
                        format!(
                            "Manual mode: set the annotation {} to a new value to sync",
                            dr_syncer_crds::annotations::SYNC_NOW
                        ),
                        generation,
                    ),
                );
            }
        }
        Decision::Sync(run) => {
            status.next_sync_time = run.next_sync_time.clone();
            if let Some(value) = &run.trigger {
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
        }
    }
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

/// The phase a resource sync ends in: Completed when no object failed.
fn resources_phase(report: &SyncReport) -> SyncPhase {
    if report.failed() == 0 {
        SyncPhase::Completed
    } else {
        SyncPhase::Failed
    }
}

/// The message of a resource sync that ran (events and conditions), and whether every
/// object synced.
pub fn synced_message(report: &SyncReport) -> (bool, String) {
    let summary = report.summary();
    let failed = report.failed();
    if failed == 0 {
        return (
            true,
            format!("synced in {}: {summary}", go_duration(report.duration)),
        );
    }
    let first = report.failures.first();
    let message = format!(
        "{failed} objects failed ({summary}); first: {}",
        first
            .map(|f| format!("{} {}: {}", f.kind, f.name, f.message))
            .unwrap_or_default()
    );
    (false, message)
}

/// The message of a resource sync that failed as a whole (events and conditions).
pub fn failed_message(error: &SyncError) -> String {
    truncate(error.to_string(), 2000)
}

/// A resource sync that ran: counts, scales, failed objects, prune and sync conditions.
fn synced(
    status: &mut NamespaceMappingStatus,
    nm: &NamespaceMapping,
    report: &SyncReport,
    generation: Option<i64>,
    now: &Time,
) {
    let failed = report.failed();
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
        foreign_condition(report, generation),
    );
    set_condition(
        &mut status.conditions,
        condition(types::STALLED, false, reasons::SUCCEEDED, "", generation),
    );
    let (ok, message) = synced_message(report);
    status.phase = Some(resources_phase(report));
    if ok {
        status.last_sync_time = Some(now.clone());
        status.last_error = None;
        status.retry_status = None;
        for type_ in [types::SYNCED, types::READY] {
            set_condition(
                &mut status.conditions,
                condition(
                    type_,
                    true,
                    reasons::SYNC_SUCCEEDED,
                    message.clone(),
                    generation,
                ),
            );
        }
    } else {
        let first = report.failures.first();
        let message = truncate(message, 2000);
        status.last_error = Some(SyncErrorRecord {
            message: message.clone(),
            time: now.clone(),
            resource: first.map(|f| format!("{}/{}", f.kind, f.name)),
        });
        for type_ in [types::SYNCED, types::READY] {
            set_condition(
                &mut status.conditions,
                condition(
                    type_,
                    false,
                    reasons::SYNC_PARTIALLY_FAILED,
                    message.clone(),
                    generation,
                ),
            );
        }
    }
}

/// Foreign objects listed in a message at most this many by name.
const MAX_FOREIGN_NAMED: usize = 20;

/// The `ForeignObjects` condition of a sync that ran.
fn foreign_condition(report: &SyncReport, generation: Option<i64>) -> Condition {
    if report.foreign.is_empty() {
        return condition(
            types::FOREIGN_OBJECTS,
            false,
            reasons::NO_FOREIGN_OBJECTS,
            "every destination object the mapping writes is its own",
            generation,
        );
    }
    condition(
        types::FOREIGN_OBJECTS,
        true,
        reasons::FOREIGN_OBJECTS_FOUND,
        foreign_message(&report.foreign),
        generation,
    )
}

/// What the foreign objects are and what to do (condition and event).
pub fn foreign_message(foreign: &[String]) -> String {
    let mut named = foreign
        .iter()
        .take(MAX_FOREIGN_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if foreign.len() > MAX_FOREIGN_NAMED {
        named.push_str(&format!(" and {} more", foreign.len() - MAX_FOREIGN_NAMED));
    }
    format!(
        "{} destination objects exist but were not created by this mapping; left unchanged and never pruned: {named}. Rename or remove them at the destination, or set spec.safety.adoptExistingObjects: true to take them over",
        foreign.len()
    )
}

/// A resource sync that failed as a whole: not synced, not ready, and stalled only when
/// retrying cannot help.
fn failed(
    status: &mut NamespaceMappingStatus,
    error: &SyncError,
    generation: Option<i64>,
    now: &Time,
) {
    let message = failed_message(error);
    status.phase = Some(SyncPhase::Failed);
    status.last_error = Some(SyncErrorRecord {
        message: message.clone(),
        time: now.clone(),
        resource: None,
    });
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
}

/// Writes a mapping's composed status, skipping what was written (or read) already.
pub struct Writer {
    api: Api<NamespaceMapping>,
    name: String,
    written: NamespaceMappingStatus,
}

impl Writer {
    /// A writer for `nm`, whose status as read counts as written.
    pub fn new(api: Api<NamespaceMapping>, nm: &NamespaceMapping) -> Self {
        Writer {
            api,
            name: nm.name_any(),
            written: as_read(nm),
        }
    }

    /// Writes `status` if it differs from the last one written.
    pub async fn write(&mut self, status: &NamespaceMappingStatus) -> Result<(), kube::Error> {
        if *status != self.written {
            apply_status(&self.api, &self.name, status).await?;
            self.written = status.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

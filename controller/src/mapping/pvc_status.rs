//! The data-plane part of a NamespaceMapping's status: `pvcSyncStatus` and the
//! `DataSynced` condition, composed from a [`DataSyncReport`] (and, on failure, `phase`,
//! `lastError` and `Ready`, without touching the resource sync's own `Synced` condition).
//! Only the [`report`](super::report) module calls it.

use std::collections::BTreeMap;

use dr_syncer_crds::namespace_mapping::{
    NamespaceMappingStatus, PvcSyncOutcome, PvcSyncResult, SyncErrorRecord, SyncPhase,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::dataplane::outcome::{DataSyncReport, PvcOutcome};
use crate::k8s::truncate;
use crate::status::{condition, go_duration, reasons, remove_condition, set_condition, types};

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
            if let Some(why) = &s.prune_refused {
                entry.reason = Some(reasons::DATA_PRUNE_REFUSED.into());
                entry.last_error = Some(truncate(why.clone(), 2000));
            }
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
    now: &Time,
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
        .map(|(pvc, _)| pvc)
        .chain(report.prune_refusals().map(|(pvc, _)| pvc))
        .next()
        .map(|pvc| format!("PersistentVolumeClaim/{pvc}"));
    status.last_error = Some(SyncErrorRecord {
        message: format!("data sync: {message}"),
        time: now.clone(),
        resource,
    });
    set_condition(
        &mut status.conditions,
        condition(types::READY, false, report.reason(), message, generation),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dataplane::outcome::PvcFailure;
    use crate::status::now;
    use dr_syncer_worker_wire::SyncSummary;
    use std::time::Duration;

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
        apply_to_status(&mut status, &report, Some(3), &now());
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
        apply_to_status(&mut status, &report, Some(1), &now());
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
            &now(),
        );
        let report = DataSyncReport {
            setup: Some(PvcFailure {
                reason: reasons::PVC_SYNC_DISABLED,
                message: "enable pvcSync".into(),
            }),
            ..Default::default()
        };
        apply_to_status(&mut status, &report, None, &now());
        assert_eq!(status.pvc_sync_status.len(), 1);
        let c = crate::status::find_condition(&status.conditions, types::DATA_SYNCED).unwrap();
        assert_eq!(c.reason, reasons::PVC_SYNC_DISABLED);
        assert_eq!(status.phase, Some(SyncPhase::Failed));
        clear_status(&mut status);
        assert!(status.pvc_sync_status.is_empty());
        assert!(crate::status::find_condition(&status.conditions, types::DATA_SYNCED).is_none());
    }

    #[test]
    fn refused_deletions_say_why_and_do_not_count_as_success() {
        let mut status = NamespaceMappingStatus::default();
        let mut refused = ok("db", 0);
        if let Ok(s) = &mut refused.result {
            s.files_deleted = 0;
            s.prune_refused =
                Some("the source listing is empty but the target holds 3 entries".into());
        }
        let report = DataSyncReport {
            pvcs: vec![ok("a", 1), refused],
            setup: None,
            duration: Duration::from_secs(1),
        };
        apply_to_status(&mut status, &report, Some(2), &now());
        let data = crate::status::find_condition(&status.conditions, types::DATA_SYNCED).unwrap();
        assert_eq!(
            (data.status.as_str(), data.reason.as_str()),
            ("False", reasons::DATA_PRUNE_REFUSED)
        );
        assert!(
            data.message.contains("PVC db: the source listing is empty"),
            "{}",
            data.message
        );
        assert!(
            data.message.contains("allowMassDataDeletion"),
            "{}",
            data.message
        );
        let ready = crate::status::find_condition(&status.conditions, types::READY).unwrap();
        assert_eq!(ready.reason, reasons::DATA_PRUNE_REFUSED);
        let db = &status.pvc_sync_status[1];
        assert_eq!((db.pvc.as_str(), db.files_deleted), ("db", 0));
        assert_eq!(db.reason.as_deref(), Some(reasons::DATA_PRUNE_REFUSED));
        assert!(
            db.last_error
                .as_deref()
                .unwrap()
                .contains("listing is empty")
        );
        let err = status.last_error.as_ref().unwrap();
        assert_eq!(err.resource.as_deref(), Some("PersistentVolumeClaim/db"));
    }
}

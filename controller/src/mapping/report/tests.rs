#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dr_syncer_crds::namespace_mapping::{ReplicationMode, RetryStatus};

use super::*;
use crate::dataplane::outcome::{PvcFailure, PvcOutcome};
use crate::mapping::decide::{Run, Unresolvable, Wait};
use crate::status::{find_condition, now, time_from_chrono};
use crate::sync::{KindCounts, ObjectFailure};

fn nm(spec: serde_json::Value) -> NamespaceMapping {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "dr-syncer.io/v1alpha1",
        "kind": "NamespaceMapping",
        "metadata": {"name": "web", "namespace": "dr", "generation": 3},
        "spec": spec,
    }))
    .unwrap()
}

fn manual() -> NamespaceMapping {
    nm(
        serde_json::json!({"sourceNamespace": "web", "sourceCluster": "a", "destinationCluster": "b", "replicationMode": "Manual"}),
    )
}

fn run() -> Run {
    Run {
        mode: ReplicationMode::Manual,
        trigger: Some("1".into()),
        next_sync_time: None,
        schedule: None,
        catch_up: None,
        resumed: false,
        copy_data: false,
    }
}

fn cond<'a>(status: &'a NamespaceMappingStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = find_condition(&status.conditions, type_).unwrap();
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

fn report(failed: u32) -> SyncReport {
    let mut kinds = std::collections::BTreeMap::new();
    kinds.insert(
        "ConfigMap".to_owned(),
        KindCounts {
            created: 2,
            failed,
            ..Default::default()
        },
    );
    SyncReport {
        kinds,
        failures: (0..failed)
            .map(|i| ObjectFailure {
                kind: "ConfigMap".into(),
                name: format!("c{i}"),
                message: "forbidden".into(),
            })
            .collect(),
        scales: vec![("web".into(), 3)],
        prune: PruneOutcome::Done(1),
        duration: Duration::from_millis(1500),
        ..Default::default()
    }
}

/// The status after the resource phase of a sync, from `prev`.
fn after_resources(
    prev: &NamespaceMappingStatus,
    m: &NamespaceMapping,
    result: &Result<SyncReport, SyncError>,
    copying: bool,
    t: &Time,
) -> NamespaceMappingStatus {
    compose(prev, m, Step::Resources { result, copying }, t)
}

/// The status after the data phase of a sync, from `prev`.
fn after_data(
    prev: &NamespaceMappingStatus,
    m: &NamespaceMapping,
    report: &DataSyncReport,
    resources: &SyncReport,
    t: &Time,
) -> NamespaceMappingStatus {
    compose(prev, m, Step::Data { report, resources }, t)
}

#[test]
fn as_read_leaves_the_watch_event_to_the_watchers() {
    let mut m = manual();
    m.status = Some(NamespaceMappingStatus {
        last_watch_event: Some(now()),
        phase: Some(SyncPhase::Completed),
        ..Default::default()
    });
    let read = as_read(&m);
    assert!(read.last_watch_event.is_none());
    assert_eq!(read.phase, Some(SyncPhase::Completed));
}

#[test]
fn decisions_compose_their_conditions() {
    let m = manual();
    let read = NamespaceMappingStatus::default();
    let t = now();
    let paused = compose(&read, &m, Step::Decided(&Decision::Paused), &t);
    assert_eq!(paused.observed_generation, Some(3));
    assert_eq!(paused.phase, Some(SyncPhase::Pending));
    assert_eq!(
        cond(&paused, types::READY),
        (
            "False",
            reasons::PAUSED,
            "spec.paused is true; no syncs run"
        )
    );

    let unresolved = Decision::Unresolved {
        why: Unresolvable {
            reason: reasons::REMOTE_CLUSTER_NOT_FOUND,
            message: "RemoteCluster dr/a not found".into(),
            permanent: true,
            paused: false,
        },
        stop_watchers: false,
        requeue: Duration::from_secs(15),
    };
    let s = compose(&read, &m, Step::Decided(&unresolved), &t);
    assert_eq!(cond(&s, types::READY).0, "False");
    assert_eq!(
        cond(&s, types::STALLED),
        (
            "True",
            reasons::REMOTE_CLUSTER_NOT_FOUND,
            "RemoteCluster dr/a not found"
        )
    );

    let stored = NamespaceMappingStatus {
        next_sync_time: time_from_chrono(chrono::Utc::now()),
        ..Default::default()
    };
    let invalid = Decision::InvalidSchedule {
        message: "bad".into(),
    };
    let s = compose(&stored, &m, Step::Decided(&invalid), &t);
    assert!(s.next_sync_time.is_none());
    assert_eq!(
        cond(&s, types::READY),
        ("False", reasons::INVALID_SCHEDULE, "bad")
    );
    assert_eq!(
        cond(&s, types::STALLED),
        ("True", reasons::INVALID_SCHEDULE, "bad")
    );

    let awaiting = Decision::Wait(Wait {
        next_sync_time: None,
        awaiting_trigger: true,
        requeue: None,
        prune_refusal: None,
    });
    let s = compose(&read, &m, Step::Decided(&awaiting), &t);
    assert_eq!(
        cond(&s, types::READY),
        (
            "False",
            reasons::AWAITING_TRIGGER,
            "Manual mode: set the annotation dr-syncer.io/sync-now to a new value to sync"
        )
    );

    let s = compose(&read, &m, Step::Decided(&Decision::Sync(run())), &t);
    assert_eq!(s.phase, Some(SyncPhase::Running));
    assert_eq!(s.last_sync_now_value.as_deref(), Some("1"));
    assert_eq!(
        cond(&s, types::SYNCED),
        ("False", reasons::SYNC_IN_PROGRESS, "sync in progress")
    );
}

#[test]
fn a_clean_sync_completes_and_clears_data_status() {
    let m = manual();
    let t = now();
    let mut started = compose(
        &NamespaceMappingStatus::default(),
        &m,
        Step::Decided(&Decision::Sync(run())),
        &t,
    );
    started.pvc_sync_status = vec![pvc_status::status_entry(&PvcOutcome {
        pvc: "data".into(),
        node: None,
        attempts: 1,
        duration: Duration::from_secs(1),
        finished: now(),
        result: Err(PvcFailure {
            reason: reasons::AGENT_UNREACHABLE,
            message: "down".into(),
        }),
    })];
    let result = Ok(report(0));
    let s = after_resources(&started, &m, &result, false, &t);
    assert_eq!(s.phase, Some(SyncPhase::Completed));
    assert_eq!(s.last_sync_time, Some(t.clone()));
    assert!(s.last_error.is_none());
    assert!(s.pvc_sync_status.is_empty());
    assert_eq!(s.deployment_scales[0].original_replicas, 3);
    assert_eq!(s.sync_stats.as_ref().unwrap().successful_syncs, 2);
    let message = "synced in 1.5s: ConfigMap: 2 created";
    assert_eq!(
        cond(&s, types::SYNCED),
        ("True", reasons::SYNC_SUCCEEDED, message)
    );
    assert_eq!(
        cond(&s, types::READY),
        ("True", reasons::SYNC_SUCCEEDED, message)
    );
    assert_eq!(cond(&s, types::STALLED), ("False", reasons::SUCCEEDED, ""));
    assert_eq!(
        cond(&s, types::PRUNE_BLOCKED),
        (
            "False",
            reasons::PRUNE_ALLOWED,
            "last prune deleted 1 objects"
        )
    );
    assert_eq!(synced_message(&report(0)), (true, message.to_owned()));
}

#[test]
fn partial_and_failed_syncs_fail_the_phase() {
    let m = manual();
    let t = now();
    let result = Ok(report(1));
    let s = after_resources(&NamespaceMappingStatus::default(), &m, &result, false, &t);
    assert_eq!(s.phase, Some(SyncPhase::Failed));
    assert!(s.last_sync_time.is_none());
    let err = s.last_error.as_ref().unwrap();
    assert_eq!(err.resource.as_deref(), Some("ConfigMap/c0"));
    assert_eq!(cond(&s, types::READY).1, reasons::SYNC_PARTIALLY_FAILED);
    assert_eq!(s.resource_status.len(), 1);

    let error = SyncError::SourceUnavailable {
        cluster: "a".into(),
        message: "down".into(),
    };
    let result = Err(error);
    let s = after_resources(&NamespaceMappingStatus::default(), &m, &result, false, &t);
    assert_eq!(s.phase, Some(SyncPhase::Failed));
    let Err(error) = &result else { unreachable!() };
    assert_eq!(cond(&s, types::SYNCED).1, error.reason());
    assert_eq!(cond(&s, types::STALLED).0, "False");
    assert_eq!(
        s.last_error.as_ref().unwrap().message,
        failed_message(error)
    );
}

#[test]
fn a_data_copy_runs_under_running_then_folds_its_report() {
    let m = manual();
    let t = now();
    let result = Ok(report(0));
    let copying = after_resources(&NamespaceMappingStatus::default(), &m, &result, true, &t);
    assert_eq!(copying.phase, Some(SyncPhase::Running));
    assert_eq!(
        cond(&copying, types::DATA_SYNCED),
        ("False", reasons::DATA_SYNC_IN_PROGRESS, "copying PVC data")
    );
    assert_eq!(cond(&copying, types::SYNCED).0, "True");
    let resources = report(0);
    let ok = DataSyncReport::default();
    let done = after_data(&copying, &m, &ok, &resources, &t);
    assert_eq!(done.phase, Some(SyncPhase::Completed));
    assert_eq!(cond(&done, types::DATA_SYNCED).0, "True");
    let failed = DataSyncReport {
        setup: Some(PvcFailure {
            reason: reasons::PVC_SYNC_DISABLED,
            message: "enable pvcSync".into(),
        }),
        ..Default::default()
    };
    let done = after_data(&copying, &m, &failed, &resources, &t);
    assert_eq!(done.phase, Some(SyncPhase::Failed));
    assert_eq!(cond(&done, types::READY).1, reasons::PVC_SYNC_DISABLED);
}

#[test]
fn the_follow_up_sets_next_fire_and_retries() {
    let m = manual();
    let retry = RetryStatus {
        retries_remaining: 2,
        ..Default::default()
    };
    let next = time_from_chrono(chrono::Utc::now());
    let follow_up = FollowUp {
        next_sync_time: next.clone(),
        retry_status: Some(retry.clone()),
        requeue: None,
    };
    let s = compose(
        &NamespaceMappingStatus::default(),
        &m,
        Step::Done(&follow_up),
        &now(),
    );
    assert_eq!(s.next_sync_time, next);
    assert_eq!(s.retry_status, Some(retry));
}

#[test]
fn unsupported_fields_are_reported_and_cleared() {
    let m = nm(serde_json::json!({
        "sourceNamespace": "web", "sourceCluster": "a", "destinationCluster": "b",
        "replicationMode": "Manual", "syncCRDs": true
    }));
    let s = compose(
        &NamespaceMappingStatus::default(),
        &m,
        Step::Decided(&Decision::Paused),
        &now(),
    );
    // syncCRDs is implemented: not listed.
    assert!(find_condition(&s.conditions, types::UNSUPPORTED_FIELDS).is_none());
}

#[test]
fn foreign_objects_are_named_in_their_condition_and_cleared_when_gone() {
    let m = manual();
    let t = now();
    let mut with_foreign = report(0);
    with_foreign.foreign = (0..25).map(|i| format!("ConfigMap/user-{i}")).collect();
    let s = after_resources(
        &NamespaceMappingStatus::default(),
        &m,
        &Ok(with_foreign),
        false,
        &t,
    );
    let (holds, reason, message) = cond(&s, types::FOREIGN_OBJECTS);
    assert_eq!((holds, reason), ("True", reasons::FOREIGN_OBJECTS_FOUND));
    assert!(message.starts_with("25 destination objects"), "{message}");
    assert!(
        message.contains("ConfigMap/user-0,") && message.contains("and 5 more"),
        "{message}"
    );
    assert!(message.contains("adoptExistingObjects"), "{message}");
    // Skipping foreign objects is not a failed sync.
    assert_eq!(cond(&s, types::READY).0, "True");

    let s = after_resources(&s, &m, &Ok(report(0)), false, &t);
    let (holds, reason, _) = cond(&s, types::FOREIGN_OBJECTS);
    assert_eq!((holds, reason), ("False", reasons::NO_FOREIGN_OBJECTS));
}

#[test]
fn a_continuous_deletion_refusal_blocks_pruning_until_the_next_full_sync() {
    let m = manual();
    let t = now();
    let refused = Decision::Wait(Wait {
        next_sync_time: None,
        awaiting_trigger: false,
        requeue: None,
        prune_refusal: Some("continuous mode did not delete ConfigMap/c11".into()),
    });
    let synced = after_resources(
        &NamespaceMappingStatus::default(),
        &m,
        &Ok(report(0)),
        false,
        &t,
    );
    assert_eq!(
        cond(&synced, types::PRUNE_BLOCKED).1,
        reasons::PRUNE_ALLOWED
    );
    let s = compose(&synced, &m, Step::Decided(&refused), &t);
    assert_eq!(
        cond(&s, types::PRUNE_BLOCKED),
        (
            "True",
            reasons::CONTINUOUS_PRUNE_REFUSED,
            "continuous mode did not delete ConfigMap/c11"
        )
    );
    let s = after_resources(&s, &m, &Ok(report(0)), false, &t);
    assert_eq!(cond(&s, types::PRUNE_BLOCKED).1, reasons::PRUNE_ALLOWED);
}

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::mapping::act::record_catch_up;
use crate::sync::SyncError;

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

/// `base` with the given fields replaced.
fn merged(mut base: serde_json::Value, fields: serde_json::Value) -> serde_json::Value {
    for (k, v) in fields.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// `base_spec` with the given fields replaced.
fn spec(fields: serde_json::Value) -> serde_json::Value {
    merged(base_spec(), fields)
}

fn at(s: &str) -> chrono::DateTime<Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&Utc)
}

fn t(s: &str) -> Option<Time> {
    time_from_chrono(at(s))
}

fn resolved() -> Observed {
    Observed {
        references: Some(Ok(References {
            source_cluster: "dr/a".into(),
            default_schedule: None,
        })),
        synced_here: true,
        watchers_restarted: false,
        watch_prune_refusal: None,
    }
}

fn run(mode: ReplicationMode) -> Run {
    Run {
        mode,
        trigger: None,
        next_sync_time: None,
        schedule: None,
        catch_up: None,
        resumed: false,
        copy_data: false,
    }
}

fn wait(next_sync_time: Option<Time>, awaiting_trigger: bool, requeue: Option<u64>) -> Decision {
    Decision::Wait(Wait {
        next_sync_time,
        awaiting_trigger,
        requeue: requeue.map(Duration::from_millis),
        prune_refusal: None,
    })
}

fn every_minute() -> Option<Schedule> {
    Some(Schedule::parse("*/1 * * * *", None).unwrap())
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

#[test]
fn wants_data_follows_pvc_config() {
    let m = |pvc: serde_json::Value| {
        nm(
            serde_json::json!({}),
            spec(serde_json::json!({"pvcConfig": pvc})),
        )
    };
    assert!(wants_data(&m(serde_json::json!({"syncData": true}))));
    assert!(!wants_data(&m(serde_json::json!({"syncData": false}))));
}

/// One row: a mapping (annotations, spec), its status as read, the observations, the
/// time, and the decision expected.
struct Case {
    name: &'static str,
    annotations: serde_json::Value,
    spec: serde_json::Value,
    status: NamespaceMappingStatus,
    observed: Observed,
    now: &'static str,
    want: Decision,
}

/// The plain row: a Manual mapping without annotations or status, its references
/// resolved, at `now`, expected to pause (each row names what differs).
fn row(now: &'static str) -> Case {
    Case {
        name: "",
        annotations: serde_json::json!({}),
        spec: base_spec(),
        status: NamespaceMappingStatus::default(),
        observed: resolved(),
        now,
        want: Decision::Paused,
    }
}

#[test]
fn decide_table() {
    let now = "2026-01-01T10:00:30Z";
    let synced = |s: &str| NamespaceMappingStatus {
        observed_generation: Some(1),
        last_sync_time: t(s),
        ..Default::default()
    };
    let unresolvable = |reason, permanent, paused| Unresolvable {
        reason,
        message: "why".into(),
        permanent,
        paused,
    };
    let unresolved = |why: Unresolvable| Observed {
        references: Some(Err(why)),
        ..resolved()
    };
    let retrying = |next: &str| NamespaceMappingStatus {
        observed_generation: Some(1),
        last_sync_time: t("2026-01-01T09:00:00Z"),
        retry_status: Some(RetryStatus {
            next_retry_time: t(next),
            retries_remaining: 2,
            backoff_duration: Some("1s".into()),
        }),
        ..Default::default()
    };
    let scheduled = |fields: serde_json::Value| {
        merged(
            spec(serde_json::json!({"replicationMode": "Scheduled", "schedule": "*/1 * * * *"})),
            fields,
        )
    };
    let continuous = |fields| {
        merged(
            spec(serde_json::json!({"replicationMode": "Continuous"})),
            fields,
        )
    };
    // Synced at 10:00 with the 10:01 fire stored.
    let next_fire_stored = || NamespaceMappingStatus {
        next_sync_time: t("2026-01-01T10:01:00Z"),
        ..synced("2026-01-01T10:00:00Z")
    };
    // A sync of the every-minute schedule, keeping `next` as the next fire.
    let scheduled_sync = |next: Option<Time>, catch_up: Option<CatchUp>| {
        Decision::Sync(Run {
            next_sync_time: next,
            schedule: every_minute(),
            catch_up,
            ..run(ReplicationMode::Scheduled)
        })
    };
    let none = serde_json::json!({});
    let cases = vec![
        Case {
            name: "spec.paused wins over everything",
            annotations: serde_json::json!({SYNC_NOW: "1"}),
            spec: spec(serde_json::json!({"paused": true})),
            want: Decision::Paused,
            ..row(now)
        },
        Case {
            name: "references not looked up: paused",
            observed: Observed::default(),
            want: Decision::Paused,
            ..row(now)
        },
        Case {
            name: "missing RemoteCluster: stalled, look again in 15s",
            observed: unresolved(unresolvable("RemoteClusterNotFound", true, false)),
            want: Decision::Unresolved {
                why: unresolvable("RemoteClusterNotFound", true, false),
                stop_watchers: false,
                requeue: Duration::from_secs(15),
            },
            ..row(now)
        },
        Case {
            name: "RemoteCluster not ready: transient, 15s",
            annotations: serde_json::json!({SYNC_NOW: "1"}),
            observed: unresolved(unresolvable("RemoteClusterNotReady", false, false)),
            want: Decision::Unresolved {
                why: unresolvable("RemoteClusterNotReady", false, false),
                stop_watchers: false,
                requeue: Duration::from_secs(15),
            },
            ..row(now)
        },
        Case {
            name: "paused ClusterMapping: watchers stop, 60s",
            observed: unresolved(unresolvable("Paused", false, true)),
            want: Decision::Unresolved {
                why: unresolvable("Paused", false, true),
                stop_watchers: true,
                requeue: Duration::from_secs(60),
            },
            ..row(now)
        },
        Case {
            name: "Manual never synced: awaiting the trigger",
            want: wait(None, true, None),
            ..row(now)
        },
        Case {
            name: "Manual synced before: wait quietly",
            status: synced("2026-01-01T09:00:00Z"),
            want: wait(None, false, None),
            ..row(now)
        },
        Case {
            name: "Manual trigger pending: sync",
            annotations: serde_json::json!({SYNC_NOW: "1"}),
            status: synced("2026-01-01T09:00:00Z"),
            want: Decision::Sync(Run {
                trigger: Some("1".into()),
                ..run(ReplicationMode::Manual)
            }),
            ..row(now)
        },
        Case {
            name: "Manual trigger already handled: wait",
            annotations: serde_json::json!({SYNC_NOW: "1"}),
            status: NamespaceMappingStatus {
                last_sync_now_value: Some("1".into()),
                ..synced("2026-01-01T09:00:00Z")
            },
            want: wait(None, false, None),
            ..row(now)
        },
        Case {
            name: "retry not due: wait for it",
            status: retrying("2026-01-01T10:00:40Z"),
            want: wait(None, false, Some(10_020)),
            ..row(now)
        },
        Case {
            name: "retry due: sync",
            status: retrying("2026-01-01T10:00:30Z"),
            want: Decision::Sync(run(ReplicationMode::Manual)),
            ..row(now)
        },
        Case {
            name: "Running left by a dead controller: resume",
            status: NamespaceMappingStatus {
                phase: Some(SyncPhase::Running),
                ..synced("2026-01-01T09:00:00Z")
            },
            observed: Observed {
                synced_here: false,
                ..resolved()
            },
            want: Decision::Sync(Run {
                resumed: true,
                ..run(ReplicationMode::Manual)
            }),
            ..row(now)
        },
        Case {
            name: "Running written by this process: no resume",
            status: NamespaceMappingStatus {
                phase: Some(SyncPhase::Running),
                ..synced("2026-01-01T09:00:00Z")
            },
            want: wait(None, false, None),
            ..row(now)
        },
        Case {
            name: "syncData: the run copies data",
            annotations: serde_json::json!({SYNC_NOW: "1"}),
            spec: spec(serde_json::json!({"pvcConfig": {"syncData": true}})),
            status: synced("2026-01-01T09:00:00Z"),
            want: Decision::Sync(Run {
                trigger: Some("1".into()),
                copy_data: true,
                ..run(ReplicationMode::Manual)
            }),
            ..row(now)
        },
        Case {
            name: "Scheduled without any schedule: invalid",
            spec: spec(serde_json::json!({"replicationMode": "Scheduled"})),
            want: Decision::InvalidSchedule {
                message:
                    "Scheduled mode needs spec.schedule, or a defaultSchedule on RemoteCluster dr/a"
                        .into(),
            },
            ..row(now)
        },
        Case {
            name: "Scheduled with a bad expression: invalid, even with a trigger",
            annotations: serde_json::json!({SYNC_NOW: "1"}),
            spec: scheduled(serde_json::json!({"schedule": "nope"})),
            want: Decision::InvalidSchedule {
                message: format!(
                    "spec.schedule \"nope\" is invalid: {}",
                    Schedule::parse("nope", None).unwrap_err()
                ),
            },
            ..row(now)
        },
        Case {
            name: "Scheduled first run waits for the next fire",
            spec: scheduled(none.clone()),
            want: wait(t("2026-01-01T10:01:00Z"), false, Some(30_020)),
            ..row(now)
        },
        Case {
            name: "Scheduled uses the RemoteCluster's defaultSchedule",
            spec: spec(serde_json::json!({"replicationMode": "Scheduled"})),
            observed: Observed {
                references: Some(Ok(References {
                    source_cluster: "dr/a".into(),
                    default_schedule: Some("*/1 * * * *".into()),
                })),
                ..resolved()
            },
            want: wait(t("2026-01-01T10:01:00Z"), false, Some(30_020)),
            ..row(now)
        },
        Case {
            name: "Scheduled stored next fire not reached: wait",
            spec: scheduled(none.clone()),
            status: next_fire_stored(),
            now: "2026-01-01T10:00:59Z",
            want: wait(t("2026-01-01T10:01:00Z"), false, Some(1_020)),
            ..row(now)
        },
        Case {
            name: "Scheduled stored next fire reached: sync, no catch-up",
            spec: scheduled(none.clone()),
            status: next_fire_stored(),
            now: "2026-01-01T10:01:00Z",
            want: scheduled_sync(t("2026-01-01T10:01:00Z"), None),
            ..row(now)
        },
        Case {
            name: "Scheduled fire missed while down: one catch-up sync",
            spec: scheduled(none.clone()),
            status: next_fire_stored(),
            now: "2026-01-01T10:05:10Z",
            want: scheduled_sync(
                t("2026-01-01T10:01:00Z"),
                Some(CatchUp {
                    fire: at("2026-01-01T10:01:00Z"),
                    missed: 5,
                }),
            ),
            ..row(now)
        },
        Case {
            name: "Scheduled status lost: lastSyncTime shows a missed fire",
            spec: scheduled(none.clone()),
            status: synced("2026-01-01T10:00:00Z"),
            now: "2026-01-01T10:03:10Z",
            want: scheduled_sync(
                None,
                Some(CatchUp {
                    fire: at("2026-01-01T10:01:00Z"),
                    missed: 3,
                }),
            ),
            ..row(now)
        },
        Case {
            name: "Scheduled spec changed: the stored fire is recomputed from now",
            spec: scheduled(none.clone()),
            status: NamespaceMappingStatus {
                observed_generation: None,
                next_sync_time: t("2026-01-01T09:00:00Z"),
                ..synced("2026-01-01T08:00:00Z")
            },
            want: wait(t("2026-01-01T10:01:00Z"), false, Some(30_020)),
            ..row(now)
        },
        Case {
            name: "Scheduled with a trigger before the fire: sync, next fire kept",
            annotations: serde_json::json!({SYNC_NOW: "1"}),
            spec: scheduled(none.clone()),
            want: Decision::Sync(Run {
                trigger: Some("1".into()),
                next_sync_time: t("2026-01-01T10:01:00Z"),
                schedule: every_minute(),
                ..run(ReplicationMode::Scheduled)
            }),
            ..row(now)
        },
        Case {
            name: "Continuous never synced: full sync",
            spec: continuous(none.clone()),
            status: NamespaceMappingStatus {
                observed_generation: Some(1),
                ..Default::default()
            },
            want: Decision::Sync(run(ReplicationMode::Continuous)),
            ..row(now)
        },
        Case {
            name: "Continuous watchers restarted: full sync",
            spec: continuous(none.clone()),
            status: synced("2026-01-01T10:00:00Z"),
            observed: Observed {
                watchers_restarted: true,
                ..resolved()
            },
            want: Decision::Sync(run(ReplicationMode::Continuous)),
            ..row(now)
        },
        Case {
            name: "Continuous spec changed: full sync",
            spec: continuous(none.clone()),
            status: NamespaceMappingStatus {
                observed_generation: None,
                ..synced("2026-01-01T10:00:00Z")
            },
            want: Decision::Sync(run(ReplicationMode::Continuous)),
            ..row(now)
        },
        Case {
            name: "Continuous within the background interval: wait for it",
            spec: continuous(none.clone()),
            status: synced("2026-01-01T10:00:00Z"),
            want: wait(None, false, Some(3_570_020)),
            ..row(now)
        },
        Case {
            name: "Continuous background interval passed: full sync",
            spec: continuous(serde_json::json!({"continuous": {"backgroundSyncInterval": "30s"}})),
            status: synced("2026-01-01T10:00:00Z"),
            want: Decision::Sync(run(ReplicationMode::Continuous)),
            ..row(now)
        },
        Case {
            name: "Continuous custom interval not passed: wait",
            spec: continuous(serde_json::json!({"continuous": {"backgroundSyncInterval": "1m"}})),
            status: synced("2026-01-01T10:00:00Z"),
            want: wait(None, false, Some(30_020)),
            ..row(now)
        },
    ];
    for case in cases {
        let m = nm(case.annotations, case.spec);
        let got = decide(&m, &case.status, &case.observed, at(case.now));
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn watch_step_table() {
    let cases = [
        (
            "Manual: no watchers",
            serde_json::json!({"replicationMode": "Manual"}),
            WatchStep::Stop,
        ),
        (
            "Scheduled: no watchers",
            serde_json::json!({"replicationMode": "Scheduled"}),
            WatchStep::Stop,
        ),
        (
            "Continuous: watchers",
            serde_json::json!({"replicationMode": "Continuous"}),
            WatchStep::Run,
        ),
        (
            "Continuous without watchResources: no watchers",
            serde_json::json!({"replicationMode": "Continuous", "continuous": {"watchResources": false}}),
            WatchStep::Stop,
        ),
    ];
    for (name, fields, want) in cases {
        let m = nm(serde_json::json!({}), spec(fields));
        assert_eq!(watch_step(&m), want, "{name}");
    }
}

#[test]
fn missed_run_after_downtime_runs_once() {
    // Controller was down from 10:00:30 to 10:05:10: one catch-up sync, counted.
    let status = NamespaceMappingStatus {
        next_sync_time: time_from_chrono(at("2026-01-01T10:01:00Z")),
        last_sync_time: time_from_chrono(at("2026-01-01T10:00:00Z")),
        ..Default::default()
    };
    let m = nm(serde_json::json!({}), base_spec());
    let schedule = Schedule::parse("*/1 * * * *", None).unwrap();
    let metrics = crate::metrics::Metrics::new();
    let d = scheduled(&schedule, &status, false, at("2026-01-01T10:05:10Z"));
    assert_eq!(d.due, Due::Now);
    record_catch_up(&metrics, &m, &d.catch_up.unwrap());
    assert!(
        metrics
            .render()
            .contains(r#"dr_syncer_missed_schedules_total{namespace="dr",mapping="web"} 5"#),
        "{}",
        metrics.render()
    );
}

#[test]
fn after_success_sets_next_sync_time() {
    let m = nm(serde_json::json!({}), base_spec());
    let schedule = Schedule::parse("0 3 * * *", None).unwrap();
    let status = NamespaceMappingStatus::default();
    let r = Run {
        schedule: Some(schedule),
        ..run(ReplicationMode::Scheduled)
    };
    let follow_up = after_sync(
        &m,
        &r,
        &status,
        Verdict::Synced { all_ok: true },
        Utc::now(),
    );
    assert!(follow_up.next_sync_time.is_some());
    assert_ne!(follow_up.action(), Action::await_change());
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
    let failed = Verdict::Failed {
        permanent: error.is_permanent(),
    };
    // Folds a failure's follow-up into the status, as the report does.
    let after_failure = |mode, status: &mut NamespaceMappingStatus| {
        let follow_up = after_sync(&m, &run(mode), status, failed, Utc::now());
        status.retry_status = follow_up.retry_status.clone();
        follow_up.action()
    };
    let mut status = NamespaceMappingStatus::default();
    after_failure(ReplicationMode::Manual, &mut status);
    let r = status.retry_status.clone().unwrap();
    assert_eq!(r.retries_remaining, 2);
    assert_eq!(r.backoff_duration.as_deref(), Some("1s"));
    after_failure(ReplicationMode::Manual, &mut status);
    let r = status.retry_status.clone().unwrap();
    assert_eq!(r.retries_remaining, 1);
    assert_eq!(r.backoff_duration.as_deref(), Some("2s"));
    let action = after_failure(ReplicationMode::Manual, &mut status);
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
    after_failure(ReplicationMode::Continuous, &mut status);
    assert_eq!(
        status.retry_status.unwrap().backoff_duration.as_deref(),
        Some("10s")
    );
}

/// One row of the follow-up table.
struct After {
    name: &'static str,
    run: Run,
    retry: Option<RetryStatus>,
    verdict: Verdict,
    want: FollowUp,
}

#[test]
fn after_sync_table() {
    let m = nm(
        serde_json::json!({}),
        spec(serde_json::json!({
            "retryConfig": {"maxRetries": 2, "initialBackoff": "1s", "maxBackoff": "10s"},
            "continuous": {"backgroundSyncInterval": "5m"}
        })),
    );
    let now = at("2026-01-01T10:00:30Z");
    let scheduled = Run {
        schedule: every_minute(),
        next_sync_time: t("2026-01-01T10:00:00Z"),
        ..run(ReplicationMode::Scheduled)
    };
    let next_fire = t("2026-01-01T10:01:00Z");
    let retry = |remaining, next: &str, backoff: &str| {
        Some(RetryStatus {
            next_retry_time: t(next),
            retries_remaining: remaining,
            backoff_duration: Some(backoff.into()),
        })
    };
    let previous = retry(1, "2026-01-01T10:00:00Z", "1s");
    let follow = |next_sync_time, retry_status, requeue: Option<u64>| FollowUp {
        next_sync_time,
        retry_status,
        requeue: requeue.map(Duration::from_millis),
    };
    let ok = Verdict::Synced { all_ok: true };
    let partial = Verdict::Synced { all_ok: false };
    let transient = Verdict::Failed { permanent: false };
    let permanent = Verdict::Failed { permanent: true };
    let cases = vec![
        After {
            name: "Manual success: wait for the next trigger, retries cleared",
            run: run(ReplicationMode::Manual),
            retry: previous.clone(),
            verdict: ok,
            want: follow(None, None, None),
        },
        After {
            name: "partial success keeps the retry state",
            run: run(ReplicationMode::Manual),
            retry: previous.clone(),
            verdict: partial,
            want: follow(None, previous.clone(), None),
        },
        After {
            name: "Scheduled success: the next fire",
            run: scheduled.clone(),
            retry: None,
            verdict: ok,
            want: follow(next_fire.clone(), None, Some(30_020)),
        },
        After {
            name: "Continuous success: the background interval",
            run: run(ReplicationMode::Continuous),
            retry: None,
            verdict: ok,
            want: follow(None, None, Some(300_000)),
        },
        After {
            name: "permanent failure: no retries, look again in a minute",
            run: run(ReplicationMode::Manual),
            retry: previous.clone(),
            verdict: permanent,
            want: follow(None, None, Some(60_000)),
        },
        After {
            name: "Scheduled permanent failure keeps the schedule",
            run: scheduled.clone(),
            retry: None,
            verdict: permanent,
            want: follow(next_fire.clone(), None, Some(60_000)),
        },
        After {
            name: "first failure: every retry left, initial backoff",
            run: run(ReplicationMode::Manual),
            retry: None,
            verdict: transient,
            want: follow(None, retry(2, "2026-01-01T10:00:31Z", "1s"), Some(1_020)),
        },
        After {
            name: "second failure: one retry left, doubled backoff",
            run: run(ReplicationMode::Manual),
            retry: retry(2, "2026-01-01T10:00:00Z", "1s"),
            verdict: transient,
            want: follow(None, retry(1, "2026-01-01T10:00:32Z", "2s"), Some(2_020)),
        },
        After {
            name: "Manual out of retries: wait for a trigger",
            run: run(ReplicationMode::Manual),
            retry: previous.clone(),
            verdict: transient,
            want: follow(None, None, None),
        },
        After {
            name: "Scheduled out of retries: the next fire",
            run: scheduled.clone(),
            retry: previous.clone(),
            verdict: transient,
            want: follow(next_fire.clone(), None, Some(30_020)),
        },
        After {
            name: "Continuous out of retries: the longest backoff, forever",
            run: run(ReplicationMode::Continuous),
            retry: previous.clone(),
            verdict: transient,
            want: follow(None, retry(0, "2026-01-01T10:00:40Z", "10s"), Some(10_020)),
        },
    ];
    for case in cases {
        let status = NamespaceMappingStatus {
            retry_status: case.retry,
            ..Default::default()
        };
        let got = after_sync(&m, &case.run, &status, case.verdict, now);
        assert_eq!(got, case.want, "{}", case.name);
    }
}

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::*;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value, "{json}");
    json
}

fn summary() -> SyncSummary {
    SyncSummary {
        files_scanned: 1,
        files_transferred: 2,
        files_deleted: 3,
        literal_bytes: 4,
        matched_bytes: 5,
        wire_bytes: 6,
        duration_seconds: 1.5,
        total_size: 7,
        other_entries_changed: 8,
        metadata_updated: 9,
        files_vanished: 10,
        files_verified: 11,
        dry_run: true,
        prune_refused: None,
    }
}

#[test]
fn sync_summary_field_names_are_pinned() {
    assert_eq!(
        round_trip(&summary()),
        r#"{"files_scanned":1,"files_transferred":2,"files_deleted":3,"literal_bytes":4,"matched_bytes":5,"wire_bytes":6,"duration_seconds":1.5,"total_size":7,"other_entries_changed":8,"metadata_updated":9,"files_vanished":10,"files_verified":11,"dry_run":true}"#
    );
    // Missing counters (an older worker) read as zero.
    let old: SyncSummary =
        serde_json::from_str(r#"{"files_scanned":10,"wire_bytes":150}"#).unwrap();
    assert_eq!(
        old,
        SyncSummary {
            files_scanned: 10,
            wire_bytes: 150,
            ..SyncSummary::default()
        }
    );
}

#[test]
fn prune_refused_is_pinned_and_optional() {
    let refused = SyncSummary {
        files_scanned: 0,
        prune_refused: Some("source listing is empty".into()),
        ..SyncSummary::default()
    };
    let json = round_trip(&refused);
    assert!(
        json.ends_with(r#","dry_run":false,"prune_refused":"source listing is empty"}"#),
        "{json}"
    );
    // Absent when nothing was refused, so an older controller sees the old shape...
    assert!(!round_trip(&summary()).contains("prune_refused"));
    // ...and an older worker's summary (no field) reads as "nothing refused".
    let old: SyncSummary = serde_json::from_str(r#"{"files_deleted":2}"#).unwrap();
    assert_eq!((old.files_deleted, old.prune_refused), (2, None));
    // A null from some other writer is also "nothing refused".
    let null: SyncSummary = serde_json::from_str(r#"{"prune_refused":null}"#).unwrap();
    assert_eq!(null.prune_refused, None);
}

#[test]
fn failure_report_field_names_are_pinned() {
    let failure = FailureReport {
        error: "host key mismatch".into(),
        kind: kind::HOST_KEY_MISMATCH.into(),
        transient: false,
        attempts: 2,
    };
    assert_eq!(
        round_trip(&failure),
        r#"{"error":"host key mismatch","kind":"host_key_mismatch","transient":false,"attempts":2}"#
    );
    let short: FailureReport = serde_json::from_str(r#"{"error":"x","kind":"key"}"#).unwrap();
    assert_eq!((short.transient, short.attempts), (false, 0));
    // A failure report does not parse as a check report (how the controller tells them apart).
    assert!(serde_json::from_str::<CheckReport>(r#"{"error":"x","kind":"key"}"#).is_err());
}

#[test]
fn check_report_field_names_are_pinned() {
    let report = CheckReport {
        check: true,
        connected: 1,
        total: 2,
        agents: vec![
            AgentCheck {
                agent: "10.0.0.1:2222".into(),
                connected: true,
                error: None,
                kind: None,
            },
            AgentCheck {
                agent: "10.0.0.2:2222".into(),
                connected: false,
                error: Some("authentication refused".into()),
                kind: Some(kind::AUTH_REJECTED.into()),
            },
        ],
    };
    assert_eq!(
        round_trip(&report),
        r#"{"check":true,"connected":1,"total":2,"agents":[{"agent":"10.0.0.1:2222","connected":true},{"agent":"10.0.0.2:2222","connected":false,"error":"authentication refused","kind":"auth_rejected"}]}"#
    );
}

#[test]
fn kinds_are_pinned() {
    assert_eq!(
        [
            kind::KEY,
            kind::OPTION,
            kind::HOST_KEY_MISMATCH,
            kind::AUTH_REJECTED,
            kind::CONNECTION,
            kind::SYNC,
            kind::TIMEOUT,
            kind::SOURCE_VOLUME_UNSAFE,
            kind::TARGET_BUSY,
        ],
        [
            "key",
            "option",
            "host_key_mismatch",
            "auth_rejected",
            "connection",
            "sync",
            "timeout",
            "source_volume_unsafe",
            "target_busy"
        ]
    );
}

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;
use crate::status::reasons;

fn terminated_pod(phase: &str, message: &str, reason: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "w"},
        "status": {
            "phase": phase,
            "reason": reason,
            "containerStatuses": [{
                "name": "worker", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "message": message}},
            }],
        },
    }))
    .unwrap()
}

#[test]
fn success_summary_is_parsed() {
    let msg = r#"{"files_scanned":10,"files_transferred":3,"files_deleted":1,"literal_bytes":100,"matched_bytes":900,"wire_bytes":150,"duration_seconds":1.5,"total_size":1000,"other_entries_changed":0,"metadata_updated":0,"files_vanished":0,"dry_run":false}"#;
    let s = result_from_pod(&terminated_pod("Succeeded", msg, None)).unwrap();
    assert_eq!(s.files_scanned, 10);
    assert_eq!(s.matched_bytes, 900);
    assert_eq!(s.wire_bytes, 150);
}

#[test]
fn failure_kinds_map_to_reasons() {
    let fail = |kind: &str, transient: bool, error: &str| {
        let msg = json!({"error": error, "kind": kind, "transient": transient, "attempts": 2})
            .to_string();
        result_from_pod(&terminated_pod("Failed", &msg, None)).unwrap_err()
    };
    let e = fail("host_key_mismatch", false, "host key mismatch");
    assert_eq!(e.reason(), reasons::HOST_KEY_MISMATCH);
    assert!(!e.is_transient());
    assert_eq!(
        fail("auth_rejected", false, "x").reason(),
        reasons::AUTH_REJECTED
    );
    let e = fail("connection", true, "connection refused");
    assert_eq!(e.reason(), reasons::AGENT_UNREACHABLE);
    assert!(e.is_transient());
    assert!(e.to_string().contains("connection refused"));
    assert!(fail("sync", true, "reset").is_transient());
    assert!(!fail("sync", false, "disk full").is_transient());
    assert!(!fail("option", false, "bad").is_transient());
    assert_eq!(
        fail("sync", false, "volume app/data is not on node n2").reason(),
        reasons::VOLUME_NOT_MOUNTED
    );
    // The safety refusals: an unsafe source is not retried, a busy target is.
    let e = fail(
        "source_volume_unsafe",
        false,
        "peer error: volume refused: source volume unsafe: volume app/data: no pod using it on node n1 is Running",
    );
    assert_eq!(e.reason(), reasons::SOURCE_VOLUME_UNSAFE);
    assert!(!e.is_transient());
    let e = fail(
        "target_busy",
        true,
        "another pull is writing into this destination",
    );
    assert_eq!(e.reason(), reasons::TARGET_BUSY);
    assert!(e.is_transient());
    // A pod killed by its deadline without a report: a transient timeout.
    let e = result_from_pod(&terminated_pod("Failed", "", Some("DeadlineExceeded"))).unwrap_err();
    assert!(e.is_transient());
    assert!(e.to_string().contains("DeadlineExceeded"), "{e}");
    // Succeeded without a summary is a failure too.
    assert!(result_from_pod(&terminated_pod("Succeeded", "garbage", None)).is_err());
}

#[test]
fn check_result_reads_the_report_and_the_node() {
    let report = r#"{"check":true,"connected":1,"total":1,"agents":[{"agent":"10.0.0.1:2222","connected":true}]}"#;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "dr-syncer-check-x-abcde"},
        "spec": {"nodeName": "t-1", "containers": [{"name": "check"}]},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{
                "name": "check", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "message": report}},
            }],
        },
    }))
    .unwrap();
    let outcome = check_result(&pod).unwrap();
    assert_eq!(outcome.node, "t-1");
    assert_eq!(outcome.report.agents[0].agent, "10.0.0.1:2222");
    assert!(outcome.report.agents[0].connected);
    let err = check_report("garbage").unwrap_err();
    assert!(
        err.to_string().starts_with("unreadable check result: "),
        "{err}"
    );
}

//! The generated CRDs and the fixtures, checked by the Kubernetes 1.35 API server's own
//! validation code (`crds/tools/crdcheck`, Go): the CRDs are accepted (structural schema,
//! CEL compilation and cost budget), every valid fixture is accepted, every invalid one is
//! rejected with the message its `# expect:` line names.
//!
//! Ignored by default because it needs the Go toolchain and, on a cold module cache,
//! downloads and builds k8s.io/apiextensions-apiserver (minutes). Run it with
//! `cargo test -p dr-syncer-crds --test api_server -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "needs Go and the k8s.io/apiextensions-apiserver module (slow cold build)"]
fn crds_and_fixtures_pass_the_api_servers_own_validation() {
    let crds = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("go")
        .args(["run", "."])
        .arg(crds.join("../deploy/crds"))
        .arg(crds.join("tests/fixtures"))
        .current_dir(crds.join("tools/crdcheck"))
        .output()
        .expect("the go toolchain runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "crdcheck failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains("CRD namespacemappings.dr-syncer.io.yaml: 0 errors"),
        "{report}"
    );
    assert!(!report.contains("FAIL"), "{report}");
}

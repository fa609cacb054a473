//! Shared helpers for the e2e tests: one test bed per test binary (startup cost), a fresh
//! namespace per test (independence), and watch-based waits with deadlines.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::LazyLock;
use std::time::Duration;

use dr_syncer_e2e::{TestBed, TestBedOptions};
use kube::Client;
use kube::api::Api;
use serde::de::DeserializeOwned;

/// The cluster the shared test bed runs.
pub const CLUSTER: &str = "source";
/// Nodes in the shared test bed's cluster.
pub const NODES: usize = 2;
/// Generous deadline for anything a real cluster does (scheduling, binding, controllers) on
/// a busy 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// One test bed for the whole test binary. A `static` is never dropped, so the supervisor is
/// told to stop by itself when this process exits (`--owner-pid`).
pub static BED: LazyLock<TestBed> = LazyLock::new(|| {
    let mut opts = TestBedOptions::new(env!("CARGO_BIN_EXE_testbed"), &[CLUSTER], NODES);
    opts.owner_pid = Some(std::process::id());
    TestBed::start(&opts).expect("starting the shared test bed")
});

/// Runs a command to its end and returns its stdout, failing the test with its stderr when
/// it did not succeed (kubectl, ssh-keygen).
pub fn output_ok(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A client for the shared bed's cluster (starting the bed on first use).
pub async fn client() -> Client {
    let bed = tokio::task::spawn_blocking(|| &*BED).await.unwrap();
    bed.client(CLUSTER).await.unwrap()
}

/// Creates a fresh namespace `<prefix>-<n>` and returns its name.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = namespaces::namespace(client, prefix).await;
    // Pods are refused until the namespace has its default service account.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &name);
    wait_for(&sas, "default", |sa: Option<&_>| sa.is_some()).await;
    name
}

// The waits of the controller tests (`dr_syncer_e2e::wait` wrappers), over this bed's
// [`DEADLINE`].
#[path = "../controller_support/namespaces.rs"]
mod namespaces;
#[path = "../controller_support/waits.rs"]
mod waits;
pub use waits::{poll_until, wait_for};

/// Parses a YAML manifest into any typed object.
pub fn yaml<K: DeserializeOwned>(text: &str) -> K {
    serde_saphyr::from_str(text).unwrap()
}

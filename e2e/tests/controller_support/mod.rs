//! Shared helpers of the controller e2e tests: one test bed (controller, source and target
//! clusters) per test binary, the CRDs installed once, the real `dr-syncer-controller`
//! binary run as a child process per test (tests take a lock, so one controller at a time
//! reconciles), and per-test namespaces in every cluster.
//!
//! - [`bed`]: the bed, its clients with the CRDs installed, the serial lock.
//! - [`process`]: the controller as a child process (readiness, metrics, kill).
//! - [`namespaces`]: fresh namespaces.
//! - [`objects`]: Secrets, the bed's RemoteClusters, server-side apply of YAML
//!   or typed objects, the trigger annotation.
//! - [`scenario`]: the starting point of a test (lock, namespaces, RemoteClusters).
//! - [`fixtures`]: builders of NamespaceMapping, ClusterMapping and RemoteCluster objects.
//! - [`waits`]: waits with deadlines (over `dr_syncer_e2e::wait`) and status conditions.

// Each test binary uses a part of the support (and of its re-exports).
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod bed;
pub mod fixtures;
pub mod namespaces;
pub mod objects;
pub mod process;
pub mod scenario;
pub mod waits;

pub use bed::*;
pub use fixtures::*;
pub use namespaces::*;
pub use objects::*;
pub use process::*;
pub use scenario::*;
pub use waits::*;

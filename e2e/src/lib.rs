//! The local multi-cluster test bed: N real Kubernetes control planes (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, built from Go modules by
//! `scripts/build-controlplane.sh`) on loopback, each with M simulated nodes that run pods
//! as local processes, and a hostPath storage provisioner. See `docs/testing.md`.
//!
//! Process model: `testbed up` spawns a detached supervisor (`testbed run`) that owns every
//! process of the test bed and reports through `DIR/state.json`; `testbed down` stops it and
//! verifies nothing is left. [`TestBed`] drives the same binary from tests.

// Control plane and lifecycle.
pub mod alloc;
pub mod cleanup;
pub mod cluster;
pub mod ctl;
pub mod kubeconfig;
pub mod layout;
pub mod pki;
pub mod process;
pub mod readiness;
pub mod state;
pub mod supervisor;
pub mod testbed;

// Simulated nodes, the OCI images they can run, and storage.
pub mod fsio;
pub mod node;
pub mod oci;
pub mod storage;

// In-cluster helper run by pods of the `dr-syncer-e2e-probe` image.
pub mod probe;

// Waiting with a deadline, for the tests.
pub mod wait;

pub use testbed::{TestBed, TestBedOptions};

//! The DR-Syncer controller: reconciles `RemoteCluster`, `ClusterMapping` and
//! `NamespaceMapping` objects and replicates namespaces (and PVC data) between clusters.
//!
//! Modules, in layers: a module uses only modules of its own layer's ground or below, and
//! no two modules import each other (`tests/architecture.rs` checks it; docs/architecture.md
//! has the map).
//!
//! Ground floor, pure or plumbing:
//! - [`status`]: condition types, reasons and status helpers (one vocabulary).
//! - [`schedule`]: when a Scheduled mapping fires (CronJob-dialect cron + time zones).
//! - [`replicate`]: the pure replication rules (kinds, selection, transforms, marks, pruning).
//! - [`k8s`]: server-side apply, events, waits by watch and message limits.
//! - [`safety`]: the guards on a mapping's ends (never into the source, protected
//!   namespaces, overlapping mappings), as pure rules.
//!
//! Engines, taking explicit clients (no reconciler state):
//! - [`clusters`]: RemoteCluster clients (registry, connect), conditions and its reconciler.
//! - [`discovery`]: which kinds a source cluster serves, cached.
//! - [`sync`]: the engine of one resource sync (plan, full sync, apply, prune, CRDs).
//! - [`watchers`]: Continuous-mode per-object propagation.
//! - [`dataplane`]: PVC data: agents, keys, locating volumes, the worker-pod runner, and the
//!   per-PVC orchestration.
//! - [`metrics`], [`http`]: Prometheus and probes; [`leader`]: Lease-based leader election.
//!
//! Reconcilers, taking the shared [`context::Context`]:
//! - [`mapping`]: the NamespaceMapping reconciler as decide (pure) -> act -> report.
//! - [`cluster_mapping`]: ClusterMapping status and the connectivity check.
//! - [`run`]: wiring it all together.

pub mod cluster_mapping;
pub mod clusters;
pub mod context;
pub mod dataplane;
pub mod discovery;
pub mod http;
pub mod k8s;
pub mod leader;
pub mod mapping;
pub mod metrics;
pub mod replicate;
pub mod run;
pub mod safety;
pub mod schedule;
pub mod status;
pub mod sync;
pub mod watchers;

//! The DR-Syncer controller: reconciles `RemoteCluster`, `ClusterMapping` and
//! `NamespaceMapping` objects and replicates namespaces (and PVC data) between clusters.
//!
//! Modules, in the order a sync flows through them:
//! - [`schedule`]: when a Scheduled mapping fires (CronJob-dialect cron + time zones).
//! - [`replicate`]: the pure replication rules (kinds, selection, transforms, marks, pruning).
//! - [`clusters`]: RemoteCluster clients (from kubeconfig Secrets), health and status.
//! - [`cluster_mapping`]: ClusterMapping status (both clusters present and healthy).
//! - [`discovery`]: which kinds a source cluster serves, cached.
//! - [`sync`]: the engine of one sync (list, select, transform, apply, prune).
//! - [`watchers`]: Continuous-mode per-object propagation.
//! - [`mapping`]: the NamespaceMapping reconciler and its three modes.
//! - [`dataplane`]: PVC data: agents, keys, worker pods, their orchestration and status.
//! - [`status`]: condition types, reasons and status helpers.
//! - [`context`]: state shared by the reconcilers; [`metrics`], [`http`]: Prometheus and probes;
//!   [`leader`]: Lease-based leader election; [`run`]: wiring it all together.

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
pub mod schedule;
pub mod status;
pub mod sync;
pub mod watchers;

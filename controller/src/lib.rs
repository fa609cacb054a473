//! The DR-Syncer controller: reconciles `RemoteCluster`, `ClusterMapping` and
//! `NamespaceMapping` objects and replicates namespaces (and PVC data) between clusters.
//!
//! Modules, in the order a sync flows through them:
//! - [`schedule`]: when a Scheduled mapping fires (CronJob-dialect cron + time zones).
//! - [`replicate`]: the pure replication rules (kinds, selection, transforms, marks, pruning).

pub mod replicate;
pub mod schedule;

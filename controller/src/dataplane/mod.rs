//! PVC data replication: the part of the controller that moves volume contents.
//!
//! Data never flows through the controller. It deploys an SSH agent DaemonSet into each
//! source cluster with `pvcSync.enabled`, hands out keys so that only the right workers can
//! talk to the right agents, and for every PVC of a NamespaceMapping with
//! `pvcConfig.syncData` runs a short-lived rsync-worker pod in the target cluster that pulls
//! the volume from the agent on the node holding it. `docs/architecture.md` has the picture.
//!
//! - [`config`]: images and limits the controller binary was started with.
//! - [`keys`]: SSH host and client keys: generated, stored in the controller cluster,
//!   distributed (only the halves each side needs), rotated on an annotation.
//! - [`agents`]: the agent DaemonSet, its RBAC and Secret in the source cluster, and the
//!   `RemoteCluster.status.pvcSync` it reports.
//! - [`locate`]: which node holds a source PVC and which agent address serves it.
//! - [`worker`]: the worker pod (spec, per-run Secret, run to completion, JSON summary).
//! - [`slots`]: how many copies run at once (controller-wide, per source cluster, per mapping).
//! - [`retry`]: the retry policy of a failed copy (`pvcSync.retryConfig`).
//! - [`outcome`]: what a run reports per PVC; the mapping's status is composed from it.
//! - [`orchestrate`]: the per-mapping run: slots, target checks, attempts, events, metrics.

pub mod agents;
pub mod config;
#[cfg(test)]
mod fixtures;
pub mod keys;
pub mod locate;
pub mod orchestrate;
pub mod outcome;
pub mod retry;
pub mod slots;
pub mod worker;

pub use config::{
    DEFAULT_AGENT_IMAGE, DEFAULT_WORKER_IMAGE, DataPlaneConfig, PULL_POLICIES, PodImage,
    pull_secret_name,
};

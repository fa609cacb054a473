//! The sync engine: one NamespaceMapping's objects from the source namespace to the target.
//!
//! A [`SyncPlan`] is built once per spec (clients, kinds, compiled filters and transforms) and
//! shared: the reconciler runs [`SyncPlan::full_sync`] (list every kind, select, transform,
//! server-side apply, then prune), the Continuous-mode watchers call
//! [`SyncPlan::apply_source_object`] and [`SyncPlan::delete_for_source`] per event.
//!
//! Safety rules kept here: nothing is pruned unless every source listing succeeded and the
//! source namespace exists and is not terminating; deletions carry a uid precondition; a
//! destination that cannot be reached aborts the sync rather than failing object by object;
//! a destination object this mapping did not write (no mark of this very mapping) is never
//! overwritten or deleted unless `spec.safety.adoptExistingObjects` says so, and is named
//! in the report instead; Continuous-mode deletions spend a
//! [`DeletionBudget`](crate::replicate::budget::DeletionBudget) that the full syncs reset.
//!
//! - [`plan`]: the [`SyncPlan`]: clients, kinds, filters and transforms, built once per spec.
//! - [`full`]: the full sync: namespaces, then each kind in turn.
//! - [`apply`]: one object's write (retries, immutable fields, ownership) and the watchers' entry points.
//! - [`prune`]: deleting what DR-Syncer created whose source is gone.
//! - [`crds`]: copying custom kinds' CRDs first.
//! - [`backoff`]: per-object retries; [`report`]: what a sync did; [`error`]: why it failed.

pub mod apply;
pub mod backoff;
pub mod crds;
pub mod error;
pub mod full;
pub mod plan;
pub mod prune;
pub mod report;

pub use apply::Deletion;
pub use backoff::Backoff;
pub use error::SyncError;
pub use plan::{APPLY_CONCURRENCY, SharedPlan, SyncPlan};
pub use report::{KindCounts, ObjectFailure, Outcome, PruneOutcome, SyncReport};

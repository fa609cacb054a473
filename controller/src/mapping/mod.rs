//! The NamespaceMapping reconciler: resolves the clusters, decides whether a sync is due in
//! the mapping's mode (Manual, Scheduled, Continuous), runs it, and writes status, events and
//! metrics.
//!
//! - Manual: a sync runs when `dr-syncer.io/sync-now` (or `dr-syncer.io/trigger-sync`) has
//!   a value not yet recorded in `status.lastSyncNowValue`. The same annotation forces an
//!   extra sync in the other modes.
//! - Scheduled: `status.nextSyncTime` is the next fire; a fire missed while the controller
//!   was down runs once on start (and counts in `dr_syncer_missed_schedules_total`).
//! - Continuous: watchers per kind apply each change; a full resync (with pruning) runs on
//!   start, on spec change and every `continuous.backgroundSyncInterval`.
//! - `paused` (on the mapping or its ClusterMapping) stops everything.
//!
//! Failed syncs are retried per `retryConfig` (`status.retryStatus`). Deleting a mapping
//! keeps the replicated objects (a DR copy must outlive its configuration), stops its
//! watchers and removes the finalizer.
//!
//! A reconcile is decide -> act -> report:
//! - [`resolve`]: the mapping's references (ClusterMapping, RemoteClusters, clients).
//! - [`decide`]: pure: spec, status, time and observations to a [`Decision`] and, after a
//!   sync, its [`FollowUp`](decide::FollowUp) (next fire, retries).
//! - [`act`]: the I/O: references, watchers, the resource sync, the PVC data copy, their
//!   events and metrics.
//! - [`report`]: the one composition of the status from the steps, and its writer
//!   (at the start, during the data copy, at the end).
//! - `pvc_status`: the data-plane part of that status (`pvcSyncStatus`, `DataSynced`).

pub mod act;
pub mod decide;
mod pvc_status;
pub mod report;
pub mod resolve;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dr_syncer_crds::namespace_mapping::NamespaceMapping;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use tracing::Instrument;

pub use decide::{Decision, pending_trigger, trigger_value};
pub use resolve::{ReferenceError, Resolved, references_cluster, references_cluster_mapping};

use crate::context::Context;
use crate::k8s::requeue_after_error;
use crate::status::now;
use decide::Verdict;
use report::{Step, Writer};

/// Finalizer on every NamespaceMapping, so deletion stops its watchers first.
pub const FINALIZER: &str = "dr-syncer.io/finalizer";

/// Why a NamespaceMapping reconcile failed (the sync's own failures go to status instead).
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// Writing status or the finalizer failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Reconciles one NamespaceMapping (with its finalizer).
pub async fn reconcile(
    nm: Arc<NamespaceMapping>,
    ctx: Arc<Context>,
) -> Result<Action, MappingError> {
    let namespace = nm.namespace().unwrap_or_default();
    let api: Api<NamespaceMapping> = Api::namespaced(ctx.client.clone(), &namespace);
    let span = tracing::info_span!("namespacemapping", mapping = %format!("{namespace}/{}", nm.name_any()));
    finalizer(&api, FINALIZER, nm, |event| async {
        match event {
            Finalizer::Apply(nm) => apply(nm, ctx.clone()).await,
            Finalizer::Cleanup(nm) => {
                act::cleanup(&ctx, &nm);
                Ok(Action::await_change())
            }
        }
    })
    .instrument(span)
    .await
    .map_err(|e| MappingError::Finalizer(e.to_string()))
}

/// Reconciles a live mapping: decide, act, report.
async fn apply(nm: Arc<NamespaceMapping>, ctx: Arc<Context>) -> Result<Action, MappingError> {
    let api: Api<NamespaceMapping> =
        Api::namespaced(ctx.client.clone(), &nm.namespace().unwrap_or_default());
    let mut writer = Writer::new(api, &nm);
    let read = report::as_read(&nm);

    let prepared = act::prepare(&ctx, &nm).await;
    let decision = decide::decide(&nm, &read, &prepared.observed, Utc::now());
    act::perform(&ctx, &nm, &decision).await;
    let mut status = report::compose(&read, &nm, Step::Decided(&decision), &now());
    writer.write(&status).await?;
    let (Decision::Sync(run), Some(Ok(resolved))) = (&decision, &prepared.resolved) else {
        return Ok(decision.action());
    };

    let (result, finished) = act::sync_resources(&ctx, &nm, resolved, prepared.plan).await;
    let copying = result.is_ok() && run.copy_data;
    status = report::compose(
        &status,
        &nm,
        Step::Resources {
            result: &result,
            copying,
        },
        &finished,
    );
    if let (true, Ok(resources)) = (copying, &result) {
        // The resource results are visible while the data is copied.
        writer.write(&status).await?;
        let data = act::sync_data(&ctx, &nm, resolved).await;
        status = report::compose(
            &status,
            &nm,
            Step::Data {
                report: &data,
                resources,
            },
            &now(),
        );
    }
    let verdict = match &result {
        Ok(report) => Verdict::Synced {
            all_ok: report.failed() == 0,
        },
        Err(error) => Verdict::Failed {
            permanent: error.is_permanent(),
        },
    };
    let follow_up = decide::after_sync(&nm, run, &read, verdict, Utc::now());
    status = report::compose(&status, &nm, Step::Done(&follow_up), &now());
    writer.write(&status).await?;
    Ok(follow_up.action())
}

/// Retry policy after a failed reconcile (API errors writing status).
pub fn error_policy(
    _nm: Arc<NamespaceMapping>,
    error: &MappingError,
    _ctx: Arc<Context>,
) -> Action {
    requeue_after_error("namespace mapping", error, Duration::from_secs(5))
}

//! What a reconciler does after an error it returned: log it and look again later.

use std::fmt::Display;
use std::time::Duration;

use kube::runtime::controller::Action;

/// The error policy of every reconciler: a warning naming `what` failed, then a requeue
/// `after` (the errors that reach it are transient API errors; permanent problems are
/// reported in status by the reconcilers themselves and never returned).
pub fn requeue_after_error(what: &str, error: &dyn Display, after: Duration) -> Action {
    tracing::warn!(%error, "{what} reconcile failed");
    Action::requeue(after)
}

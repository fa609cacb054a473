//! Waits of the controller tests, thin wrappers over [`dr_syncer_e2e::wait`] that keep each
//! call site's deadline and fail naming what was awaited and the last state seen; and the
//! status conditions they look for.

use std::fmt::Debug;
use std::time::Duration;

use dr_syncer_crds::NamespaceMapping;
use dr_syncer_crds::namespace_mapping::SyncPhase;
use dr_syncer_e2e::wait::{self, Watched};
use kube::api::Api;
use kube::runtime::wait::Condition;
use kube::runtime::watcher;

use super::DEADLINE;

/// Waits (watch, [`DEADLINE`]) until `cond` holds for object `name`; returns it.
pub async fn wait_for<K>(api: &Api<K>, name: &str, cond: impl Condition<K>) -> K
where
    K: Watched,
{
    wait_for_within(api, name, cond, DEADLINE).await
}

/// [`wait_for`] with an explicit deadline.
pub async fn wait_for_within<K>(
    api: &Api<K>,
    name: &str,
    cond: impl Condition<K>,
    deadline: Duration,
) -> K
where
    K: Watched,
{
    wait_until(api, name, "the test's condition", cond, deadline).await
}

/// [`wait_for_within`] saying what is awaited (`what`) in its failure message.
pub async fn wait_until<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    cond: impl Condition<K>,
    deadline: Duration,
) -> K
where
    K: Watched,
{
    wait::object(api, name, what, cond, deadline)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits ([`DEADLINE`]) until status condition `type_` of object `name` has `status` and
/// `reason`; returns the object.
pub async fn wait_condition<K>(
    api: &Api<K>,
    name: &str,
    (type_, status, reason): (&'static str, &'static str, &'static str),
) -> K
where
    K: Watched + serde::Serialize,
{
    let what = format!("condition {type_} {status} with reason {reason}");
    let cond = has_condition(type_, status, reason);
    wait_until(api, name, &what, cond, DEADLINE).await
}

/// Waits (watch) until the object is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, deadline: Duration)
where
    K: Watched,
{
    wait::gone(api, name, None, deadline)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits (watch on the objects `config` selects) until `check` accepts them, within
/// `deadline`; `check` returns the value waited for, or the state reported at the deadline.
pub async fn wait_list<K, T, S>(
    api: &Api<K>,
    config: watcher::Config,
    what: &str,
    deadline: Duration,
    check: impl FnMut(&[K]) -> Result<T, S>,
) -> T
where
    K: Watched,
    S: Debug,
{
    wait::list(api, config, what, deadline, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The objects a mapping wrote (label `dr-syncer.io/managed-by-mapping`).
pub fn managed_by_mapping() -> watcher::Config {
    watcher::Config::default().labels("dr-syncer.io/managed-by-mapping")
}

/// Asks `f` every `every` until it answers `Ok` (within `deadline`), for what is not one
/// Kubernetes object (an HTTP endpoint, a count over a list); `Err` is the state reported
/// when the deadline passes.
pub async fn poll_until<T, S, F, Fut>(what: &str, deadline: Duration, every: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S>>,
    S: Debug,
{
    wait::poll(what, deadline, every, f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A mapping handled trigger `value` (`dr-syncer.io/sync-now`) and its sync finished
/// (Completed or Failed).
pub fn synced_value(value: &str) -> impl Condition<NamespaceMapping> + use<> {
    let value = value.to_owned();
    move |nm: Option<&NamespaceMapping>| {
        nm.and_then(|nm| nm.status.as_ref()).is_some_and(|s| {
            s.last_sync_now_value.as_deref() == Some(value.as_str())
                && matches!(
                    s.phase,
                    Some(SyncPhase::Completed) | Some(SyncPhase::Failed)
                )
        })
    }
}

/// Waits ([`DEADLINE`]) until the mapping handled trigger `value` and the sync finished.
pub async fn wait_synced_value(
    api: &Api<NamespaceMapping>,
    name: &str,
    value: &str,
) -> NamespaceMapping {
    let what = format!("trigger {value:?} handled and the sync finished");
    wait_until(api, name, &what, synced_value(value), DEADLINE).await
}

/// A condition on a NamespaceMapping/RemoteCluster status condition: type has status and
/// reason.
pub fn has_condition<K>(
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
) -> impl Condition<K>
where
    K: serde::Serialize,
{
    move |obj: Option<&K>| {
        obj.and_then(|o| serde_json::to_value(o).ok())
            .and_then(|v| v["status"]["conditions"].as_array().cloned())
            .is_some_and(|conds| {
                conds
                    .iter()
                    .any(|c| c["type"] == type_ && c["status"] == status && c["reason"] == reason)
            })
    }
}

/// The message of a status condition.
pub fn condition_message<K: serde::Serialize>(obj: &K, type_: &str) -> String {
    let v = serde_json::to_value(obj).unwrap();
    v["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

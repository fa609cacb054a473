//! Continuous mode: per-mapping watches on the selected kinds in the source namespace.
//!
//! Each change is applied on its own (no full resync per event). One task per kind handles
//! its events in order, so an update and a following delete of the same object cannot be
//! reordered. The first listing after a watch starts is not re-applied (the reconciler runs
//! a full sync whenever it starts watchers); a later re-listing (after the watch broke off)
//! applies only objects that changed since, and treats objects that vanished meanwhile as
//! deletions. A change that fails to apply (the target API server is briefly unavailable,
//! a conflict) is retried with backoff from the source object's *current* state, so a
//! transient error never leaves a stale copy until the next background resync. A
//! deletion is propagated only within the mapping's deletion budget (at most half of its
//! objects between two full syncs, see [`DeletionBudget`]); a refused one is reported by
//! the reconciler and left to the next full sync's prune. Watchers
//! stop when the mapping's spec or clusters change (a new fingerprint), when it is paused,
//! switched to another mode, or deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use dr_syncer_crds::NamespaceMapping;
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::{MappingLabels, Metrics};
use crate::replicate::ResourceKind;
use crate::replicate::budget::DeletionBudget;
use crate::sync::{Deletion, Outcome, SharedPlan};

/// Field manager for the one status field the watchers own (`lastWatchEvent`).
pub const WATCH_FIELD_MANAGER: &str = "dr-syncer-watch";

/// How often `status.lastWatchEvent` is written at most.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);

struct Running {
    fingerprint: String,
    cancel: CancellationToken,
    budget: Arc<Mutex<DeletionBudget>>,
}

/// The watchers of every Continuous mapping, keyed by `namespace/name`.
#[derive(Default)]
pub struct Watchers {
    running: Mutex<HashMap<String, Running>>,
    gauge: Gauge,
}

/// Where watcher tasks report to.
#[derive(Clone)]
pub struct WatchSink {
    /// Controller-cluster client (status writes).
    pub client: Client,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The mapping's namespace.
    pub namespace: String,
    /// The mapping's name.
    pub name: String,
    /// The deletions the watchers may still propagate before the next full sync (set by
    /// [`Watchers::start`]; the full sync resets it through [`Watchers::reset_budget`]).
    pub budget: Arc<Mutex<DeletionBudget>>,
}

impl Watchers {
    /// Watchers that report how many mappings they serve on `gauge`.
    pub fn with_gauge(gauge: Gauge) -> Self {
        Watchers {
            running: Mutex::default(),
            gauge,
        }
    }

    fn update_gauge(&self, running: usize) {
        self.gauge.set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    /// Whether watchers with this fingerprint run for the mapping.
    pub fn is_running(&self, key: &str, fingerprint: &str) -> bool {
        self.running
            .lock()
            .map(|m| m.get(key).is_some_and(|r| r.fingerprint == fingerprint))
            .unwrap_or(false)
    }

    /// Starts (or restarts, replacing older ones) the watchers of a mapping. Returns a
    /// handle that resolves once every kind's first listing is done: a full sync started
    /// after that cannot miss a change (it is either in the sync's listing or a later
    /// watch event).
    pub fn start(
        &self,
        key: &str,
        fingerprint: &str,
        plan: SharedPlan,
        mut sink: WatchSink,
    ) -> WatchesReady {
        self.stop(key);
        sink.budget = Arc::default();
        let cancel = CancellationToken::new();
        let last_event = Arc::new(Mutex::new(None::<Timestamp>));
        let ready = Arc::new(Semaphore::new(0));
        for kind in plan.kinds.clone() {
            tokio::spawn(watch_kind(
                plan.clone(),
                kind,
                sink.clone(),
                last_event.clone(),
                ready.clone(),
                cancel.clone(),
            ));
        }
        let budget = sink.budget.clone();
        tokio::spawn(status_writer(sink, last_event, cancel.clone()));
        if let Ok(mut map) = self.running.lock() {
            map.insert(
                key.to_owned(),
                Running {
                    fingerprint: fingerprint.to_owned(),
                    cancel,
                    budget,
                },
            );
            self.update_gauge(map.len());
        }
        tracing::info!(mapping = key, "continuous watchers started");
        WatchesReady {
            ready,
            kinds: plan.kinds.len(),
        }
    }

    /// Stops the watchers of a mapping, if any.
    pub fn stop(&self, key: &str) {
        if let Ok(mut map) = self.running.lock()
            && let Some(running) = map.remove(key)
        {
            running.cancel.cancel();
            self.update_gauge(map.len());
            tracing::info!(mapping = key, "continuous watchers stopped");
        }
    }

    /// Stops every watcher (shutdown, lost leadership).
    pub fn stop_all(&self) {
        if let Ok(mut map) = self.running.lock() {
            for (_, running) in map.drain() {
                running.cancel.cancel();
            }
            self.update_gauge(0);
        }
    }

    /// A full sync of the mapping counted `managed` objects of it at the destination:
    /// the watchers' deletion budget starts again from there.
    pub fn reset_budget(&self, key: &str, managed: usize) {
        self.with_budget(key, |b| b.reset(managed));
    }

    /// Why the watchers refused to propagate a deletion since the last full sync, if they
    /// did.
    pub fn prune_refusal(&self, key: &str) -> Option<String> {
        self.with_budget(key, |b| b.refusal().map(str::to_owned))
            .flatten()
    }

    fn with_budget<T>(&self, key: &str, f: impl FnOnce(&mut DeletionBudget) -> T) -> Option<T> {
        let budget = self.running.lock().ok()?.get(key)?.budget.clone();
        let mut budget = budget.lock().ok()?;
        Some(f(&mut budget))
    }

    /// How many mappings have watchers running.
    pub fn len(&self) -> usize {
        self.running.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no watchers run.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Resolves when every kind's watch has listed the source once.
pub struct WatchesReady {
    ready: Arc<Semaphore>,
    kinds: usize,
}

impl WatchesReady {
    /// Waits up to `timeout`; returns whether every watch is listing-complete.
    pub async fn wait(self, timeout: Duration) -> bool {
        let Ok(n) = u32::try_from(self.kinds) else {
            return false;
        };
        matches!(
            tokio::time::timeout(timeout, self.ready.acquire_many(n)).await,
            Ok(Ok(_))
        )
    }
}

/// What the kind's watcher remembers of the source: name -> (resourceVersion, uid).
#[derive(Default)]
struct Seen {
    versions: HashMap<String, (String, Option<String>)>,
    /// Names seen during the current re-listing.
    relisting: Option<HashSet<String>>,
    /// Whether the first listing is done.
    started: bool,
}

/// What a watch event asks the watcher to do.
#[derive(Debug, PartialEq)]
enum WatchAction {
    /// Apply this source object at the target.
    Apply(Box<DynamicObject>),
    /// The source object (name, uid) is gone: propagate the deletion.
    Delete(String, Option<String>),
}

/// First delay before retrying a change that failed to apply.
const RETRY_FIRST: Duration = Duration::from_millis(500);

/// Longest delay between retries of one change.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Changes that failed to apply, by object name, with when to try again. A retry re-reads
/// the source object, so it always applies (or deletes) the latest state, and a newer event
/// for the same name simply replaces the pending retry.
#[derive(Debug, Default)]
struct RetryQueue {
    pending: BTreeMap<String, (Instant, u32)>,
}

impl RetryQueue {
    /// Schedules `name` again after a failure, backing off exponentially per name.
    fn failed(&mut self, name: &str, now: Instant) {
        let attempt = self.pending.get(name).map_or(0, |(_, a)| a + 1);
        let delay = RETRY_FIRST
            .saturating_mul(1u32 << attempt.min(8))
            .min(RETRY_MAX);
        self.pending.insert(name.to_owned(), (now + delay, attempt));
    }

    /// Forgets `name` (it was applied, or a newer event took over).
    fn succeeded(&mut self, name: &str) {
        self.pending.remove(name);
    }

    /// When the next retry is due, if any.
    fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|(at, _)| *at).min()
    }

    /// Names whose retry is due at `now` (they stay queued until they succeed).
    fn due(&self, now: Instant) -> Vec<String> {
        self.pending
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Updates what the watcher remembers and decides what to do for one event. The first
/// listing is only recorded (the reconciler's full sync covers it); a re-listing after the
/// watch broke off applies what changed meanwhile and deletes what vanished meanwhile.
fn plan_event(seen: &mut Seen, event: Event<DynamicObject>) -> Vec<WatchAction> {
    let record = |obj: &DynamicObject| {
        (
            obj.resource_version().unwrap_or_default(),
            obj.metadata.uid.clone(),
        )
    };
    match event {
        Event::Init => {
            seen.relisting = Some(HashSet::new());
            Vec::new()
        }
        Event::InitApply(obj) => {
            let name = obj.name_any();
            if let Some(names) = seen.relisting.as_mut() {
                names.insert(name.clone());
            }
            let new = record(&obj);
            let changed = seen.versions.get(&name) != Some(&new);
            seen.versions.insert(name, new);
            if seen.started && changed {
                vec![WatchAction::Apply(Box::new(obj))]
            } else {
                Vec::new()
            }
        }
        Event::InitDone => {
            let listed = seen.relisting.take().unwrap_or_default();
            let gone: Vec<String> = seen
                .versions
                .keys()
                .filter(|n| !listed.contains(*n))
                .cloned()
                .collect();
            let mut actions = Vec::new();
            for name in gone {
                if let Some((_, uid)) = seen.versions.remove(&name)
                    && seen.started
                {
                    actions.push(WatchAction::Delete(name, uid));
                }
            }
            seen.started = true;
            actions
        }
        Event::Apply(obj) => {
            seen.versions.insert(obj.name_any(), record(&obj));
            vec![WatchAction::Apply(Box::new(obj))]
        }
        Event::Delete(obj) => {
            seen.versions.remove(&obj.name_any());
            vec![WatchAction::Delete(
                obj.name_any(),
                obj.metadata.uid.clone(),
            )]
        }
    }
}

async fn watch_kind(
    plan: SharedPlan,
    kind: ResourceKind,
    sink: WatchSink,
    last_event: Arc<Mutex<Option<Timestamp>>>,
    ready: Arc<Semaphore>,
    cancel: CancellationToken,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        plan.source_watch.clone(),
        &plan.source_namespace,
        &kind.api_resource(),
    );
    let stream = watcher::watcher(api.clone(), watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut seen = Seen::default();
    let mut retries = RetryQueue::default();
    loop {
        let next_retry = retries.next_due();
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            () = sleep_until(next_retry) => {
                for name in retries.due(Instant::now()) {
                    let ok = retry(&plan, &kind, &sink, &last_event, &api, &name).await;
                    settle(&mut retries, &name, ok);
                }
                continue;
            }
            event = stream.next() => event,
        };
        match event {
            None => return,
            Some(Err(error)) => {
                tracing::warn!(%error, kind = %kind.kind, "source watch error; retrying");
            }
            Some(Ok(event)) => {
                let first_done = !seen.started && matches!(event, Event::InitDone);
                for (name, ok) in
                    handle_event(&plan, &kind, &sink, &last_event, &mut seen, event).await
                {
                    settle(&mut retries, &name, ok);
                }
                if first_done {
                    ready.add_permits(1);
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when nothing is scheduled.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn settle(retries: &mut RetryQueue, name: &str, ok: bool) {
    if ok {
        retries.succeeded(name);
    } else {
        retries.failed(name, Instant::now());
    }
}

/// Applies the source object's current state again (or propagates its deletion if it is
/// gone). Returns whether that worked.
async fn retry(
    plan: &SharedPlan,
    kind: &ResourceKind,
    sink: &WatchSink,
    last_event: &Mutex<Option<Timestamp>>,
    api: &Api<DynamicObject>,
    name: &str,
) -> bool {
    tracing::debug!(kind = %kind.kind, name, "retrying a change that failed to apply");
    match api.get_opt(name).await {
        Ok(Some(obj)) => apply(plan, kind, sink, last_event, &obj).await,
        Ok(None) => {
            let mut obj = DynamicObject::new(name, &kind.api_resource());
            obj.metadata.namespace = Some(plan.source_namespace.clone());
            delete(plan, kind, sink, last_event, &obj).await
        }
        Err(error) => {
            tracing::debug!(%error, kind = %kind.kind, name, "re-reading the source object failed");
            false
        }
    }
}

async fn handle_event(
    plan: &SharedPlan,
    kind: &ResourceKind,
    sink: &WatchSink,
    last_event: &Mutex<Option<Timestamp>>,
    seen: &mut Seen,
    event: Event<DynamicObject>,
) -> Vec<(String, bool)> {
    let mut outcomes = Vec::new();
    for action in plan_event(seen, event) {
        match action {
            WatchAction::Apply(obj) => {
                let ok = apply(plan, kind, sink, last_event, &obj).await;
                outcomes.push((obj.name_any(), ok));
            }
            WatchAction::Delete(name, uid) => {
                let mut obj = DynamicObject::new(&name, &kind.api_resource());
                obj.metadata.namespace = Some(plan.source_namespace.clone());
                obj.metadata.uid = uid;
                let ok = delete(plan, kind, sink, last_event, &obj).await;
                outcomes.push((name, ok));
            }
        }
    }
    outcomes
}

fn labels(sink: &WatchSink) -> MappingLabels {
    MappingLabels {
        namespace: sink.namespace.clone(),
        mapping: sink.name.clone(),
    }
}

fn touch(last_event: &Mutex<Option<Timestamp>>) {
    if let Ok(mut t) = last_event.lock() {
        *t = Some(Timestamp::now());
    }
}

/// Counts a change a watch event made at the target (the event, and the object under
/// `outcome`) and notes the time of the last one for `status.lastWatchEvent`.
fn record_change(
    sink: &WatchSink,
    labels: &MappingLabels,
    kind: &ResourceKind,
    outcome: &str,
    last_event: &Mutex<Option<Timestamp>>,
) {
    sink.metrics.watch_events.get_or_create(labels).inc();
    sink.metrics.record_objects(labels, &kind.kind, outcome, 1);
    touch(last_event);
}

async fn apply(
    plan: &SharedPlan,
    kind: &ResourceKind,
    sink: &WatchSink,
    last_event: &Mutex<Option<Timestamp>>,
    obj: &DynamicObject,
) -> bool {
    let labels = labels(sink);
    match plan.apply_source_object(kind, obj).await {
        Ok(Some(outcome)) => {
            if outcome == Outcome::Created
                && let Ok(mut budget) = sink.budget.lock()
            {
                budget.created();
            }
            record_change(sink, &labels, kind, outcome.label(), last_event);
            tracing::debug!(kind = %kind.kind, name = %obj.name_any(), ?outcome, "applied change");
            true
        }
        Ok(None) => true,
        Err(error) => {
            sink.metrics
                .record_objects(&labels, &kind.kind, "failed", 1);
            tracing::warn!(kind = %kind.kind, name = %obj.name_any(), %error, "applying a change failed; will retry");
            false
        }
    }
}

async fn delete(
    plan: &SharedPlan,
    kind: &ResourceKind,
    sink: &WatchSink,
    last_event: &Mutex<Option<Timestamp>>,
    obj: &DynamicObject,
) -> bool {
    let labels = labels(sink);
    match plan.delete_for_source(kind, obj, &sink.budget).await {
        Ok(Deletion::Deleted) => {
            record_change(sink, &labels, kind, "deleted", last_event);
            tracing::debug!(kind = %kind.kind, name = %obj.name_any(), "pruned deleted object");
            true
        }
        Ok(Deletion::Kept) => true,
        Ok(Deletion::Refused(why)) => {
            // Not retried: the next full sync prunes it under the full sync's guards. The
            // status write wakes the reconciler, which reports the refusal.
            tracing::warn!(kind = %kind.kind, name = %obj.name_any(), %why, "deletion refused");
            touch(last_event);
            true
        }
        Err(error) => {
            tracing::warn!(kind = %kind.kind, name = %obj.name_any(), %error, "propagating a deletion failed; will retry");
            false
        }
    }
}

/// Writes `status.lastWatchEvent` at most every [`STATUS_INTERVAL`], with a merge patch
/// under its own field manager so it never fights the reconciler's server-side apply.
async fn status_writer(
    sink: WatchSink,
    last_event: Arc<Mutex<Option<Timestamp>>>,
    cancel: CancellationToken,
) {
    let api: Api<NamespaceMapping> = Api::namespaced(sink.client.clone(), &sink.namespace);
    let mut written: Option<Timestamp> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(STATUS_INTERVAL) => {}
        }
        let current = last_event.lock().ok().and_then(|t| *t);
        if current.is_none() || current == written {
            continue;
        }
        let patch = serde_json::json!({"status": {"lastWatchEvent": current}});
        let params = PatchParams {
            field_manager: Some(WATCH_FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        match api
            .patch_status(&sink.name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => written = current,
            Err(error) => tracing::debug!(%error, "writing lastWatchEvent failed"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kube::api::ApiResource;

    fn cm(name: &str, rv: &str) -> DynamicObject {
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let mut obj = DynamicObject::new(name, &ar);
        obj.metadata.resource_version = Some(rv.to_owned());
        obj.metadata.uid = Some(format!("uid-{name}"));
        obj
    }

    fn names(actions: &[WatchAction]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                WatchAction::Apply(o) => format!("apply {}", o.name_any()),
                WatchAction::Delete(n, uid) => {
                    format!("delete {n} {}", uid.clone().unwrap_or_default())
                }
            })
            .collect()
    }

    #[test]
    fn failed_changes_back_off_per_name_and_leave_the_queue_on_success() {
        let t0 = Instant::now();
        let mut q = RetryQueue::default();
        assert_eq!(q.next_due(), None);
        q.failed("a", t0);
        assert_eq!(q.next_due(), Some(t0 + RETRY_FIRST));
        assert!(q.due(t0).is_empty());
        assert_eq!(q.due(t0 + RETRY_FIRST), ["a"]);
        // A second failure of the same name waits twice as long; others are independent.
        q.failed("a", t0);
        q.failed("b", t0);
        assert_eq!(q.due(t0 + RETRY_FIRST), ["b"]);
        assert_eq!(q.due(t0 + RETRY_FIRST * 2), ["a", "b"]);
        // The delay is capped.
        for _ in 0..20 {
            q.failed("a", t0);
        }
        assert_eq!(q.due(t0 + RETRY_MAX), ["a", "b"]);
        q.succeeded("a");
        q.succeeded("b");
        assert_eq!(q.next_due(), None);
    }

    #[test]
    fn first_listing_is_recorded_not_applied() {
        let mut seen = Seen::default();
        assert!(plan_event(&mut seen, Event::Init).is_empty());
        assert!(plan_event(&mut seen, Event::InitApply(cm("a", "1"))).is_empty());
        assert!(plan_event(&mut seen, Event::InitDone).is_empty());
        assert!(seen.started);
        // Live events are applied one by one.
        assert_eq!(
            names(&plan_event(&mut seen, Event::Apply(cm("a", "2")))),
            ["apply a"]
        );
        assert_eq!(
            names(&plan_event(&mut seen, Event::Delete(cm("a", "3")))),
            ["delete a uid-a"]
        );
    }

    #[test]
    fn relisting_applies_changes_and_deletes_what_vanished_meanwhile() {
        let mut seen = Seen::default();
        for e in [
            Event::Init,
            Event::InitApply(cm("same", "1")),
            Event::InitApply(cm("changed", "1")),
            Event::InitApply(cm("vanished", "1")),
            Event::InitDone,
        ] {
            plan_event(&mut seen, e);
        }
        // The watch broke off; the re-listing shows what happened meanwhile.
        let mut actions = Vec::new();
        for e in [
            Event::Init,
            Event::InitApply(cm("same", "1")),
            Event::InitApply(cm("changed", "2")),
            Event::InitApply(cm("new", "5")),
            Event::InitDone,
        ] {
            actions.extend(plan_event(&mut seen, e));
        }
        assert_eq!(
            names(&actions),
            ["apply changed", "apply new", "delete vanished uid-vanished"]
        );
    }
}

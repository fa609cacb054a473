//! The pod runner: watches the pods bound to this node (field selector
//! `spec.nodeName=<node>`) and keeps one worker per pod UID, feeding it every update; pods
//! that disappear from the API (also across a re-list) are stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ctx::NodeCtx;
use super::pod;

/// Longest a node shutdown waits for its pod workers (their grace is capped below this).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(45);

/// One pod's worker and the channel feeding it.
struct Entry {
    tx: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

/// Runs the watch until `shutdown` flips, then stops every worker; returns the names of
/// pods whose workers did not finish in time.
pub(crate) async fn run(ctx: Arc<NodeCtx>, mut shutdown: watch::Receiver<bool>) -> Vec<String> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.cfg.name));
    let mut stream = watcher::watcher(pods, config).default_backoff().boxed();
    let mut workers: BTreeMap<String, Entry> = BTreeMap::new();
    let mut relisted: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            event = stream.next() => match event {
                Some(Ok(event)) => handle(&ctx, &shutdown, &mut workers, &mut relisted, event),
                Some(Err(e)) => tracing::warn!(node = %ctx.cfg.name, error = %e, "pod watch error"),
                None => break,
            },
        }
    }
    stop_all(workers).await
}

/// Applies one watch event to the worker table.
fn handle(
    ctx: &Arc<NodeCtx>,
    shutdown: &watch::Receiver<bool>,
    workers: &mut BTreeMap<String, Entry>,
    relisted: &mut BTreeSet<String>,
    event: Event<Pod>,
) {
    match event {
        Event::Init => relisted.clear(),
        Event::InitApply(pod) => {
            relisted.insert(uid(&pod));
            dispatch(ctx, shutdown, workers, pod);
        }
        Event::InitDone => {
            let gone: Vec<String> = workers
                .keys()
                .filter(|u| !relisted.contains(*u))
                .cloned()
                .collect();
            for uid in gone {
                if let Some(entry) = workers.remove(&uid) {
                    entry.tx.send_replace(None);
                }
            }
        }
        Event::Apply(pod) => dispatch(ctx, shutdown, workers, pod),
        Event::Delete(pod) => {
            if let Some(entry) = workers.remove(&uid(&pod)) {
                // The final object carries the deletion grace period (0 for a forced
                // delete): the worker stops its containers with it, as the kubelet does,
                // even when the update that set it and the delete arrive together and the
                // worker never saw the update on its own.
                let last = pod.metadata.deletion_timestamp.is_some().then_some(pod);
                entry.tx.send_replace(last);
            }
        }
    }
}

/// Feeds a pod to its worker, starting one for a new UID (or again when its worker has
/// ended while the pod still exists, e.g. its final delete call failed).
fn dispatch(
    ctx: &Arc<NodeCtx>,
    shutdown: &watch::Receiver<bool>,
    workers: &mut BTreeMap<String, Entry>,
    pod: Pod,
) {
    let uid = uid(&pod);
    if let Some(entry) = workers.get(&uid).filter(|e| !e.task.is_finished()) {
        entry.tx.send_replace(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    let task = tokio::spawn(pod::run(ctx.clone(), rx, shutdown.clone()));
    workers.insert(uid, Entry { tx, task });
}

/// A pod's UID.
fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Waits for every worker (they see the shutdown flag themselves) up to [`SHUTDOWN_WAIT`].
async fn stop_all(workers: BTreeMap<String, Entry>) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
    let mut stuck = Vec::new();
    for (uid, entry) in workers {
        let name = entry
            .tx
            .borrow()
            .as_ref()
            .and_then(|p| p.metadata.name.clone())
            .unwrap_or(uid);
        let mut task = entry.task;
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
            stuck.push(name);
        }
    }
    stuck
}

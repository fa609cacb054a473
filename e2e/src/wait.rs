//! One way for the e2e tests to wait: until a condition holds, within a deadline, and when
//! it does not, an error that says what was awaited and the last state seen.
//!
//! - [`object`]: one Kubernetes object, by watch (`kube::runtime::wait::await_condition`);
//!   [`gone`] is the deletion case of it.
//! - [`list`]: a set of objects (label or field selected), by watch (`watcher`), the check
//!   seeing the whole current set after every change.
//! - [`poll`]: anything that is not a Kubernetes object (a file, an HTTP endpoint, an
//!   access review, a set of objects of several kinds): asked again every `every`.
//!
//! The tests keep their own deadlines; the helpers of the test support modules are thin
//! wrappers that name what they wait for and panic with the [`WaitError`].

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::time::{Instant, MissedTickBehavior};

/// Why a wait ended without its condition: the caller (a test) turns it into a failure
/// message, so each variant carries what was awaited.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed; `last` is the last state seen (Debug text).
    #[error("{what}: not within {deadline:?}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline that passed.
        deadline: Duration,
        /// The last state seen, or a note that nothing was seen.
        last: String,
    },
    /// The object was deleted while a condition on it was awaited.
    #[error("{what}: the object was deleted while waiting")]
    Deleted {
        /// What was awaited.
        what: String,
    },
    /// The watch itself failed (API error, decoding).
    #[error("{what}: watch failed: {message}")]
    Watch {
        /// What was awaited.
        what: String,
        /// The watch error.
        message: String,
    },
}

/// What a watched object type must be: a Kubernetes resource whose kind can be named
/// without a runtime type (so messages say what was awaited). Every k8s-openapi and
/// DR-Syncer type is one.
pub trait Watched:
    Resource<DynamicType: Default> + Clone + Debug + DeserializeOwned + Send + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType: Default> + Clone + Debug + DeserializeOwned + Send + 'static
{
}

/// `Kind name` of an object, for messages.
fn describe<K>(name: &str) -> String
where
    K: Resource,
    K::DynamicType: Default,
{
    format!("{} {name}", K::kind(&K::DynamicType::default()))
}

/// Debug text of the last state seen, for [`WaitError::Timeout`].
fn last_text<S: Debug>(last: Option<S>) -> String {
    match last {
        Some(s) => format!("{s:#?}"),
        None => "nothing (no answer before the deadline)".to_owned(),
    }
}

/// Waits (watch) until `cond` holds for object `name`, at most `deadline`; returns the
/// object. `what` says what is awaited (the object's kind and name are added).
pub async fn object<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    cond: impl Condition<K>,
    deadline: Duration,
) -> Result<K, WaitError>
where
    K: Watched,
{
    match object_state(api, name, what, cond, deadline).await? {
        Some(obj) => Ok(obj),
        None => Err(WaitError::Deleted {
            what: format!("{}: {what}", describe::<K>(name)),
        }),
    }
}

/// Waits (watch) until object `name` is gone, at most `deadline`. With `uid`, an object of
/// the same name but another uid (deleted and created again) counts as gone too.
pub async fn gone<K>(
    api: &Api<K>,
    name: &str,
    uid: Option<&str>,
    deadline: Duration,
) -> Result<(), WaitError>
where
    K: Watched,
{
    match uid {
        Some(uid) => {
            let what = format!("deleted (uid {uid})");
            object_state(api, name, &what, conditions::is_deleted(uid), deadline).await?;
        }
        None => {
            let absent = |obj: Option<&K>| obj.is_none();
            object_state(api, name, "deleted", absent, deadline).await?;
        }
    }
    Ok(())
}

/// [`object`], also for conditions that hold for an absent object (`None`).
async fn object_state<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    cond: impl Condition<K>,
    deadline: Duration,
) -> Result<Option<K>, WaitError>
where
    K: Watched,
{
    let what = format!("{}: {what}", describe::<K>(name));
    // The last version the watch delivered (`Some(None)`: seen absent).
    let last: Mutex<Option<Option<K>>> = Mutex::new(None);
    let watched = |obj: Option<&K>| {
        if let Ok(mut slot) = last.lock() {
            *slot = Some(obj.cloned());
        }
        cond.matches_object(obj)
    };
    match tokio::time::timeout(deadline, await_condition(api.clone(), name, watched)).await {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(e)) => Err(WaitError::Watch {
            what,
            message: e.to_string(),
        }),
        Err(_) => {
            let seen = last.lock().ok().and_then(|mut l| l.take());
            let last = match seen {
                Some(Some(obj)) => format!("{obj:#?}"),
                Some(None) => "the object does not exist".to_owned(),
                None => last_text(None::<()>),
            };
            Err(WaitError::Timeout {
                what,
                deadline,
                last,
            })
        }
    }
}

/// Waits (watch on the objects `config` selects) until `check` accepts the current set,
/// at most `deadline`. `check` sees every object of the set (in name order) after each
/// change and returns the value waited for, or the state to report if the deadline passes.
pub async fn list<K, T, S>(
    api: &Api<K>,
    config: watcher::Config,
    what: &str,
    deadline: Duration,
    mut check: impl FnMut(&[K]) -> Result<T, S>,
) -> Result<T, WaitError>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    S: Debug,
{
    let mut last: Option<S> = None;
    let watch = async {
        let stream = watcher(api.clone(), config);
        let mut stream = std::pin::pin!(stream);
        // (namespace, name) -> object; `pending` collects a (re)list until it is complete.
        let mut current: BTreeMap<(String, String), K> = BTreeMap::new();
        let mut pending: BTreeMap<(String, String), K> = BTreeMap::new();
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => pending.clear(),
                Ok(watcher::Event::InitApply(o)) => {
                    pending.insert(key(&o), o);
                    continue;
                }
                Ok(watcher::Event::InitDone) => current = std::mem::take(&mut pending),
                Ok(watcher::Event::Apply(o)) => {
                    current.insert(key(&o), o);
                }
                Ok(watcher::Event::Delete(o)) => {
                    current.remove(&key(&o));
                }
                Err(e) => return Err(e.to_string()),
            }
            let objects: Vec<K> = current.values().cloned().collect();
            match check(&objects) {
                Ok(t) => return Ok(t),
                Err(s) => last = Some(s),
            }
        }
        Err("the watch ended".to_owned())
    };
    match tokio::time::timeout(deadline, watch).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(message)) => Err(WaitError::Watch {
            what: what.to_owned(),
            message,
        }),
        Err(_) => Err(WaitError::Timeout {
            what: what.to_owned(),
            deadline,
            last: last_text(last),
        }),
    }
}

/// Asks `f` every `every` until it returns `Ok`, giving up once `deadline` has passed
/// after an answer (`f` is always asked at least once, and an answer in progress is never
/// cut short). `Err` carries the state to report if the deadline passes.
pub async fn poll<T, S, F, Fut>(
    what: &str,
    deadline: Duration,
    every: Duration,
    mut f: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S>>,
    S: Debug,
{
    let until = Instant::now() + deadline;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate.
    ticks.tick().await;
    loop {
        let last = match f().await {
            Ok(t) => return Ok(t),
            Err(s) => s,
        };
        if Instant::now() >= until {
            return Err(WaitError::Timeout {
                what: what.to_owned(),
                deadline,
                last: last_text(Some(last)),
            });
        }
        ticks.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn poll_returns_the_first_accepted_answer() {
        let mut n = 0;
        let got = poll(
            "n reaches 3",
            Duration::from_secs(5),
            Duration::from_millis(10),
            || {
                n += 1;
                let now = n;
                async move { if now >= 3 { Ok(now) } else { Err(now) } }
            },
        )
        .await;
        assert_eq!(got.ok(), Some(3));
    }

    #[tokio::test]
    async fn poll_times_out_naming_what_and_the_last_state() {
        let got: Result<(), WaitError> = poll(
            "the file appears",
            Duration::from_millis(100),
            Duration::from_millis(30),
            || async { Err("still missing") },
        )
        .await;
        let message = got.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("the file appears"), "{message}");
        assert!(message.contains("still missing"), "{message}");
        assert!(message.contains("100ms"), "{message}");
    }

    #[tokio::test]
    async fn poll_asks_at_least_once_even_with_a_zero_deadline() {
        let got = poll(
            "at once",
            Duration::ZERO,
            Duration::from_millis(10),
            || async { Ok::<_, ()>(7) },
        )
        .await;
        assert_eq!(got.ok(), Some(7));
    }
}

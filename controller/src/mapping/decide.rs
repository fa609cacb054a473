//! What a reconcile of a NamespaceMapping does, decided from its spec, its status, the
//! time and what was observed — no I/O, so every branch is a row of a table test.
//!
//! - [`watch_step`]: whether Continuous-mode watchers should run (done before deciding,
//!   since a (re)start of the watchers calls for a full sync).
//! - [`decide`]: the [`Decision`]: paused, unresolvable references, invalid schedule,
//!   wait, or run a sync (Manual trigger, Scheduled fire, Continuous resync, retry,
//!   resuming a sync a dead controller left `Running`).
//! - [`after_sync`]: the [`FollowUp`] of a sync: next schedule fire, retry and backoff,
//!   when to come back.
//!
//! Recovery actions (failover, relocate, failback, drill) are to become new [`Decision`]
//! variants.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dr_syncer_crds::annotations::{SYNC_NOW, TRIGGER_SYNC};
use dr_syncer_crds::namespace_mapping::{
    NamespaceMapping, NamespaceMappingStatus, ReplicationMode, RetryStatus, SyncPhase,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use crate::schedule::Schedule;
use crate::status::{go_duration, time_from_chrono, time_to_chrono};
use crate::sync::Backoff;

/// What the reconcile found out by reading before deciding (besides spec, status, time).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The mapping's references, or why they cannot be resolved; `None` when they were
    /// not looked up (the mapping is paused).
    pub references: Option<Result<References, Unresolvable>>,
    /// Whether this process has run a sync of the mapping: a `Running` phase on a mapping
    /// it never synced was left by a controller that died mid-sync.
    pub synced_here: bool,
    /// Whether this reconcile (re)started the Continuous-mode watchers (a fresh start may
    /// have missed changes: a full sync is due).
    pub watchers_restarted: bool,
    /// Why the Continuous-mode watchers refused to propagate a deletion since the last
    /// full sync (their deletion budget ran out).
    pub watch_prune_refusal: Option<String>,
}

/// The facts of resolved references the decision needs.
#[derive(Debug, Clone, Default)]
pub struct References {
    /// The source RemoteCluster (`namespace/name`), for messages.
    pub source_cluster: String,
    /// The source RemoteCluster's `defaultSchedule`.
    pub default_schedule: Option<String>,
}

/// Why the references cannot be resolved, as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolvable {
    /// Condition reason.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// Only a change of the objects can help (`Stalled`).
    pub permanent: bool,
    /// The ClusterMapping is paused (which pauses the mapping).
    pub paused: bool,
}

/// What this reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// `spec.paused`: watchers stop, nothing runs until the spec changes.
    Paused,
    /// The references cannot be resolved: report it and look again after `requeue`.
    Unresolved {
        /// Why.
        why: Unresolvable,
        /// Stop the watchers (the ClusterMapping is paused).
        stop_watchers: bool,
        /// When to look again.
        requeue: Duration,
    },
    /// Scheduled mode without a usable schedule: stalled until the spec changes.
    InvalidSchedule {
        /// What is wrong.
        message: String,
    },
    /// Nothing is due.
    Wait(Wait),
    /// Run a full sync now.
    Sync(Run),
}

/// A reconcile with nothing due.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// `status.nextSyncTime` (Scheduled mode's next fire).
    pub next_sync_time: Option<Time>,
    /// Manual mode never synced: `Ready` says a trigger is awaited.
    pub awaiting_trigger: bool,
    /// When to come back (`None`: only on a change).
    pub requeue: Option<Duration>,
    /// The watchers refused a deletion (Continuous mode): `PruneBlocked` says why.
    pub prune_refusal: Option<String>,
}

/// A sync to run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The mode in effect.
    pub mode: ReplicationMode,
    /// The manual trigger value this sync handles (`status.lastSyncNowValue`).
    pub trigger: Option<String>,
    /// `status.nextSyncTime` while the sync runs.
    pub next_sync_time: Option<Time>,
    /// Scheduled mode's schedule (for the next fire afterwards).
    pub schedule: Option<Schedule>,
    /// The scheduled fire this sync catches up, missed while the controller was down.
    pub catch_up: Option<CatchUp>,
    /// The sync resumes one a dead controller left `Running`.
    pub resumed: bool,
    /// PVC data is copied after the resources (`pvcConfig.syncData`).
    pub copy_data: bool,
}

impl PartialEq for Run {
    /// Schedules are equal when parsed from the same expression in the same zone.
    fn eq(&self, other: &Self) -> bool {
        let schedule =
            |s: &Option<Schedule>| s.as_ref().map(|s| (s.source().to_owned(), s.time_zone()));
        self.mode == other.mode
            && self.trigger == other.trigger
            && self.next_sync_time == other.next_sync_time
            && schedule(&self.schedule) == schedule(&other.schedule)
            && self.catch_up == other.catch_up
            && self.resumed == other.resumed
            && self.copy_data == other.copy_data
    }
}

/// A scheduled fire missed while the controller was down (`dr_syncer_missed_schedules_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// The first missed fire.
    pub fire: DateTime<Utc>,
    /// Fires missed (counted in the metric).
    pub missed: u64,
}

impl Decision {
    /// When the controller comes back after a reconcile that ran no sync.
    pub fn action(&self) -> Action {
        match self {
            Decision::Unresolved { requeue, .. } => Action::requeue(*requeue),
            Decision::Wait(w) => w.requeue.map_or_else(Action::await_change, Action::requeue),
            Decision::Paused | Decision::InvalidSchedule { .. } | Decision::Sync(_) => {
                Action::await_change()
            }
        }
    }
}

/// Whether Continuous-mode watchers run for a resolved mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStep {
    /// Watchers run (started unless already running for the same spec and clusters).
    Run,
    /// No watchers (other mode, or `continuous.watchResources: false`).
    Stop,
}

/// Whether the watchers of a resolved mapping run: Continuous mode with `watchResources`.
pub fn watch_step(nm: &NamespaceMapping) -> WatchStep {
    if nm.spec.effective_mode() == ReplicationMode::Continuous && watch_enabled(nm) {
        WatchStep::Run
    } else {
        WatchStep::Stop
    }
}

/// The manual trigger value, if the annotation is set: `sync-now` wins over `trigger-sync`.
pub fn trigger_value(nm: &NamespaceMapping) -> Option<String> {
    let annotations = nm.annotations();
    annotations
        .get(SYNC_NOW)
        .or_else(|| annotations.get(TRIGGER_SYNC))
        .filter(|v| !v.is_empty())
        .cloned()
}

/// Whether the trigger annotation holds a value not handled yet.
pub fn pending_trigger(nm: &NamespaceMapping, status: &NamespaceMappingStatus) -> Option<String> {
    trigger_value(nm).filter(|v| status.last_sync_now_value.as_deref() != Some(v.as_str()))
}

/// Whether the mapping asks for PVC data.
pub fn wants_data(nm: &NamespaceMapping) -> bool {
    nm.spec.pvc_config.as_ref().is_some_and(|p| p.sync_data)
}

/// Decides the reconcile of `nm` with the status it has (as read) at `now`.
pub fn decide(
    nm: &NamespaceMapping,
    status: &NamespaceMappingStatus,
    observed: &Observed,
    now: DateTime<Utc>,
) -> Decision {
    if nm.spec.paused {
        return Decision::Paused;
    }
    let references = match &observed.references {
        None => return Decision::Paused,
        Some(Err(why)) => {
            return Decision::Unresolved {
                stop_watchers: why.paused,
                requeue: Duration::from_secs(if why.paused { 60 } else { 15 }),
                why: why.clone(),
            };
        }
        Some(Ok(references)) => references,
    };
    let mode = nm.spec.effective_mode();
    let spec_changed = status.observed_generation != nm.metadata.generation;
    let trigger = pending_trigger(nm, status);

    let mut schedule = None;
    let mut catch_up = None;
    let mut next_sync_time = None;
    let due = match mode {
        ReplicationMode::Manual => {
            if trigger.is_some() {
                Due::Now
            } else {
                Due::Later(None)
            }
        }
        ReplicationMode::Scheduled => {
            let parsed = match schedule_of(nm, references) {
                Ok(parsed) => parsed,
                Err(message) => return Decision::InvalidSchedule { message },
            };
            let fire = scheduled(&parsed, status, spec_changed, now);
            schedule = Some(parsed);
            catch_up = fire.catch_up;
            next_sync_time = fire.next_sync_time;
            fire.due
        }
        ReplicationMode::Continuous => {
            continuous(nm, status, observed.watchers_restarted, spec_changed, now)
        }
    };
    // A sync this process never ran is still marked Running: the previous controller died
    // mid-sync. Run it again so the target converges.
    let resumed = status.phase == Some(SyncPhase::Running) && !observed.synced_here;
    let due = if trigger.is_some() || retry_due(status, now) || resumed {
        Due::Now
    } else {
        due
    };
    match due {
        Due::Now => Decision::Sync(Run {
            mode,
            trigger,
            next_sync_time,
            schedule,
            catch_up,
            resumed,
            copy_data: wants_data(nm),
        }),
        Due::Later(after) => Decision::Wait(Wait {
            next_sync_time,
            awaiting_trigger: mode == ReplicationMode::Manual
                && status.last_sync_time.is_none()
                && status.retry_status.is_none(),
            requeue: after.or_else(|| retry_wait(status, now)),
            prune_refusal: observed.watch_prune_refusal.clone(),
        }),
    }
}

/// Whether a mode's own rule makes a sync due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Run a full sync now.
    Now,
    /// Nothing to do; come back after this long (`None`: only on change).
    Later(Option<Duration>),
}

/// The schedule in effect: `spec.schedule`, else the source RemoteCluster's default.
fn schedule_of(nm: &NamespaceMapping, references: &References) -> Result<Schedule, String> {
    let expr = nm
        .spec
        .schedule
        .clone()
        .or_else(|| references.default_schedule.clone())
        .ok_or_else(|| {
            format!(
                "Scheduled mode needs spec.schedule, or a defaultSchedule on RemoteCluster {}",
                references.source_cluster
            )
        })?;
    Schedule::parse(&expr, nm.spec.schedule_time_zone.as_deref())
        .map_err(|e| format!("spec.schedule {expr:?} is invalid: {e}"))
}

/// What the schedule says at a reconcile.
#[derive(Debug, Clone, PartialEq)]
struct Fire {
    due: Due,
    /// `status.nextSyncTime` from now on (kept as stored when due).
    next_sync_time: Option<Time>,
    catch_up: Option<CatchUp>,
}

/// Scheduled mode: due when `nextSyncTime` has passed. Without a stored next time (first
/// reconcile, or status lost), a fire missed since the last sync is due at once.
fn scheduled(
    schedule: &Schedule,
    status: &NamespaceMappingStatus,
    spec_changed: bool,
    now_utc: DateTime<Utc>,
) -> Fire {
    let stored = status.next_sync_time.as_ref().and_then(time_to_chrono);
    let next = match (stored, spec_changed) {
        (Some(next), false) => Some(next),
        _ => match status.last_sync_time.as_ref().and_then(time_to_chrono) {
            Some(last) if !spec_changed => schedule.next_after(last),
            _ => schedule.next_after(now_utc),
        },
    };
    let Some(next) = next else {
        return Fire {
            due: Due::Later(None),
            next_sync_time: None,
            catch_up: None,
        };
    };
    if next <= now_utc {
        let missed = schedule
            .upcoming(next)
            .take_while(|t| *t <= now_utc)
            .take(10_000)
            .count();
        // Later than a second past its time means the run was missed (controller down).
        let catch_up = (now_utc - next > chrono::Duration::seconds(1)).then(|| CatchUp {
            fire: next,
            missed: u64::try_from(missed + 1).unwrap_or(1),
        });
        return Fire {
            due: Due::Now,
            next_sync_time: status.next_sync_time.clone(),
            catch_up,
        };
    }
    Fire {
        due: Due::Later(Some(until(next, now_utc))),
        next_sync_time: time_from_chrono(next),
        catch_up: None,
    }
}

/// Time from `now` to `t`, plus a few milliseconds so the timer never fires early.
fn until(t: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (t - now).to_std().unwrap_or_default() + Duration::from_millis(20)
}

/// Continuous mode's full resync interval (`continuous.backgroundSyncInterval`, 1h).
fn background_interval(nm: &NamespaceMapping) -> Duration {
    nm.spec
        .continuous
        .as_ref()
        .and_then(|c| dr_syncer_crds::common::parse_duration(&c.background_sync_interval).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(3600))
}

fn watch_enabled(nm: &NamespaceMapping) -> bool {
    nm.spec
        .continuous
        .as_ref()
        .is_none_or(|c| c.watch_resources)
}

/// Continuous mode: a full sync is due when the watchers were (re)started, the spec
/// changed, or the background interval has passed since the last sync.
fn continuous(
    nm: &NamespaceMapping,
    status: &NamespaceMappingStatus,
    restarted: bool,
    spec_changed: bool,
    now_utc: DateTime<Utc>,
) -> Due {
    let interval = background_interval(nm);
    let last = status.last_sync_time.as_ref().and_then(time_to_chrono);
    let due = match last {
        None => true,
        Some(last) => (now_utc - last).to_std().unwrap_or_default() >= interval,
    };
    if restarted || due || spec_changed || status.last_sync_time.is_none() {
        return Due::Now;
    }
    let next = last.map(|l| l + chrono::Duration::from_std(interval).unwrap_or_default());
    Due::Later(next.map(|n| until(n, now_utc)))
}

fn retry_due(status: &NamespaceMappingStatus, now: DateTime<Utc>) -> bool {
    status
        .retry_status
        .as_ref()
        .and_then(|r| r.next_retry_time.as_ref())
        .and_then(time_to_chrono)
        .is_some_and(|t| t <= now)
}

fn retry_wait(status: &NamespaceMappingStatus, now: DateTime<Utc>) -> Option<Duration> {
    let t = status
        .retry_status
        .as_ref()?
        .next_retry_time
        .as_ref()
        .and_then(time_to_chrono)?;
    Some(until(t, now))
}

/// How a sync ended, as the follow-up needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The resource sync ran; `all_ok` when no object failed.
    Synced {
        /// No object failed.
        all_ok: bool,
    },
    /// The resource sync failed as a whole.
    Failed {
        /// Retrying cannot help.
        permanent: bool,
    },
}

/// What follows a sync: the status fields of the next wake-up and when it is.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    /// `status.nextSyncTime`.
    pub next_sync_time: Option<Time>,
    /// `status.retryStatus`.
    pub retry_status: Option<RetryStatus>,
    /// When to come back (`None`: only on a change).
    pub requeue: Option<Duration>,
}

impl FollowUp {
    /// The reconcile's result.
    pub fn action(&self) -> Action {
        self.requeue
            .map_or_else(Action::await_change, Action::requeue)
    }
}

/// The follow-up of `run` that ended as `verdict`; `status` is the mapping's status as
/// read (its retry state).
pub fn after_sync(
    nm: &NamespaceMapping,
    run: &Run,
    status: &NamespaceMappingStatus,
    verdict: Verdict,
    now: DateTime<Utc>,
) -> FollowUp {
    match verdict {
        Verdict::Synced { all_ok } => {
            let retry_status = if all_ok {
                None
            } else {
                status.retry_status.clone()
            };
            after_success(run, nm, retry_status, now)
        }
        Verdict::Failed { permanent } => {
            after_failure(run, nm, permanent, status.retry_status.as_ref(), now)
        }
    }
}

/// Next wake-up after a successful sync.
fn after_success(
    run: &Run,
    nm: &NamespaceMapping,
    retry_status: Option<RetryStatus>,
    now_utc: DateTime<Utc>,
) -> FollowUp {
    let (next_sync_time, requeue) = match run.mode {
        ReplicationMode::Manual => (run.next_sync_time.clone(), None),
        ReplicationMode::Scheduled => schedule_next(run.schedule.as_ref(), now_utc),
        ReplicationMode::Continuous => (run.next_sync_time.clone(), Some(background_interval(nm))),
    };
    FollowUp {
        next_sync_time,
        retry_status,
        requeue,
    }
}

/// The next fire after `now` (`nextSyncTime`) and the wait until it.
fn schedule_next(
    schedule: Option<&Schedule>,
    now_utc: DateTime<Utc>,
) -> (Option<Time>, Option<Duration>) {
    match schedule.and_then(|s| s.next_after(now_utc)) {
        Some(next) => (time_from_chrono(next), Some(until(next, now_utc))),
        None => (None, None),
    }
}

/// Next wake-up after a failed sync: a retry per `retryConfig` while retries remain;
/// afterwards Scheduled waits for its next fire, Continuous keeps retrying at the longest
/// backoff (so it recovers by itself), Manual waits for a new trigger.
fn after_failure(
    run: &Run,
    nm: &NamespaceMapping,
    permanent: bool,
    retry: Option<&RetryStatus>,
    now_utc: DateTime<Utc>,
) -> FollowUp {
    let mode = run.mode;
    // Keep the schedule running whatever happens to the retries.
    let next_sync_time = if mode == ReplicationMode::Scheduled {
        schedule_next(run.schedule.as_ref(), now_utc).0
    } else {
        run.next_sync_time.clone()
    };
    if permanent {
        // Discovery may change (a CRD installed): look again now and then.
        return FollowUp {
            next_sync_time,
            retry_status: None,
            requeue: Some(Duration::from_secs(60)),
        };
    }
    let backoff = Backoff::from_spec(nm.spec.retry_config.as_ref());
    let remaining = match retry {
        Some(r) => r.retries_remaining - 1,
        None => i32::try_from(backoff.max_retries).unwrap_or(0),
    };
    let wait = if remaining > 0 {
        let attempt =
            u32::try_from(i32::try_from(backoff.max_retries).unwrap_or(0) - remaining).unwrap_or(0);
        Some(backoff.delay(attempt))
    } else if mode == ReplicationMode::Continuous {
        Some(backoff.max)
    } else {
        None
    };
    match wait {
        Some(wait) => {
            let next = now_utc + chrono::Duration::from_std(wait).unwrap_or_default();
            FollowUp {
                next_sync_time,
                retry_status: Some(RetryStatus {
                    next_retry_time: time_from_chrono(next),
                    retries_remaining: remaining.max(0),
                    backoff_duration: Some(go_duration(wait)),
                }),
                requeue: Some(wait + Duration::from_millis(20)),
            }
        }
        None => {
            let requeue = match mode {
                ReplicationMode::Scheduled => next_sync_time
                    .as_ref()
                    .and_then(time_to_chrono)
                    .map(|n| until(n, now_utc)),
                _ => None,
            };
            FollowUp {
                next_sync_time,
                retry_status: None,
                requeue,
            }
        }
    }
}

#[cfg(test)]
mod tests;

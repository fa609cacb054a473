//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never both write.
//!
//! The protocol is client-go's: a candidate takes the Lease when it is free, already its
//! own, or has not been renewed for `lease_duration` *as observed on the candidate's own
//! clock* (no cross-machine clock comparison). Every write carries the `resourceVersion`
//! read just before, so two candidates racing for the same Lease cannot both win: the API
//! server rejects the second write with 409 Conflict. The leader renews every
//! `retry_period`; if it cannot renew within `renew_deadline` (shorter than
//! `lease_duration`), it reports the leadership lost, and the caller stops writing (the
//! binary exits) before any other replica may take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

/// Timings and identity of one candidate.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (pod name + random suffix).
    pub identity: String,
    /// How long a Lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up leadership.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// The usual timings (15 s / 10 s / 2 s), as in client-go.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        LeaderConfig {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why a Lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The API server refused or could not be reached.
    #[error("lease {name}: {source}")]
    Api {
        /// Lease name.
        name: String,
        /// The kube error.
        #[source]
        source: kube::Error,
    },
}

/// What the candidate saw of the Lease last time, to judge expiry on its own clock.
#[derive(Debug, Default)]
struct Observation {
    record: Option<(String, String)>, // (holder, resourceVersion)
    since: Option<Instant>,
}

impl Observation {
    /// Updates the observation; returns how long the record has been unchanged.
    fn observe(&mut self, holder: &str, resource_version: &str, now: Instant) -> Duration {
        let record = (holder.to_owned(), resource_version.to_owned());
        if self.record.as_ref() != Some(&record) {
            self.record = Some(record);
            self.since = Some(now);
        }
        self.since
            .map(|since| now.saturating_duration_since(since))
            .unwrap_or_default()
    }
}

/// Whether `me` may take a Lease held by `holder` that has been unchanged for `unchanged`.
pub fn may_acquire(holder: Option<&str>, me: &str, unchanged: Duration, lease: Duration) -> bool {
    match holder {
        None | Some("") => true,
        Some(h) if h == me => true,
        Some(_) => unchanged >= lease,
    }
}

/// A held leadership: `lost` is cancelled when renewal fails (stop writing at once).
pub struct Leadership {
    /// Cancelled when this replica is no longer the leader.
    pub lost: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Stops renewing (the Lease then expires after `lease_duration`).
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Waits until this replica holds the Lease (or `shutdown` fires: `Ok(None)`), then keeps
/// renewing it in the background.
pub async fn acquire(
    client: Client,
    config: LeaderConfig,
    shutdown: CancellationToken,
) -> Result<Option<Leadership>, LeaderError> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observation = Observation::default();
    loop {
        match try_acquire_or_renew(&api, &config, &mut observation).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "leader election attempt failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(config.retry_period) => {}
        }
    }
    tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
    let lost = CancellationToken::new();
    let task = tokio::spawn(renew_loop(api, config, observation, lost.clone()));
    Ok(Some(Leadership { lost, task }))
}

async fn renew_loop(
    api: Api<Lease>,
    config: LeaderConfig,
    mut observation: Observation,
    lost: CancellationToken,
) {
    let mut last_renew = Instant::now();
    loop {
        tokio::time::sleep(config.retry_period).await;
        match try_acquire_or_renew(&api, &config, &mut observation).await {
            Ok(true) => last_renew = Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %config.name, "lease taken by another replica");
                lost.cancel();
                return;
            }
            Err(error) => tracing::warn!(%error, "renewing the lease failed"),
        }
        if last_renew.elapsed() >= config.renew_deadline {
            tracing::error!(lease = %config.name, "could not renew the lease in time");
            lost.cancel();
            return;
        }
    }
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn lease_seconds(config: &LeaderConfig) -> i32 {
    i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX)
}

/// One attempt: `Ok(true)` if this replica holds the Lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaderConfig,
    observation: &mut Observation,
) -> Result<bool, LeaderError> {
    let api_error = |source| LeaderError::Api {
        name: config.name.clone(),
        source,
    };
    let Some(mut lease) = api.get_opt(&config.name).await.map_err(api_error)? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(lease_seconds(config)),
                acquire_time: Some(micro_now()),
                renew_time: Some(micro_now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(api_error(source)),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone();
    let unchanged = observation.observe(
        holder.as_deref().unwrap_or(""),
        &lease.resource_version().unwrap_or_default(),
        Instant::now(),
    );
    if !may_acquire(
        holder.as_deref(),
        &config.identity,
        unchanged,
        config.lease_duration,
    ) {
        return Ok(false);
    }
    let taking_over = holder.as_deref() != Some(config.identity.as_str());
    let mut new_spec = spec;
    new_spec.renew_time = Some(micro_now());
    new_spec.lease_duration_seconds = Some(lease_seconds(config));
    if taking_over {
        new_spec.holder_identity = Some(config.identity.clone());
        new_spec.acquire_time = Some(micro_now());
        new_spec.lease_transitions = Some(new_spec.lease_transitions.unwrap_or(0) + 1);
    }
    lease.spec = Some(new_spec);
    // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(updated) => {
            observation.observe(
                &config.identity,
                &updated.resource_version().unwrap_or_default(),
                Instant::now(),
            );
            Ok(true)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(source) => Err(api_error(source)),
    }
}

/// Gives the Lease up on clean shutdown so the next replica need not wait for expiry.
pub async fn release(client: Client, config: &LeaderConfig) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    if let Err(error) = api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(%error, "releasing the lease failed");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn acquire_rules() {
        let lease = Duration::from_secs(15);
        assert!(may_acquire(None, "a", Duration::ZERO, lease));
        assert!(may_acquire(Some(""), "a", Duration::ZERO, lease));
        assert!(may_acquire(Some("a"), "a", Duration::ZERO, lease));
        assert!(!may_acquire(Some("b"), "a", Duration::from_secs(14), lease));
        assert!(may_acquire(Some("b"), "a", Duration::from_secs(15), lease));
    }

    #[test]
    fn expiry_is_measured_from_the_last_observed_change() {
        let mut obs = Observation::default();
        let t0 = Instant::now();
        assert_eq!(obs.observe("b", "1", t0), Duration::ZERO);
        assert_eq!(
            obs.observe("b", "1", t0 + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        // A renewal (new resourceVersion) restarts the clock.
        assert_eq!(
            obs.observe("b", "2", t0 + Duration::from_secs(6)),
            Duration::ZERO
        );
        assert_eq!(
            obs.observe("b", "2", t0 + Duration::from_secs(20)),
            Duration::from_secs(14)
        );
    }

    #[test]
    fn renew_deadline_is_shorter_than_lease() {
        let c = LeaderConfig::new("ns".into(), "l".into(), "me".into());
        assert!(c.renew_deadline < c.lease_duration);
        assert!(c.retry_period < c.renew_deadline);
    }
}

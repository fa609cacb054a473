//! The one worker-pod runner: create the pod, create its per-run Secret owned by it, await
//! its end by watch under a deadline, hand back the terminated pod, and delete both on
//! every path ([`run_to_end`]). The two jobs are thin on top: [`run`] copies one PVC,
//! [`run_check`] runs a ClusterMapping's connectivity check. [`sweep`] removes what a
//! crashed controller left behind.

use std::time::Duration;

use dr_syncer_worker_wire::SyncSummary;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::delete::delete_and_finalize;
use kube::{Client, ResourceExt};

use super::render::{
    CHECK_NAMESPACE, DEADLINE_MARGIN_SECS, WorkerRequest, check_name, check_namespace, check_owner,
    check_pod, check_secret, mapping_selector, render_pod, render_secret,
};
use super::result::{
    CheckOutcome, CheckPodError, WorkerPodError, check_result, describe_state, result_from_pod,
};
use crate::dataplane::config::PodImage;
use crate::dataplane::keys::WorkerCredentials;
use crate::k8s::FIELD_MANAGER;
use crate::k8s::wait::{self, WaitError};
use crate::replicate::MappingId;

/// How long past the pod's deadline the controller waits for it (scheduling, volume
/// binding, image pull happen before the pod's clock starts).
pub const START_GRACE: Duration = Duration::from_secs(180);
/// How long past its own timeout the controller waits for a check pod.
const CHECK_GRACE: Duration = Duration::from_secs(60);

/// Clients of the cluster a worker pod runs in: one for requests, one for the long watch.
#[derive(Clone)]
pub struct Destination {
    /// Requests (short timeout).
    pub client: Client,
    /// Watches (no read timeout).
    pub watch_client: Client,
}

/// Why a worker pod did not run to its end; each job words it in its own terms.
#[derive(Debug, thiserror::Error)]
pub enum PodRunError {
    /// The pod could not be created.
    #[error("creating the pod: {0}")]
    CreatePod(#[source] kube::Error),
    /// Its per-run Secret could not be created.
    #[error("creating the pod's Secret: {0}")]
    CreateSecret(#[source] kube::Error),
    /// Watching the pod failed.
    #[error("watching the pod: {0}")]
    Watch(#[source] kube::runtime::wait::Error),
    /// The pod did not finish within the deadline.
    #[error("the pod did not finish within {}s", .waited.as_secs())]
    NotFinished {
        /// How long the controller waited.
        waited: Duration,
        /// The pod as last read (`None`: not found).
        last: Option<Box<Pod>>,
    },
    /// The pod vanished before finishing (deleted by someone else).
    #[error("the pod was deleted before it finished")]
    Vanished,
}

/// Runs one worker pod to its end: creates `pod` in `namespace`, then the Secret
/// `secret_for` renders for the created pod (it knows the pod's uid, to be owned by it),
/// waits by watch at most `limit` for the pod to finish, and deletes both whatever
/// happened. Returns the terminated pod, for the job to read its result.
pub async fn run_to_end(
    dest: &Destination,
    namespace: &str,
    pod: &Pod,
    secret_for: impl FnOnce(&Pod) -> Secret,
    limit: Duration,
) -> Result<Pod, PodRunError> {
    let pods: Api<Pod> = Api::namespaced(dest.client.clone(), namespace);
    let created = pods
        .create(&PostParams::default(), pod)
        .await
        .map_err(PodRunError::CreatePod)?;
    let name = created.name_any();
    let result = await_created(dest, namespace, &created, secret_for, limit).await;
    cleanup(dest, namespace, &name).await;
    result
}

async fn await_created(
    dest: &Destination,
    namespace: &str,
    pod: &Pod,
    secret_for: impl FnOnce(&Pod) -> Secret,
    limit: Duration,
) -> Result<Pod, PodRunError> {
    let name = pod.name_any();
    let secrets: Api<Secret> = Api::namespaced(dest.client.clone(), namespace);
    secrets
        .create(&PostParams::default(), &secret_for(pod))
        .await
        .map_err(PodRunError::CreateSecret)?;
    let watch: Api<Pod> = Api::namespaced(dest.watch_client.clone(), namespace);
    let done = wait::until(watch, &name, |p: Option<&Pod>| is_finished(p), limit).await;
    match done {
        Ok(Some(pod)) => Ok(pod),
        Ok(None) => Err(PodRunError::Vanished),
        Err(WaitError::Watch { source, .. }) => Err(PodRunError::Watch(source)),
        Err(WaitError::TimedOut { .. }) => {
            let pods: Api<Pod> = Api::namespaced(dest.client.clone(), namespace);
            let last = pods.get_opt(&name).await.ok().flatten();
            Err(PodRunError::NotFinished {
                waited: limit,
                last: last.map(Box::new),
            })
        }
    }
}

fn is_finished(pod: Option<&Pod>) -> bool {
    match pod {
        None => true,
        Some(p) => matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ),
    }
}

/// Runs one data-sync worker to completion: creates the pod and its Secret, waits for the
/// end, reads the result, and deletes both whatever happened.
pub async fn run(
    dest: &Destination,
    req: &WorkerRequest,
    creds: &WorkerCredentials,
) -> Result<SyncSummary, WorkerPodError> {
    let limit =
        Duration::from_secs(req.options.timeout_secs() + DEADLINE_MARGIN_SECS) + START_GRACE;
    let secret_for = |pod: &Pod| {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        render_secret(req, &uid, creds)
    };
    match run_to_end(dest, &req.namespace, &render_pod(req), secret_for, limit).await {
        Ok(pod) => result_from_pod(&pod),
        Err(e) => Err(sync_error(&req.pod_name, e)),
    }
}

/// A runner failure in the words of a data sync.
fn sync_error(pod: &str, e: PodRunError) -> WorkerPodError {
    match e {
        PodRunError::CreatePod(e) | PodRunError::CreateSecret(e) => WorkerPodError::Api(e),
        PodRunError::Watch(e) => WorkerPodError::Watch(e),
        PodRunError::NotFinished { waited, last } => WorkerPodError::NotFinished {
            pod: pod.to_owned(),
            waited: waited.as_secs(),
            state: describe_state(last.as_deref()),
        },
        PodRunError::Vanished => WorkerPodError::Vanished(pod.to_owned()),
    }
}

/// Runs one connectivity-check pod of the ClusterMapping `mapping` in the target cluster
/// (in [`CHECK_NAMESPACE`], applied first) against every agent address, and reads its
/// per-agent report.
pub async fn run_check(
    dest: &Destination,
    mapping: &str,
    image: &PodImage,
    creds: &WorkerCredentials,
    addresses: &[String],
    timeout: Duration,
) -> Result<CheckOutcome, CheckPodError> {
    let namespaces: Api<Namespace> = Api::all(dest.client.clone());
    namespaces
        .patch(
            CHECK_NAMESPACE,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&check_namespace()),
        )
        .await
        .map_err(CheckPodError::Namespace)?;
    let name = check_name(mapping);
    let pod = check_pod(&name, image, addresses, timeout);
    let secret_for = |pod: &Pod| check_secret(&name, creds, check_owner(pod));
    match run_to_end(
        dest,
        CHECK_NAMESPACE,
        &pod,
        secret_for,
        timeout + CHECK_GRACE,
    )
    .await
    {
        Ok(pod) => check_result(&pod),
        Err(e) => Err(check_error(&name, e)),
    }
}

/// A runner failure in the words of a connectivity check.
fn check_error(pod: &str, e: PodRunError) -> CheckPodError {
    match e {
        PodRunError::CreatePod(e) => CheckPodError::CreatePod(e),
        PodRunError::CreateSecret(e) => CheckPodError::CreateSecret(e),
        PodRunError::Watch(e) => CheckPodError::Watch(e),
        PodRunError::NotFinished { waited, last } => CheckPodError::NotFinished {
            pod: pod.to_owned(),
            waited,
            phase: last
                .and_then(|p| p.status?.phase)
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "unknown".to_owned()),
        },
        PodRunError::Vanished => CheckPodError::Vanished(pod.to_owned()),
    }
}

/// How long deleting a worker pod may take before the controller moves on (the garbage
/// collector and the next sweep finish the job).
const DELETE_TIMEOUT: Duration = Duration::from_secs(60);

/// Deletes a worker's Secret and pod (waiting until the pod is gone); failures are logged.
pub async fn cleanup(dest: &Destination, namespace: &str, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(dest.client.clone(), namespace);
    if let Err(e) = secrets.delete(name, &DeleteParams::default()).await
        && !is_not_found(&e)
    {
        tracing::warn!(secret = name, error = %e, "deleting a worker Secret failed");
    }
    let pods: Api<Pod> = Api::namespaced(dest.watch_client.clone(), namespace);
    let params = DeleteParams::default().grace_period(0);
    match tokio::time::timeout(DELETE_TIMEOUT, delete_and_finalize(pods, name, &params)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(pod = name, error = %e, "deleting a worker pod failed"),
        Err(_) => tracing::warn!(
            pod = name,
            "worker pod still terminating; the next sync sweeps it"
        ),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Deletes every worker pod and Secret of the mapping in `namespace` (leftovers of a
/// controller that died mid-copy). Returns how many objects it deleted.
pub async fn sweep(
    dest: &Destination,
    namespace: &str,
    mapping: &MappingId,
) -> Result<usize, kube::Error> {
    let selector = mapping_selector(mapping);
    let params = ListParams::default().labels(&selector);
    let pods: Api<Pod> = Api::namespaced(dest.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(dest.client.clone(), namespace);
    let mut names: Vec<String> = pods
        .list_metadata(&params)
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    for s in secrets.list_metadata(&params).await?.items {
        let name = s.name_any();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in &names {
        tracing::info!(%name, "removing a leftover worker pod/Secret");
        cleanup(dest, namespace, name).await;
    }
    Ok(names.len())
}

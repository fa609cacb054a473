//! Reading a finished worker pod: its phase, its container's termination message and the
//! wire contract's JSON in it, turned into a typed result for each job: a
//! [`SyncSummary`] or a [`WorkerPodError`] (with its condition reason and whether a retry
//! may help) for a data sync, a [`CheckOutcome`] or a [`CheckPodError`] for a check.

use std::time::Duration;

use dr_syncer_worker_wire::{CheckReport, FailureReport, SyncSummary, kind};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::ResourceExt;

use super::options::OptionsError;
use super::render::{CHECK_CONTAINER, CHECK_NAMESPACE, WORKER_CONTAINER};
use crate::status::reasons;

/// Why a data-sync worker pod did not copy its PVC.
#[derive(Debug, thiserror::Error)]
pub enum WorkerPodError {
    /// The worker ran and reported a failure.
    #[error("worker failed ({}): {}", .0.kind, .0.error)]
    Worker(FailureReport),
    /// The pod failed without a readable report.
    #[error("worker pod {pod} failed: {message}")]
    PodFailed {
        /// Pod name.
        pod: String,
        /// Pod status reason and message, container exit.
        message: String,
        /// Whether the pod hit its deadline.
        deadline: bool,
    },
    /// The pod did not finish in time (never scheduled, volume never bound, hung).
    #[error("worker pod {pod} did not finish within {waited}s: {state}")]
    NotFinished {
        /// Pod name.
        pod: String,
        /// Seconds waited.
        waited: u64,
        /// Last known pod state.
        state: String,
    },
    /// The pod vanished before finishing (deleted by someone else).
    #[error("worker pod {0} was deleted before it finished")]
    Vanished(String),
    /// The copy settings are invalid.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The destination API failed.
    #[error("destination cluster: {0}")]
    Api(#[from] kube::Error),
    /// Watching the pod failed.
    #[error("destination cluster: {0}")]
    Watch(#[from] kube::runtime::wait::Error),
}

impl WorkerPodError {
    /// Condition reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            WorkerPodError::Worker(f) => match f.kind.as_str() {
                kind::HOST_KEY_MISMATCH => reasons::HOST_KEY_MISMATCH,
                kind::AUTH_REJECTED => reasons::AUTH_REJECTED,
                kind::CONNECTION => reasons::AGENT_UNREACHABLE,
                kind::SOURCE_VOLUME_UNSAFE => reasons::SOURCE_VOLUME_UNSAFE,
                kind::TARGET_BUSY => reasons::TARGET_BUSY,
                _ if is_not_mounted(&f.error) => reasons::VOLUME_NOT_MOUNTED,
                _ => reasons::DATA_SYNC_FAILED,
            },
            _ => reasons::DATA_SYNC_FAILED,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            WorkerPodError::Worker(f) => {
                f.transient
                    && matches!(
                        f.kind.as_str(),
                        kind::CONNECTION | kind::TIMEOUT | kind::SYNC | kind::TARGET_BUSY
                    )
            }
            WorkerPodError::PodFailed { deadline, .. } => *deadline,
            WorkerPodError::NotFinished { .. }
            | WorkerPodError::Vanished(_)
            | WorkerPodError::Api(_)
            | WorkerPodError::Watch(_) => true,
            WorkerPodError::Options(_) => false,
        }
    }
}

/// The agent's refusal of a volume that is not on its node.
fn is_not_mounted(error: &str) -> bool {
    error.contains("not mounted") || error.contains("is not on node")
}

/// The worker's result from its terminated pod.
pub fn result_from_pod(pod: &Pod) -> Result<SyncSummary, WorkerPodError> {
    let name = pod.name_any();
    let status = pod.status.clone().unwrap_or_default();
    let terminated = terminated(pod, WORKER_CONTAINER);
    let message = terminated
        .as_ref()
        .and_then(|t| t.message.clone())
        .unwrap_or_default();
    let succeeded = status.phase.as_deref() == Some("Succeeded");
    if succeeded && let Ok(summary) = serde_json::from_str::<SyncSummary>(message.trim()) {
        return Ok(summary);
    }
    if let Ok(failure) = serde_json::from_str::<FailureReport>(message.trim()) {
        return Err(WorkerPodError::Worker(failure));
    }
    let deadline = status.reason.as_deref() == Some("DeadlineExceeded");
    let mut parts: Vec<String> = Vec::new();
    parts.extend(status.reason.clone());
    parts.extend(status.message.clone());
    if let Some(t) = &terminated {
        parts.push(format!("exit code {}", t.exit_code));
        parts.extend(t.reason.clone());
    }
    if !message.trim().is_empty() {
        parts.push(crate::k8s::truncate(message.trim().to_owned(), 500));
    }
    if succeeded {
        parts.push("no readable summary in the termination message".into());
    }
    Err(WorkerPodError::PodFailed {
        pod: name,
        message: parts.join("; "),
        deadline,
    })
}

/// Pod phase and container waiting reason, for a "did not finish" message.
pub fn describe_state(pod: Option<&Pod>) -> String {
    let Some(status) = pod.and_then(|p| p.status.as_ref()) else {
        return "pod not found".into();
    };
    let mut parts = vec![format!(
        "phase {}",
        status.phase.as_deref().unwrap_or("unknown")
    )];
    for c in status.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            parts.push(format!(
                "waiting: {} {}",
                w.reason.as_deref().unwrap_or_default(),
                w.message.as_deref().unwrap_or_default()
            ));
        }
    }
    for c in status.conditions.iter().flatten() {
        if c.status == "False"
            && let Some(m) = &c.message
        {
            parts.push(format!("{}: {m}", c.type_));
        }
    }
    parts.join("; ")
}

/// The terminated state of the named container, when it has ended.
fn terminated(pod: &Pod, container: &str) -> Option<ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == container)
        .and_then(|c| c.state.as_ref()?.terminated.clone())
}

/// Why the ClusterMapping connectivity check produced no per-agent report.
#[derive(Debug, thiserror::Error)]
pub enum CheckPodError {
    /// The check namespace could not be applied.
    #[error("cannot create namespace {CHECK_NAMESPACE} in the target cluster: {0}")]
    Namespace(#[source] kube::Error),
    /// The check pod could not be created.
    #[error("cannot create the check pod in the target cluster: {0}")]
    CreatePod(#[source] kube::Error),
    /// Its per-run Secret could not be created.
    #[error("cannot create the check Secret: {0}")]
    CreateSecret(#[source] kube::Error),
    /// Watching the pod failed.
    #[error("{0}")]
    Watch(#[source] kube::runtime::wait::Error),
    /// The pod did not finish in time.
    #[error("the check pod {CHECK_NAMESPACE}/{pod} did not finish within {}s (phase {phase})", .waited.as_secs())]
    NotFinished {
        /// Pod name.
        pod: String,
        /// How long the controller waited.
        waited: Duration,
        /// Its last phase, `unknown` when unknown.
        phase: String,
    },
    /// The pod vanished before finishing (deleted by someone else).
    #[error("the check pod {CHECK_NAMESPACE}/{0} was deleted before it finished")]
    Vanished(String),
    /// The worker could not check at all and said why.
    #[error("{}", .0.error)]
    Failed(FailureReport),
    /// The termination message is neither a check report nor a failure report.
    #[error("unreadable check result: {0}")]
    Unreadable(#[source] serde_json::Error),
}

/// A finished check: the worker's per-agent report and the node the pod ran on.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    /// The `--check` report.
    pub report: CheckReport,
    /// The target node the check ran from.
    pub node: String,
}

/// The check's result from its terminated pod (whatever its phase: a failed check pod
/// still reports which agents refused it).
pub fn check_result(pod: &Pod) -> Result<CheckOutcome, CheckPodError> {
    let message = terminated(pod, CHECK_CONTAINER)
        .and_then(|t| t.message)
        .unwrap_or_default();
    Ok(CheckOutcome {
        report: check_report(&message)?,
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
    })
}

/// Parses the check pod's termination message: a check report, or the failure report of
/// a worker that could not check at all (surfaced with its message).
pub fn check_report(message: &str) -> Result<CheckReport, CheckPodError> {
    serde_json::from_str::<CheckReport>(message).map_err(|e| {
        match serde_json::from_str::<FailureReport>(message) {
            Ok(failure) => CheckPodError::Failed(failure),
            Err(_) => CheckPodError::Unreadable(e),
        }
    })
}

#[cfg(test)]
mod tests;

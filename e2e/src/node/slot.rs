//! One container of a pod on a simulated node with its runtime bookkeeping (launch
//! decision, status record, process, restart back-off, probe timers), and the state
//! transitions of a single container that the pod worker applies.

use std::process::ExitStatus;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::image::Launch;
use super::process::{ContainerFiles, Proc, exit_info, termination_message};
use super::status::{Record, State};

/// First restart back-off (the kubelet uses 10 s; shorter keeps tests quick).
pub(super) const BACKOFF_START: Duration = Duration::from_secs(1);
/// Back-off cap (the kubelet uses 300 s).
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// One container of the pod with its runtime bookkeeping.
pub(super) struct Slot {
    pub(super) spec: Container,
    pub(super) launch: Result<Launch, String>,
    pub(super) record: Record,
    pub(super) proc: Option<Proc>,
    pub(super) token: u64,
    pub(super) files: ContainerFiles,
    pub(super) restart_at: Option<Instant>,
    pub(super) backoff: Duration,
    pub(super) next_probe: Option<Instant>,
    /// Next liveness check (only for tcpSocket/httpGet liveness probes).
    pub(super) next_liveness: Option<Instant>,
    /// Consecutive liveness failures.
    pub(super) liveness_failures: i32,
    /// Finished for good (no restart will follow).
    pub(super) done: bool,
    /// The next start is a restart (counted in restartCount once it happens).
    pub(super) pending_restart: bool,
}

impl Slot {
    /// A container not started yet: no process, no timers, the first back-off.
    pub(super) fn new(
        spec: Container,
        launch: Result<Launch, String>,
        record: Record,
        files: ContainerFiles,
    ) -> Slot {
        Slot {
            record,
            spec,
            launch,
            proc: None,
            token: 0,
            files,
            restart_at: None,
            backoff: BACKOFF_START,
            next_probe: None,
            next_liveness: None,
            liveness_failures: 0,
            done: false,
            pending_restart: false,
        }
    }

    /// When the running container started (now if it is not running), the start of the
    /// terminated state it is about to enter.
    pub(super) fn started_at(&self) -> Timestamp {
        match self.record.state {
            State::Running { started } => started,
            _ => Timestamp::now(),
        }
    }

    /// The terminated state the container's process exit leaves it in (exit code, reason,
    /// signal, and the termination message its policy asks for), and the exit code: one
    /// place for an exit seen by the pod loop and one forced by a stop.
    pub(super) fn exited(&self, status: Option<ExitStatus>) -> (State, i32) {
        let (code, reason, signal) = exit_info(status);
        let policy = self.spec.termination_message_policy.as_deref();
        let message = termination_message(&self.files, policy, code);
        let state = terminated(code, reason, message, signal, self.started_at());
        (state, code)
    }
}

/// Counts a restart when a restart (not a first start or a configuration retry) happens.
pub(super) fn count_restart(slot: &mut Slot) {
    if slot.pending_restart {
        slot.record.restarts += 1;
        slot.pending_restart = false;
    }
}

/// A placeholder "starts": an init placeholder completes at once, an app placeholder runs.
pub(super) fn placeholder_started(slot: &mut Slot, init: bool, now: Timestamp) {
    if init {
        slot.record.state = terminated(0, "Completed", String::new(), None, now);
        slot.done = true;
    } else {
        slot.record.state = State::Running { started: now };
        slot.record.ready = true;
    }
}

/// A terminated state ending now.
pub(super) fn terminated(
    code: i32,
    reason: &str,
    message: String,
    signal: Option<i32>,
    started: Timestamp,
) -> State {
    State::Terminated {
        exit_code: code,
        reason: reason.into(),
        message,
        signal,
        started,
        finished: Timestamp::now(),
    }
}

/// The liveness probe of a container, if it is one the node checks (tcpSocket, httpGet).
pub(super) fn liveness(c: &Container) -> Option<&Probe> {
    c.liveness_probe
        .as_ref()
        .filter(|p| p.tcp_socket.is_some() || p.http_get.is_some())
}

/// The readiness probe of a container, if any.
pub(super) fn probe(c: &Container) -> Option<&Probe> {
    c.readiness_probe.as_ref()
}

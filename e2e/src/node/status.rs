//! Pod status as the kubelet reports it, built from the runner's view of each container:
//! phase, IPs, start time, conditions and per-container states. Pure, so the phase rules are
//! unit tested.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A container's state as the runner tracks it.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Not running: being created, in back-off, or misconfigured.
    Waiting {
        /// ContainerCreating, CrashLoopBackOff, CreateContainerConfigError, PodInitializing.
        reason: String,
        /// Details for the user.
        message: Option<String>,
    },
    /// Running since `started`.
    Running {
        /// When the process started.
        started: Timestamp,
    },
    /// Finished.
    Terminated {
        /// Exit code (128 + signal for a signalled process).
        exit_code: i32,
        /// Completed or Error.
        reason: String,
        /// The termination message.
        message: String,
        /// Signal number, if killed by one.
        signal: Option<i32>,
        /// When it started.
        started: Timestamp,
        /// When it ended.
        finished: Timestamp,
    },
}

/// The runner's record of one container.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Container name.
    pub name: String,
    /// Image as in the spec.
    pub image: String,
    /// Image id reported back (binary path for ours).
    pub image_id: String,
    /// Current state.
    pub state: State,
    /// The previous run's final state.
    pub last: Option<State>,
    /// Restarts so far.
    pub restarts: i32,
    /// Passed its readiness check.
    pub ready: bool,
    /// A native sidecar: an init container with `restartPolicy: Always`, restarted whatever
    /// the pod's policy, running alongside the app containers, its exit code irrelevant to
    /// the phase.
    pub sidecar: bool,
}

impl Record {
    /// A fresh record in `ContainerCreating`.
    pub fn new(name: &str, image: &str, image_id: String) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            image_id,
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last: None,
            restarts: 0,
            ready: false,
            sidecar: false,
        }
    }

    /// Running now.
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// Terminated with exit code 0.
    pub fn succeeded(&self) -> bool {
        matches!(self.state, State::Terminated { exit_code: 0, .. })
    }

    /// Terminated (for good, or until a restart).
    pub fn terminated(&self) -> bool {
        matches!(self.state, State::Terminated { .. })
    }
}

/// Everything the status is built from.
#[derive(Clone, Debug)]
pub struct PodView<'a> {
    /// The node IP (hostIP and podIP).
    pub ip: Ipv4Addr,
    /// When the node first saw the pod.
    pub start_time: Timestamp,
    /// Init containers, in order.
    pub init: &'a [Record],
    /// App containers.
    pub main: &'a [Record],
    /// All init containers have succeeded.
    pub initialized: bool,
    /// The pod will not run again (restartPolicy exhausted).
    pub terminal: bool,
    /// Volumes are set up and containers may be started.
    pub sandbox_ready: bool,
    /// The node failed the pod as a whole (reason, message), e.g. `DeadlineExceeded`.
    pub failure: Option<(&'a str, &'a str)>,
}

/// The pod phase per the kubelet's rules.
pub fn phase(view: &PodView<'_>) -> &'static str {
    if view.failure.is_some() {
        return "Failed";
    }
    let init_failed = view.terminal
        && view
            .init
            .iter()
            .any(|r| !r.sidecar && r.terminated() && !r.succeeded());
    if init_failed {
        return "Failed";
    }
    if !view.initialized {
        return "Pending";
    }
    if view.terminal && view.main.iter().all(Record::terminated) {
        return if view.main.iter().all(Record::succeeded) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let started = view
        .main
        .iter()
        .any(|r| r.is_running() || r.restarts > 0 || r.terminated());
    if started { "Running" } else { "Pending" }
}

/// The full status document.
pub fn pod_status(view: &PodView<'_>, now: Timestamp) -> PodStatus {
    let phase = phase(view);
    let containers_ready = !view.main.is_empty() && view.main.iter().all(|r| r.ready);
    let ip = view.ip.to_string();
    let condition = |kind: &str, ok: bool| PodCondition {
        type_: kind.into(),
        status: if ok { "True" } else { "False" }.into(),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    };
    PodStatus {
        phase: Some(phase.into()),
        host_ip: Some(ip.clone()),
        host_ips: Some(vec![HostIP { ip: ip.clone() }]),
        pod_ip: Some(ip.clone()),
        pod_ips: Some(vec![PodIP { ip }]),
        start_time: Some(Time(view.start_time)),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", view.sandbox_ready),
            condition("Initialized", view.initialized),
            condition("Ready", containers_ready),
            condition("ContainersReady", containers_ready),
            condition("PodScheduled", true),
        ]),
        init_container_statuses: Some(view.init.iter().map(container_status).collect()),
        container_statuses: Some(view.main.iter().map(container_status).collect()),
        qos_class: None,
        reason: view.failure.map(|(reason, _)| reason.to_string()),
        message: view.failure.map(|(_, message)| message.to_string()),
        ..Default::default()
    }
}

/// One container's status.
fn container_status(r: &Record) -> ContainerStatus {
    ContainerStatus {
        name: r.name.clone(),
        image: r.image.clone(),
        image_id: r.image_id.clone(),
        container_id: Some(format!("testbed://{}-{}", r.name, r.restarts)),
        ready: r.ready,
        started: Some(r.is_running()),
        restart_count: r.restarts,
        state: Some(api_state(&r.state)),
        last_state: r.last.as_ref().map(api_state),
        ..Default::default()
    }
}

/// A state in API form.
fn api_state(state: &State) -> ContainerState {
    match state {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        State::Running { started } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started)),
            }),
            ..Default::default()
        },
        State::Terminated {
            exit_code,
            reason,
            message,
            signal,
            started,
            finished,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.clone()),
                message: (!message.is_empty()).then(|| message.clone()),
                signal: *signal,
                started_at: Some(Time(*started)),
                finished_at: Some(Time(*finished)),
                container_id: None,
            }),
            ..Default::default()
        },
    }
}

/// What the first container of a pod waits on, as the node reported it (reason and
/// message): how tests read `ErrImagePull` or `CreateContainerConfigError` from a pod.
pub fn first_waiting(pod: &k8s_openapi::api::core::v1::Pod) -> Option<&ContainerStateWaiting> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn rec(state: State) -> Record {
        let mut r = Record::new("c", "img", "id".into());
        r.state = state;
        r
    }

    fn done(code: i32) -> State {
        State::Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: "msg".into(),
            signal: None,
            started: Timestamp::UNIX_EPOCH,
            finished: Timestamp::UNIX_EPOCH,
        }
    }

    fn view<'a>(
        init: &'a [Record],
        main: &'a [Record],
        initialized: bool,
        terminal: bool,
    ) -> PodView<'a> {
        PodView {
            ip: Ipv4Addr::new(127, 0, 10, 1),
            start_time: Timestamp::UNIX_EPOCH,
            init,
            main,
            initialized,
            terminal,
            sandbox_ready: true,
            failure: None,
        }
    }

    #[test]
    fn phases_follow_the_kubelet_rules() {
        let creating = [Record::new("c", "img", "id".into())];
        assert_eq!(phase(&view(&[], &creating, true, false)), "Pending");
        assert_eq!(phase(&view(&[], &creating, false, false)), "Pending");
        let running = [rec(State::Running {
            started: Timestamp::UNIX_EPOCH,
        })];
        assert_eq!(phase(&view(&[], &running, true, false)), "Running");
        let ok = [rec(done(0))];
        assert_eq!(phase(&view(&[], &ok, true, true)), "Succeeded");
        let failed = [rec(done(0)), rec(done(2))];
        assert_eq!(phase(&view(&[], &failed, true, true)), "Failed");
        let init_failed = [rec(done(1))];
        assert_eq!(phase(&view(&init_failed, &creating, false, true)), "Failed");
        let mut backoff = rec(State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: None,
        });
        backoff.restarts = 1;
        assert_eq!(
            phase(&view(&[], &[backoff.clone()], true, false)),
            "Running"
        );
        let backoff = [backoff];
        let mut exceeded = view(&[], &backoff, true, true);
        exceeded.failure = Some(("DeadlineExceeded", "too long"));
        assert_eq!(phase(&exceeded), "Failed");
        let status = pod_status(&exceeded, Timestamp::UNIX_EPOCH);
        assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    }

    #[test]
    fn status_carries_ips_conditions_and_the_termination_message() {
        let ok = [rec(done(0))];
        let status = pod_status(&view(&[], &ok, true, true), Timestamp::UNIX_EPOCH);
        assert_eq!(status.pod_ip.as_deref(), Some("127.0.10.1"));
        assert_eq!(status.host_ip.as_deref(), Some("127.0.10.1"));
        let cs = &status.container_statuses.unwrap()[0];
        let terminated = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(terminated.message.as_deref(), Some("msg"));
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
        let conditions = status.conditions.unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
    }
}

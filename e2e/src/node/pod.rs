//! The per-pod worker: the kubelet's pod lifecycle for one pod on a simulated node.
//!
//! Volumes are prepared, init containers run to completion in order, then the app
//! containers run; exits are handled per `restartPolicy` (restart with back-off, or
//! terminal), readiness is checked (tcpSocket probes for real against the node IP, anything
//! else ready when running), and every transition is posted through the status subresource.
//! A deletionTimestamp stops the containers (SIGTERM, SIGKILL after the grace period) and
//! deletes the pod with grace 0, as the kubelet does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::ctx::NodeCtx;
use super::env::{Sources, pod_hostname};
use super::image::{Launch, resolve};
use super::launch;
use super::process::{ContainerFiles, ExecSpec, exit_info, spawn};
use super::sandbox::Prepared as Sandbox;
use super::slot::{
    BACKOFF_MAX, Slot, count_restart, liveness, placeholder_started, probe, terminated,
};
use super::sources::fetch_sources;
use super::status::{PodView, Record, State, pod_status};
use super::volumes::{self, Prepared, VolumeContext, prepare_all};

/// Retry delay for volume or configuration problems and failed status posts.
const RETRY: Duration = Duration::from_secs(2);
/// How often file-backed volumes are brought up to date (the kubelet syncs about every
/// minute; quicker here so tests of Secret updates stay short).
const VOLUME_RESYNC: Duration = Duration::from_secs(5);
/// Grace period when the pod names none.
const DEFAULT_GRACE: i64 = 30;
/// Upper bound of the grace period when the whole node shuts down.
const SHUTDOWN_GRACE_MAX: Duration = Duration::from_secs(30);

/// Why the worker's main loop ended.
enum Exit {
    Deleted,
    Vanished,
    Shutdown,
}

/// The worker for one pod.
struct Worker {
    ctx: Arc<NodeCtx>,
    pod: Pod,
    pod_rx: watch::Receiver<Option<Pod>>,
    shutdown: watch::Receiver<bool>,
    dir: PathBuf,
    start_time: Timestamp,
    init: Vec<Slot>,
    main: Vec<Slot>,
    initialized: bool,
    terminal: bool,
    sandbox_ready: bool,
    volumes: BTreeMap<String, Prepared>,
    sources: Sources,
    notify_tx: mpsc::UnboundedSender<u64>,
    notify_rx: mpsc::UnboundedReceiver<u64>,
    next_token: u64,
    dirty: bool,
    post_retry: Option<Instant>,
    /// A container hit a missing Secret/ConfigMap: fetch them again before the retry.
    refresh_sources: bool,
    /// Next periodic refresh of secret/configMap/downwardAPI/projected volumes.
    resync_at: Option<Instant>,
    /// `activeDeadlineSeconds` from when this node started the pod.
    deadline: Option<Instant>,
    /// Pod-level failure (reason, message).
    failure: Option<(String, String)>,
    /// This worker started at least one container, so the status it holds is real (a
    /// worker that ran nothing never overwrites what the API has).
    started_any: bool,
}

/// Runs a pod until it is deleted, vanishes from the API, or the node shuts down.
pub(crate) async fn run(
    ctx: Arc<NodeCtx>,
    pod_rx: watch::Receiver<Option<Pod>>,
    shutdown: watch::Receiver<bool>,
) {
    let Some(pod) = pod_rx.borrow().clone() else {
        return;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = ctx.cfg.state_dir.join("pods").join(&uid);
    let (notify_tx, notify_rx) = mpsc::unbounded_channel();
    let mut worker = Worker {
        ctx,
        pod,
        pod_rx,
        shutdown,
        dir,
        start_time: Timestamp::now(),
        init: Vec::new(),
        main: Vec::new(),
        initialized: false,
        terminal: false,
        sandbox_ready: false,
        volumes: BTreeMap::new(),
        sources: Sources::default(),
        notify_tx,
        notify_rx,
        next_token: 0,
        dirty: true,
        post_retry: None,
        refresh_sources: false,
        resync_at: None,
        deadline: None,
        failure: None,
        started_any: false,
    };
    worker.build_slots();
    let active = worker
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds);
    worker.deadline = active.map(|d| Instant::now() + secs(d.try_into().unwrap_or(i32::MAX)));
    let exit = worker.main_loop().await;
    worker.finish(exit).await;
}

impl Worker {
    /// Slots for init and app containers, with their launch decision.
    fn build_slots(&mut self) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let already_done = matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        self.init = spec
            .init_containers
            .unwrap_or_default()
            .into_iter()
            .map(|c| self.slot(c, "init"))
            .collect();
        self.main = spec
            .containers
            .into_iter()
            .map(|c| self.slot(c, "main"))
            .collect();
        if already_done {
            // Finished before this node (re)started: never run it again.
            self.terminal = true;
            self.dirty = false;
        }
    }

    /// One slot.
    fn slot(&self, spec: Container, kind: &str) -> Slot {
        let image = spec.image.clone().unwrap_or_default();
        let command = spec.command.clone().unwrap_or_default();
        let args = spec.args.clone().unwrap_or_default();
        let launch = resolve(&image, &command, &args, &self.ctx.cfg.images);
        let image_id = match &launch {
            Ok(Launch::Process {
                image: Some(run), ..
            }) => run.image_id.clone(),
            Ok(Launch::Process { host_binary, .. }) => {
                format!("testbed://{}", host_binary.display())
            }
            _ => "testbed://placeholder".to_string(),
        };
        let files = ContainerFiles {
            dir: self
                .dir
                .join("containers")
                .join(format!("{kind}-{}", spec.name)),
            log_dir: super::pod_log_dir(&self.ctx.cfg.state_dir, &self.pod).join(&spec.name),
        };
        let mut record = Record::new(&spec.name, &image, image_id);
        record.sidecar = kind == "init" && spec.restart_policy.as_deref() == Some("Always");
        Slot::new(spec, launch, record, files)
    }

    /// The event loop: start what is due, post status, wait for the next event.
    async fn main_loop(&mut self) -> Exit {
        loop {
            if self.is_deleting() {
                return Exit::Deleted;
            }
            if self.terminal && self.init.iter().any(|s| s.proc.is_some()) {
                // The app containers are done: native sidecars are stopped now.
                self.stop_all(self.grace()).await;
                self.dirty = true;
            }
            if !self.terminal {
                if !self.sandbox_ready {
                    self.prepare().await;
                }
                if self.sandbox_ready {
                    self.refresh().await;
                    self.start_due();
                }
            }
            if self.dirty {
                self.post().await;
            }
            let wake = self.next_wake();
            tokio::select! {
                Some(token) = self.notify_rx.recv() => self.reap(token),
                changed = self.pod_rx.changed() => {
                    let current = self.pod_rx.borrow_and_update().clone();
                    match (changed, current) {
                        (Ok(()), Some(pod)) => self.pod = pod,
                        _ => return Exit::Vanished,
                    }
                }
                _ = self.shutdown.changed() => return Exit::Shutdown,
                _ = sleep_until(wake) => {
                    self.probe_due().await;
                    self.liveness_due().await;
                    self.resync_due().await;
                    self.deadline_due().await;
                }
            }
        }
    }

    /// The pod has a deletionTimestamp.
    fn is_deleting(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// Earliest timer: restarts, probes, retries.
    fn next_wake(&self) -> Option<Instant> {
        if self.terminal {
            // Nothing runs or restarts any more: only a failed status post is retried.
            return self.post_retry;
        }
        let slots = self.init.iter().chain(&self.main);
        let timers = slots
            .flat_map(|s| [s.restart_at, s.next_probe, s.next_liveness])
            .flatten();
        let prepare_retry = (!self.sandbox_ready).then(|| Instant::now() + RETRY);
        timers
            .chain(self.post_retry)
            .chain(prepare_retry)
            .chain(self.resync_at)
            .chain(self.deadline)
            .min()
    }

    /// What the volume code needs of this pod and node (one place for prepare and resync).
    fn volume_context<'a>(&'a self, scratch: &'a Path) -> VolumeContext<'a> {
        VolumeContext {
            client: &self.ctx.client,
            node_root: &self.ctx.cfg.root,
            node_ip: self.ctx.cfg.ip,
            scratch,
            sources: &self.sources,
        }
    }

    /// Fetches referenced objects and prepares the volumes; on failure every container
    /// waits with `CreateContainerConfigError` and the next loop retries.
    async fn prepare(&mut self) {
        let result = async {
            self.sources = fetch_sources(&self.ctx.client, &self.pod).await?;
            let scratch = self.dir.join("volumes");
            let ctx = self.volume_context(&scratch);
            self.volumes = prepare_all(&ctx, &self.pod).await?;
            for dir in ["root", "tmp"] {
                let path = self.dir.join(dir);
                std::fs::create_dir_all(&path)
                    .map_err(|e| format!("create {}: {e}", path.display()))?;
            }
            let hosts = launch::hosts_file(self.ctx.cfg.ip, &pod_hostname(&self.pod));
            let hosts_path = self.dir.join("hosts");
            std::fs::write(&hosts_path, hosts)
                .map_err(|e| format!("write {}: {e}", hosts_path.display()))?;
            set_mode(&self.dir.join("tmp"), 0o1777)
        }
        .await;
        match result {
            Ok(()) => {
                self.sandbox_ready = true;
                self.resync_at = Some(Instant::now() + VOLUME_RESYNC);
            }
            Err(message) => self.config_error(&message),
        }
        self.dirty = true;
    }

    /// `activeDeadlineSeconds` passed: stop every container and fail the pod, as the kubelet
    /// does (reason `DeadlineExceeded`).
    async fn deadline_due(&mut self) {
        let due = self.deadline.is_some_and(|t| t <= Instant::now());
        if !due || self.terminal {
            return;
        }
        self.stop_all(self.grace()).await;
        self.terminal = true;
        self.dirty = true;
        let message = "Pod was active on the node longer than the specified deadline";
        self.failure = Some(("DeadlineExceeded".into(), message.into()));
    }

    /// Periodic refresh of the file-backed volumes (Secret and ConfigMap updates reach
    /// running containers, as with the kubelet; subPath mounts keep their old file, also as
    /// with the kubelet).
    async fn resync_due(&mut self) {
        let due = self.resync_at.is_some_and(|t| t <= Instant::now());
        if !due || self.terminal {
            return;
        }
        self.resync_at = Some(Instant::now() + VOLUME_RESYNC);
        let result = async {
            self.sources = fetch_sources(&self.ctx.client, &self.pod).await?;
            let scratch = self.dir.join("volumes");
            let ctx = self.volume_context(&scratch);
            volumes::refresh_all(&ctx, &self.pod, &self.volumes).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(pod = %self.name(), error = %e, "volume resync failed");
        }
    }

    /// Re-fetches Secrets and ConfigMaps after a container found one missing (env only:
    /// mounted volume contents are written once per pod start).
    async fn refresh(&mut self) {
        if !self.refresh_sources {
            return;
        }
        match fetch_sources(&self.ctx.client, &self.pod).await {
            Ok(sources) => {
                self.sources = sources;
                self.refresh_sources = false;
            }
            Err(e) => tracing::warn!(pod = %self.name(), error = %e, "fetching secrets/configmaps"),
        }
    }

    /// Marks every waiting container with a configuration error.
    fn config_error(&mut self, message: &str) {
        for slot in self.init.iter_mut().chain(self.main.iter_mut()) {
            if matches!(slot.record.state, State::Waiting { .. }) {
                slot.record.state = State::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: Some(message.to_string()),
                };
            }
        }
    }

    /// Starts the next init container, or (once initialized) every app container due.
    fn start_due(&mut self) {
        let now = Instant::now();
        let due = |s: &Slot| s.proc.is_none() && !s.done && s.restart_at.is_none_or(|t| t <= now);
        while !self.initialized {
            // A native sidecar (restartable init container) counts once it runs.
            let satisfied = |s: &Slot| s.done || (s.record.sidecar && s.record.is_running());
            match self.init.iter().position(|s| !satisfied(s)) {
                None => {
                    self.initialized = true;
                    self.dirty = true;
                }
                Some(i) => {
                    if !due(&self.init[i]) || self.init[i].record.is_running() {
                        return;
                    }
                    self.start(true, i);
                    if !satisfied(&self.init[i]) {
                        // Running (or waiting to retry): the next one starts after it.
                        return;
                    }
                }
            }
        }
        for i in 0..self.init.len() {
            let slot = &self.init[i];
            if slot.record.sidecar && due(slot) && !slot.record.is_running() {
                self.start(true, i);
            }
        }
        for i in 0..self.main.len() {
            if due(&self.main[i]) && !self.main[i].record.is_running() {
                self.start(false, i);
            }
        }
    }

    /// Starts one container (a placeholder runs without a process).
    fn start(&mut self, init: bool, i: usize) {
        self.dirty = true;
        self.started_any = true;
        let now = Timestamp::now();
        self.next_token += 1;
        let token = self.next_token;
        let prepared = self.exec_for(init, i);
        let notify = self.notify_tx.clone();
        let slot = if init {
            &mut self.init[i]
        } else {
            &mut self.main[i]
        };
        slot.restart_at = None;
        let (exec, sandbox) = match prepared {
            Ok(Some(pair)) => pair,
            Ok(None) => {
                count_restart(slot);
                placeholder_started(slot, init, now);
                return;
            }
            Err(launch::NotStarted { reason, message }) => {
                slot.record.state = State::Waiting {
                    reason: reason.into(),
                    message: Some(message),
                };
                slot.restart_at = Some(Instant::now() + RETRY);
                self.refresh_sources = true;
                return;
            }
        };
        count_restart(slot);
        let started = slot
            .files
            .reset()
            .and_then(|()| slot.files.record_image(&slot.record.image_id))
            .map_err(|e| e.to_string())
            .and_then(|()| {
                spawn(&exec, sandbox, &slot.files, notify, token).map_err(|e| e.to_string())
            });
        match started {
            Ok(proc) => {
                slot.proc = Some(proc);
                slot.token = token;
                slot.record.state = State::Running { started: now };
                slot.record.ready = false;
                let delay = probe(&slot.spec)
                    .and_then(|p| p.initial_delay_seconds)
                    .unwrap_or(0);
                slot.next_probe = Some(Instant::now() + secs(delay));
                slot.liveness_failures = 0;
                slot.next_liveness = liveness(&slot.spec)
                    .map(|p| Instant::now() + secs(p.initial_delay_seconds.unwrap_or(0)));
            }
            Err(e) => {
                let message = format!("failed to start container: {e}");
                let state = terminated(128, "StartError", message, None, now);
                self.after_exit(init, i, state, 128);
            }
        }
    }

    /// The exec spec and sandbox for a container, `None` for a placeholder.
    fn exec_for(
        &self,
        init: bool,
        i: usize,
    ) -> Result<Option<(ExecSpec, Sandbox)>, launch::NotStarted> {
        let slot = if init { &self.init[i] } else { &self.main[i] };
        let pod = launch::PodParts {
            ctx: &self.ctx,
            pod: &self.pod,
            dir: &self.dir,
            sources: &self.sources,
            volumes: &self.volumes,
        };
        launch::exec_for(
            &pod,
            &slot.spec,
            &slot.launch,
            &slot.files,
            &slot.record.image,
        )
    }

    /// A container process exited: record it and apply the restart policy.
    fn reap(&mut self, token: u64) {
        let found = self
            .init
            .iter()
            .position(|s| s.proc.is_some() && s.token == token)
            .map(|i| (true, i));
        let found = found.or_else(|| {
            self.main
                .iter()
                .position(|s| s.proc.is_some() && s.token == token)
                .map(|i| (false, i))
        });
        let Some((init, i)) = found else {
            return;
        };
        let slot = if init {
            &mut self.init[i]
        } else {
            &mut self.main[i]
        };
        let status = slot.proc.take().and_then(|mut p| {
            p.kill_remnants();
            p.try_exit()
        });
        let (state, code) = slot.exited(status);
        self.after_exit(init, i, state, code);
    }

    /// Records a termination and decides: done for good, restart later, or pod terminal.
    fn after_exit(&mut self, init: bool, i: usize, state: State, code: i32) {
        self.dirty = true;
        let policy = self.restart_policy();
        let slot = if init {
            &mut self.init[i]
        } else {
            &mut self.main[i]
        };
        slot.record.ready = false;
        slot.next_probe = None;
        slot.next_liveness = None;
        let restart = match policy.as_str() {
            _ if slot.record.sidecar => !self.terminal,
            "Never" => false,
            "OnFailure" => code != 0,
            _ => !init || code != 0,
        };
        if restart {
            slot.record.last = Some(state);
            slot.record.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {}s restarting failed container",
                    slot.backoff.as_secs()
                )),
            };
            slot.restart_at = Some(Instant::now() + slot.backoff);
            slot.pending_restart = true;
            slot.backoff = (slot.backoff * 2).min(BACKOFF_MAX);
            return;
        }
        slot.record.state = state;
        slot.done = true;
        if init && code != 0 && !slot.record.sidecar {
            self.terminal = true;
        }
        if !init && self.main.iter().all(|s| s.done) {
            self.terminal = true;
        }
    }

    /// The pod's restartPolicy (Always by default).
    fn restart_policy(&self) -> String {
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone());
        policy.unwrap_or_else(|| "Always".into())
    }

    /// Runs the liveness checks that are due; a container failing `failureThreshold` in a
    /// row is killed (SIGTERM, SIGKILL after the grace period) and then handled like any
    /// exit, per the restart policy.
    async fn liveness_due(&mut self) {
        let now = Instant::now();
        let ip = self.ctx.cfg.ip;
        let grace = self.grace();
        for init in [true, false] {
            let count = if init {
                self.init.len()
            } else {
                self.main.len()
            };
            for i in 0..count {
                let slot = if init {
                    &mut self.init[i]
                } else {
                    &mut self.main[i]
                };
                let Some(at) = slot.next_liveness.filter(|t| *t <= now) else {
                    continue;
                };
                let Some(probe) = liveness(&slot.spec).cloned() else {
                    continue;
                };
                let alive = super::probe::ready(&probe, &slot.spec, ip).await;
                slot.liveness_failures = if alive { 0 } else { slot.liveness_failures + 1 };
                slot.next_liveness = Some(at + secs(probe.period_seconds.unwrap_or(10)));
                if slot.liveness_failures < probe.failure_threshold.unwrap_or(3) {
                    continue;
                }
                let Some(proc) = slot.proc.take() else {
                    continue;
                };
                let started = slot.started_at();
                let (code, _, signal) = exit_info(proc.stop(grace).await);
                let message = "container failed its liveness probe and was killed".to_string();
                let state = terminated(code, "Error", message, signal, started);
                self.after_exit(init, i, state, code);
            }
        }
    }

    /// Runs the readiness checks that are due.
    async fn probe_due(&mut self) {
        let now = Instant::now();
        let ip = self.ctx.cfg.ip;
        for slot in self.main.iter_mut() {
            let Some(at) = slot.next_probe.filter(|t| *t <= now) else {
                continue;
            };
            let probe = probe(&slot.spec).cloned();
            let ready = match &probe {
                Some(p) => super::probe::ready(p, &slot.spec, ip).await,
                None => true,
            };
            let period = probe.as_ref().and_then(|p| p.period_seconds).unwrap_or(10);
            slot.next_probe = Some(at + secs(period));
            if slot.record.is_running() && slot.record.ready != ready {
                slot.record.ready = ready;
                self.dirty = true;
            }
        }
    }

    /// Posts the status; a failure is retried shortly.
    async fn post(&mut self) {
        let init: Vec<Record> = self.init.iter().map(|s| s.record.clone()).collect();
        let main: Vec<Record> = self.main.iter().map(|s| s.record.clone()).collect();
        let view = PodView {
            ip: self.ctx.cfg.ip,
            start_time: self.start_time,
            init: &init,
            main: &main,
            initialized: self.initialized,
            terminal: self.terminal,
            sandbox_ready: self.sandbox_ready,
            failure: self.failure.as_ref().map(|(r, m)| (r.as_str(), m.as_str())),
        };
        let status = pod_status(&view, Timestamp::now());
        let patch = serde_json::json!({ "status": status });
        let result = self
            .pods()
            .patch_status(self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        match result {
            Ok(_) => {
                self.dirty = false;
                self.post_retry = None;
            }
            Err(e) => {
                tracing::warn!(pod = %self.name(), error = %e, "pod status update failed");
                self.post_retry = Some(Instant::now() + RETRY);
            }
        }
    }

    /// The pod's API in its namespace.
    fn pods(&self) -> Api<Pod> {
        let ns = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    /// The pod's name.
    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    /// Stops the containers and cleans up according to why the loop ended.
    async fn finish(mut self, exit: Exit) {
        let grace = match exit {
            Exit::Shutdown => self.grace().min(SHUTDOWN_GRACE_MAX),
            _ => self.grace(),
        };
        self.stop_all(grace).await;
        if let Exit::Deleted = exit {
            self.terminal = true;
            if self.started_any {
                self.post().await;
            }
            let uid = self.pod.metadata.uid.clone();
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid,
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = self.pods().delete(self.name(), &params).await {
                tracing::warn!(pod = %self.name(), error = %e, "final pod delete failed");
            }
        }
        if !matches!(exit, Exit::Shutdown) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The grace period: deletionGracePeriodSeconds, else terminationGracePeriodSeconds.
    fn grace(&self) -> Duration {
        let spec_grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds);
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(spec_grace)
            .unwrap_or(DEFAULT_GRACE);
        secs(grace.try_into().unwrap_or(i32::MAX))
    }

    /// SIGTERM every running container, SIGKILL after `grace`, all in parallel.
    async fn stop_all(&mut self, grace: Duration) {
        let mut stopping = Vec::new();
        for (init, slots) in [(true, &mut self.init), (false, &mut self.main)] {
            for (i, slot) in slots.iter_mut().enumerate() {
                if let Some(proc) = slot.proc.take() {
                    stopping.push(async move { (init, i, proc.stop(grace).await) });
                } else if slot.record.is_running() {
                    let started = slot.started_at();
                    slot.record.state = terminated(0, "Completed", String::new(), None, started);
                    slot.record.ready = false;
                }
            }
        }
        for (init, i, status) in futures::future::join_all(stopping).await {
            let slot = if init {
                &mut self.init[i]
            } else {
                &mut self.main[i]
            };
            slot.record.state = slot.exited(status).0;
            slot.record.ready = false;
            slot.done = true;
        }
    }
}

/// Whole seconds as a Duration (negative counts as zero).
fn secs(n: i32) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

/// Sleeps until `at`, or forever when there is no timer.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sets a directory's permission bits.
fn set_mode(path: &std::path::Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

//! The client side of the CLI: `up` (spawn a detached supervisor and wait for it to be
//! ready), `status`, and `down` (stop the supervisor, then verify and force a clean machine).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cleanup;
use crate::layout::Layout;
use crate::process::alive;
use crate::state::{Phase, State, StateError};

/// How often `up` and `down` look at the supervisor.
const POLL: Duration = Duration::from_millis(100);
/// How long `down` waits for the supervisor to stop everything before forcing.
const DOWN_GRACE: Duration = Duration::from_secs(60);

/// Why a CLI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A test bed is already running in this directory.
    #[error(
        "a test bed is already running in {dir} (supervisor pid {pid}); run `testbed down --dir {dir}`"
    )]
    AlreadyRunning {
        /// The directory.
        dir: String,
        /// The running supervisor.
        pid: u32,
    },
    /// Filesystem or process I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// The supervisor reported a failed start-up.
    #[error("test bed failed to start: {0} (logs: {1})")]
    Failed(String, String),
    /// The supervisor exited without reporting.
    #[error("test bed supervisor exited ({0}) before it was ready; see {1}")]
    Exited(String, String),
    /// Start-up took longer than allowed.
    #[error("test bed not ready after {0:?}; see {1}")]
    Timeout(Duration, String),
    /// `up` was interrupted (Ctrl-C); the test bed was taken down.
    #[error("interrupted; the test bed was taken down")]
    Interrupted,
    /// `down` could not remove everything.
    #[error("test bed in {dir} left behind: processes {pids:?}, mounts {mounts:?}")]
    Leftovers {
        /// The directory.
        dir: String,
        /// Processes still alive.
        pids: Vec<u32>,
        /// Mounts still present.
        mounts: Vec<PathBuf>,
    },
    /// No test bed in this directory.
    #[error("no test bed state in {0}")]
    NotFound(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CtlError {
    let what = what.into();
    move |source| CtlError::Io { what, source }
}

/// Canonical absolute form of a test bed directory (created if needed), so every path
/// derived from it — and the `/proc` scans of `down` — agree.
pub fn prepare_dir(dir: &Path) -> Result<Layout, CtlError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(io(format!("resolving {}", dir.display())))?;
    let layout = Layout::new(dir);
    std::fs::create_dir_all(layout.logs()).map_err(io("creating logs dir"))?;
    Ok(layout)
}

/// Starts a detached supervisor (`testbed run ARGS`, in its own session, output to
/// `DIR/logs/supervisor.log`) and waits until it reports ready, echoing its log to stderr as
/// progress. On failure, timeout or Ctrl-C the test bed is taken down before returning.
pub async fn up(
    testbed: &Path,
    layout: &Layout,
    run_args: &[String],
    timeout: Duration,
) -> Result<State, CtlError> {
    if let Some(state) = State::read(&layout.state_file())?
        && alive(state.pid)
    {
        return Err(CtlError::AlreadyRunning {
            dir: layout.dir().display().to_string(),
            pid: state.pid,
        });
    }
    let _ = std::fs::remove_file(layout.state_file());
    let log_path = layout.supervisor_log();
    let log = std::fs::File::create(&log_path).map_err(io("creating supervisor log"))?;
    let mut cmd = std::process::Command::new(testbed);
    cmd.arg("run")
        .args(run_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("cloning log handle"))?)
        .stderr(log);
    new_session(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(io(format!("starting {}", testbed.display())))?;
    let result = tokio::select! {
        r = wait_ready(layout, &mut child, timeout) => r,
        _ = tokio::signal::ctrl_c() => Err(CtlError::Interrupted),
    };
    if result.is_err() {
        let _ = down(layout);
    }
    // The supervisor lives on after we exit; its own session keeps it from our signals.
    result
}

async fn wait_ready(
    layout: &Layout,
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<State, CtlError> {
    let log = layout.supervisor_log().display().to_string();
    let mut tail = LogTail::new(layout.supervisor_log());
    let deadline = Instant::now() + timeout;
    loop {
        tail.echo();
        if let Some(state) = State::read(&layout.state_file())? {
            match state.phase {
                Phase::Ready => return Ok(state),
                Phase::Failed => {
                    return Err(CtlError::Failed(state.error.unwrap_or_default(), log));
                }
                _ => {}
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            tail.echo();
            return Err(CtlError::Exited(status.to_string(), log));
        }
        if Instant::now() >= deadline {
            return Err(CtlError::Timeout(timeout, log));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Echoes new lines of a log file to stderr.
struct LogTail {
    path: PathBuf,
    offset: u64,
}

impl LogTail {
    fn new(path: PathBuf) -> Self {
        Self { path, offset: 0 }
    }

    fn echo(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        let mut buf = String::new();
        if file.seek(SeekFrom::Start(self.offset)).is_ok() && file.read_to_string(&mut buf).is_ok()
        {
            self.offset += buf.len() as u64;
            let _ = std::io::stderr().write_all(buf.as_bytes());
        }
    }
}

#[allow(unsafe_code)]
fn new_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs between fork and exec and only calls setsid(2), which is
    // async-signal-safe and touches no shared memory.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
}

/// Stops the test bed: SIGTERM to the supervisor and wait for it to stop everything; then
/// verify from `/proc` that no process and no mount of this test bed is left, killing and
/// unmounting (lazily) whatever is; then remove the state (logs stay).
pub fn down(layout: &Layout) -> Result<(), CtlError> {
    let state = State::read(&layout.state_file())?;
    let sid = state.as_ref().map(|s| s.pid);
    if let Some(pid) = sid.filter(|&pid| alive(pid)) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        let deadline = Instant::now() + DOWN_GRACE;
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if alive(pid) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
    force_clean(layout, sid)?;
    remove_state(layout)
}

/// Kills leftover processes and unmounts leftover mounts, then checks both are gone.
fn force_clean(layout: &Layout, sid: Option<u32>) -> Result<(), CtlError> {
    let dir = layout.dir();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let killed = cleanup::kill_all(dir, sid);
        let mounts = cleanup::unmount_all(dir);
        let pids = cleanup::processes(dir, sid);
        if pids.is_empty() && mounts.is_empty() {
            if !killed.is_empty() {
                tracing::warn!(?killed, "down had to kill leftover processes");
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CtlError::Leftovers {
                dir: dir.display().to_string(),
                pids,
                mounts,
            });
        }
        std::thread::sleep(POLL);
    }
}

fn remove_state(layout: &Layout) -> Result<(), CtlError> {
    let clusters = layout.clusters();
    match std::fs::remove_dir_all(&clusters) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing {}", clusters.display()))(e)),
    }
    let Ok(entries) = std::fs::read_dir(layout.dir()) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != layout.logs() && path.is_file() {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
}

/// A human-readable summary: supervisor, clusters and node readiness (queried live).
pub async fn status(layout: &Layout) -> Result<String, CtlError> {
    let state = State::read(&layout.state_file())?
        .ok_or_else(|| CtlError::NotFound(layout.dir().display().to_string()))?;
    let running = alive(state.pid);
    let mut out = format!(
        "test bed {}: supervisor {} {}, phase {:?}\n",
        layout.dir().display(),
        state.pid,
        if running { "running" } else { "not running" },
        state.phase
    );
    if let Some(e) = &state.error {
        out.push_str(&format!("  error: {e}\n"));
    }
    for c in &state.clusters {
        out.push_str(&format!(
            "  cluster {} {} kubeconfig {}\n",
            c.name,
            c.server,
            c.kubeconfig.display()
        ));
        let ready = node_readiness(&c.kubeconfig).await;
        for n in &c.nodes {
            let r = match &ready {
                Ok(map) => map.get(&n.name).copied().unwrap_or("missing"),
                Err(_) => "unknown",
            };
            out.push_str(&format!("    node {} {} {}\n", n.name, n.ip, r));
        }
        if let Err(e) = ready {
            out.push_str(&format!("    API unreachable: {e}\n"));
        }
    }
    Ok(out)
}

async fn node_readiness(
    kubeconfig: &Path,
) -> Result<std::collections::BTreeMap<String, &'static str>, String> {
    use k8s_openapi::api::core::v1::Node;
    let client = crate::kubeconfig::client(kubeconfig)
        .await
        .map_err(|e| e.to_string())?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let list = nodes
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .map(|n| {
            let ready = if crate::readiness::is_ready(n) {
                "Ready"
            } else {
                "NotReady"
            };
            (n.metadata.name.clone().unwrap_or_default(), ready)
        })
        .collect())
}

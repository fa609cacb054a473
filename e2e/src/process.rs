//! Child processes of the supervisor (control-plane components), with their output in a log
//! file and a guarantee that they die with the supervisor.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Why a component could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log file could not be opened.
    #[error("opening log {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The executable could not be started.
    #[error("starting {name} ({program}): {source}")]
    Spawn {
        /// Component name.
        name: String,
        /// Executable path.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A running component.
#[derive(Debug)]
pub struct Component {
    /// Name used in logs and errors, e.g. `source/kube-apiserver`.
    pub name: String,
    /// Its log file.
    pub log: PathBuf,
    child: Child,
}

impl Component {
    /// Starts `program args...` with stdout and stderr appended to `log`. The child gets
    /// SIGKILL if the supervisor dies (PR_SET_PDEATHSIG), so a crashed supervisor cannot leak
    /// a control plane; `kill_on_drop` covers a supervisor that unwinds.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Component, ProcessError> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|source| ProcessError::Log {
                    path: log.to_path_buf(),
                    source,
                })
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?)
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            name: name.to_string(),
            program: program.to_path_buf(),
            source,
        })?;
        Ok(Component {
            name: name.to_string(),
            log: log.to_path_buf(),
            child,
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the process exits (used to notice a component dying under the test bed).
    pub async fn exited(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// The exit status if the process has already exited (without waiting).
    pub fn try_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
            tracing::warn!(component = %self.name, "did not exit on SIGTERM, killing");
        }
        let _ = self.child.kill().await;
    }
}

/// Arranges for the child to receive SIGKILL when its parent thread exits.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// True if a process with this pid exists (and is not a zombie we could reap).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

//! One container process: spawned in its sandbox with stdout/stderr to the container log,
//! watched until it exits, stopped with SIGTERM to its process group then SIGKILL after the
//! grace period; and its termination message read back afterwards.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use super::sandbox::Prepared;

/// Cap of a termination message, as the kubelet's 4096 bytes.
const MESSAGE_MAX: usize = 4096;
/// FallbackToLogsOnError uses at most this many trailing log lines...
const FALLBACK_LINES: usize = 80;
/// ...and at most this many bytes.
const FALLBACK_BYTES: usize = 2048;

/// A container's files on the host: its scratch under `<pod state>/containers/<name>/` and
/// its logs in a separate directory that outlives the pod (like `/var/log/pods`), so a
/// failed e2e run can still be diagnosed after the pod is deleted.
#[derive(Clone, Debug)]
pub struct ContainerFiles {
    /// The container's scratch directory (termination log, per-run sandbox scratch).
    pub dir: PathBuf,
    /// The container's log directory.
    pub log_dir: PathBuf,
}

impl ContainerFiles {
    /// The log of the current (or last) run.
    pub fn log(&self) -> PathBuf {
        self.log_dir.join("current.log")
    }

    /// The log of the run before, kept across one restart (`kubectl logs --previous`).
    pub fn previous_log(&self) -> PathBuf {
        self.log_dir.join("previous.log")
    }

    /// The host file bind-mounted at the container's terminationMessagePath.
    pub fn termination_log(&self) -> PathBuf {
        self.dir.join("termination-log")
    }

    /// Per-run scratch of the sandbox (the `/etc` overlay's upper and work dirs).
    pub fn scratch(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// Creates the directory, rotates the log, empties the termination log and the run
    /// scratch for a new run (a restarted container starts from a clean root, as in
    /// Kubernetes).
    pub fn reset(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::create_dir_all(&self.log_dir)?;
        if self.scratch().exists() {
            std::fs::remove_dir_all(self.scratch())?;
        }
        if self.log().exists() {
            std::fs::rename(self.log(), self.previous_log())?;
        }
        std::fs::write(self.termination_log(), b"")
    }

    /// Which image the run started from (`image-id` beside the logs, which outlive the pod):
    /// how a test tells, after a short-lived pod is gone, that it ran from a built image.
    pub fn record_image(&self, image_id: &str) -> std::io::Result<()> {
        std::fs::write(self.log_dir.join("image-id"), image_id)
    }
}

/// A running container process.
#[derive(Debug)]
pub struct Proc {
    pid: Pid,
    exited: oneshot::Receiver<ExitStatus>,
}

/// What to exec inside the sandbox.
#[derive(Clone, Debug)]
pub struct ExecSpec {
    /// Path inside the pod root.
    pub program: PathBuf,
    /// argv[0].
    pub arg0: String,
    /// The other arguments.
    pub args: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
}

/// Spawns the process in its sandbox; when it exits, `token` is sent on `notify` (the exit
/// status is then available from [`Proc::try_exit`]).
#[allow(unsafe_code)]
pub fn spawn(
    exec: &ExecSpec,
    sandbox: Prepared,
    files: &ContainerFiles,
    notify: tokio::sync::mpsc::UnboundedSender<u64>,
    token: u64,
) -> std::io::Result<Proc> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.log())?;
    let mut cmd = std::process::Command::new(&exec.program);
    cmd.arg0(&exec.arg0)
        .args(&exec.args)
        .env_clear()
        .envs(exec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec. `Prepared::enter` only makes
    // syscalls (unshare, mount, mkdir, open, symlink, sethostname, chroot, chdir, write) on
    // C strings built before the fork; it neither allocates nor takes locks, so it is safe
    // in the child of a multi-threaded process.
    unsafe {
        cmd.pre_exec(move || sandbox.enter());
    }
    let mut child = tokio::process::Command::from(cmd).spawn()?;
    let raw = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| std::io::Error::other("spawned process has no pid"))?;
    let (tx, exited) = oneshot::channel();
    tokio::spawn(async move {
        if let Ok(status) = child.wait().await {
            let _ = tx.send(status);
        }
        let _ = notify.send(token);
    });
    Ok(Proc {
        pid: Pid::from_raw(raw),
        exited,
    })
}

impl Proc {
    /// The process id (also its process group id).
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Kills what is left of the container's process group after its main process ended,
    /// as the end of a container's PID namespace would.
    pub fn kill_remnants(&self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
    }

    /// The exit status if the process has already ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.exited.try_recv().ok()
    }

    /// SIGTERM to the process group; SIGKILL to the group once `grace` has passed.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        let _ = killpg(self.pid, Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, &mut self.exited).await {
            let _ = killpg(self.pid, Signal::SIGKILL);
            return status.ok();
        }
        let _ = killpg(self.pid, Signal::SIGKILL);
        (&mut self.exited).await.ok()
    }
}

/// Exit code, reason and signal of a finished container, as the kubelet reports them
/// (128 + signal number for a signalled process).
pub fn exit_info(status: Option<ExitStatus>) -> (i32, &'static str, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    let Some(status) = status else {
        return (137, "Error", None);
    };
    match (status.code(), status.signal()) {
        (Some(0), _) => (0, "Completed", None),
        (Some(code), _) => (code, "Error", None),
        (None, Some(sig)) => (128 + sig, "Error", Some(sig)),
        (None, None) => (1, "Error", None),
    }
}

/// The termination message: the termination log (at most 4096 bytes); if empty, the policy
/// is `FallbackToLogsOnError` and the container failed, the tail of its log.
pub fn termination_message(files: &ContainerFiles, policy: Option<&str>, exit_code: i32) -> String {
    let written = read_capped(&files.termination_log(), MESSAGE_MAX);
    if !written.is_empty() || policy != Some("FallbackToLogsOnError") || exit_code == 0 {
        return written;
    }
    log_tail(&read_capped_tail(&files.log(), 64 * 1024))
}

/// The first `max` bytes of a file as (lossy) UTF-8; empty if unreadable.
fn read_capped(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

/// The last `max` bytes of a file as (lossy) UTF-8; empty if unreadable.
fn read_capped_tail(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(max)..]).into_owned()
}

/// The last [`FALLBACK_LINES`] lines of a log, at most [`FALLBACK_BYTES`] bytes.
pub fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(FALLBACK_LINES)..].join("\n");
    let mut start = tail.len().saturating_sub(FALLBACK_BYTES);
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    tail[start..].to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn termination_message_prefers_the_file_then_falls_back_to_logs_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = ContainerFiles {
            dir: dir.path().join("c"),
            log_dir: dir.path().join("logs"),
        };
        files.reset().unwrap();
        std::fs::write(files.log(), "line1\nboom\n").unwrap();
        assert_eq!(
            termination_message(&files, Some("FallbackToLogsOnError"), 1),
            "line1\nboom"
        );
        assert_eq!(termination_message(&files, Some("File"), 1), "");
        assert_eq!(
            termination_message(&files, Some("FallbackToLogsOnError"), 0),
            ""
        );
        std::fs::write(files.termination_log(), "done: 3 files").unwrap();
        assert_eq!(
            termination_message(&files, Some("FallbackToLogsOnError"), 1),
            "done: 3 files"
        );
        files.reset().unwrap();
        assert!(
            files.previous_log().exists(),
            "a restart keeps the previous log"
        );
        assert_eq!(
            termination_message(&files, None, 0),
            "",
            "a restart clears the message"
        );
    }

    #[test]
    fn log_tail_keeps_the_last_lines_within_the_byte_cap() {
        let log: String = (0..200).map(|i| format!("line {i}\n")).collect();
        let tail = log_tail(&log);
        assert!(tail.ends_with("line 199"));
        assert!(!tail.contains("line 119\n"), "only the last 80 lines");
        let long = "x".repeat(5000);
        assert_eq!(log_tail(&long).len(), 2048);
    }

    #[test]
    fn exit_info_reports_codes_and_signals() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            exit_info(Some(ExitStatus::from_raw(0))),
            (0, "Completed", None)
        );
        assert_eq!(
            exit_info(Some(ExitStatus::from_raw(3 << 8))),
            (3, "Error", None)
        );
        assert_eq!(
            exit_info(Some(ExitStatus::from_raw(9))),
            (137, "Error", Some(9))
        );
    }
}

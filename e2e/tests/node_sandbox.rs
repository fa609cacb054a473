//! The container sandbox for real (needs root, no API server): a process runs chrooted in a
//! private mount namespace with its volumes bind-mounted, read-only mounts refuse writes,
//! the termination message comes back through the bind-mounted termination log, nothing
//! leaks into the host mount table, and stopping escalates from SIGTERM to SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_syncer_e2e::node::process::{
    ContainerFiles, ExecSpec, exit_info, spawn, termination_message,
};
use dr_syncer_e2e::node::sandbox::{BindMount, Prepared, SandboxSpec};
use dr_syncer_e2e::wait;
use tokio::sync::mpsc;

/// A pod directory with a writable and a read-only volume.
struct Pod {
    dir: tempfile::TempDir,
}

impl Pod {
    fn new() -> Self {
        let pod = Pod {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in ["root", "tmp", "data", "config"] {
            std::fs::create_dir_all(pod.path(d)).unwrap();
        }
        std::fs::write(pod.path("config/setting"), "on").unwrap();
        pod
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A file the script wrote, trimmed.
    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel))
            .unwrap()
            .trim()
            .to_string()
    }

    fn files(&self) -> ContainerFiles {
        let files = ContainerFiles {
            dir: self.path("containers/c"),
            log_dir: self.path("logs/c"),
        };
        files.reset().unwrap();
        files
    }

    fn sandbox(&self, files: &ContainerFiles) -> Prepared {
        let mounts = vec![
            BindMount {
                source: self.path("data"),
                target: "/data".into(),
                read_only: false,
            },
            BindMount {
                source: self.path("config"),
                target: "/etc/app".into(),
                read_only: true,
            },
            BindMount {
                source: files.termination_log(),
                target: "/dev/termination-log".into(),
                read_only: false,
            },
        ];
        self.sandbox_of(files, "pod-one", mounts, "/data")
    }

    /// Only the data volume: nothing mounted under /etc (impossible without the overlay).
    fn sandbox_without_etc_mounts(&self, files: &ContainerFiles) -> Prepared {
        let data = BindMount {
            source: self.path("data"),
            target: "/data".into(),
            read_only: false,
        };
        self.sandbox_of(files, "pod-two", vec![data], "/")
    }

    /// A sandbox on this pod's root and tmp dirs, without an image root, as root.
    fn sandbox_of(
        &self,
        files: &ContainerFiles,
        hostname: &str,
        mounts: Vec<BindMount>,
        working_dir: &str,
    ) -> Prepared {
        let spec = SandboxSpec {
            root: self.path("root"),
            tmp_dir: self.path("tmp"),
            scratch: files.scratch(),
            hostname: hostname.into(),
            mounts,
            working_dir: working_dir.into(),
            image_root: None,
            user: None,
        };
        Prepared::new(&spec).unwrap()
    }
}

/// `sh -c script` inside the sandbox.
fn shell(script: &str) -> ExecSpec {
    ExecSpec {
        program: PathBuf::from("/bin/sh"),
        arg0: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env: vec![
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("GREETING".into(), "hello from env".into()),
        ],
    }
}

/// Runs a script in the sandbox until it exits and checks its exit code and reason as the
/// node reports them, failing with the container's log; returns the exit code.
async fn run_to_exit(
    script: &str,
    sandbox: Prepared,
    files: &ContainerFiles,
    token: u64,
    want: (i32, &str),
) -> i32 {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut proc = spawn(&shell(script), sandbox, files, tx, token).unwrap();
    assert_eq!(rx.recv().await, Some(token));
    let (code, reason, _) = exit_info(proc.try_exit());
    assert_eq!(
        (code, reason),
        want,
        "log: {}",
        std::fs::read_to_string(files.log()).unwrap()
    );
    code
}

fn host_mounts_under(dir: &Path) -> usize {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy();
    table.lines().filter(|l| l.contains(dir.as_ref())).count()
}

#[tokio::test]
async fn process_runs_chrooted_with_volumes_env_hostname_and_termination_message() {
    let pod = Pod::new();
    let files = pod.files();
    let script = r#"
        echo "$GREETING" > /data/env
        hostname > /data/hostname
        cat /etc/app/setting > /data/setting
        pwd > /data/pwd
        if echo x > /etc/app/new 2>/dev/null; then echo wrote > /data/ro; else echo refused > /data/ro; fi
        if [ -e /work ]; then echo visible > /data/host-work; else echo hidden > /data/host-work; fi
        echo pod > /etc/testbed-sandbox-probe && echo ok > /data/etc-write
        echo "copied 3 files" > /dev/termination-log
        echo "to the log"
        exit 3
    "#;
    let code = run_to_exit(script, pod.sandbox(&files), &files, 7, (3, "Error")).await;
    assert_eq!(pod.read("data/env"), "hello from env");
    assert_eq!(pod.read("data/hostname"), "pod-one");
    assert_eq!(pod.read("data/setting"), "on");
    assert_eq!(pod.read("data/pwd"), "/data");
    assert_eq!(
        pod.read("data/ro"),
        "refused",
        "a read-only volume must refuse writes"
    );
    assert_eq!(
        pod.read("data/host-work"),
        "hidden",
        "the host's other dirs are not in the pod root"
    );
    assert!(!pod.path("config/new").exists());
    assert_eq!(
        pod.read("data/etc-write"),
        "ok",
        "the pod's /etc is writable (overlay)"
    );
    assert!(
        !Path::new("/etc/testbed-sandbox-probe").exists(),
        "the host /etc is untouched"
    );
    assert_eq!(
        termination_message(&files, None, code).trim(),
        "copied 3 files"
    );
    assert!(
        std::fs::read_to_string(files.log())
            .unwrap()
            .contains("to the log")
    );
    assert_eq!(
        host_mounts_under(pod.dir.path()),
        0,
        "no mount may leak into the host namespace"
    );
}

#[tokio::test]
async fn stop_escalates_to_sigkill_after_the_grace_period() {
    let pod = Pod::new();
    let files = pod.files();
    let stubborn = "trap 'echo got TERM' TERM; echo up > /data/ready; while :; do sleep 0.1; done";
    let (tx, _rx) = mpsc::unbounded_channel();
    let proc = spawn(&shell(stubborn), pod.sandbox(&files), &files, tx, 1).unwrap();
    wait_for_file(&pod.path("data/ready")).await;
    let started = std::time::Instant::now();
    let status = proc.stop(Duration::from_secs(1)).await;
    let (code, _, signal) = exit_info(status);
    assert_eq!(
        (code, signal),
        (137, Some(9)),
        "ignored SIGTERM must end in SIGKILL"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "SIGKILL only after the grace period"
    );
    assert!(
        std::fs::read_to_string(files.log())
            .unwrap()
            .contains("got TERM")
    );

    let polite = "trap 'exit 0' TERM; echo up > /data/ready2; while :; do sleep 0.1; done";
    let (tx, _rx) = mpsc::unbounded_channel();
    let proc = spawn(&shell(polite), pod.sandbox(&files), &files, tx, 2).unwrap();
    wait_for_file(&pod.path("data/ready2")).await;
    let (code, reason, signal) = exit_info(proc.stop(Duration::from_secs(30)).await);
    assert_eq!(
        (code, reason, signal),
        (0, "Completed", None),
        "SIGTERM first"
    );
}

#[tokio::test]
async fn spawn_fails_cleanly_when_a_mount_cannot_be_made() {
    let pod = Pod::new();
    let files = pod.files();
    let spec = SandboxSpec {
        root: pod.path("root"),
        tmp_dir: pod.path("tmp"),
        scratch: files.scratch(),
        hostname: "p".into(),
        // /usr is a read-only system dir: a new mountpoint cannot be created inside it.
        mounts: vec![BindMount {
            source: pod.path("data"),
            target: "/usr/no-such-dir-for-testbed".into(),
            read_only: false,
        }],
        working_dir: "/".into(),
        image_root: None,
        user: None,
    };
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = spawn(&shell("true"), Prepared::new(&spec).unwrap(), &files, tx, 1).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{err}");
    let log = std::fs::read_to_string(files.log()).unwrap();
    assert!(
        log.contains("mkdir") && log.contains("no-such-dir-for-testbed"),
        "{log}"
    );
}

/// Polls for a file the child writes once it is up (bounded by a deadline).
async fn wait_for_file(path: &Path) {
    let what = format!("{} appears", path.display());
    wait::poll(
        &what,
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async move {
            if path.exists() {
                Ok(())
            } else {
                Err(format!("{} never appeared", path.display()))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn etc_falls_back_to_a_read_only_bind_without_overlayfs() {
    let pod = Pod::new();
    let files = pod.files();
    // An upper "dir" that is a file makes the overlay mount fail, as an unsupported
    // filesystem under the state dir would.
    std::fs::create_dir_all(files.scratch()).unwrap();
    std::fs::write(files.scratch().join("etc-upper"), "not a dir").unwrap();
    let script = r#"
        test -s /etc/passwd && echo readable > /data/etc-read
        if echo x > /etc/testbed-sandbox-probe 2>/dev/null; then echo wrote; else echo refused; fi > /data/etc-write
    "#;
    // Exit code 0 is always reported as Completed.
    let sandbox = pod.sandbox_without_etc_mounts(&files);
    run_to_exit(script, sandbox, &files, 1, (0, "Completed")).await;
    assert_eq!(pod.read("data/etc-read"), "readable");
    assert_eq!(
        pod.read("data/etc-write"),
        "refused",
        "the fallback /etc is read-only"
    );
    assert!(!Path::new("/etc/testbed-sandbox-probe").exists());
}

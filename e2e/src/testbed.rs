//! The Rust API for tests: [`TestBed::start`] runs `testbed up` (the very same code path as
//! the CLI, a detached supervisor) and [`TestBed`] runs `testbed down` when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::ctl::CtlError;
use crate::kubeconfig::{self, ClientError};
use crate::layout::Layout;
use crate::state::State;

/// Where `scripts/build-controlplane.sh` puts the control-plane binaries of this checkout.
pub fn default_controlplane_dir() -> PathBuf {
    std::env::var_os("TESTBED_CONTROLPLANE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(".cache/controlplane/bin")
        })
}

/// How to start a test bed.
#[derive(Clone, Debug)]
pub struct TestBedOptions {
    /// The `testbed` executable (`env!("CARGO_BIN_EXE_testbed")` in e2e tests).
    pub testbed_bin: PathBuf,
    /// Cluster names.
    pub clusters: Vec<String>,
    /// Simulated nodes per cluster.
    pub nodes: usize,
    /// Our binaries; default: the directory of `testbed_bin`.
    pub bin_dir: Option<PathBuf>,
    /// Run our three images from the OCI archives here (`make images`) instead of
    /// `bin_dir`'s binaries; `None`: the fast binary mapping.
    pub image_dir: Option<PathBuf>,
    /// Control-plane binaries; default: [`default_controlplane_dir`].
    pub controlplane_dir: Option<PathBuf>,
    /// Test bed directory; default: a fresh directory under the system temp dir.
    pub dir: Option<PathBuf>,
    /// Tear down automatically when this process exits (for a bed shared through a
    /// `static`, which is never dropped).
    pub owner_pid: Option<u32>,
    /// How long `up` may take.
    pub timeout: Duration,
}

impl TestBedOptions {
    /// `clusters` x `nodes`, everything else default.
    pub fn new(testbed_bin: impl Into<PathBuf>, clusters: &[&str], nodes: usize) -> Self {
        Self {
            testbed_bin: testbed_bin.into(),
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            nodes,
            bin_dir: None,
            image_dir: None,
            controlplane_dir: None,
            dir: None,
            owner_pid: None,
            timeout: Duration::from_secs(300),
        }
    }
}

/// A running test bed.
#[derive(Debug)]
pub struct TestBed {
    layout: Layout,
    testbed_bin: PathBuf,
    controlplane_dir: PathBuf,
    state: State,
    running: bool,
}

impl TestBed {
    /// Runs `testbed up` and waits for it (blocking: call before or outside async code, or
    /// through `spawn_blocking`).
    pub fn start(opts: &TestBedOptions) -> Result<TestBed, CtlError> {
        let dir = match &opts.dir {
            Some(dir) => dir.clone(),
            None => fresh_dir()?,
        };
        let layout = crate::ctl::prepare_dir(&dir)?;
        let mut cmd = Command::new(&opts.testbed_bin);
        cmd.arg("up")
            .arg("--dir")
            .arg(layout.dir())
            .arg("--clusters")
            .arg(opts.clusters.join(","))
            .arg("--nodes")
            .arg(opts.nodes.to_string())
            .arg("--timeout")
            .arg(opts.timeout.as_secs().to_string());
        if let Some(d) = &opts.bin_dir {
            cmd.arg("--bin-dir").arg(d);
        }
        if let Some(d) = &opts.image_dir {
            cmd.arg("--image-dir").arg(d);
        }
        if let Some(d) = &opts.controlplane_dir {
            cmd.arg("--controlplane-dir").arg(d);
        }
        if let Some(pid) = opts.owner_pid {
            cmd.arg("--owner-pid").arg(pid.to_string());
        }
        let status = cmd.status().map_err(|source| CtlError::Io {
            what: format!("running {} up", opts.testbed_bin.display()),
            source,
        })?;
        let state = State::read(&layout.state_file())?;
        match state {
            Some(state) if status.success() => Ok(TestBed {
                layout,
                testbed_bin: opts.testbed_bin.clone(),
                controlplane_dir: opts
                    .controlplane_dir
                    .clone()
                    .unwrap_or_else(default_controlplane_dir),
                state,
                running: true,
            }),
            _ => Err(CtlError::Failed(
                format!("testbed up exited with {status}"),
                layout.supervisor_log().display().to_string(),
            )),
        }
    }

    /// The test bed directory.
    pub fn dir(&self) -> &Path {
        self.layout.dir()
    }

    /// Paths inside the test bed directory.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The supervisor's state at readiness (pid, clusters, nodes).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Admin kubeconfig of a cluster.
    pub fn kubeconfig(&self, cluster: &str) -> PathBuf {
        self.layout.kubeconfig(cluster)
    }

    /// A fresh admin client for a cluster (one per tokio runtime: clients are tied to the
    /// runtime that created them).
    pub async fn client(&self, cluster: &str) -> Result<kube::Client, ClientError> {
        kubeconfig::client(&self.kubeconfig(cluster)).await
    }

    /// The control-plane binaries this test bed runs (`kubectl` among them).
    pub fn controlplane_dir(&self) -> &Path {
        &self.controlplane_dir
    }

    /// A `kubectl` command for a cluster (the control-plane multi-call binary), with
    /// `--kubeconfig` already set.
    pub fn kubectl(&self, cluster: &str) -> Command {
        let mut cmd = Command::new(self.controlplane_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(self.kubeconfig(cluster));
        cmd
    }

    /// Runs `testbed down` and reports whether it left the machine clean.
    pub fn down(mut self) -> Result<(), CtlError> {
        self.running = false;
        run_down(&self.testbed_bin, self.layout.dir())
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        if self.running
            && let Err(e) = run_down(&self.testbed_bin, self.layout.dir())
        {
            tracing::error!(error = %e, "testbed down failed");
        }
    }
}

fn run_down(testbed_bin: &Path, dir: &Path) -> Result<(), CtlError> {
    let status = Command::new(testbed_bin)
        .arg("down")
        .arg("--dir")
        .arg(dir)
        .status()
        .map_err(|source| CtlError::Io {
            what: format!("running {} down", testbed_bin.display()),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(CtlError::Failed(
            format!("testbed down exited with {status}"),
            dir.join("logs").display().to_string(),
        ))
    }
}

fn fresh_dir() -> Result<PathBuf, CtlError> {
    let base = std::env::temp_dir().join("dr-syncer-testbeds");
    std::fs::create_dir_all(&base).map_err(|source| CtlError::Io {
        what: format!("creating {}", base.display()),
        source,
    })?;
    for n in 0..1000u32 {
        let dir = base.join(format!("{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(CtlError::Io {
                    what: format!("creating {}", dir.display()),
                    source,
                });
            }
        }
    }
    Err(CtlError::NotFound(base.display().to_string()))
}

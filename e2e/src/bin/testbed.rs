//! `testbed`: start, inspect and stop a local multi-cluster test bed.
//!
//! ```text
//! testbed up     --dir DIR [--clusters controller,source,target] [--nodes 2] [--bin-dir D]
//! testbed status --dir DIR
//! testbed down   --dir DIR
//! ```
//! Hidden: `testbed run` (the supervisor `up` spawns) and `testbed probe` (in-cluster check
//! run by pods of the `dr-syncer-e2e-probe` image).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use dr_syncer_e2e::cluster::Binaries;
use dr_syncer_e2e::ctl;
use dr_syncer_e2e::supervisor::{self, RunOptions};
use dr_syncer_e2e::testbed::default_controlplane_dir;

#[derive(Parser)]
#[command(
    name = "testbed",
    about = "Local multi-cluster Kubernetes test bed for DR-Syncer"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a test bed in the background and wait until it is ready.
    Up(BedArgs),
    /// Show the supervisor, clusters and node readiness.
    Status(DirArg),
    /// Stop everything, unmount, remove state (logs stay), verify nothing is left.
    Down(DirArg),
    /// The supervisor (spawned by `up`).
    #[command(hide = true)]
    Run(BedArgs),
    /// In-cluster probe: list pods of the pod's namespace, write the result to the
    /// termination log; exit 0 ok, 1 forbidden, 2 other error.
    #[command(hide = true)]
    Probe {
        /// Where to write the JSON result.
        #[arg(long, default_value = "/dev/termination-log")]
        termination_log: PathBuf,
    },
}

#[derive(Args)]
struct DirArg {
    /// Test bed directory.
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Args, Clone)]
struct BedArgs {
    /// Test bed directory (state, kubeconfigs, env, logs).
    #[arg(long)]
    dir: PathBuf,
    /// Cluster names, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "controller,source,target"
    )]
    clusters: Vec<String>,
    /// Simulated nodes per cluster.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Directory with our binaries (dr-syncer-controller, -agent, -rsync-worker); default:
    /// the directory of this executable.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Run dr-syncer-controller, -agent and -rsync-worker pods from the OCI archives in this
    /// directory (`make images` writes them to target/images) instead of from --bin-dir.
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// Directory with the control-plane binaries (scripts/build-controlplane.sh).
    #[arg(long, env = "TESTBED_CONTROLPLANE_DIR")]
    controlplane_dir: Option<PathBuf>,
    /// Stop the test bed when this process exits.
    #[arg(long)]
    owner_pid: Option<u32>,
    /// Seconds `up` waits for readiness.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

impl BedArgs {
    /// Absolute paths for everything, so the detached supervisor does not depend on `up`'s
    /// working directory.
    fn resolve(mut self) -> anyhow::Result<(dr_syncer_e2e::layout::Layout, BedArgs)> {
        validate_clusters(&self.clusters)?;
        let layout = ctl::prepare_dir(&self.dir)?;
        self.dir = layout.dir().to_path_buf();
        let exe = std::env::current_exe().context("locating the testbed executable")?;
        let bin_dir = match self.bin_dir.take() {
            Some(d) => d,
            None => exe.parent().map(PathBuf::from).unwrap_or_default(),
        };
        self.bin_dir = Some(absolute(bin_dir)?);
        self.image_dir = self.image_dir.take().map(absolute).transpose()?;
        let cp = self
            .controlplane_dir
            .take()
            .unwrap_or_else(default_controlplane_dir);
        anyhow::ensure!(
            cp.join("kube-apiserver").exists(),
            "no control-plane binaries in {} (run scripts/build-controlplane.sh)",
            cp.display()
        );
        let cp = cp
            .canonicalize()
            .with_context(|| format!("resolving {}", cp.display()))?;
        self.controlplane_dir = Some(cp);
        Ok((layout, self))
    }

    fn to_run_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--dir={}", self.dir.display()),
            format!("--clusters={}", self.clusters.join(",")),
            format!("--nodes={}", self.nodes),
        ];
        if let Some(d) = &self.bin_dir {
            args.push(format!("--bin-dir={}", d.display()));
        }
        if let Some(d) = &self.image_dir {
            args.push(format!("--image-dir={}", d.display()));
        }
        if let Some(d) = &self.controlplane_dir {
            args.push(format!("--controlplane-dir={}", d.display()));
        }
        if let Some(pid) = self.owner_pid {
            args.push(format!("--owner-pid={pid}"));
        }
        args
    }
}

/// Cluster names become file names, Node name prefixes and env variable suffixes: DNS-1123
/// labels, unique, and no more than a slot's port block holds.
fn validate_clusters(clusters: &[String]) -> anyhow::Result<()> {
    use dr_syncer_e2e::alloc::MAX_CLUSTERS;
    anyhow::ensure!(
        !clusters.is_empty() && clusters.len() <= MAX_CLUSTERS,
        "--clusters: 1 to {MAX_CLUSTERS} names, got {}",
        clusters.len()
    );
    for (i, name) in clusters.iter().enumerate() {
        let label = !name.is_empty()
            && name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        anyhow::ensure!(
            label,
            "--clusters: {name:?} is not a DNS label (a-z, 0-9, -)"
        );
        anyhow::ensure!(!clusters[..i].contains(name), "--clusters: {name:?} twice");
    }
    Ok(())
}

fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    std::path::absolute(&path).with_context(|| format!("resolving {}", path.display()))
}

fn main() -> ExitCode {
    // kube's client logs every failed request at ERROR; readiness polls expect failures.
    let default_filter = "info,kube_client::client::builder=off";
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "testbed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Up(args) => {
            let started = Instant::now();
            let timeout = Duration::from_secs(args.timeout);
            let (layout, args) = args.resolve()?;
            let exe = std::env::current_exe().context("locating the testbed executable")?;
            let state =
                runtime()?.block_on(ctl::up(&exe, &layout, &args.to_run_args(), timeout))?;
            let mut err = std::io::stderr();
            let _ = writeln!(
                err,
                "testbed: {} cluster(s) x {} node(s) ready in {:.1} s; `. {}` to use them",
                state.clusters.len(),
                args.nodes,
                started.elapsed().as_secs_f64(),
                layout.env_file().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run(args) => {
            let (layout, args) = args.resolve()?;
            let exe = std::env::current_exe().context("locating the testbed executable")?;
            let opts = RunOptions {
                layout,
                clusters: args.clusters.clone(),
                nodes: args.nodes,
                controlplane: Binaries::new(args.controlplane_dir.clone().unwrap_or_default()),
                bin_dir: args.bin_dir.clone().unwrap_or_default(),
                probe_bin: exe,
                image_dir: args.image_dir.clone(),
                owner_pid: args.owner_pid,
            };
            runtime()?.block_on(supervisor::run(opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status(DirArg { dir }) => {
            let layout = dr_syncer_e2e::layout::Layout::new(absolute(dir)?);
            let text = runtime()?.block_on(ctl::status(&layout))?;
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Down(DirArg { dir }) => {
            let layout = dr_syncer_e2e::layout::Layout::new(absolute(dir)?.canonicalize()?);
            let started = Instant::now();
            ctl::down(&layout)?;
            let _ = writeln!(
                std::io::stderr(),
                "testbed: down in {:.1} s, no process or mount left",
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Probe { termination_log } => {
            let code = runtime()?.block_on(dr_syncer_e2e::probe::run(&termination_log));
            Ok(ExitCode::from(code as u8))
        }
    }
}

//! `dr-syncer-rsync-worker`: pulls one volume from a `dr-syncer-agent` over SSH into a
//! directory (the target PVC), then reports a JSON summary on stdout and in the pod's
//! termination message, which is how the controller learns the result.
//!
//! The agent's host key is pinned (a mismatch is refused, never "accepted once"), the
//! worker authenticates with its own key, opens N channels on one connection and runs
//! [`dr_syncer_rsync::pull`] over them. Transient network errors are retried with bounded
//! exponential backoff; key and configuration errors fail at once.
//!
//! `--check` mode moves no data: for every `--agent` it connects, authenticates and opens
//! the subsystem, then writes one JSON result per agent (the controller's ClusterMapping
//! connectivity check).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use dr_syncer_rsync::ssh::{
    ClientError, ClientSettings, KeyError, connect, load_pinned_key, load_private_key,
};
use dr_syncer_rsync::{OptionError, ReceiveError, SUBSYSTEM_NAME, SyncOptions, SyncSummary, pull};
use serde::Serialize;
use tracing::{info, warn};

/// Command line; the controller builds it from the NamespaceMapping's `dataSyncConfig`.
#[derive(Debug, Parser)]
#[command(
    name = "dr-syncer-rsync-worker",
    version,
    about = "DR-Syncer worker: pulls a volume from a dr-syncer-agent over SSH"
)]
struct Args {
    /// Agent address, HOST:PORT (repeatable with `--check`; exactly one for a pull).
    #[arg(long, required = true)]
    agent: Vec<String>,
    /// Only check that every agent accepts us (connect, authenticate, open the
    /// subsystem); no volume is read and nothing is written but the result.
    #[arg(long)]
    check: bool,
    /// The agent's pinned host key: one OpenSSH public key line.
    #[arg(long)]
    host_key_file: PathBuf,
    /// This worker's private key (OpenSSH format, unencrypted).
    #[arg(long)]
    key_file: PathBuf,
    /// Volume name the agent serves.
    #[arg(long, required_unless_present = "check")]
    volume: Option<String>,
    /// Destination directory (the mounted target PVC).
    #[arg(long, required_unless_present = "check")]
    dest: Option<PathBuf>,
    /// Parallel file streams (SSH channels on one connection).
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Exclude glob (repeatable), rsync semantics.
    #[arg(long)]
    exclude: Vec<String>,
    /// Bandwidth limit in bytes per second, shared by all streams.
    #[arg(long)]
    bwlimit: Option<u64>,
    /// Compress data with zstd.
    #[arg(long)]
    compress: bool,
    /// Compare contents instead of size and mtime.
    #[arg(long)]
    checksum: bool,
    /// Also compare the contents of this percentage of files that look current (the
    /// same files, chosen by path, every run) and repair any that differ.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    verify_sample: Option<u8>,
    /// Report what would change, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep target files that are gone at the source.
    #[arg(long)]
    no_delete: bool,
    /// An rsync option from `rsyncOptions` (repeatable, e.g. `--rsync-option=--exclude=*.tmp`).
    #[arg(long = "rsync-option", allow_hyphen_values = true)]
    rsync_option: Vec<String>,
    /// Timeout in seconds for connecting and for the whole pull.
    #[arg(long)]
    timeout: Option<u64>,
    /// Where to write the JSON result (the pod's terminationMessagePath).
    #[arg(long)]
    termination_log: Option<PathBuf>,
    /// Retries after a transient failure (exponential backoff, capped).
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// SSH user name (the agent logs it; authentication is by key only).
    #[arg(long, default_value = "dr-syncer")]
    user: String,
}

/// Everything that makes the worker fail, with a stable `kind` for the controller.
#[derive(Debug, thiserror::Error)]
enum WorkerError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("invalid rsync option: {0}")]
    Option(#[from] OptionError),
    #[error(transparent)]
    Ssh(#[from] ClientError),
    #[error("sync failed: {0}")]
    Sync(#[from] ReceiveError),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("a pull needs exactly one --agent, --volume and --dest")]
    Usage,
}

impl WorkerError {
    fn kind(&self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::Option(_) => "option",
            Self::Ssh(ClientError::HostKeyMismatch { .. }) => "host_key_mismatch",
            Self::Ssh(ClientError::AuthRejected(_)) => "auth_rejected",
            Self::Ssh(_) => "connection",
            Self::Sync(_) => "sync",
            Self::Timeout(_) => "timeout",
            Self::Usage => "option",
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            Self::Ssh(e) => e.is_transient(),
            Self::Sync(e) => e.is_transient(),
            Self::Timeout(_) => true,
            Self::Key(_) | Self::Option(_) | Self::Usage => false,
        }
    }
}

/// The termination-log record of a failure.
#[derive(Debug, Serialize)]
struct FailureReport<'a> {
    error: String,
    kind: &'a str,
    transient: bool,
    attempts: u32,
}

fn sync_options(args: &Args) -> Result<SyncOptions, OptionError> {
    let mut opts = SyncOptions::default();
    opts.apply_rsync_options(&args.rsync_option)?;
    opts.excludes.extend(args.exclude.iter().cloned());
    opts.bwlimit = args.bwlimit.or(opts.bwlimit);
    opts.compress |= args.compress;
    opts.checksum |= args.checksum;
    if let Some(percent) = args.verify_sample {
        opts.verify_sample_percent = percent;
    }
    opts.dry_run |= args.dry_run;
    if args.no_delete {
        opts.delete = false;
    }
    if let Some(secs) = args.timeout {
        opts.timeout = Some(Duration::from_secs(secs));
    }
    Ok(opts)
}

fn client_settings(args: &Args, timeout: Option<Duration>) -> Result<ClientSettings, KeyError> {
    Ok(ClientSettings {
        pinned_host_key: load_pinned_key(&args.host_key_file)?,
        key: Arc::new(load_private_key(&args.key_file)?),
        user: args.user.clone(),
        subsystem: SUBSYSTEM_NAME.to_string(),
        connect_timeout: timeout.unwrap_or(Duration::from_secs(30)),
    })
}

/// One attempt: connect, open the streams, pull, say goodbye.
async fn attempt(
    args: &Args,
    settings: &ClientSettings,
    opts: &SyncOptions,
) -> Result<SyncSummary, WorkerError> {
    let (agent, volume, dest) = match (args.agent.as_slice(), &args.volume, &args.dest) {
        ([agent], Some(volume), Some(dest)) => (agent, volume, dest),
        _ => return Err(WorkerError::Usage),
    };
    let conn = connect(agent, settings).await?;
    let streams = conn.open_streams(args.streams).await?;
    let work = pull(streams, volume, dest, opts);
    let summary = match opts.timeout {
        Some(t) => tokio::time::timeout(t, work)
            .await
            .map_err(|_| WorkerError::Timeout(t))??,
        None => work.await?,
    };
    conn.close().await;
    Ok(summary)
}

/// Delay before retry `n` (1-based): 1 s, 2 s, 4 s... capped at 30 s.
fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

async fn run(args: &Args) -> (Result<SyncSummary, WorkerError>, u32) {
    let setup = sync_options(args)
        .map_err(WorkerError::from)
        .and_then(|o| Ok((client_settings(args, o.timeout)?, o)));
    let (settings, opts) = match setup {
        Ok(s) => s,
        Err(e) => return (Err(e), 0),
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt(args, &settings, &opts).await {
            Err(e) if e.is_transient() && attempts <= args.retries => {
                let delay = backoff(attempts);
                warn!(error = %e, attempt = attempts, retry_in = ?delay, "transient failure, retrying");
                tokio::time::sleep(delay).await;
            }
            result => return (result, attempts),
        }
    }
}

/// Result of checking one agent in `--check` mode.
#[derive(Debug, Serialize)]
struct AgentCheck {
    agent: String,
    connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

/// The `--check` report: one entry per `--agent`, in order.
#[derive(Debug, Serialize)]
struct CheckReport {
    check: bool,
    connected: usize,
    total: usize,
    agents: Vec<AgentCheck>,
}

/// Connect, authenticate, open the subsystem, close: proves the keys and the path work.
async fn check_one(agent: &str, settings: &ClientSettings) -> Result<(), WorkerError> {
    let conn = connect(agent, settings).await?;
    let stream = conn.open_stream().await;
    conn.close().await;
    stream.map(|_| ()).map_err(WorkerError::from)
}

async fn check_all(args: &Args) -> Result<CheckReport, WorkerError> {
    let timeout = Duration::from_secs(args.timeout.unwrap_or(10));
    let settings = client_settings(args, Some(timeout))?;
    let checks = args.agent.iter().map(|agent| {
        let settings = &settings;
        async move {
            let result = tokio::time::timeout(timeout, check_one(agent, settings))
                .await
                .unwrap_or(Err(WorkerError::Timeout(timeout)));
            AgentCheck {
                agent: agent.clone(),
                connected: result.is_ok(),
                kind: result.as_ref().err().map(WorkerError::kind),
                error: result.err().map(|e| e.to_string()),
            }
        }
    });
    let agents = futures::future::join_all(checks).await;
    Ok(CheckReport {
        check: true,
        connected: agents.iter().filter(|a| a.connected).count(),
        total: agents.len(),
        agents,
    })
}

/// Runs `--check`: exit 0 when every agent accepted us, 1 otherwise.
async fn run_check(args: &Args) -> std::process::ExitCode {
    match check_all(args).await {
        Ok(report) => {
            let json = serde_json::to_string(&report).unwrap_or_default();
            write_termination_log(args.termination_log.as_deref(), &json);
            let _ = writeln!(std::io::stdout().lock(), "{json}");
            if report.connected == report.total {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            report_failure(args, &e, 0);
            std::process::ExitCode::FAILURE
        }
    }
}

fn write_termination_log(path: Option<&Path>, json: &str) {
    if let Some(path) = path
        && let Err(e) = std::fs::write(path, json)
    {
        warn!(path = %path.display(), error = %e, "cannot write termination log");
    }
}

fn report_success(args: &Args, summary: &SyncSummary) -> std::io::Result<()> {
    let json = serde_json::to_string(summary).map_err(std::io::Error::other)?;
    write_termination_log(args.termination_log.as_deref(), &json);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}")?;
    out.flush()
}

fn report_failure(args: &Args, error: &WorkerError, attempts: u32) {
    let report = FailureReport {
        error: error.to_string(),
        kind: error.kind(),
        transient: error.is_transient(),
        attempts,
    };
    if let Ok(json) = serde_json::to_string(&report) {
        write_termination_log(args.termination_log.as_deref(), &json);
    }
    let _ = writeln!(std::io::stderr(), "dr-syncer-rsync-worker: error: {error}");
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,russh=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_logging();
    if args.check {
        return run_check(&args).await;
    }
    let (result, attempts) = run(&args).await;
    match result {
        Ok(summary) => {
            info!(attempts, files = summary.files_transferred, "pull complete");
            match report_success(&args, &summary) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(_) => std::process::ExitCode::FAILURE,
            }
        }
        Err(e) => {
            report_failure(&args, &e, attempts);
            std::process::ExitCode::FAILURE
        }
    }
}

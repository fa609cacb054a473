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
//!
//! The command line ([`WorkerArgs`]) and the JSON reports ([`SyncSummary`],
//! [`FailureReport`], [`CheckReport`]) are the wire contract in `dr_syncer_worker_wire`,
//! which the controller renders and parses with the same types.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use dr_syncer_rsync::ssh::{
    ClientError, ClientSettings, KeyError, connect, load_pinned_key, load_private_key,
};
use dr_syncer_rsync::{
    OptionError, ProtocolError, ReceiveError, SUBSYSTEM_NAME, SyncOptions, SyncSummary,
    is_unsafe_volume_refusal, pull,
};
use dr_syncer_worker_wire::{AgentCheck, CheckReport, FailureReport, WorkerArgs, kind};
use tracing::{info, warn};

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
            Self::Key(_) => kind::KEY,
            Self::Option(_) => kind::OPTION,
            Self::Ssh(ClientError::HostKeyMismatch { .. }) => kind::HOST_KEY_MISMATCH,
            Self::Ssh(ClientError::AuthRejected(_)) => kind::AUTH_REJECTED,
            Self::Ssh(_) => kind::CONNECTION,
            Self::Sync(ReceiveError::Busy) => kind::TARGET_BUSY,
            Self::Sync(ReceiveError::Protocol(ProtocolError::Remote(m)))
                if is_unsafe_volume_refusal(m) =>
            {
                kind::SOURCE_VOLUME_UNSAFE
            }
            Self::Sync(_) => kind::SYNC,
            Self::Timeout(_) => kind::TIMEOUT,
            Self::Usage => kind::OPTION,
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

fn sync_options(args: &WorkerArgs) -> Result<SyncOptions, OptionError> {
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
    opts.allow_mass_deletion = args.allow_mass_deletion;
    if let Some(secs) = args.timeout {
        opts.timeout = Some(Duration::from_secs(secs));
    }
    Ok(opts)
}

fn client_settings(
    args: &WorkerArgs,
    timeout: Option<Duration>,
) -> Result<ClientSettings, KeyError> {
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
    args: &WorkerArgs,
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

async fn run(args: &WorkerArgs) -> (Result<SyncSummary, WorkerError>, u32) {
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

/// Connect, authenticate, open the subsystem, close: proves the keys and the path work.
async fn check_one(agent: &str, settings: &ClientSettings) -> Result<(), WorkerError> {
    let conn = connect(agent, settings).await?;
    let stream = conn.open_stream().await;
    conn.close().await;
    stream.map(|_| ()).map_err(WorkerError::from)
}

async fn check_all(args: &WorkerArgs) -> Result<CheckReport, WorkerError> {
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
                kind: result.as_ref().err().map(|e| e.kind().to_owned()),
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
async fn run_check(args: &WorkerArgs) -> std::process::ExitCode {
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

fn report_success(args: &WorkerArgs, summary: &SyncSummary) -> std::io::Result<()> {
    let json = serde_json::to_string(summary).map_err(std::io::Error::other)?;
    write_termination_log(args.termination_log.as_deref(), &json);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}")?;
    out.flush()
}

fn report_failure(args: &WorkerArgs, error: &WorkerError, attempts: u32) {
    let report = FailureReport {
        error: error.to_string(),
        kind: error.kind().to_owned(),
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
    let args = WorkerArgs::parse();
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The summary `pull` returns is the wire contract's [`SyncSummary`]
    /// (`dr_syncer_worker_wire::SyncSummary`), the type the controller parses, itself and
    /// not a copy: `same` only compiles while they are one type, so field names and values
    /// cannot drift (the wire's own tests pin every field name).
    #[test]
    fn the_pull_summary_is_the_wire_summary() {
        fn same(s: SyncSummary) -> dr_syncer_worker_wire::SyncSummary {
            s
        }
        let summary = SyncSummary {
            files_scanned: 1,
            wire_bytes: 6,
            duration_seconds: 1.5,
            dry_run: true,
            ..SyncSummary::default()
        };
        let json = serde_json::to_string(&summary).unwrap();
        let wire: dr_syncer_worker_wire::SyncSummary = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&wire).unwrap(), json);
        assert_eq!(same(summary), wire);
    }
}

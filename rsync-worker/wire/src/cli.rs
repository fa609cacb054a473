//! The worker's command line: parsed by the worker ([`clap::Parser`]) and rendered by the
//! controller ([`WorkerArgs::to_args`]) into the worker pod's `args`, so both sides agree
//! on every flag by construction.
//!
//! The controller passes no environment variables to the worker; the command line is the
//! whole request.

use std::path::PathBuf;

use clap::Parser;

/// Default of `--streams`: parallel file streams of one pull.
pub const DEFAULT_STREAMS: usize = 4;
/// Default of `--retries`: the worker's own retries after a transient failure.
pub const DEFAULT_RETRIES: u32 = 3;
/// Default of `--user`: the SSH user name the worker presents.
pub const DEFAULT_USER: &str = "dr-syncer";

/// Command line; the controller builds it from the NamespaceMapping's `dataSyncConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "dr-syncer-rsync-worker",
    version,
    about = "DR-Syncer worker: pulls a volume from a dr-syncer-agent over SSH"
)]
pub struct WorkerArgs {
    /// Agent address, HOST:PORT (repeatable with `--check`; exactly one for a pull).
    #[arg(long, required = true)]
    pub agent: Vec<String>,
    /// Only check that every agent accepts us (connect, authenticate, open the
    /// subsystem); no volume is read and nothing is written but the result.
    #[arg(long)]
    pub check: bool,
    /// The agent's pinned host key: one OpenSSH public key line.
    #[arg(long)]
    pub host_key_file: PathBuf,
    /// This worker's private key (OpenSSH format, unencrypted).
    #[arg(long)]
    pub key_file: PathBuf,
    /// Volume name the agent serves.
    #[arg(long, required_unless_present = "check")]
    pub volume: Option<String>,
    /// Destination directory (the mounted target PVC).
    #[arg(long, required_unless_present = "check")]
    pub dest: Option<PathBuf>,
    /// Parallel file streams (SSH channels on one connection).
    #[arg(long, default_value_t = DEFAULT_STREAMS)]
    pub streams: usize,
    /// Exclude glob (repeatable), rsync semantics.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Bandwidth limit in bytes per second, shared by all streams.
    #[arg(long)]
    pub bwlimit: Option<u64>,
    /// Compress data with zstd.
    #[arg(long)]
    pub compress: bool,
    /// Compare contents instead of size and mtime.
    #[arg(long)]
    pub checksum: bool,
    /// Also compare the contents of this percentage of files that look current (the
    /// same files, chosen by path, every run) and repair any that differ.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub verify_sample: Option<u8>,
    /// Report what would change, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep target files that are gone at the source.
    #[arg(long)]
    pub no_delete: bool,
    /// Turn off the prune guard: delete what the source lacks even when its listing is
    /// empty or more than half of the target's files would go (the NamespaceMapping's
    /// `spec.safety.allowMassDataDeletion`).
    #[arg(long)]
    pub allow_mass_deletion: bool,
    /// An rsync option from `rsyncOptions` (repeatable, e.g. `--rsync-option=--exclude=*.tmp`).
    #[arg(long = "rsync-option", allow_hyphen_values = true)]
    pub rsync_option: Vec<String>,
    /// Timeout in seconds for connecting and for the whole pull.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Where to write the JSON result (the pod's terminationMessagePath).
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
    /// Retries after a transient failure (exponential backoff, capped).
    #[arg(long, default_value_t = DEFAULT_RETRIES)]
    pub retries: u32,
    /// SSH user name (the agent logs it; authentication is by key only).
    #[arg(long, default_value = DEFAULT_USER)]
    pub user: String,
}

impl WorkerArgs {
    /// A pull of `volume` from `agent` into `dest`, every other flag at its default: what
    /// the worker parses from the minimal pull command line.
    pub fn pull(
        agent: impl Into<String>,
        host_key_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
        volume: impl Into<String>,
        dest: impl Into<PathBuf>,
    ) -> Self {
        WorkerArgs {
            volume: Some(volume.into()),
            dest: Some(dest.into()),
            ..Self::base(vec![agent.into()], host_key_file.into(), key_file.into())
        }
    }

    /// A `--check` of every agent in `agents`, every other flag at its default.
    pub fn check(
        agents: Vec<String>,
        host_key_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        WorkerArgs {
            check: true,
            ..Self::base(agents, host_key_file.into(), key_file.into())
        }
    }

    fn base(agent: Vec<String>, host_key_file: PathBuf, key_file: PathBuf) -> Self {
        WorkerArgs {
            agent,
            check: false,
            host_key_file,
            key_file,
            volume: None,
            dest: None,
            streams: DEFAULT_STREAMS,
            exclude: Vec::new(),
            bwlimit: None,
            compress: false,
            checksum: false,
            verify_sample: None,
            dry_run: false,
            no_delete: false,
            allow_mass_deletion: false,
            rsync_option: Vec::new(),
            timeout: None,
            termination_log: None,
            retries: DEFAULT_RETRIES,
            user: DEFAULT_USER.to_owned(),
        }
    }

    /// The argv (without the program name) that parses back to `self`: `--check` first,
    /// then the `--flag value` pairs, then the `--flag=value` ones (excludes and rsync
    /// options may start with `-`) and the switches. Flags at their default are left out.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.check {
            args.push("--check".to_owned());
        }
        let mut pair = |flag: &str, value: String| {
            args.push(flag.to_owned());
            args.push(value);
        };
        for agent in &self.agent {
            pair("--agent", agent.clone());
        }
        pair("--host-key-file", path(&self.host_key_file));
        pair("--key-file", path(&self.key_file));
        if let Some(volume) = &self.volume {
            pair("--volume", volume.clone());
        }
        if let Some(dest) = &self.dest {
            pair("--dest", path(dest));
        }
        if let Some(log) = &self.termination_log {
            pair("--termination-log", path(log));
        }
        if let Some(secs) = self.timeout {
            pair("--timeout", secs.to_string());
        }
        if self.retries != DEFAULT_RETRIES {
            pair("--retries", self.retries.to_string());
        }
        if self.streams != DEFAULT_STREAMS {
            pair("--streams", self.streams.to_string());
        }
        if self.user != DEFAULT_USER {
            pair("--user", self.user.clone());
        }
        args.extend(self.exclude.iter().map(|e| format!("--exclude={e}")));
        args.extend(self.bwlimit.map(|b| format!("--bwlimit={b}")));
        args.extend(
            self.rsync_option
                .iter()
                .map(|o| format!("--rsync-option={o}")),
        );
        let switch = |on: bool, flag: &str| on.then(|| flag.to_owned());
        args.extend(switch(self.compress, "--compress"));
        args.extend(switch(self.checksum, "--checksum"));
        args.extend(self.verify_sample.map(|p| format!("--verify-sample={p}")));
        args.extend(switch(self.dry_run, "--dry-run"));
        args.extend(switch(self.no_delete, "--no-delete"));
        args.extend(switch(self.allow_mass_deletion, "--allow-mass-deletion"));
        args
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests;

//! The worker's JSON reports. The worker prints exactly one of them on stdout and writes
//! it to the pod's termination message; the controller reads it back from the terminated
//! pod. A pull prints a [`SyncSummary`] or a [`FailureReport`]; `--check` prints a
//! [`CheckReport`] (or a [`FailureReport`] when it could not check at all).
//!
//! Deserializing is lenient where the controller always was (missing counters read as
//! zero), so a controller reads the reports of an older or newer worker.

use serde::{Deserialize, Serialize};

/// The result of a pull, printed as JSON by the worker and read back by the controller
/// from the pod's termination message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncSummary {
    /// Entries in the source file list (after excludes).
    pub files_scanned: u64,
    /// Regular files whose data was transferred.
    pub files_transferred: u64,
    /// Target entries deleted because they are gone at the source.
    pub files_deleted: u64,
    /// File bytes sent literally.
    pub literal_bytes: u64,
    /// File bytes reconstructed from the target's own data.
    pub matched_bytes: u64,
    /// Bytes read from and written to the streams.
    pub wire_bytes: u64,
    /// Wall time of the pull.
    pub duration_seconds: f64,
    /// Total size of regular files at the source.
    pub total_size: u64,
    /// Directories, symlinks and hard links created or replaced.
    pub other_entries_changed: u64,
    /// Files whose content was already current but whose metadata was updated.
    pub metadata_updated: u64,
    /// Files that vanished at the source between listing and transfer.
    pub files_vanished: u64,
    /// Files whose contents were compared with the source's (checksum mode, or the
    /// verification sample) instead of trusting size and mtime.
    pub files_verified: u64,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Why the pull deleted nothing although the target holds files the source listing
    /// lacks (the prune guard: an empty listing, or more than half of the target's files
    /// gone), with the counts; `None` when deletions ran (or none were due). The transfer
    /// itself completed; `--allow-mass-deletion` lets such deletions happen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_refused: Option<String>,
}

/// The stable `kind` values of a [`FailureReport`] (and of a failed [`AgentCheck`]): the
/// controller maps them to condition reasons and decides from them whether to retry.
pub mod kind {
    /// A key file could not be read or parsed.
    pub const KEY: &str = "key";
    /// An invalid option (or a pull without exactly one agent, volume and destination).
    pub const OPTION: &str = "option";
    /// The agent presented a host key other than the pinned one.
    pub const HOST_KEY_MISMATCH: &str = "host_key_mismatch";
    /// The agent refused the worker's key.
    pub const AUTH_REJECTED: &str = "auth_rejected";
    /// Any other SSH or network failure.
    pub const CONNECTION: &str = "connection";
    /// The pull itself failed (protocol, filesystem, refused volume).
    pub const SYNC: &str = "sync";
    /// The pull or the connection did not finish in time.
    pub const TIMEOUT: &str = "timeout";
    /// The agent refused to serve the source volume as unsafe: its directory is not the
    /// volume's mount, or no Running (non-terminating) pod has it mounted. Not transient by
    /// itself: the source has to be fixed (or its pod to start).
    pub const SOURCE_VOLUME_UNSAFE: &str = "source_volume_unsafe";
    /// Another pull holds the target's lock (`.dr-syncer.lock` in the destination root):
    /// this one wrote nothing. Transient: retry once the other pull ended.
    pub const TARGET_BUSY: &str = "target_busy";
}

/// The termination-log record of a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    /// The error, in words.
    pub error: String,
    /// One of the [`kind`] values.
    pub kind: String,
    /// Whether trying again may help.
    #[serde(default)]
    pub transient: bool,
    /// Attempts the worker made itself.
    #[serde(default)]
    pub attempts: u32,
}

/// Result of checking one agent in `--check` mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCheck {
    /// The agent address, as given with `--agent`.
    pub agent: String,
    /// Whether it accepted us (connected, authenticated, opened the subsystem).
    pub connected: bool,
    /// Why not, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why not, as one of the [`kind`] values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The `--check` report: one entry per `--agent`, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Always true in a check report; its absence marks a failure report.
    pub check: bool,
    /// Agents that accepted us.
    #[serde(default)]
    pub connected: usize,
    /// Agents checked.
    #[serde(default)]
    pub total: usize,
    /// One entry per agent.
    pub agents: Vec<AgentCheck>,
}

#[cfg(test)]
mod tests;

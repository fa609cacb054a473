//! What a pull reports: [`SyncSummary`], the worker's JSON output.

use serde::{Deserialize, Serialize};

/// The result of a pull, printed as JSON by the worker and read back by the controller
/// from the pod's termination message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub files_verified: u64,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
}

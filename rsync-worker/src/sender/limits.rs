//! What one stream may ask of a sender ([`Limits`]) and what it did ([`ServeStats`]).

use serde::{Deserialize, Serialize};

/// Bounds a sender enforces on a client, so that a hostile client cannot exhaust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted or produced, in bytes.
    pub max_frame: usize,
    /// Longest accepted path, in bytes.
    pub max_path: usize,
    /// Most requests (list + fetch) served on one stream.
    pub max_requests: u64,
    /// Most exclude patterns accepted in a list request.
    pub max_excludes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: crate::protocol::MAX_FRAME,
            max_path: crate::paths::MAX_PATH,
            max_requests: 10_000_000,
            max_excludes: 1024,
        }
    }
}

/// What one [`serve`] call did, for the agent's logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServeStats {
    /// Volume served.
    pub volume: String,
    /// Entries sent in file lists.
    pub entries_listed: u64,
    /// Files whose data was sent.
    pub files_sent: u64,
    /// File bytes sent literally.
    pub literal_bytes: u64,
    /// File bytes the client already had (copied from its basis).
    pub matched_bytes: u64,
    /// Bytes written to the stream (after compression).
    pub wire_bytes_out: u64,
    /// Bytes read from the stream.
    pub wire_bytes_in: u64,
    /// Fetches refused because the path was not a regular file beneath the root
    /// (a symlink or directory swapped in since the list was made).
    pub refused: u64,
}

//! The messages of the protocol ([`Message`]) and the protocol version both hellos carry.

use crate::delta::ChunkHashes;
use crate::filelist::Entry;
use crate::paths::WirePath;

/// Protocol version spoken by this build; the hello of both sides must match.
/// (2: `ListRequest.hash_percent`; 3: [`Message::Chunks`].)
pub const VERSION: u32 = 3;

/// A request for one file's data, followed on the wire by `sig_count` [`Message::Signature`]
/// frames (one per basis window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Client-chosen id echoed in the replies.
    pub id: u64,
    /// Path relative to the volume root.
    pub path: WirePath,
    /// Source bytes covered by one delta window.
    pub window: u64,
    /// Number of basis windows (signatures) that follow.
    pub sig_count: u32,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client: first message; names the volume and asks for compressed data or not.
    Hello {
        /// Client protocol version.
        version: u32,
        /// Volume name, resolved by the agent.
        volume: String,
        /// zstd level for data frames, 0 = none.
        compress_level: i32,
    },
    /// Server: accepts the hello.
    HelloOk {
        /// Server protocol version.
        version: u32,
    },
    /// Client: asks for the file list.
    ListRequest {
        /// Exclude patterns the sender prunes while walking.
        excludes: Vec<String>,
        /// Percentage (0-100) of regular files to send with a BLAKE3 content hash: 100
        /// is checksum mode, 1-99 a deterministic sample (see
        /// [`hash_sampled`](crate::filelist::hash_sampled)), 0 none.
        hash_percent: u8,
        /// Include extended attributes.
        xattrs: bool,
    },
    /// Server: a batch of entries.
    Entries(Vec<Entry>),
    /// Server: end of the file list.
    ListEnd {
        /// Total entries sent.
        count: u64,
    },
    /// Client: asks for one file.
    Fetch(FetchRequest),
    /// Client: a fast_rsync (librsync format) signature of one basis window.
    Signature(Vec<u8>),
    /// Client, optional, right before a window's `Signature`: hashes of the basis chunks
    /// where unchanged source chunks would be (see [`ChunkHashes`]).
    Chunks(ChunkHashes),
    /// Server: the file's data follows.
    FileStart {
        /// Echoed id.
        id: u64,
        /// Size of the file as read now.
        size: u64,
    },
    /// Server: bytes of the librsync-format delta stream (one delta per window).
    Delta(Vec<u8>),
    /// Server: end of the file, with its whole-file hash.
    FileEnd {
        /// Echoed id.
        id: u64,
        /// BLAKE3 of the bytes sent.
        hash: [u8; 32],
    },
    /// Server: the file cannot be sent (vanished, no longer a regular file).
    FileError {
        /// Echoed id.
        id: u64,
        /// Why.
        message: String,
    },
    /// Either side: a fatal error; the stream closes after it.
    Error(String),
    /// Client: done, close the stream.
    Bye,
}

impl Message {
    /// A short name for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::HelloOk { .. } => "HelloOk",
            Message::ListRequest { .. } => "ListRequest",
            Message::Entries(_) => "Entries",
            Message::ListEnd { .. } => "ListEnd",
            Message::Fetch(_) => "Fetch",
            Message::Signature(_) => "Signature",
            Message::Chunks(_) => "Chunks",
            Message::FileStart { .. } => "FileStart",
            Message::Delta(_) => "Delta",
            Message::FileEnd { .. } => "FileEnd",
            Message::FileError { .. } => "FileError",
            Message::Error(_) => "Error",
            Message::Bye => "Bye",
        }
    }
}

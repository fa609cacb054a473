//! Why a stream failed ([`ProtocolError`]), on either side.

/// Why a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Reading or writing the stream failed (includes the peer going away).
    #[error("stream i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame larger than the limit was announced.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// Our limit.
        max: usize,
    },
    /// The bytes do not decode to a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A valid message arrived where another was expected.
    #[error("unexpected message: expected {expected}, got {got}")]
    Unexpected {
        /// What the state machine expected.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: ours {ours}, theirs {theirs}")]
    Version {
        /// Our version.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The requested volume is not served here.
    #[error("volume refused: {0}")]
    Volume(String),
    /// A path was refused because it could escape the root.
    #[error("path {path:?} refused: {reason}")]
    PathRefused {
        /// The path (lossy UTF-8).
        path: String,
        /// Why.
        reason: String,
    },
    /// A request limit was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The peer reported a fatal error.
    #[error("peer error: {0}")]
    Remote(String),
    /// Sender-side filesystem error that aborts the stream (the volume root is unusable).
    #[error("{context}: {source}")]
    Fs {
        /// What we were doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl ProtocolError {
    /// Whether a new connection may succeed where this one failed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProtocolError::Io(_))
    }

    /// Shorthand for a malformed-message error.
    pub fn malformed(what: impl Into<String>) -> Self {
        ProtocolError::Malformed(what.into())
    }
}

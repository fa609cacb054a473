//! Why a pull fails ([`ReceiveError`]), and the small constructors the other parts use to
//! wrap filesystem and protocol failures with what they were doing.

use std::io;

use crate::protocol::{Message, ProtocolError};

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
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
    /// Another pull holds the destination's lock; this one wrote nothing.
    #[error(
        "another pull is writing into this destination (it holds .dr-syncer.lock); nothing was written"
    )]
    Busy,
}

impl ReceiveError {
    /// Whether retrying the whole pull may succeed (network trouble, source changing
    /// under us), as opposed to a configuration or security error.
    pub fn is_transient(&self) -> bool {
        match self {
            ReceiveError::Protocol(p) => p.is_transient(),
            ReceiveError::Verify { .. } | ReceiveError::Busy => true,
            ReceiveError::Io { .. } | ReceiveError::Refused { .. } | ReceiveError::NoStreams => {
                false
            }
        }
    }
}

/// Wraps an I/O error with what we were doing (and on which path).
pub(super) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ReceiveError {
    let context = context.into();
    move |source| ReceiveError::Io { context, source }
}

/// The error for a message that is not the one the receiver expects next: the peer's own
/// fatal error when it sent one, else a protocol violation.
pub(super) fn unexpected(expected: &'static str, got: &Message) -> ReceiveError {
    match got {
        Message::Error(e) => ProtocolError::Remote(e.clone()).into(),
        other => ProtocolError::Unexpected {
            expected,
            got: other.name(),
        }
        .into(),
    }
}

/// A blocking worker thread (planner, applier, finisher) panicked or was cancelled.
pub(super) fn panicked(e: tokio::task::JoinError) -> ReceiveError {
    ReceiveError::Io {
        context: "worker thread".into(),
        source: io::Error::other(e.to_string()),
    }
}

//! Why a delta could not be computed or applied ([`DeltaError`]).

use std::io;

/// Why a delta could not be computed or applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The delta stream is not valid librsync format.
    #[error("invalid delta: {0}")]
    Invalid(String),
    /// A copy command points outside the basis window.
    #[error("delta copy out of bounds: offset {offset} len {len} basis {basis}")]
    OutOfBounds {
        /// Copy offset.
        offset: u64,
        /// Copy length.
        len: u64,
        /// Basis window length.
        basis: u64,
    },
    /// The signature is not one we accept.
    #[error("invalid signature: {0}")]
    BadSignature(String),
    /// Writing the output failed.
    #[error("delta output: {0}")]
    Io(#[from] io::Error),
}

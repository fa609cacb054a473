//! Signatures, deltas and their application, in bounded windows, on fast_rsync.
//!
//! fast_rsync works on whole slices, so large files are processed in windows of
//! [`WINDOW`] bytes: window `i` of the new file is diffed against the signature of the
//! basis range [`basis_range`]`(i)` (the same range widened by [`overlap`] on both sides,
//! so data shifted by inserts or deletes still matches). Each window is a complete
//! librsync-format delta (magic, commands, end), and windows follow each other on the wire.
//! Memory is bounded by one mapped window on each side, whatever the file size.
//!
//! The applier ([`DeltaApplier`]) parses the delta stream incrementally, so the receiver
//! never holds a delta in memory either; it accepts every librsync command (so `rdiff`
//! deltas apply too) and bounds-checks every copy.
//!
//! Table of contents:
//! - `window`: the window layout both sides compute.
//! - `signature`: the receiver's signatures and chunk hashes of its basis.
//! - `format`: the librsync delta format (magic, commands, literal deltas).
//! - `diff`: the matcher (sender): one delta per source window.
//! - `apply`: the streaming applier (receiver) and the sender's delta counter.
//! - `sparse`: the receiver's sparse, hashing file writer.
//! - `error`: [`DeltaError`].

mod apply;
mod diff;
mod error;
mod format;
mod signature;
mod sparse;
mod window;

pub use apply::{DeltaApplier, DeltaCounter, DeltaSink};
pub use diff::{diff_window, diff_window_hashed};
pub use error::DeltaError;
pub use format::{DATA_CHUNK, DELTA_MAGIC, literal_delta};
pub use signature::{
    CHUNK_TARGET, ChunkHashes, STRONG_LEN, block_size, parse_signature, signature,
};
pub use sparse::SparseWriter;
pub use window::{WINDOW, basis_range, basis_shift, overlap, source_range, window_count};

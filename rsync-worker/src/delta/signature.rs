//! What the receiver sends about its basis: one fast_rsync (librsync format) signature
//! per basis window ([`signature`], checked on arrival by [`parse_signature`]) and, for
//! large windows, the BLAKE3 hashes of same-position chunks ([`ChunkHashes`]).

use std::ops::Range;

use fast_rsync::{Signature, SignatureOptions};

use super::error::DeltaError;

/// Strong-hash bytes kept per block (MD4 prefix; whole files are verified with BLAKE3).
pub const STRONG_LEN: u32 = 8;

/// Block size for a basis of `len` bytes: rsync's square-root rule, 700 B .. 128 KiB,
/// a multiple of 8.
pub fn block_size(len: u64) -> u32 {
    let root = (len as f64).sqrt() as u64;
    (root.clamp(700, 128 * 1024) & !7) as u32
}

/// Signature of one basis window (the block size follows the whole basis length).
pub fn signature(data: &[u8], basis_len: u64) -> Signature {
    Signature::calculate(
        data,
        SignatureOptions {
            block_size: block_size(basis_len),
            crypto_hash_size: STRONG_LEN,
        },
    )
}

/// Parses a peer's signature, refusing parameters that could make diffing misbehave.
pub fn parse_signature(bytes: Vec<u8>) -> Result<Signature, DeltaError> {
    if bytes.len() < 12 {
        return Err(DeltaError::BadSignature("too short".into()));
    }
    let block = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let strong = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(1..=1 << 24).contains(&block) || !(1..=16).contains(&strong) {
        return Err(DeltaError::BadSignature(format!(
            "block size {block}, strong length {strong}"
        )));
    }
    Signature::deserialize(bytes).map_err(|e| DeltaError::BadSignature(e.to_string()))
}

/// Block size recorded in a signature's header (validated by [`parse_signature`]).
pub(super) fn block_size_of(sig: &Signature) -> u32 {
    match sig.serialized().get(4..8) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 1,
    }
}

/// Target size of the same-position chunks a receiver hashes (rounded to whole blocks).
pub const CHUNK_TARGET: u64 = 256 * 1024;

/// BLAKE3 hashes of the basis data that sits where each chunk of a source window would be
/// if it were unchanged (protocol v3, sent with each signature of a large window).
///
/// The rolling search confirms every matching block with MD4, which costs more CPU than
/// anything else the sender does when most of a large file is unchanged. With these hashes
/// the sender compares whole chunks in place with BLAKE3 (several times faster) and runs
/// the rolling search only over the chunks that differ. Chunks start on the signature's
/// block grid (`(basis_first + j * size) % block == 0`), so unchanged blocks inside a
/// changed chunk still match and the delta is as small as without chunks.
///
/// Chunk `j` covers source-window bytes `first + j * size ..` (at most `size`, cut at the
/// end of the window); unchanged, they would sit at `basis_first + j * size` in the basis
/// window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChunkHashes {
    /// Offset in the source window of chunk 0.
    pub first: u64,
    /// Chunk size (a whole number of signature blocks).
    pub size: u64,
    /// Offset in the basis window of chunk 0's unchanged data.
    pub basis_first: u64,
    /// BLAKE3 of each chunk's basis data.
    pub hashes: Vec<[u8; 32]>,
}

impl ChunkHashes {
    /// Computes the chunk hashes of `basis` (basis window `i`, whose data shifted by
    /// `shift` lines up with the source window) for a source window of `source_len` bytes.
    /// `None` when the window is too small for chunks to pay off.
    pub fn of_basis(basis: &[u8], basis_len: u64, shift: u64, source_len: u64) -> Option<Self> {
        let block = u64::from(block_size(basis_len)).max(1);
        let size = block * (CHUNK_TARGET / block).max(1);
        if source_len < 2 * size {
            return None;
        }
        let first = (block - shift % block) % block;
        let mut hashes = Vec::new();
        let mut at = first;
        while at < source_len {
            let len = size.min(source_len - at);
            let start = (shift + at) as usize;
            match basis.get(start..start + len as usize) {
                Some(b) => hashes.push(*blake3::hash(b).as_bytes()),
                None => break,
            }
            at += len;
        }
        Some(Self {
            first,
            size,
            basis_first: shift + first,
            hashes,
        })
    }

    /// Source-window range of chunk `j` in a window of `len` bytes (empty past the end).
    pub(super) fn range(&self, j: usize, len: usize) -> Range<usize> {
        let start = (self.first + j as u64 * self.size).min(len as u64) as usize;
        let end = (start as u64 + self.size).min(len as u64) as usize;
        start..end
    }

    /// Whether these hashes can describe a window of `len` bytes (a peer's values are
    /// checked before use; unusable hashes are ignored, never trusted).
    pub(super) fn fits(&self, len: usize) -> bool {
        let len = len as u64;
        self.size >= 512
            && self.first < self.size
            && !self.hashes.is_empty()
            && (self.hashes.len() as u64) <= len / self.size + 1
            && self
                .basis_first
                .checked_add(self.hashes.len() as u64 * self.size)
                .is_some()
    }
}

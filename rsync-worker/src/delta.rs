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

use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;

use fast_rsync::{Signature, SignatureOptions};

/// Bytes of the new file covered by one delta window.
pub const WINDOW: u64 = 64 * 1024 * 1024;
/// librsync delta magic.
pub const DELTA_MAGIC: u32 = 0x7273_0236;
/// Strong-hash bytes kept per block (MD4 prefix; whole files are verified with BLAKE3).
pub const STRONG_LEN: u32 = 8;
const SPARSE_BLOCK: usize = 4096;
const WRITE_BUF: usize = 1 << 20;
static ZEROS: [u8; SPARSE_BLOCK] = [0; SPARSE_BLOCK];

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

/// Overlap added on both sides of a basis window.
pub fn overlap(window: u64) -> u64 {
    window / 16
}

/// Number of windows covering `len` bytes.
pub fn window_count(len: u64, window: u64) -> u64 {
    len.div_ceil(window.max(1))
}

/// Source range of window `i`.
pub fn source_range(i: u64, window: u64, len: u64) -> Range<u64> {
    let start = (i * window).min(len);
    start..(start + window).min(len)
}

/// Offset in basis window `i` of the first byte of source window `i` (where unchanged data
/// sits), used to split a window on a block boundary of the signature.
pub fn basis_shift(i: u64, window: u64) -> u64 {
    (i * window).min(overlap(window))
}

/// Basis range whose signature window `i` is diffed against.
pub fn basis_range(i: u64, window: u64, basis_len: u64) -> Range<u64> {
    let ov = overlap(window);
    let start = (i * window).saturating_sub(ov).min(basis_len);
    start..(i * window + window + ov).min(basis_len)
}

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

/// Computes the delta of `data` against `sig` (or an all-literal delta without one),
/// writing it to `out`.
pub fn diff_window(sig: Option<&Signature>, data: &[u8], out: &mut impl Write) -> io::Result<()> {
    match sig {
        Some(sig) => diff_indexed(&sig.index(), data, out),
        None => literal_delta(data, out),
    }
}

/// Windows smaller than this are diffed on one thread (splitting costs more than it saves).
const PARALLEL_MIN: usize = 4 * 1024 * 1024;

/// Diffs one window against `sig` (like [`diff_window`]) and feeds it to `hasher`.
///
/// With the receiver's [`ChunkHashes`], unchanged chunks are found first (BLAKE3, while
/// another thread hashes the window) and become COPY commands; the rolling search covers
/// only the changed ones. A window that is mostly changed goes the general way instead:
/// the rolling search over everything, on two threads for large windows (it is CPU-bound:
/// MD4, CRC; the agent would otherwise keep one core busy while the other idles).
pub fn diff_window_hashed<W: Write + Send>(
    sig: Option<&Signature>,
    chunks: Option<&ChunkHashes>,
    data: &[u8],
    basis_shift: u64,
    hasher: &mut blake3::Hasher,
    out: &mut W,
) -> io::Result<()> {
    let (Some(sig), Some(chunks)) = (sig, chunks.filter(|c| c.fits(data.len()))) else {
        return diff_window_split(sig, data, basis_shift, Some(hasher), out);
    };
    let same: Vec<bool> = std::thread::scope(|s| {
        let whole = s.spawn(|| hasher.update(data));
        let same = chunks
            .hashes
            .iter()
            .enumerate()
            .map(|(j, want)| {
                let r = chunks.range(j, data.len());
                !r.is_empty() && blake3::hash(&data[r]).as_bytes() == want
            })
            .collect();
        let joined = whole.join();
        joined.map(|_| same)
    })
    .map_err(|_| io::Error::other("hashing thread panicked"))?;
    if same.iter().filter(|s| **s).count() * 2 >= same.len() {
        diff_chunked(sig, chunks, &same, data, out)
    } else {
        diff_window_split(Some(sig), data, basis_shift, None, out)
    }
}

/// The rolling search over a whole window, feeding `hasher` if given, using two threads
/// for large windows.
///
/// The window is split in two parts diffed independently against the same index; the
/// parts' deltas are joined into ONE delta (the first without its end command, the second
/// without its magic), so the wire format is unchanged. A block straddling the split is
/// split where unchanged data lines up with a signature block (`basis_shift`: offset in the
/// basis window of `data[0]`), so unchanged data loses no match. The first part streams to
/// `out`; only the second is buffered (at most 2/5 of the window). The helper thread also
/// hashes the whole window, so BLAKE3 overlaps the search.
fn diff_window_split<W: Write + Send>(
    sig: Option<&Signature>,
    data: &[u8],
    basis_shift: u64,
    hasher: Option<&mut blake3::Hasher>,
    out: &mut W,
) -> io::Result<()> {
    let Some(sig) = sig.filter(|_| data.len() >= PARALLEL_MIN) else {
        diff_window(sig, data, out)?;
        if let Some(h) = hasher {
            h.update(data);
        }
        return Ok(());
    };
    let index = sig.index();
    // the helper also hashes everything (~1/5 of the search's cost): give it less to diff
    let block = u64::from(block_size_of(sig).max(1));
    let target = (data.len() / 5 * 3) as u64;
    let split = (target - (target + basis_shift) % block).max(1) as usize;
    let (head, tail) = data.split_at(split);
    let (first, second) = std::thread::scope(|s| {
        let helper = s.spawn(|| {
            if let Some(h) = hasher {
                h.update(data);
            }
            let mut buf = Vec::new();
            diff_indexed(&index, tail, &mut buf).map(|()| buf)
        });
        let mut trimmed = HoldLast {
            inner: out,
            last: None,
        };
        let first = diff_indexed(&index, head, &mut trimmed).and_then(|()| trimmed.end_byte());
        let second = helper
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("delta helper thread panicked")));
        (first, second)
    });
    if first? != 0 {
        return Err(io::Error::other(
            "delta part did not end with an end command",
        ));
    }
    let second = second?;
    match second.get(..4) {
        Some(magic) if magic == DELTA_MAGIC.to_be_bytes() => out.write_all(&second[4..]),
        _ => Err(io::Error::other("delta part did not start with the magic")),
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
    fn range(&self, j: usize, len: usize) -> Range<usize> {
        let start = (self.first + j as u64 * self.size).min(len as u64) as usize;
        let end = (start as u64 + self.size).min(len as u64) as usize;
        start..end
    }

    /// Whether these hashes can describe a window of `len` bytes (a peer's values are
    /// checked before use; unusable hashes are ignored, never trusted).
    fn fits(&self, len: usize) -> bool {
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

/// Writes a librsync COPY command (8-byte offset and length: `RS_OP_COPY_N8_N8`).
fn write_copy(out: &mut impl Write, offset: u64, len: u64) -> io::Result<()> {
    let mut cmd = [0u8; 17];
    cmd[0] = 0x54;
    cmd[1..9].copy_from_slice(&offset.to_be_bytes());
    cmd[9..].copy_from_slice(&len.to_be_bytes());
    out.write_all(&cmd)
}

/// Writes the commands of a delta of `part` (fast_rsync's output without its magic and its
/// end command), so that they can sit inside another delta.
fn write_part_commands(
    index: &fast_rsync::IndexedSignature<'_>,
    part: &[u8],
    out: &mut impl Write,
) -> io::Result<()> {
    let mut inner = HoldLast {
        inner: out,
        last: None,
    };
    let mut stripped = SkipMagic {
        inner: &mut inner,
        seen: Vec::with_capacity(4),
    };
    diff_indexed(index, part, &mut stripped)?;
    if stripped.seen != DELTA_MAGIC.to_be_bytes() || inner.end_byte()? != 0 {
        return Err(io::Error::other("delta part is not a complete delta"));
    }
    Ok(())
}

/// Drops the first four bytes written (a delta's magic), keeping them for a check.
struct SkipMagic<'a, W: Write> {
    inner: &'a mut W,
    seen: Vec<u8>,
}

impl<W: Write> Write for SkipMagic<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = (4 - self.seen.len()).min(data.len());
        self.seen.extend_from_slice(&data[..take]);
        self.inner.write_all(&data[take..])?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The delta of a window whose unchanged chunks (`same[j]`) become single COPY commands;
/// the rolling search runs only over the rest.
fn diff_chunked(
    sig: &Signature,
    chunks: &ChunkHashes,
    same: &[bool],
    data: &[u8],
    out: &mut impl Write,
) -> io::Result<()> {
    let index = sig.index();
    out.write_all(&DELTA_MAGIC.to_be_bytes())?;
    // `dirty` starts the data not yet covered; `copy` is the pending run of same chunks
    let mut dirty = 0usize;
    let mut copy: Option<(u64, u64)> = None;
    for (j, _) in same.iter().enumerate().filter(|(_, s)| **s) {
        let r = chunks.range(j, data.len());
        let basis_at = chunks.basis_first + j as u64 * chunks.size;
        let len = (r.end - r.start) as u64;
        if dirty < r.start {
            if let Some((o, l)) = copy.take() {
                write_copy(out, o, l)?;
            }
            write_part_commands(&index, &data[dirty..r.start], out)?;
        }
        copy = match copy {
            Some((o, l)) if o + l == basis_at => Some((o, l + len)),
            Some((o, l)) => {
                write_copy(out, o, l)?;
                Some((basis_at, len))
            }
            None => Some((basis_at, len)),
        };
        dirty = r.end;
    }
    if let Some((o, l)) = copy {
        write_copy(out, o, l)?;
    }
    if dirty < data.len() {
        write_part_commands(&index, &data[dirty..], out)?;
    }
    out.write_all(&[0])
}

/// Block size recorded in a signature's header (validated by [`parse_signature`]).
fn block_size_of(sig: &Signature) -> u32 {
    match sig.serialized().get(4..8) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 1,
    }
}

fn diff_indexed(
    index: &fast_rsync::IndexedSignature<'_>,
    data: &[u8],
    out: &mut impl Write,
) -> io::Result<()> {
    fast_rsync::diff(index, data, out).map_err(|e| match e {
        fast_rsync::DiffError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    })
}

/// Passes writes through but holds back the very last byte (a delta's end command), so
/// that another delta's commands can follow.
struct HoldLast<'a, W: Write> {
    inner: &'a mut W,
    last: Option<u8>,
}

impl<W: Write> HoldLast<'_, W> {
    /// The byte held back (the end of the stream).
    fn end_byte(&self) -> io::Result<u8> {
        self.last
            .ok_or_else(|| io::Error::other("empty delta part"))
    }
}

impl<W: Write> Write for HoldLast<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some((&tail, body)) = data.split_last() else {
            return Ok(0);
        };
        if let Some(b) = self.last {
            self.inner.write_all(&[b])?;
        }
        self.inner.write_all(body)?;
        self.last = Some(tail);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An all-literal delta (no basis), without the cost of hashing.
pub fn literal_delta(data: &[u8], out: &mut impl Write) -> io::Result<()> {
    out.write_all(&DELTA_MAGIC.to_be_bytes())?;
    for chunk in data.chunks(crate::protocol::DATA_CHUNK) {
        out.write_all(&[0x43])?; // RS_OP_LITERAL_N4
        out.write_all(&(chunk.len() as u32).to_be_bytes())?;
        out.write_all(chunk)?;
    }
    out.write_all(&[0])
}

/// One parsed delta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Literal(u64),
    Copy { offset: u64, len: u64 },
    End,
}

fn decode_cmd(op: u8, args: &[u8]) -> Result<Cmd, DeltaError> {
    let be = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    match op {
        0 => Ok(Cmd::End),
        1..=0x40 => Ok(Cmd::Literal(u64::from(op))),
        0x41..=0x44 => Ok(Cmd::Literal(be(args))),
        0x45..=0x54 => {
            let (ol, _) = copy_arg_sizes(op);
            Ok(Cmd::Copy {
                offset: be(&args[..ol]),
                len: be(&args[ol..]),
            })
        }
        _ => Err(DeltaError::Invalid(format!("unknown command {op:#x}"))),
    }
}

fn copy_arg_sizes(op: u8) -> (usize, usize) {
    let i = op - 0x45;
    (1 << (i / 4), 1 << (i % 4))
}

/// Bytes of arguments following a command byte.
fn arg_len(op: u8) -> usize {
    match op {
        0x41..=0x44 => 1 << (op - 0x41),
        0x45..=0x54 => {
            let (a, b) = copy_arg_sizes(op);
            a + b
        }
        _ => 0,
    }
}

#[derive(Debug)]
enum State {
    Magic,
    Command,
    Args { op: u8 },
    Literal { left: u64 },
    WindowDone,
}

/// Where applied bytes go.
pub trait DeltaSink {
    /// Appends bytes to the output.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
}

impl DeltaSink for Vec<u8> {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.extend_from_slice(data);
        Ok(())
    }
}

/// Incremental applier of one window's delta: feed it bytes as they arrive.
#[derive(Debug)]
pub struct DeltaApplier {
    state: State,
    pending: Vec<u8>,
    /// Bytes output from literal commands.
    pub literal_bytes: u64,
    /// Bytes output from copy commands.
    pub matched_bytes: u64,
    /// Bytes output in this window.
    pub output_bytes: u64,
    limit: u64,
    counting: bool,
}

/// Discards output (for counting).
struct NullSink;

impl DeltaSink for NullSink {
    fn append(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// Counts literal and matched bytes of a delta stream without applying it (sender stats).
#[derive(Debug)]
pub struct DeltaCounter(DeltaApplier);

impl Default for DeltaCounter {
    fn default() -> Self {
        let mut a = DeltaApplier::new(u64::MAX);
        a.counting = true;
        Self(a)
    }
}

impl DeltaCounter {
    /// Accounts for delta bytes (windows may follow each other).
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.0.feed(data, &[], &mut NullSink) {
                Ok(n) => data = &data[n..],
                Err(_) => return,
            }
            if self.0.is_done() {
                self.0.state = State::Magic;
            }
        }
    }

    /// (literal, matched) bytes seen so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.0.literal_bytes, self.0.matched_bytes)
    }
}

impl DeltaApplier {
    /// A new applier for one window that may output at most `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            state: State::Magic,
            pending: Vec::with_capacity(16),
            literal_bytes: 0,
            matched_bytes: 0,
            output_bytes: 0,
            limit,
            counting: false,
        }
    }

    /// Whether the window's end command has been seen.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::WindowDone)
    }

    /// Consumes bytes of the delta, writing output to `out` and copying from `basis`.
    /// Returns how many bytes were consumed: less than `input.len()` only once the window
    /// is complete (the rest belongs to the next window).
    pub fn feed(
        &mut self,
        mut input: &[u8],
        basis: &[u8],
        out: &mut impl DeltaSink,
    ) -> Result<usize, DeltaError> {
        let total = input.len();
        while !input.is_empty() {
            match self.state {
                State::WindowDone => break,
                State::Magic => {
                    let need = 4 - self.pending.len();
                    let take = need.min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.pending.len() == 4 {
                        let magic = u32::from_be_bytes([
                            self.pending[0],
                            self.pending[1],
                            self.pending[2],
                            self.pending[3],
                        ]);
                        if magic != DELTA_MAGIC {
                            return Err(DeltaError::Invalid(format!("bad magic {magic:#x}")));
                        }
                        self.pending.clear();
                        self.state = State::Command;
                    }
                }
                State::Command => {
                    let op = input[0];
                    input = &input[1..];
                    if op > 0x54 {
                        return Err(DeltaError::Invalid(format!("unknown command {op:#x}")));
                    }
                    if arg_len(op) == 0 {
                        self.run(decode_cmd(op, &[])?, basis, out)?;
                    } else {
                        self.state = State::Args { op };
                    }
                }
                State::Args { op } => {
                    let need = arg_len(op) - self.pending.len();
                    let take = need.min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.pending.len() == arg_len(op) {
                        let cmd = decode_cmd(op, &self.pending)?;
                        self.pending.clear();
                        self.state = State::Command;
                        self.run(cmd, basis, out)?;
                    }
                }
                State::Literal { left } => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    out.append(&input[..take])?;
                    self.literal_bytes += take as u64;
                    input = &input[take..];
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Command
                    } else {
                        State::Literal { left }
                    };
                }
            }
        }
        Ok(total - input.len())
    }

    fn grow(&mut self, n: u64) -> Result<(), DeltaError> {
        self.output_bytes = self
            .output_bytes
            .checked_add(n)
            .filter(|&t| t <= self.limit)
            .ok_or_else(|| DeltaError::Invalid("delta output exceeds the window size".into()))?;
        Ok(())
    }

    fn run(&mut self, cmd: Cmd, basis: &[u8], out: &mut impl DeltaSink) -> Result<(), DeltaError> {
        match cmd {
            Cmd::End => self.state = State::WindowDone,
            Cmd::Literal(0) => return Err(DeltaError::Invalid("empty literal".into())),
            Cmd::Literal(n) => {
                self.grow(n)?;
                self.state = State::Literal { left: n };
            }
            Cmd::Copy { len, .. } if self.counting => self.matched_bytes += len,
            Cmd::Copy { offset, len } => {
                let end = offset.checked_add(len).filter(|&e| e <= basis.len() as u64);
                let (Some(end), true) = (end, len > 0) else {
                    return Err(DeltaError::OutOfBounds {
                        offset,
                        len,
                        basis: basis.len() as u64,
                    });
                };
                self.grow(len)?;
                out.append(&basis[offset as usize..end as usize])?;
                self.matched_bytes += len;
            }
        }
        Ok(())
    }
}

/// Writes a file sequentially, leaving holes where whole blocks are zeros, hashing every
/// byte with BLAKE3 for the whole-file verification.
pub struct SparseWriter {
    file: File,
    /// Bytes appended so far.
    pos: u64,
    /// Contiguous non-hole data not yet written, starting at `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
    /// The incomplete block at the end (starts block-aligned at `pos - block.len()`).
    block: Vec<u8>,
    hasher: blake3::Hasher,
}

impl SparseWriter {
    /// Writes into `file` from offset 0 (the file should be empty).
    pub fn new(file: File) -> Self {
        Self {
            file,
            pos: 0,
            buf: Vec::with_capacity(WRITE_BUF),
            buf_start: 0,
            block: Vec::with_capacity(SPARSE_BLOCK),
            hasher: blake3::Hasher::new(),
        }
    }

    /// Bytes written so far (holes included).
    pub fn len(&self) -> u64 {
        self.pos
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.buf_start)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Handles one block that starts at `start` (a hole if all zeros).
    fn put_block(&mut self, start: u64, block: &[u8]) -> io::Result<()> {
        // a slice comparison is a memcmp: much faster than a byte loop
        if block == &ZEROS[..block.len()] {
            return self.flush_buf();
        }
        if self.buf.is_empty() {
            self.buf_start = start;
        }
        self.buf.extend_from_slice(block);
        if self.buf.len() >= WRITE_BUF {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Flushes, sets the final length (so a trailing hole exists) and returns the file and
    /// the BLAKE3 of everything written.
    pub fn finish(mut self) -> io::Result<(File, [u8; 32])> {
        let tail = std::mem::take(&mut self.block);
        self.put_block(self.pos - tail.len() as u64, &tail)?;
        self.flush_buf()?;
        self.file.set_len(self.pos)?;
        Ok((self.file, *self.hasher.finalize().as_bytes()))
    }
}

impl DeltaSink for SparseWriter {
    fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        if !self.block.is_empty() {
            let take = (SPARSE_BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            self.pos += take as u64;
            data = &data[take..];
            if self.block.len() < SPARSE_BLOCK {
                return Ok(());
            }
            let block = std::mem::take(&mut self.block);
            self.put_block(self.pos - SPARSE_BLOCK as u64, &block)?;
            self.block = block;
            self.block.clear();
        }
        let whole = data.len() - data.len() % SPARSE_BLOCK;
        for chunk in data[..whole].chunks(SPARSE_BLOCK) {
            self.put_block(self.pos, chunk)?;
            self.pos += SPARSE_BLOCK as u64;
        }
        self.block.extend_from_slice(&data[whole..]);
        self.pos += (data.len() - whole) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_all(
        basis: &[u8],
        delta: &[u8],
        limit: u64,
        step: usize,
    ) -> Result<Vec<u8>, DeltaError> {
        let mut a = DeltaApplier::new(limit);
        let mut out = Vec::new();
        for chunk in delta.chunks(step.max(1)) {
            a.feed(chunk, basis, &mut out)?;
        }
        if !a.is_done() {
            return Err(DeltaError::Invalid("truncated".into()));
        }
        Ok(out)
    }

    #[test]
    fn streaming_apply_matches_fast_rsync() {
        let basis: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = basis.clone();
        new[50_000..50_100].fill(9);
        new.splice(120_000..120_000, vec![1u8; 3000]);
        let sig = signature(&basis, basis.len() as u64);
        let mut delta = Vec::new();
        diff_window(Some(&sig), &new, &mut delta).unwrap();
        let mut reference = Vec::new();
        fast_rsync::apply(&basis, &delta, &mut reference).unwrap();
        assert_eq!(reference, new);
        for step in [1, 3, 4096, delta.len()] {
            assert_eq!(
                apply_all(&basis, &delta, new.len() as u64, step).unwrap(),
                new
            );
        }
        let mut a = DeltaApplier::new(u64::MAX);
        a.feed(&delta, &basis, &mut Vec::new()).unwrap();
        assert!(a.matched_bytes > 150_000, "delta path used");
        assert_eq!(a.matched_bytes + a.literal_bytes, new.len() as u64);
    }

    #[test]
    fn parallel_window_is_one_valid_delta() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let basis: Vec<u8> = (0..(6 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut new = basis.clone();
        new[100_000..100_050].fill(3);
        let split = new.len() / 5 * 3;
        new[split - 10..split + 10].fill(5); // an edit near the split
        new.splice(5_000_000..5_000_000, vec![7u8; 777]);
        new.truncate(new.len() - 1234);
        let sig = signature(&basis, basis.len() as u64);
        let mut hasher = blake3::Hasher::new();
        let mut delta = Vec::new();
        diff_window_hashed(Some(&sig), None, &new, 0, &mut hasher, &mut delta).unwrap();
        assert_eq!(hasher.finalize(), blake3::hash(&new));
        let mut reference = Vec::new();
        fast_rsync::apply(&basis, &delta, &mut reference).unwrap();
        assert_eq!(reference, new, "fast_rsync applies the joined delta");
        for step in [7, 65_536] {
            assert_eq!(
                apply_all(&basis, &delta, new.len() as u64, step).unwrap(),
                new
            );
        }
        assert!(delta.len() < 200_000, "both parts matched: {}", delta.len());
        // unchanged data split on a block boundary of the basis loses nothing at the split
        for shift in [0u64, 12_345] {
            let part = &basis[shift as usize..];
            let mut d = Vec::new();
            let mut h = blake3::Hasher::new();
            diff_window_hashed(Some(&sig), None, part, shift, &mut h, &mut d).unwrap();
            let mut a = DeltaApplier::new(u64::MAX);
            let mut out = Vec::new();
            a.feed(&d, &basis, &mut out).unwrap();
            assert_eq!(out, part);
            let bs = u64::from(block_size(basis.len() as u64));
            // only the unaligned start (when shifted) and the short last block go literally
            let limit = if shift == 0 { bs } else { 2 * bs };
            assert!(
                a.literal_bytes < limit,
                "shift {shift}: {} literal",
                a.literal_bytes
            );
        }
        // without a basis: a literal delta, same hash
        let mut h2 = blake3::Hasher::new();
        let mut lit = Vec::new();
        diff_window_hashed(None, None, &new, 0, &mut h2, &mut lit).unwrap();
        assert_eq!(h2.finalize(), blake3::hash(&new));
        assert_eq!(apply_all(&[], &lit, new.len() as u64, 4096).unwrap(), new);
    }

    /// A basis of pseudo-random bytes.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Diffs `new` against `basis` (one window, shifted by `shift` in the basis) with the
    /// receiver's chunk hashes and without; checks both apply to `new` and hash it.
    /// Returns (chunked delta, plain delta, literal bytes of the chunked one).
    fn chunked_and_plain(basis: &[u8], new: &[u8], shift: u64) -> (Vec<u8>, Vec<u8>, u64) {
        let len = basis.len() as u64;
        let sig = signature(basis, len);
        let chunks = ChunkHashes::of_basis(basis, len, shift, new.len() as u64).unwrap();
        assert_eq!((chunks.basis_first) % u64::from(block_size(len)), 0);
        let mut out = Vec::new();
        for with in [Some(&chunks), None] {
            let mut h = blake3::Hasher::new();
            let mut d = Vec::new();
            diff_window_hashed(Some(&sig), with, new, shift, &mut h, &mut d).unwrap();
            assert_eq!(h.finalize(), blake3::hash(new));
            let mut a = DeltaApplier::new(new.len() as u64);
            let mut applied = Vec::new();
            a.feed(&d, basis, &mut applied).unwrap();
            assert!(a.is_done());
            assert_eq!(applied, new, "chunks: {}", with.is_some());
            let mut reference = Vec::new();
            fast_rsync::apply(basis, &d, &mut reference).unwrap();
            assert_eq!(reference, new, "librsync-format delta");
            out.push((d, a.literal_bytes));
        }
        let (plain, _) = out.pop().unwrap();
        let (chunked, literal) = out.pop().unwrap();
        (chunked, plain, literal)
    }

    #[test]
    fn unchanged_chunks_become_copies_and_the_delta_stays_as_small() {
        let basis = noise(8 << 20, 0x5eed);
        let mut new = basis.clone();
        // 6 scattered 4 KiB edits, one insert that shifts the tail, a shorter end
        for k in 0..6usize {
            let at = 150_000 + k * 1_100_000;
            new[at..at + 4096].fill(k as u8);
        }
        new.splice(7_800_000..7_800_000, vec![9u8; 100]);
        new.truncate(new.len() - 3000);
        let (chunked, plain, literal) = chunked_and_plain(&basis, &new, 0);
        assert!(chunked != plain, "the chunked path was not taken");
        // changed chunks still match block by block: no more literal data than edits + a
        // few blocks, and about the same size on the wire as the full rolling search
        let bs = block_size(basis.len() as u64) as u64;
        assert!(literal < 6 * 4096 + 100 + 16 * bs, "literal {literal}");
        assert!(
            chunked.len() as f64 <= plain.len() as f64 * 1.02 + 4096.0,
            "chunked {} plain {}",
            chunked.len(),
            plain.len()
        );

        // a window of a later part of the file (data sits `shift` bytes into the basis)
        let shift = 12_345u64;
        let part = basis[shift as usize..].to_vec();
        let mut edited = part.clone();
        edited[1_000_000..1_004_096].fill(1);
        let (chunked, plain, literal) = chunked_and_plain(&basis, &edited, shift);
        assert!(chunked != plain, "the chunked path was not taken (shifted)");
        assert!(literal < 4096 + 3 * bs, "literal {literal}");

        // mostly changed: the general path, still correct
        let mut rewritten = noise(8 << 20, 0xbad);
        rewritten[..1 << 20].copy_from_slice(&basis[..1 << 20]);
        let (chunked, plain, _) = chunked_and_plain(&basis, &rewritten, 0);
        assert!(
            chunked == plain,
            "mostly changed windows skip the chunk path"
        );
    }

    #[test]
    fn unusable_chunk_hashes_are_ignored() {
        let basis = noise(4 << 20, 7);
        let mut new = basis.clone();
        new[10..20].fill(0);
        let len = basis.len() as u64;
        let sig = signature(&basis, len);
        let good = ChunkHashes::of_basis(&basis, len, 0, new.len() as u64).unwrap();
        let diff = |chunks: Option<&ChunkHashes>| {
            let mut d = Vec::new();
            let mut h = blake3::Hasher::new();
            diff_window_hashed(Some(&sig), chunks, &new, 0, &mut h, &mut d).unwrap();
            d
        };
        let plain = diff(None);
        let bad = [
            ChunkHashes {
                size: 0,
                ..good.clone()
            },
            ChunkHashes {
                first: good.size,
                ..good.clone()
            },
            ChunkHashes {
                hashes: vec![[0; 32]; 10_000],
                ..good.clone()
            },
            ChunkHashes {
                basis_first: u64::MAX,
                ..good.clone()
            },
        ];
        for c in bad {
            assert!(diff(Some(&c)) == plain, "unusable chunk hashes were used");
        }
        // a receiver whose chunk hashes describe other data gets a correct (larger) delta
        let lying = ChunkHashes {
            hashes: vec![[1; 32]; good.hashes.len()],
            ..good
        };
        let mut applied = Vec::new();
        fast_rsync::apply(&basis, &diff(Some(&lying)), &mut applied).unwrap();
        assert_eq!(applied, new);
    }

    #[test]
    fn bad_deltas_are_errors() {
        let basis = vec![1u8; 100];
        let mut d = DELTA_MAGIC.to_be_bytes().to_vec();
        d.extend_from_slice(&[0x45, 90, 20, 0]); // copy 90+20 > 100
        assert!(matches!(
            apply_all(&basis, &d, 1000, 1),
            Err(DeltaError::OutOfBounds { .. })
        ));
        assert!(apply_all(&basis, &[0, 0, 0, 0], 1000, 1).is_err());
        let mut d = DELTA_MAGIC.to_be_bytes().to_vec();
        d.extend_from_slice(&[0x44, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(apply_all(&basis, &d, 1000, 7).is_err(), "output limit");
        let mut d = DELTA_MAGIC.to_be_bytes().to_vec();
        d.push(0x60);
        assert!(apply_all(&basis, &d, 1000, 1).is_err());
    }

    #[test]
    fn windows_cover_the_file() {
        let w = 1000;
        assert_eq!(window_count(0, w), 0);
        assert_eq!(window_count(2500, w), 3);
        assert_eq!(source_range(2, w, 2500), 2000..2500);
        assert_eq!(basis_range(0, w, 2500), 0..1062);
        assert_eq!(basis_range(1, w, 2500), 938..2062);
        assert_eq!(basis_range(5, w, 2500), 2500..2500);
        assert_eq!(block_size(0), 696);
        assert_eq!(block_size(1 << 40), 128 * 1024);
    }

    #[test]
    fn sparse_writer_leaves_holes() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let f = File::create(t.path().join("s")).unwrap();
        let mut w = SparseWriter::new(f);
        w.append(b"he").unwrap();
        w.append(b"ad").unwrap();
        w.append(&[0u8; 4090]).unwrap(); // completes the first block
        w.append(&[0u8; 10]).unwrap();
        w.append(&vec![0u8; 8 << 20]).unwrap();
        w.append(b"tail").unwrap();
        w.append(&vec![0u8; 1 << 20]).unwrap();
        let (f, hash) = w.finish().unwrap();
        let md = f.metadata().unwrap();
        assert_eq!(md.len(), 4 + 4100 + (8 << 20) + 4 + (1 << 20));
        assert!(md.blocks() * 512 < 64 * 1024, "blocks {}", md.blocks());
        let content = std::fs::read(t.path().join("s")).unwrap();
        assert_eq!(hash, *blake3::hash(&content).as_bytes());
        assert_eq!(&content[..4], b"head");
    }
}

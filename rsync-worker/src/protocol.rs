//! Wire format: length-prefixed frames carrying one [`Message`] each.
//!
//! Framing is explicit and bounded so that a hostile peer cannot make us allocate more
//! than [`MAX_FRAME`] bytes or panic: `u32 BE length | u8 flags | payload`, where the
//! length counts flags + payload and flag bit 0 means the payload is zstd-compressed
//! (its decompressed size is bounded too). Payloads are a tag byte and fixed-order fields;
//! every decode checks lengths against what is left. See `docs/dataplane.md`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::delta::ChunkHashes;
use crate::filelist::{Entry, EntryKind};
use crate::paths::WirePath;

/// Protocol version spoken by this build; the hello of both sides must match.
/// (2: `ListRequest.hash_percent`; 3: [`Message::Chunks`].)
pub const VERSION: u32 = 3;

/// Whether a file at `path` is in the `percent` sample whose contents are hashed and
/// compared (`verificationMode: sample`). Deterministic in the path, so sender and receiver
/// agree without sending the selection, and the same files are re-checked every run.
pub fn hash_sampled(path: &[u8], percent: u8) -> bool {
    match percent {
        0 => false,
        100.. => true,
        p => {
            let h = blake3::hash(path);
            u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]) % 100 < u16::from(p)
        }
    }
}
/// Largest frame payload (decompressed) either side accepts.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Size of the data chunks a sender puts in one [`Message::Delta`] frame.
pub const DATA_CHUNK: usize = 256 * 1024;
const FLAG_ZSTD: u8 = 1;
/// Message tags of the two bulk messages, which frame readers and writers move without
/// an extra copy (see [`FrameWriter::send`] and [`FrameReader::read`]).
const TAG_SIGNATURE: u8 = 7;
const TAG_DELTA: u8 = 9;

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
        /// is checksum mode, 1-99 a deterministic sample (see [`hash_sampled`]), 0 none.
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

    /// Serializes the message payload (without frame header).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64);
        match self {
            Message::Hello {
                version,
                volume,
                compress_level,
            } => {
                w.push(1);
                put_u32(&mut w, *version);
                put_bytes(&mut w, volume.as_bytes());
                put_u32(&mut w, *compress_level as u32);
            }
            Message::HelloOk { version } => {
                w.push(2);
                put_u32(&mut w, *version);
            }
            Message::ListRequest {
                excludes,
                hash_percent,
                xattrs,
            } => {
                w.push(3);
                put_u32(&mut w, excludes.len() as u32);
                for e in excludes {
                    put_bytes(&mut w, e.as_bytes());
                }
                w.push(*hash_percent);
                w.push(u8::from(*xattrs));
            }
            Message::Entries(entries) => {
                w.push(4);
                put_u32(&mut w, entries.len() as u32);
                for e in entries {
                    encode_entry(&mut w, e);
                }
            }
            Message::ListEnd { count } => {
                w.push(5);
                put_u64(&mut w, *count);
            }
            Message::Fetch(f) => {
                w.push(6);
                put_u64(&mut w, f.id);
                put_bytes(&mut w, f.path.as_bytes());
                put_u64(&mut w, f.window);
                put_u32(&mut w, f.sig_count);
            }
            Message::Signature(data) => {
                w.push(7);
                w.extend_from_slice(data);
            }
            Message::FileStart { id, size } => {
                w.push(8);
                put_u64(&mut w, *id);
                put_u64(&mut w, *size);
            }
            Message::Delta(data) => {
                w.push(TAG_DELTA);
                w.extend_from_slice(data);
            }
            Message::FileEnd { id, hash } => {
                w.push(10);
                put_u64(&mut w, *id);
                w.extend_from_slice(hash);
            }
            Message::FileError { id, message } => {
                w.push(11);
                put_u64(&mut w, *id);
                put_bytes(&mut w, message.as_bytes());
            }
            Message::Error(message) => {
                w.push(12);
                put_bytes(&mut w, message.as_bytes());
            }
            Message::Bye => w.push(13),
            Message::Chunks(c) => {
                w.push(14);
                put_u64(&mut w, c.first);
                put_u64(&mut w, c.size);
                put_u64(&mut w, c.basis_first);
                put_u32(&mut w, c.hashes.len() as u32);
                for h in &c.hashes {
                    w.extend_from_slice(h);
                }
            }
        }
        w
    }

    /// Parses a payload. Never panics; every length is checked against the input.
    pub fn decode(buf: &[u8]) -> Result<Message, ProtocolError> {
        let mut r = Reader { buf, pos: 0 };
        let msg = match r.u8()? {
            1 => Message::Hello {
                version: r.u32()?,
                volume: r.string()?,
                compress_level: r.u32()? as i32,
            },
            2 => Message::HelloOk { version: r.u32()? },
            3 => {
                let n = r.count(4)?;
                let mut excludes = Vec::with_capacity(n);
                for _ in 0..n {
                    excludes.push(r.string()?);
                }
                let hash_percent = r.u8()?;
                if hash_percent > 100 {
                    return Err(ProtocolError::malformed("hash percentage above 100"));
                }
                Message::ListRequest {
                    excludes,
                    hash_percent,
                    xattrs: r.bool()?,
                }
            }
            4 => {
                let n = r.count(8)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(decode_entry(&mut r)?);
                }
                Message::Entries(entries)
            }
            5 => Message::ListEnd { count: r.u64()? },
            6 => Message::Fetch(FetchRequest {
                id: r.u64()?,
                path: r.path()?,
                window: r.u64()?,
                sig_count: r.u32()?,
            }),
            TAG_SIGNATURE => Message::Signature(r.rest().to_vec()),
            8 => Message::FileStart {
                id: r.u64()?,
                size: r.u64()?,
            },
            TAG_DELTA => Message::Delta(r.rest().to_vec()),
            10 => Message::FileEnd {
                id: r.u64()?,
                hash: r.array32()?,
            },
            11 => Message::FileError {
                id: r.u64()?,
                message: r.string()?,
            },
            12 => Message::Error(r.string()?),
            13 => Message::Bye,
            14 => {
                let (first, size, basis_first) = (r.u64()?, r.u64()?, r.u64()?);
                let n = r.count(32)?;
                let mut hashes = Vec::with_capacity(n);
                for _ in 0..n {
                    hashes.push(r.array32()?);
                }
                Message::Chunks(ChunkHashes {
                    first,
                    size,
                    basis_first,
                    hashes,
                })
            }
            t => return Err(ProtocolError::malformed(format!("unknown message tag {t}"))),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn encode_entry(w: &mut Vec<u8>, e: &Entry) {
    put_bytes(w, e.path.as_bytes());
    w.push(e.kind as u8);
    put_u32(w, e.mode);
    put_u32(w, e.uid);
    put_u32(w, e.gid);
    put_u64(w, e.size);
    put_u64(w, e.mtime_sec as u64);
    put_u32(w, e.mtime_nsec);
    put_bytes(w, &e.link_target);
    match e.hardlink_to {
        Some(i) => {
            w.push(1);
            put_u64(w, i);
        }
        None => w.push(0),
    }
    match &e.hash {
        Some(h) => {
            w.push(1);
            w.extend_from_slice(h);
        }
        None => w.push(0),
    }
    put_u32(w, e.xattrs.len() as u32);
    for (k, v) in &e.xattrs {
        put_bytes(w, k);
        put_bytes(w, v);
    }
}

fn decode_entry(r: &mut Reader<'_>) -> Result<Entry, ProtocolError> {
    let path = r.path()?;
    let kind = EntryKind::from_u8(r.u8()?)
        .ok_or_else(|| ProtocolError::malformed("unknown entry kind"))?;
    let mode = r.u32()?;
    let uid = r.u32()?;
    let gid = r.u32()?;
    let size = r.u64()?;
    let mtime_sec = r.u64()? as i64;
    let mtime_nsec = r.u32()?;
    if mtime_nsec >= 1_000_000_000 {
        return Err(ProtocolError::malformed("mtime nanoseconds out of range"));
    }
    let link_target = r.bytes()?.to_vec();
    let hardlink_to = if r.bool()? { Some(r.u64()?) } else { None };
    let hash = if r.bool()? { Some(r.array32()?) } else { None };
    let n = r.count(8)?;
    let mut xattrs = Vec::with_capacity(n);
    for _ in 0..n {
        xattrs.push((r.bytes()?.to_vec(), r.bytes()?.to_vec()));
    }
    Ok(Entry {
        path,
        kind,
        mode,
        uid,
        gid,
        size,
        mtime_sec,
        mtime_nsec,
        link_target,
        hardlink_to,
        hash,
        xattrs,
    })
}

fn put_u32(w: &mut Vec<u8>, v: u32) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    put_u32(w, b.len() as u32);
    w.extend_from_slice(b);
}

/// A bounds-checked cursor over a payload.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| ProtocolError::malformed("truncated message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, ProtocolError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ProtocolError::malformed("invalid boolean")),
        }
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn array32(&mut self) -> Result<[u8; 32], ProtocolError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(a)
    }
    fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, ProtocolError> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| ProtocolError::malformed("string is not UTF-8"))
    }
    fn path(&mut self) -> Result<WirePath, ProtocolError> {
        let raw = self.bytes()?;
        WirePath::new(raw.to_vec()).map_err(|e| ProtocolError::PathRefused {
            path: String::from_utf8_lossy(raw).into_owned(),
            reason: e.to_string(),
        })
    }
    /// A element count, refused if the remaining bytes cannot hold that many elements of
    /// at least `min_size` bytes (so a count never drives a huge allocation).
    fn count(&mut self, min_size: usize) -> Result<usize, ProtocolError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size) > self.buf.len() - self.pos {
            return Err(ProtocolError::malformed(
                "element count exceeds message size",
            ));
        }
        Ok(n)
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    fn finish(&self) -> Result<(), ProtocolError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(ProtocolError::malformed("trailing bytes after message"))
        }
    }
}

/// Reads frames from one half of a stream, counting bytes.
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    /// Bytes read so far, headers included.
    pub bytes: u64,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`, accepting payloads up to `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            bytes: 0,
        }
    }

    /// Reads and decodes the next message. A clean end of stream is an `Io` error of kind
    /// `UnexpectedEof`: the protocol always ends with an explicit message.
    ///
    /// Uncompressed bulk frames (deltas, signatures: nearly every byte of a transfer) are
    /// read straight into the message's buffer; the result is the same as
    /// [`decode_frame`]'s, one copy of the data cheaper.
    pub async fn read(&mut self) -> Result<Message, ProtocolError> {
        let mut header = [0u8; 6];
        self.inner.read_exact(&mut header[..5]).await?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let flags = header[4];
        if len > self.max + 64 {
            return Err(ProtocolError::FrameTooLarge { len, max: self.max });
        }
        self.bytes += 5 + len as u64;
        if flags == 0 && len > 0 {
            self.inner.read_exact(&mut header[5..]).await?;
            let tag = header[5];
            if tag == TAG_DELTA || tag == TAG_SIGNATURE {
                let mut data = vec![0u8; len - 1];
                self.inner.read_exact(&mut data).await?;
                return Ok(if tag == TAG_DELTA {
                    Message::Delta(data)
                } else {
                    Message::Signature(data)
                });
            }
            let mut payload = vec![0u8; len];
            payload[0] = tag;
            self.inner.read_exact(&mut payload[1..]).await?;
            return Message::decode(&payload);
        }
        let mut payload = vec![0u8; len];
        self.inner.read_exact(&mut payload).await?;
        decode_frame(flags, &payload, self.max)
    }
}

/// Decodes one frame body given its flags: decompresses (bounded) and parses.
pub fn decode_frame(flags: u8, payload: &[u8], max: usize) -> Result<Message, ProtocolError> {
    match flags {
        0 => Message::decode(payload),
        FLAG_ZSTD => {
            // allocate what the zstd header announces (bounded), not the maximum
            let announced = match zstd::zstd_safe::get_frame_content_size(payload) {
                Ok(Some(n)) if n <= max as u64 => n as usize,
                _ => {
                    return Err(ProtocolError::malformed(
                        "zstd frame size missing or too large",
                    ));
                }
            };
            let raw = zstd::bulk::decompress(payload, announced)
                .map_err(|e| ProtocolError::malformed(format!("zstd: {e}")))?;
            Message::decode(&raw)
        }
        f => Err(ProtocolError::malformed(format!(
            "unknown frame flags {f:#x}"
        ))),
    }
}

/// zstd level for `Entries` frames when the client did not ask for compression.
const ENTRIES_LEVEL: i32 = 1;

/// Writes frames to one half of a stream, counting bytes, optionally compressing data.
pub struct FrameWriter<W> {
    inner: W,
    compress_level: i32,
    /// Bytes written so far, headers included.
    pub bytes: u64,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps `inner`; `compress_level > 0` compresses data-bearing frames with zstd.
    pub fn new(inner: W, compress_level: i32) -> Self {
        Self {
            inner,
            compress_level,
            bytes: 0,
        }
    }

    /// Gives the underlying writer back (tests use it to write raw frames).
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Sets the zstd level used for data frames (0 = off).
    pub fn set_compression(&mut self, level: i32) {
        self.compress_level = level;
    }

    /// Encodes and writes one message (not flushed). Uncompressed bulk messages are
    /// written from their own buffer, without encoding a copy first (same bytes).
    pub async fn send(&mut self, msg: &Message) -> Result<(), ProtocolError> {
        match msg {
            Message::Delta(data) if self.compress_level == 0 => {
                return self.write_bulk(TAG_DELTA, data).await;
            }
            Message::Signature(data) => return self.write_bulk(TAG_SIGNATURE, data).await,
            _ => {}
        }
        let payload = msg.encode();
        // file lists are always compressed (paths and metadata shrink ~4x for a few ms of
        // zstd -1): every reader accepts compressed frames, so no client has to ask
        let level = match msg {
            Message::Entries(_) => self.compress_level.max(ENTRIES_LEVEL),
            Message::Delta(_) => self.compress_level,
            _ => 0,
        };
        if level > 0 && payload.len() > 64 {
            let packed = zstd::bulk::compress(&payload, level)
                .map_err(|e| ProtocolError::malformed(format!("zstd: {e}")))?;
            if packed.len() < payload.len() {
                return self.write_frame(FLAG_ZSTD, &packed).await;
            }
        }
        self.write_frame(0, &payload).await
    }

    /// One uncompressed frame holding `tag` then `data`: what `encode` would produce.
    async fn write_bulk(&mut self, tag: u8, data: &[u8]) -> Result<(), ProtocolError> {
        let mut header = [0u8; 6];
        header[..4].copy_from_slice(&(data.len() as u32 + 1).to_be_bytes());
        header[5] = tag;
        self.inner.write_all(&header).await?;
        self.inner.write_all(data).await?;
        self.bytes += 6 + data.len() as u64;
        Ok(())
    }

    async fn write_frame(&mut self, flags: u8, payload: &[u8]) -> Result<(), ProtocolError> {
        let mut header = [0u8; 5];
        header[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        header[4] = flags;
        self.inner.write_all(&header).await?;
        self.inner.write_all(payload).await?;
        self.bytes += 5 + payload.len() as u64;
        Ok(())
    }

    /// Flushes buffered frames to the transport.
    pub async fn flush(&mut self) -> Result<(), ProtocolError> {
        self.inner.flush().await?;
        Ok(())
    }

    /// Flushes and shuts the write half down.
    pub async fn shutdown(&mut self) -> Result<(), ProtocolError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            path: WirePath::new(b"dir/a b\nc\xff".to_vec()).unwrap(),
            kind: EntryKind::File,
            mode: 0o100644,
            uid: 1000,
            gid: 1000,
            size: 42,
            mtime_sec: -5,
            mtime_nsec: 999_999_999,
            link_target: Vec::new(),
            hardlink_to: Some(3),
            hash: Some([7; 32]),
            xattrs: vec![(b"user.k".to_vec(), b"v".to_vec())],
        }
    }

    #[test]
    fn hash_sample_is_deterministic_and_close_to_its_percentage() {
        let paths: Vec<Vec<u8>> = (0..10_000)
            .map(|i| format!("d{}/f{i}", i % 7).into_bytes())
            .collect();
        for percent in [0u8, 1, 10, 50, 99, 100] {
            let picked = paths.iter().filter(|p| hash_sampled(p, percent)).count();
            let want = 10_000 * usize::from(percent) / 100;
            assert!(
                picked.abs_diff(want) <= 200,
                "{percent}%: {picked} of 10000 picked"
            );
            // The same paths every time: sender and receiver agree without sending a list.
            let again = paths.iter().filter(|p| hash_sampled(p, percent)).count();
            assert_eq!(picked, again);
        }
        assert!(paths.iter().all(|p| hash_sampled(p, 100)));
        assert!(!paths.iter().any(|p| hash_sampled(p, 0)));
    }

    #[test]
    fn a_hash_percentage_above_100_is_malformed() {
        let mut bytes = Message::ListRequest {
            excludes: vec![],
            hash_percent: 100,
            xattrs: false,
        }
        .encode();
        let at = bytes.len() - 2;
        bytes[at] = 101;
        assert!(Message::decode(&bytes).is_err());
    }

    #[test]
    fn every_message_round_trips() {
        let msgs = vec![
            Message::Hello {
                version: VERSION,
                volume: "ns/pvc".into(),
                compress_level: 3,
            },
            Message::HelloOk { version: VERSION },
            Message::ListRequest {
                excludes: vec!["*.tmp".into()],
                hash_percent: 100,
                xattrs: false,
            },
            Message::ListRequest {
                excludes: vec![],
                hash_percent: 7,
                xattrs: true,
            },
            Message::Entries(vec![entry(), entry()]),
            Message::ListEnd { count: 2 },
            Message::Fetch(FetchRequest {
                id: 9,
                path: WirePath::new(b"x/y".to_vec()).unwrap(),
                window: 1 << 26,
                sig_count: 2,
            }),
            Message::Chunks(ChunkHashes {
                first: 8,
                size: 1 << 18,
                basis_first: 4 << 20,
                hashes: vec![[5; 32], [6; 32]],
            }),
            Message::Signature(vec![1, 2, 3]),
            Message::FileStart { id: 9, size: 5 },
            Message::Delta(vec![0; 100]),
            Message::FileEnd {
                id: 9,
                hash: [1; 32],
            },
            Message::FileError {
                id: 9,
                message: "gone".into(),
            },
            Message::Error("bad".into()),
            Message::Bye,
        ];
        for m in msgs {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        let good = Message::Entries(vec![entry()]).encode();
        for cut in 0..good.len() {
            assert!(Message::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = Message::Bye.encode();
        trailing.push(0);
        assert!(Message::decode(&trailing).is_err());
        // a count claiming 4 billion entries in a tiny message
        assert!(Message::decode(&[4, 0xff, 0xff, 0xff, 0xff]).is_err());
        // a path escaping the root
        let mut bad = vec![6];
        bad.extend_from_slice(&0u64.to_be_bytes());
        bad.extend_from_slice(&5u32.to_be_bytes());
        bad.extend_from_slice(b"../x1");
        assert!(matches!(
            Message::decode(&bad),
            Err(ProtocolError::PathRefused { .. })
        ));
    }

    #[tokio::test]
    async fn frames_round_trip_and_bound_size() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = FrameWriter::new(a, 3);
        let data = Message::Delta(vec![0u8; 100_000]);
        w.send(&data).await.unwrap();
        w.send(&Message::Bye).await.unwrap();
        w.flush().await.unwrap();
        assert!(w.bytes < 10_000, "zeros compress");
        let mut r = FrameReader::new(b, MAX_FRAME);
        assert_eq!(r.read().await.unwrap(), data);
        assert_eq!(r.read().await.unwrap(), Message::Bye);

        // without compression: deltas go raw, file lists are compressed anyway
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = FrameWriter::new(a, 0);
        let list = Message::Entries(vec![entry(); 200]);
        let raw_list = list.encode().len() as u64;
        w.send(&data).await.unwrap();
        let raw_delta = w.bytes;
        assert!(raw_delta > 100_000, "deltas stay raw: {raw_delta}");
        w.send(&list).await.unwrap();
        w.flush().await.unwrap();
        let list_wire = w.bytes - raw_delta;
        assert!(list_wire * 4 < raw_list, "list {list_wire} of {raw_list}");
        let mut r = FrameReader::new(b, MAX_FRAME);
        assert_eq!(r.read().await.unwrap(), data);
        assert_eq!(r.read().await.unwrap(), list);

        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        a.write_all(&[0]).await.unwrap();
        let mut r = FrameReader::new(b, MAX_FRAME);
        assert!(matches!(
            r.read().await,
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }

    /// The copy-free paths for bulk messages put the same bytes on the wire as the generic
    /// encoder, and the reader's fast path decodes what the generic decoder does.
    #[tokio::test]
    async fn bulk_frames_match_the_generic_encoding() {
        let msgs = [
            Message::Delta((0..70_000u32).map(|i| i as u8).collect()),
            Message::Delta(Vec::new()),
            Message::Signature(vec![3; 1000]),
            Message::FileStart { id: 1, size: 2 },
        ];
        for m in msgs {
            let (a, mut b) = tokio::io::duplex(1 << 20);
            let mut w = FrameWriter::new(a, 0);
            w.send(&m).await.unwrap();
            w.flush().await.unwrap();
            let written = w.bytes;
            drop(w);
            let mut wire = Vec::new();
            b.read_to_end(&mut wire).await.unwrap();
            let payload = m.encode();
            let mut want = (payload.len() as u32).to_be_bytes().to_vec();
            want.push(0);
            want.extend_from_slice(&payload);
            assert_eq!(wire, want, "{}", m.name());
            assert_eq!(written, want.len() as u64);
            assert_eq!(decode_frame(0, &payload, MAX_FRAME).unwrap(), m);
            let mut r = FrameReader::new(&wire[..], MAX_FRAME);
            assert_eq!(r.read().await.unwrap(), m);
            assert_eq!(r.bytes, want.len() as u64);
        }
    }
}

//! The sending side (agent): [`serve`] answers one stream's requests from a volume root
//! that it resolved itself through a [`VolumeResolver`]; no client path is trusted.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::delta::{self, DeltaCounter};
use crate::filelist::{Entry, Excludes, WalkOptions, walk};
use crate::fsops;
use crate::protocol::{
    DATA_CHUNK, FetchRequest, FrameReader, FrameWriter, Message, ProtocolError, VERSION,
};

/// Why a volume name could not be resolved to a root directory.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The agent does not serve a volume by that name.
    #[error("unknown volume {0:?}")]
    UnknownVolume(String),
    /// The volume is known but its directory is unusable.
    #[error("volume {volume:?} unavailable: {reason}")]
    Unavailable {
        /// The volume name.
        volume: String,
        /// Why.
        reason: String,
    },
}

/// Maps the volume name a client asks for to a directory the agent chose. The agent owns
/// this decision; the client only ever names a volume.
pub trait VolumeResolver: Send + Sync {
    /// Returns the root directory of `volume`.
    fn resolve(&self, volume: &str) -> Result<PathBuf, ResolveError>;
}

/// A fixed map of volume names to directories (configured on the agent's command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticVolumes(pub BTreeMap<String, PathBuf>);

/// Why a `name=/dir` volume spec could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid volume spec {0:?}: expected name=/absolute/dir")]
pub struct VolumeSpecError(pub String);

impl StaticVolumes {
    /// Adds one `name=/dir` spec.
    pub fn insert_spec(&mut self, spec: &str) -> Result<(), VolumeSpecError> {
        let (name, dir) = spec
            .split_once('=')
            .filter(|(n, d)| !n.is_empty() && d.starts_with('/'))
            .ok_or_else(|| VolumeSpecError(spec.to_string()))?;
        self.0.insert(name.to_string(), PathBuf::from(dir));
        Ok(())
    }
}

impl FromStr for StaticVolumes {
    type Err = VolumeSpecError;
    /// Parses one or more comma-separated `name=/dir` specs.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut v = StaticVolumes::default();
        for spec in s.split(',').filter(|p| !p.is_empty()) {
            v.insert_spec(spec)?;
        }
        Ok(v)
    }
}

impl VolumeResolver for StaticVolumes {
    fn resolve(&self, volume: &str) -> Result<PathBuf, ResolveError> {
        self.0
            .get(volume)
            .cloned()
            .ok_or_else(|| ResolveError::UnknownVolume(volume.to_string()))
    }
}

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

/// Serves one stream (one SSH channel running [`crate::SUBSYSTEM_NAME`]) until the client
/// says goodbye or closes it. Any protocol violation ends the stream with an error (sent
/// to the client as a final [`Message::Error`] when possible).
pub async fn serve<S>(
    stream: S,
    resolver: &dyn VolumeResolver,
    limits: &Limits,
) -> Result<ServeStats, ProtocolError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = FrameReader::new(rd, limits.max_frame);
    let mut writer = FrameWriter::new(tokio::io::BufWriter::with_capacity(256 * 1024, wr), 0);
    let (msg_tx, msg_rx) = mpsc::channel(4);
    let mut stats = ServeStats::default();
    let result = {
        let process = process(msg_rx, &mut writer, resolver, limits, &mut stats);
        let read = read_loop(&mut reader, msg_tx);
        tokio::pin!(process, read);
        tokio::select! {
            r = &mut process => r,
            () = &mut read => Err(ProtocolError::malformed("reader stopped")),
        }
    };
    if let Err(e) = &result {
        debug!(error = %e, "serve: closing stream with error");
        let _ = writer.send(&Message::Error(e.to_string())).await;
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
    stats.wire_bytes_out = writer.bytes;
    stats.wire_bytes_in = reader.bytes;
    result.map(|()| stats)
}

/// Forwards decoded frames to the processing loop. Stops reading after `Bye` or an error
/// (which it forwards), then stays pending so that queued messages are still processed.
async fn read_loop<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    tx: mpsc::Sender<Result<Message, ProtocolError>>,
) {
    loop {
        let msg = reader.read().await;
        let stop = !matches!(msg, Ok(ref m) if *m != Message::Bye);
        if tx.send(msg).await.is_err() || stop {
            break;
        }
    }
    std::future::pending::<()>().await;
}

type Inbox = mpsc::Receiver<Result<Message, ProtocolError>>;

async fn next(inbox: &mut Inbox) -> Result<Message, ProtocolError> {
    match inbox.recv().await {
        Some(m) => m,
        None => Err(ProtocolError::malformed("stream closed")),
    }
}

async fn process<W: tokio::io::AsyncWrite + Unpin>(
    mut inbox: Inbox,
    writer: &mut FrameWriter<W>,
    resolver: &dyn VolumeResolver,
    limits: &Limits,
    stats: &mut ServeStats,
) -> Result<(), ProtocolError> {
    let root = hello(&mut inbox, writer, resolver, stats).await?;
    let mut requests = 0u64;
    loop {
        let msg = next(&mut inbox).await?;
        requests += 1;
        if requests > limits.max_requests {
            return Err(ProtocolError::Limit(format!(
                "more than {} requests",
                limits.max_requests
            )));
        }
        match msg {
            Message::ListRequest {
                excludes,
                hash_percent,
                xattrs,
            } => {
                let opts = ListOptions {
                    excludes,
                    hash_percent,
                    xattrs,
                };
                send_list(&root, opts, limits, writer, stats).await?;
            }
            Message::Fetch(f) => send_file(&root, f, &mut inbox, writer, stats).await?,
            Message::Bye => return Ok(()),
            Message::Error(e) => return Err(ProtocolError::Remote(e)),
            other => {
                return Err(ProtocolError::Unexpected {
                    expected: "ListRequest, Fetch or Bye",
                    got: other.name(),
                });
            }
        }
        // pipelined requests: answer them all before flushing (fewer, fuller packets)
        if inbox.is_empty() {
            writer.flush().await?;
        }
    }
}

async fn hello<W: tokio::io::AsyncWrite + Unpin>(
    inbox: &mut Inbox,
    writer: &mut FrameWriter<W>,
    resolver: &dyn VolumeResolver,
    stats: &mut ServeStats,
) -> Result<Arc<OwnedFd>, ProtocolError> {
    let (version, volume, level) = match next(inbox).await? {
        Message::Hello {
            version,
            volume,
            compress_level,
        } => (version, volume, compress_level),
        other => {
            return Err(ProtocolError::Unexpected {
                expected: "Hello",
                got: other.name(),
            });
        }
    };
    if version != VERSION {
        return Err(ProtocolError::Version {
            ours: VERSION,
            theirs: version,
        });
    }
    let dir = resolver
        .resolve(&volume)
        .map_err(|e| ProtocolError::Volume(e.to_string()))?;
    let root = fsops::open_root(&dir)
        .map_err(|e| ProtocolError::Volume(format!("{volume}: cannot open root: {e}")))?;
    stats.volume = volume;
    writer.set_compression(level.clamp(0, 19));
    writer.send(&Message::HelloOk { version: VERSION }).await?;
    writer.flush().await?;
    Ok(Arc::new(root))
}

/// Most entries in one `Entries` frame.
const LIST_BATCH: usize = 512;
/// Approximate bytes in one `Entries` frame (well under the frame limit).
const LIST_BATCH_BYTES: usize = 1 << 20;

/// What a list request asked for.
struct ListOptions {
    excludes: Vec<String>,
    hash_percent: u8,
    xattrs: bool,
}

fn entry_weight(e: &Entry) -> usize {
    96 + e.path.as_bytes().len()
        + e.link_target.len()
        + e.xattrs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>()
}

async fn send_list<W: tokio::io::AsyncWrite + Unpin>(
    root: &Arc<OwnedFd>,
    list: ListOptions,
    limits: &Limits,
    writer: &mut FrameWriter<W>,
    stats: &mut ServeStats,
) -> Result<(), ProtocolError> {
    let ListOptions {
        excludes,
        hash_percent,
        xattrs,
    } = list;
    if excludes.len() > limits.max_excludes || excludes.iter().any(|e| e.len() > limits.max_path) {
        return Err(ProtocolError::Limit(
            "too many or too long exclude patterns".into(),
        ));
    }
    let excludes = Excludes::new(&excludes).map_err(|e| ProtocolError::malformed(e.to_string()))?;
    let opts = WalkOptions {
        excludes,
        hash_percent,
        xattrs,
    };
    let (tx, mut rx) = mpsc::channel::<Vec<Entry>>(4);
    let root = Arc::clone(root);
    let walker = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(LIST_BATCH);
        let mut bytes = 0;
        let n = walk(&root, &opts, |e| {
            bytes += entry_weight(&e);
            batch.push(e);
            if batch.len() >= LIST_BATCH || bytes >= LIST_BATCH_BYTES {
                bytes = 0;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(LIST_BATCH));
                tx.blocking_send(full)
                    .map_err(|_| io::Error::other("list receiver gone"))?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            tx.blocking_send(batch)
                .map_err(|_| io::Error::other("list receiver gone"))?;
        }
        Ok::<u64, io::Error>(n)
    });
    while let Some(batch) = rx.recv().await {
        writer.send(&Message::Entries(batch)).await?;
    }
    let count = walker
        .await
        .map_err(|e| ProtocolError::malformed(format!("walker panicked: {e}")))?
        .map_err(|source| ProtocolError::Fs {
            context: "walking the volume".into(),
            source,
        })?;
    stats.entries_listed += count;
    writer.send(&Message::ListEnd { count }).await
}

/// What the blocking producer of one file reports.
enum Produced {
    Sent,
    /// The file shrank while being sent; a `FileError` already went out.
    Aborted,
    Missing(String),
    Refused(String),
}

async fn send_file<W: tokio::io::AsyncWrite + Unpin>(
    root: &Arc<OwnedFd>,
    f: FetchRequest,
    inbox: &mut Inbox,
    writer: &mut FrameWriter<W>,
    stats: &mut ServeStats,
) -> Result<(), ProtocolError> {
    if f.window == 0 || f.window > 1 << 30 {
        return Err(ProtocolError::malformed("window size out of range"));
    }
    let (sig_tx, sig_rx) = mpsc::channel::<Vec<u8>>(2);
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(8);
    let root = Arc::clone(root);
    let (id, path) = (f.id, f.path.clone());
    let sig_count = f.sig_count;
    let producer = tokio::task::spawn_blocking(move || produce(&root, &f, sig_rx, out_tx));
    let mut sigs_left = sig_count;
    let mut producer_wants_sigs = true;
    let mut counter = DeltaCounter::default();
    loop {
        tokio::select! {
            permit = sig_tx.reserve(), if sigs_left > 0 && producer_wants_sigs => {
                let Ok(permit) = permit else {
                    // the producer stopped early (file vanished or refused)
                    producer_wants_sigs = false;
                    continue;
                };
                match next(inbox).await? {
                    Message::Signature(sig) => {
                        sigs_left -= 1;
                        permit.send(sig);
                    }
                    other => return Err(ProtocolError::Unexpected {
                        expected: "Signature",
                        got: other.name(),
                    }),
                }
            }
            out = out_rx.recv() => match out {
                Some(msg) => {
                    if let Message::Delta(d) = &msg {
                        counter.feed(d);
                    }
                    writer.send(&msg).await?;
                }
                None => break,
            },
        }
    }
    let produced = producer
        .await
        .map_err(|e| ProtocolError::malformed(format!("producer panicked: {e}")))??;
    // a file that vanished or was refused leaves its signatures unread: drain them
    for _ in 0..sigs_left {
        match next(inbox).await? {
            Message::Signature(_) => {}
            other => {
                return Err(ProtocolError::Unexpected {
                    expected: "Signature",
                    got: other.name(),
                });
            }
        }
    }
    match produced {
        Produced::Sent => {
            let (lit, matched) = counter.totals();
            stats.files_sent += 1;
            stats.literal_bytes += lit;
            stats.matched_bytes += matched;
        }
        Produced::Aborted => {}
        Produced::Missing(message) => {
            writer.send(&Message::FileError { id, message }).await?;
        }
        Produced::Refused(message) => {
            stats.refused += 1;
            warn!(path = %path.display(), %message, "refused to send");
            writer.send(&Message::FileError { id, message }).await?;
        }
    }
    Ok(())
}

/// Buffers delta bytes into [`Message::Delta`] frames for the async writer.
struct ChunkWriter {
    tx: mpsc::Sender<Message>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn push(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(DATA_CHUNK));
        self.tx
            .blocking_send(Message::Delta(chunk))
            .map_err(|_| io::Error::other("stream writer gone"))
    }
}

impl io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = DATA_CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= DATA_CHUNK {
            self.push()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

/// Blocking part of a fetch: opens the file safely, diffs each window against the
/// client's signature for it, hashes what it sent.
fn produce(
    root: &OwnedFd,
    f: &FetchRequest,
    mut sigs: mpsc::Receiver<Vec<u8>>,
    out: mpsc::Sender<Message>,
) -> Result<Produced, ProtocolError> {
    let file = match fsops::open_file_beneath(root, &f.path) {
        Ok(file) => file,
        Err(e) => return Ok(classify_open_error(e)),
    };
    let size = file
        .metadata()
        .map_err(|e| ProtocolError::malformed(format!("stat: {e}")))?
        .len();
    let gone = || ProtocolError::malformed("stream writer gone");
    out.blocking_send(Message::FileStart { id: f.id, size })
        .map_err(|_| gone())?;
    let windows = delta::window_count(size, f.window);
    let mut hasher = blake3::Hasher::new();
    let mut w = ChunkWriter {
        tx: out.clone(),
        buf: Vec::with_capacity(DATA_CHUNK),
    };
    for i in 0..windows.max(u64::from(f.sig_count)) {
        let sig = if i < u64::from(f.sig_count) {
            let bytes = sigs
                .blocking_recv()
                .ok_or_else(|| ProtocolError::malformed("signatures ended early"))?;
            Some(
                delta::parse_signature(bytes)
                    .map_err(|e| ProtocolError::malformed(e.to_string()))?,
            )
        } else {
            None
        };
        if i >= windows {
            continue;
        }
        let range = delta::source_range(i, f.window, size);
        // a file truncated under a mapping faults on access: check just before mapping
        let now = file.metadata().map(|m| m.len()).unwrap_or(0);
        if now < range.end {
            io::Write::flush(&mut w).map_err(|_| gone())?;
            out.blocking_send(Message::FileError {
                id: f.id,
                message: "file shrank during the transfer".into(),
            })
            .map_err(|_| gone())?;
            return Ok(Produced::Aborted);
        }
        let map = fsops::map_range(&file, range.start, range.end - range.start).map_err(|e| {
            ProtocolError::Fs {
                context: format!("mapping {}", f.path.display()),
                source: e,
            }
        })?;
        let data: &[u8] = map.as_deref().unwrap_or(&[]);
        let shift = delta::basis_shift(i, f.window);
        delta::diff_window_hashed(sig.as_ref(), data, shift, &mut hasher, &mut w)
            .map_err(|_| gone())?;
    }
    io::Write::flush(&mut w).map_err(|_| gone())?;
    out.blocking_send(Message::FileEnd {
        id: f.id,
        hash: *hasher.finalize().as_bytes(),
    })
    .map_err(|_| gone())?;
    Ok(Produced::Sent)
}

fn classify_open_error(e: io::Error) -> Produced {
    match e.raw_os_error() {
        Some(libc_enoent) if libc_enoent == Errno::ENOENT as i32 => {
            Produced::Missing("vanished".into())
        }
        Some(code)
            if code == Errno::ELOOP as i32
                || code == Errno::ENOTDIR as i32
                || code == Errno::EINVAL as i32 =>
        {
            Produced::Refused(format!("not a regular file beneath the root: {e}"))
        }
        _ => Produced::Missing(e.to_string()),
    }
}

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

use crate::delta::{self, ChunkHashes, DATA_CHUNK, DeltaCounter};
use crate::excludes::Excludes;
use crate::filelist::{Entry, WalkOptions, walk};
use crate::fsops;
use crate::protocol::{FetchRequest, FrameReader, FrameWriter, Message, ProtocolError, VERSION};

/// Why a volume name could not be resolved to a root directory.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
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
    fn resolve(&self, volume: &str) -> Result<PathBuf, VolumeError>;
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
    fn resolve(&self, volume: &str) -> Result<PathBuf, VolumeError> {
        self.0
            .get(volume)
            .cloned()
            .ok_or_else(|| VolumeError::UnknownVolume(volume.to_string()))
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
    let mut producer: Option<Producer> = None;
    loop {
        let msg = match producer.as_mut() {
            None => next(&mut inbox).await?,
            Some(p) => match transfer_step(p, &mut inbox, writer, stats).await? {
                Step::Message(msg) => msg,
                Step::Wrote => continue,
                Step::Stopped => {
                    // the thread failed before it was told to stop: `finish` says why
                    if let Some(p) = producer.take() {
                        p.finish(writer, stats).await?;
                    }
                    return Err(ProtocolError::malformed("producer stopped early"));
                }
            },
        };
        if !matches!(msg, Message::Signature(_) | Message::Chunks(_)) {
            requests += 1;
            if requests > limits.max_requests {
                return Err(ProtocolError::Limit(format!(
                    "more than {} requests",
                    limits.max_requests
                )));
            }
        }
        if matches!(
            msg,
            Message::Fetch(_) | Message::Signature(_) | Message::Chunks(_)
        ) {
            producer
                .get_or_insert_with(|| Producer::start(&root))
                .give(msg)?;
            continue;
        }
        // anything else comes after every fetch before it is answered
        if let Some(p) = producer.take() {
            p.finish(writer, stats).await?;
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
            Message::Bye => return Ok(()),
            Message::Error(e) => return Err(ProtocolError::Remote(e)),
            other => {
                return Err(ProtocolError::Unexpected {
                    expected: "ListRequest, Fetch or Bye",
                    got: other.name(),
                });
            }
        }
        if inbox.is_empty() {
            writer.flush().await?;
        }
    }
}

/// What one [`transfer_step`] did.
enum Step {
    /// Wrote something the producer made.
    Wrote,
    /// Took the client's next message.
    Message(Message),
    /// The producer thread ended on its own (an error).
    Stopped,
}

/// While a producer runs: writes what it produced, or takes the next message from the
/// client when the producer has room for it (whichever comes first; output first).
async fn transfer_step<W: tokio::io::AsyncWrite + Unpin>(
    p: &mut Producer,
    inbox: &mut Inbox,
    writer: &mut FrameWriter<W>,
    stats: &mut ServeStats,
) -> Result<Step, ProtocolError> {
    let room = p.has_room();
    tokio::select! {
        biased;
        item = p.output.recv() => match item {
            Some(item) => {
                p.write(item, writer, stats).await?;
                // answers to pipelined requests go out in full packets, the last one now
                if p.output.is_empty() && inbox.is_empty() {
                    writer.flush().await?;
                }
                Ok(Step::Wrote)
            }
            None => Ok(Step::Stopped),
        },
        msg = next(inbox), if room => msg.map(Step::Message),
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

/// What the producer thread hands the stream's writer, in wire order.
enum Outgoing {
    /// A message for the client.
    Msg(Message),
    /// The file whose `FileEnd` was the last message is complete (for the statistics).
    Sent,
    /// A fetch was refused; the writer logs it and sends the `FileError`.
    Refused {
        id: u64,
        path: String,
        message: String,
    },
}

/// Fetches and signatures queued for the producer before the stream stops reading.
const PRODUCER_INBOX: usize = 64;
/// Messages the producer may run ahead of the writer (each at most [`DATA_CHUNK`]).
const PRODUCER_OUTBOX: usize = 16;

/// The blocking thread that answers the fetches of one stream, one after another. One
/// long-lived thread per stream (not one per file): a volume of small files would
/// otherwise pay a thread hand-off and several wake-ups per file.
struct Producer {
    /// Fetches and their signatures, in the order the client sent them.
    input: Option<mpsc::Sender<Message>>,
    output: mpsc::Receiver<Outgoing>,
    thread: tokio::task::JoinHandle<Result<(), ProtocolError>>,
    counter: DeltaCounter,
}

impl Producer {
    fn start(root: &Arc<OwnedFd>) -> Self {
        let (input, input_rx) = mpsc::channel(PRODUCER_INBOX);
        let (output_tx, output) = mpsc::channel(PRODUCER_OUTBOX);
        let root = Arc::clone(root);
        let thread = tokio::task::spawn_blocking(move || produce_all(&root, input_rx, output_tx));
        Self {
            input: Some(input),
            output,
            thread,
            counter: DeltaCounter::default(),
        }
    }

    /// Whether a message can be handed over without waiting.
    fn has_room(&self) -> bool {
        self.input.as_ref().is_some_and(|i| i.capacity() > 0)
    }

    /// Hands a fetch or signature over (only after [`Producer::has_room`]).
    fn give(&mut self, msg: Message) -> Result<(), ProtocolError> {
        match self.input.as_ref().map(|i| i.try_send(msg)) {
            Some(Ok(())) => Ok(()),
            // the thread stopped (its error comes out of `finish`) or we misjudged room
            _ => Err(ProtocolError::malformed("producer stopped")),
        }
    }

    /// Writes one produced item and keeps the statistics.
    async fn write<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        item: Outgoing,
        writer: &mut FrameWriter<W>,
        stats: &mut ServeStats,
    ) -> Result<(), ProtocolError> {
        match item {
            Outgoing::Msg(msg) => {
                match &msg {
                    Message::FileStart { .. } => self.counter = DeltaCounter::default(),
                    Message::Delta(d) => self.counter.feed(d),
                    _ => {}
                }
                writer.send(&msg).await
            }
            Outgoing::Sent => {
                let (lit, matched) = self.counter.totals();
                stats.files_sent += 1;
                stats.literal_bytes += lit;
                stats.matched_bytes += matched;
                Ok(())
            }
            Outgoing::Refused { id, path, message } => {
                stats.refused += 1;
                warn!(%path, %message, "refused to send");
                writer.send(&Message::FileError { id, message }).await
            }
        }
    }

    /// Lets the producer finish what it was given, writes all of it, and returns the
    /// thread's result.
    async fn finish<W: tokio::io::AsyncWrite + Unpin>(
        mut self,
        writer: &mut FrameWriter<W>,
        stats: &mut ServeStats,
    ) -> Result<(), ProtocolError> {
        self.input = None;
        while let Some(item) = self.output.recv().await {
            self.write(item, writer, stats).await?;
        }
        self.thread
            .await
            .map_err(|e| ProtocolError::malformed(format!("producer panicked: {e}")))?
    }
}

/// Buffers delta bytes into [`Message::Delta`] frames for the async writer.
struct ChunkWriter {
    tx: mpsc::Sender<Outgoing>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn push(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(DATA_CHUNK));
        self.tx
            .blocking_send(Outgoing::Msg(Message::Delta(chunk)))
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

/// The producer thread: answers each fetch in turn until the stream stops giving any.
fn produce_all(
    root: &OwnedFd,
    mut input: mpsc::Receiver<Message>,
    out: mpsc::Sender<Outgoing>,
) -> Result<(), ProtocolError> {
    while let Some(msg) = input.blocking_recv() {
        let f = match msg {
            Message::Fetch(f) => f,
            other => {
                return Err(ProtocolError::Unexpected {
                    expected: "Fetch",
                    got: other.name(),
                });
            }
        };
        if f.window == 0 || f.window > 1 << 30 {
            return Err(ProtocolError::malformed("window size out of range"));
        }
        let mut sigs = Signatures {
            input: &mut input,
            left: f.sig_count,
        };
        let last = match produce(root, &f, &mut sigs, &out)? {
            Produced::Sent => Some(Outgoing::Sent),
            Produced::Aborted => None,
            Produced::Missing(message) => {
                Some(Outgoing::Msg(Message::FileError { id: f.id, message }))
            }
            Produced::Refused(message) => Some(Outgoing::Refused {
                id: f.id,
                path: f.path.display(),
                message,
            }),
        };
        if let Some(item) = last {
            out.blocking_send(item)
                .map_err(|_| ProtocolError::malformed("stream writer gone"))?;
        }
        // a file that vanished or was refused leaves its signatures unread: drain them
        while sigs.left > 0 {
            sigs.next()?;
        }
    }
    Ok(())
}

/// The signatures that follow one fetch on the stream.
struct Signatures<'a> {
    input: &'a mut mpsc::Receiver<Message>,
    left: u32,
}

impl Signatures<'_> {
    /// The next window's signature, with the chunk hashes the client sent before it.
    fn next(&mut self) -> Result<(Vec<u8>, Option<ChunkHashes>), ProtocolError> {
        let mut chunks = None;
        loop {
            match self.input.blocking_recv() {
                Some(Message::Chunks(c)) if chunks.is_none() => chunks = Some(c),
                Some(Message::Signature(sig)) => {
                    self.left -= 1;
                    return Ok((sig, chunks));
                }
                Some(other) => {
                    return Err(ProtocolError::Unexpected {
                        expected: "Signature",
                        got: other.name(),
                    });
                }
                None => return Err(ProtocolError::malformed("signatures ended early")),
            }
        }
    }
}

/// One fetch: opens the file safely, diffs each window against the client's signature
/// for it, hashes what it sent.
fn produce(
    root: &OwnedFd,
    f: &FetchRequest,
    sigs: &mut Signatures<'_>,
    out: &mpsc::Sender<Outgoing>,
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
    let send = |m: Message| out.blocking_send(Outgoing::Msg(m)).map_err(|_| gone());
    send(Message::FileStart { id: f.id, size })?;
    let windows = delta::window_count(size, f.window);
    let mut hasher = blake3::Hasher::new();
    let mut w = ChunkWriter {
        tx: out.clone(),
        buf: Vec::with_capacity(DATA_CHUNK.min(size as usize + 64)),
    };
    for i in 0..windows.max(u64::from(f.sig_count)) {
        let (sig, chunks) = if i < u64::from(f.sig_count) {
            let (sig, chunks) = sigs.next()?;
            let sig =
                delta::parse_signature(sig).map_err(|e| ProtocolError::malformed(e.to_string()))?;
            (Some(sig), chunks)
        } else {
            (None, None)
        };
        if i >= windows {
            continue;
        }
        let range = delta::source_range(i, f.window, size);
        // a file truncated under a mapping faults on access: check just before mapping
        let now = file.metadata().map(|m| m.len()).unwrap_or(0);
        if now < range.end {
            io::Write::flush(&mut w).map_err(|_| gone())?;
            send(Message::FileError {
                id: f.id,
                message: "file shrank during the transfer".into(),
            })?;
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
        delta::diff_window_hashed(
            sig.as_ref(),
            chunks.as_ref(),
            data,
            shift,
            &mut hasher,
            &mut w,
        )
        .map_err(|_| gone())?;
    }
    io::Write::flush(&mut w).map_err(|_| gone())?;
    send(Message::FileEnd {
        id: f.id,
        hash: *hasher.finalize().as_bytes(),
    })?;
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

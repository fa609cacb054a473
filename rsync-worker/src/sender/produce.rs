//! Answering fetches: one blocking producer thread per stream ([`Producer`]) opens each
//! file safely, diffs each window against the client's signature for it, and hands the
//! frames to the stream's writer in wire order.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use nix::errno::Errno;
use tokio::sync::mpsc;
use tracing::warn;

use super::limits::ServeStats;
use crate::delta::{self, ChunkHashes, DATA_CHUNK, DeltaCounter};
use crate::fsops;
use crate::protocol::{FetchRequest, FrameWriter, Message, ProtocolError};

/// What the blocking producer of one file reports.
enum Produced {
    Sent,
    /// The file shrank while being sent; a `FileError` already went out.
    Aborted,
    Missing(String),
    Refused(String),
}

/// What the producer thread hands the stream's writer, in wire order.
pub(super) enum Outgoing {
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
pub(super) struct Producer {
    /// Fetches and their signatures, in the order the client sent them.
    input: Option<mpsc::Sender<Message>>,
    pub(super) output: mpsc::Receiver<Outgoing>,
    thread: tokio::task::JoinHandle<Result<(), ProtocolError>>,
    counter: DeltaCounter,
}

impl Producer {
    /// Starts the producer thread of a stream serving `root`.
    pub(super) fn start(root: &Arc<OwnedFd>) -> Self {
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
    pub(super) fn has_room(&self) -> bool {
        self.input.as_ref().is_some_and(|i| i.capacity() > 0)
    }

    /// Hands a fetch or signature over (only after [`Producer::has_room`]).
    pub(super) fn give(&mut self, msg: Message) -> Result<(), ProtocolError> {
        match self.input.as_ref().map(|i| i.try_send(msg)) {
            Some(Ok(())) => Ok(()),
            // the thread stopped (its error comes out of `finish`) or we misjudged room
            _ => Err(ProtocolError::malformed("producer stopped")),
        }
    }

    /// Writes one produced item and keeps the statistics.
    pub(super) async fn write<W: tokio::io::AsyncWrite + Unpin>(
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
    pub(super) async fn finish<W: tokio::io::AsyncWrite + Unpin>(
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

/// The producer's delta bytes go out in [`DATA_CHUNK`] frames.
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

/// What a failed open means: vanished (`ENOENT`), refused (not a regular file beneath
/// the root: a symlink or directory swapped in), or another error reported to the client.
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

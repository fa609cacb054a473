//! [`serve`]: one stream's request loop, from the hello to the goodbye.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::debug;

use super::limits::{Limits, ServeStats};
use super::list::{ListOptions, send_list};
use super::produce::Producer;
use super::volumes::VolumeResolver;
use crate::fsops;
use crate::protocol::{FrameReader, FrameWriter, Message, ProtocolError, VERSION};

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

/// Decoded client messages, from the reader to the request loop.
type Inbox = mpsc::Receiver<Result<Message, ProtocolError>>;

/// The next client message (a closed stream is an error: the protocol ends with `Bye`).
async fn next(inbox: &mut Inbox) -> Result<Message, ProtocolError> {
    match inbox.recv().await {
        Some(m) => m,
        None => Err(ProtocolError::malformed("stream closed")),
    }
}

/// The request loop of one stream: hello, then list requests and fetches (handed to a
/// [`Producer`] thread, whose output is written as it comes) until `Bye`.
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

/// Takes the client's hello: checks the version, resolves and opens the volume root,
/// turns on the compression the client asked for.
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

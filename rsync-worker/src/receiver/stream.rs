//! Receiving data: the jobs spread over all streams ([`transfer`]), and on each stream
//! a pipeline of planner thread (requests, [`super::basis`]), async writer and reader, and
//! applier thread ([`apply_all`]: deltas -> temp file -> verify -> commit).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use nix::fcntl::OFlag;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::basis::{Prepared, prepare_all};
use super::commit::{PendingRename, RenameBatch, commit_file};
use super::dest::Ctx;
use super::error::{ReceiveError, io_err, panicked, unexpected};
use super::plan::Job;
use super::session::Conn;
use crate::bwlimit::TokenBucket;
use crate::delta::{self, DeltaApplier, SparseWriter};
use crate::filelist::hash_file;
use crate::fsops::{self, DirCache};
use crate::options::SyncOptions;
use crate::protocol::{Message, ProtocolError};

/// Files requested ahead of the one being received, per stream.
const PIPELINE: usize = 32;

/// Counters of one stream.
#[derive(Default)]
pub(super) struct Counters {
    /// Files received and committed.
    pub(super) transferred: u64,
    /// File bytes that came as literal data.
    pub(super) literal: u64,
    /// File bytes copied from the basis.
    pub(super) matched: u64,
    /// Files that vanished (or shrank) at the source before or while being sent.
    pub(super) vanished: u64,
}

/// Runs the jobs over all streams; each stream takes the next job from a shared queue.
pub(super) async fn transfer<S>(
    conns: &mut [Conn<S>],
    jobs: VecDeque<Job>,
    ctx: &Arc<Ctx>,
    opts: &SyncOptions,
) -> Result<Vec<Counters>, ReceiveError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let queue = Arc::new(Mutex::new(jobs));
    let bucket = opts.bwlimit.map(|r| Arc::new(TokenBucket::new(r)));
    let mut runs = Vec::new();
    for conn in conns.iter_mut() {
        runs.push(run_stream(
            conn,
            Arc::clone(&queue),
            Arc::clone(ctx),
            bucket.clone(),
        ));
    }
    // the first failing stream ends the transfer; the others are dropped with it
    futures::future::try_join_all(runs).await
}

/// One stream: a planner thread (basis + signatures -> requests), the async writer and
/// reader, and an applier thread (deltas -> temp file -> verify -> rename), pipelined.
async fn run_stream<S>(
    conn: &mut Conn<S>,
    queue: Arc<Mutex<VecDeque<Job>>>,
    ctx: Arc<Ctx>,
    bucket: Option<Arc<TokenBucket>>,
) -> Result<Counters, ReceiveError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (req_tx, mut req_rx) = mpsc::channel::<Message>(16);
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Prepared>(PIPELINE);
    let (msg_tx, mut msg_rx) = mpsc::channel::<Result<Message, ProtocolError>>(8);
    let planner = {
        let ctx = Arc::clone(&ctx);
        tokio::task::spawn_blocking(move || prepare_all(&ctx, &queue, &req_tx, &job_tx))
    };
    let applier = {
        let ctx = Arc::clone(&ctx);
        tokio::task::spawn_blocking(move || apply_all(&ctx, &job_rx, &mut msg_rx))
    };
    let write = async {
        while let Some(m) = req_rx.recv().await {
            conn.writer.send(&m).await?;
            if req_rx.is_empty() {
                conn.writer.flush().await?;
            }
        }
        conn.writer.flush().await?;
        Ok::<(), ProtocolError>(())
    };
    let reader = &mut conn.reader;
    let read = async {
        loop {
            let before = reader.bytes;
            let m = reader.read().await;
            if let Some(b) = &bucket {
                b.consume(reader.bytes - before).await;
            }
            let stop = m.is_err();
            if msg_tx.send(m).await.is_err() || stop {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let work = async {
        let applied = applier.await.map_err(panicked)?;
        // on success the planner is done (the applier saw its job channel close); on error
        // it is not awaited: it stops when this stream's channels are dropped
        let counters = applied?;
        planner.await.map_err(panicked)??;
        Ok::<Counters, ReceiveError>(counters)
    };
    tokio::pin!(write, read, work);
    let mut write_done = false;
    loop {
        tokio::select! {
            r = &mut write, if !write_done => {
                r?;
                write_done = true;
            }
            () = &mut read => {}
            out = &mut work => return out,
        }
    }
}

/// Decoded messages of one stream, from its async reader to its applier thread.
type Inbox = mpsc::Receiver<Result<Message, ProtocolError>>;

/// The next message for the applier (a closed stream is an error: it always ends with
/// an explicit message).
fn next_msg(inbox: &mut Inbox) -> Result<Message, ReceiveError> {
    match inbox.blocking_recv() {
        Some(m) => Ok(m?),
        None => Err(ProtocolError::malformed("stream closed").into()),
    }
}

/// Applier: receives each requested file in order.
fn apply_all(
    ctx: &Ctx,
    jobs: &std::sync::mpsc::Receiver<Prepared>,
    inbox: &mut Inbox,
) -> Result<Counters, ReceiveError> {
    let mut counters = Counters::default();
    let mut dirs = DirCache::new(&ctx.root).map_err(io_err("dup root"))?;
    let mut renames = RenameBatch::default();
    while let Ok(p) = jobs.recv() {
        match next_msg(inbox)? {
            Message::FileStart { id, size } if id == p.job.id => {
                let done = receive_file(ctx, &mut dirs, &p, size, inbox)?;
                if done.vanished {
                    counters.vanished += 1;
                    continue;
                }
                counters.transferred += 1;
                counters.literal += done.literal;
                counters.matched += done.matched;
                if let Some(r) = done.rename {
                    renames.add(ctx, &mut dirs, r, size)?;
                }
            }
            Message::FileError { id, message: _ } if id == p.job.id => {
                counters.vanished += 1;
            }
            other => return Err(unexpected("FileStart", &other)),
        }
    }
    renames.commit(ctx, &mut dirs)?;
    Ok(counters)
}

/// What receiving one file did.
struct Received {
    literal: u64,
    matched: u64,
    rename: Option<PendingRename>,
    vanished: bool,
}

/// Receives one file's deltas into its temp file (sparse, hashed), checks the whole-file
/// hash and hands the verified file to [`commit_file`].
fn receive_file(
    ctx: &Ctx,
    dirs: &mut DirCache,
    p: &Prepared,
    size: u64,
    inbox: &mut Inbox,
) -> Result<Received, ReceiveError> {
    let e = &p.job.entry;
    let c = || format!("writing {}", e.path.display());
    let dir = dirs.parent(&e.path).map_err(io_err(c()))?;
    let (part, basis_name) = ctx.temp_names(e.path.file_name());
    // this run's own name, created here: if it exists, something else writes into this
    // destination, and we stop rather than share the file
    let tmp = fsops::open_at_nofollow(dir, &part, OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL)
        .map_err(io_err(c()))?;
    let mut out = SparseWriter::new(tmp);
    let (mut literal, mut matched) = (0, 0);
    let mut chunk: Vec<u8> = Vec::new();
    let mut off = 0usize;
    let window = ctx.opts.window;
    for i in 0..delta::window_count(size, window) {
        let src = delta::source_range(i, window, size);
        let map = if i < u64::from(p.sig_count) {
            p.basis.map_window(i, window).map_err(io_err(c()))?
        } else {
            None
        };
        let basis: &[u8] = map.as_deref().unwrap_or(&[]);
        let mut applier = DeltaApplier::new(src.end - src.start);
        while !applier.is_done() {
            if off == chunk.len() {
                chunk = match next_msg(inbox)? {
                    Message::Delta(d) => d,
                    // the source shrank mid-file: drop the partial data, count it vanished
                    Message::FileError { id, .. } if id == p.job.id => {
                        let _ = fsops::remove_at(dir, &part);
                        return Ok(Received {
                            literal,
                            matched,
                            rename: None,
                            vanished: true,
                        });
                    }
                    other => return Err(unexpected("Delta", &other)),
                };
                off = 0;
            }
            off += applier
                .feed(&chunk[off..], basis, &mut out)
                .map_err(|d| ProtocolError::malformed(d.to_string()))?;
        }
        if applier.output_bytes != src.end - src.start {
            return Err(ProtocolError::malformed("delta window has the wrong length").into());
        }
        literal += applier.literal_bytes;
        matched += applier.matched_bytes;
    }
    if off != chunk.len() {
        return Err(ProtocolError::malformed("trailing delta data").into());
    }
    let want = match next_msg(inbox)? {
        Message::FileEnd { id, hash } if id == p.job.id => hash,
        other => return Err(unexpected("FileEnd", &other)),
    };
    let (file, got) = out.finish().map_err(io_err(c()))?;
    // what was applied, then what the filesystem holds (re-read before the rename, so a
    // file changed under us never reaches its final name)
    if got != want || hash_file(&file).map_err(io_err(c()))? != want {
        return Err(ReceiveError::Verify {
            path: e.path.display(),
        });
    }
    let pending = PendingRename {
        entry_path: e.path.clone(),
        part,
        basis_name: p.basis.partial.is_some().then_some(basis_name),
    };
    let rename = commit_file(ctx, dir, file, e, pending, size)?;
    Ok(Received {
        literal,
        matched,
        rename,
        vanished: false,
    })
}

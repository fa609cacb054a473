//! The request side of a stream: for each job, the basis the new version is diffed
//! against ([`Basis`]), and the fetch request with one signature (and chunk hashes) per
//! basis window, computed on the stream's planner thread ([`prepare_all`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;
use tokio::sync::mpsc;

use super::dest::Ctx;
use super::error::{ReceiveError, io_err};
use super::plan::Job;
use crate::delta::{self, ChunkHashes};
use crate::fsops::{self, DirCache};
use crate::protocol::{FetchRequest, Message, ProtocolError};

/// A job ready for the applier: basis chosen, signatures being sent.
pub(super) struct Prepared {
    pub(super) job: Job,
    pub(super) basis: Basis,
    pub(super) sig_count: u32,
}

/// The data a new version is diffed against: a leftover partial from an interrupted run
/// (the new version's first bytes) and/or the current file. Each window takes its bytes
/// from the partial where the partial covers the window, else from the current file, so
/// an interrupted transfer resumes with both halves matched.
#[derive(Default)]
pub(super) struct Basis {
    pub(super) partial: Option<(File, u64)>,
    pub(super) current: Option<(File, u64)>,
}

impl Basis {
    /// Length the window layout is computed from.
    pub(super) fn len(&self) -> u64 {
        let l = |b: &Option<(File, u64)>| b.as_ref().map_or(0, |(_, n)| *n);
        l(&self.partial).max(l(&self.current))
    }

    /// Maps the bytes of basis window `i` (the same choice for signature and apply).
    pub(super) fn map_window(&self, i: u64, window: u64) -> io::Result<Option<memmap2::Mmap>> {
        let r = delta::basis_range(i, window, self.len());
        let end = r.end;
        let partial = self.partial.as_ref().filter(|(_, n)| *n >= end);
        let current = self.current.as_ref().filter(|(_, n)| *n >= end);
        let longest = match (&self.partial, &self.current) {
            (Some(p), Some(c)) => Some(if p.1 >= c.1 { p } else { c }),
            (p, c) => p.as_ref().or(c.as_ref()),
        };
        let Some((f, n)) = partial.or(current).or(longest) else {
            return Ok(None);
        };
        let end = r.end.min(*n);
        fsops::map_range(f, r.start.min(end), end - r.start.min(end))
    }

    /// Duplicates the basis fds (the planner keeps one copy to sign, the applier another).
    pub(super) fn try_clone(&self) -> io::Result<Basis> {
        let dup = |b: &Option<(File, u64)>| -> io::Result<Option<(File, u64)>> {
            b.as_ref()
                .map(|(f, n)| Ok((f.try_clone()?, *n)))
                .transpose()
        };
        Ok(Basis {
            partial: dup(&self.partial)?,
            current: dup(&self.current)?,
        })
    }
}

/// Planner: for each job, picks the basis (a leftover partial first, then the current
/// file), hands the job to the applier and sends the request and window signatures.
pub(super) fn prepare_all(
    ctx: &Ctx,
    queue: &Mutex<VecDeque<Job>>,
    req_tx: &mpsc::Sender<Message>,
    job_tx: &std::sync::mpsc::SyncSender<Prepared>,
) -> Result<(), ReceiveError> {
    let gone = || ReceiveError::Protocol(ProtocolError::malformed("stream closed"));
    let mut dirs = DirCache::new(&ctx.root).map_err(io_err("dup root"))?;
    loop {
        let job = match queue.lock() {
            Ok(mut q) => q.pop_front(),
            Err(p) => p.into_inner().pop_front(),
        };
        let Some(job) = job else { return Ok(()) };
        let p = prepare(ctx, &mut dirs, job)?;
        let request = Message::Fetch(FetchRequest {
            id: p.job.id,
            path: p.job.entry.path.clone(),
            window: ctx.opts.window,
            sig_count: p.sig_count,
        });
        let basis = p
            .basis
            .try_clone()
            .map_err(io_err("duplicating basis fd"))?;
        let (basis_len, sig_count, size) = (basis.len(), p.sig_count, p.job.entry.size);
        job_tx.send(p).map_err(|_| gone())?;
        req_tx.blocking_send(request).map_err(|_| gone())?;
        for i in 0..u64::from(sig_count) {
            let map = basis
                .map_window(i, ctx.opts.window)
                .map_err(io_err("mapping basis"))?;
            let data = map.as_deref().unwrap_or(&[]);
            let window = ctx.opts.window;
            let source = delta::source_range(i, window, size);
            let source_len = source.end - source.start;
            let shift = delta::basis_shift(i, window);
            let (chunks, sig) = window_hashes(data, basis_len, shift, source_len)?;
            if let Some(chunks) = chunks {
                req_tx
                    .blocking_send(Message::Chunks(chunks))
                    .map_err(|_| gone())?;
            }
            req_tx
                .blocking_send(Message::Signature(sig.into_serialized()))
                .map_err(|_| gone())?;
        }
    }
}

/// Windows at least this large get their chunk hashes and signature on two threads.
const PARALLEL_HASHES_MIN: usize = 4 << 20;

/// Chunk hashes and signature of one basis window. The sender cannot start on a window
/// before both arrive, so for large windows they are computed at the same time.
fn window_hashes(
    data: &[u8],
    basis_len: u64,
    shift: u64,
    source_len: u64,
) -> Result<(Option<ChunkHashes>, fast_rsync::Signature), ReceiveError> {
    if data.len() < PARALLEL_HASHES_MIN {
        let chunks = ChunkHashes::of_basis(data, basis_len, shift, source_len);
        return Ok((chunks, delta::signature(data, basis_len)));
    }
    std::thread::scope(|s| {
        let sig = s.spawn(|| delta::signature(data, basis_len));
        let chunks = ChunkHashes::of_basis(data, basis_len, shift, source_len);
        sig.join().map(|sig| (chunks, sig))
    })
    .map_err(|_| ReceiveError::Io {
        context: "signature thread".into(),
        source: io::Error::other("panicked"),
    })
}

/// Picks the basis of one job: the partial the previous (interrupted) run left (renamed to
/// this run's basis name, so this run writes a fresh partial of its own) and the current
/// file, unless whole files are asked for.
fn prepare(ctx: &Ctx, dirs: &mut DirCache, job: Job) -> Result<Prepared, ReceiveError> {
    let e = &job.entry;
    let c = || format!("preparing {}", e.path.display());
    let dir = dirs.parent(&e.path).map_err(io_err(c()))?;
    let (_, basis_name) = ctx.temp_names(e.path.file_name());
    // a leftover partial from an interrupted run becomes the basis
    if let Some(left) = ctx.leftover_partial(e.path.file_name())
        && fsops::lstat_at(dir, &left).map_err(io_err(c()))?.is_some()
    {
        fsops::rename_at(dir, &left, &basis_name).map_err(io_err(c()))?;
    }
    let mut basis = Basis::default();
    if !ctx.opts.whole_file {
        for (name, is_partial) in [(&basis_name[..], true), (e.path.file_name(), false)] {
            let st = fsops::lstat_at(dir, name).map_err(io_err(c()))?;
            if let Some(s) = st.filter(|s| fsops::is_kind(s, SFlag::S_IFREG) && s.st_size > 0) {
                let f = fsops::open_at_nofollow(dir, name, OFlag::O_RDONLY).map_err(io_err(c()))?;
                let b = Some((f, s.st_size as u64));
                if is_partial {
                    basis.partial = b;
                } else {
                    basis.current = b;
                }
            }
        }
    }
    let sig_count = u32::try_from(delta::window_count(basis.len(), ctx.opts.window))
        .map_err(|_| io_err(c())(io::Error::from(Errno::EFBIG)))?;
    Ok(Prepared {
        job,
        basis,
        sig_count,
    })
}

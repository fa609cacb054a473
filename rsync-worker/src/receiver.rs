//! The receiving side (worker): [`pull`] a volume into a directory over one or more streams.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags, fchmod, futimens, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat, linkat, symlinkat};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use crate::bwlimit::TokenBucket;
use crate::delta::{self, ChunkHashes, DeltaApplier, SparseWriter};
use crate::filelist::{Entry, EntryKind, Excludes, hash_file};
use crate::fsops::{self, DirCache, os};
use crate::options::SyncOptions;
use crate::paths::{WirePath, is_temp_name};
use crate::protocol::{
    FetchRequest, FrameReader, FrameWriter, MAX_FRAME, Message, ProtocolError, VERSION,
};

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The protocol failed (including the connection dropping).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A local filesystem operation on the destination failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, with the path.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A transferred file did not match the sender's whole-file hash.
    #[error("verification failed for {path}: BLAKE3 mismatch")]
    Verify {
        /// The file (lossy UTF-8).
        path: String,
    },
    /// The sender sent something the receiver refuses (a path escaping the destination).
    #[error("refused entry {path:?}: {reason}")]
    Refused {
        /// The offending path (lossy UTF-8).
        path: String,
        /// Why.
        reason: String,
    },
    /// No streams were given.
    #[error("pull needs at least one stream")]
    NoStreams,
}

impl SyncError {
    /// Whether retrying the whole pull may succeed (network trouble, source changing
    /// under us), as opposed to a configuration or security error.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Protocol(p) => p.is_transient(),
            SyncError::Verify { .. } => true,
            SyncError::Io { .. } | SyncError::Refused { .. } | SyncError::NoStreams => false,
        }
    }
}

/// The result of a pull, printed as JSON by the worker and read back by the controller
/// from the pod's termination message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncSummary {
    /// Entries in the source file list (after excludes).
    pub files_scanned: u64,
    /// Regular files whose data was transferred.
    pub files_transferred: u64,
    /// Target entries deleted because they are gone at the source.
    pub files_deleted: u64,
    /// File bytes sent literally.
    pub literal_bytes: u64,
    /// File bytes reconstructed from the target's own data.
    pub matched_bytes: u64,
    /// Bytes read from and written to the streams.
    pub wire_bytes: u64,
    /// Wall time of the pull.
    pub duration_seconds: f64,
    /// Total size of regular files at the source.
    pub total_size: u64,
    /// Directories, symlinks and hard links created or replaced.
    pub other_entries_changed: u64,
    /// Files whose content was already current but whose metadata was updated.
    pub metadata_updated: u64,
    /// Files that vanished at the source between listing and transfer.
    pub files_vanished: u64,
    /// Files whose contents were compared with the source's (checksum mode, or the
    /// verification sample) instead of trusting size and mtime.
    #[serde(default)]
    pub files_verified: u64,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
}

/// Files smaller than this are made durable in batches (one `syncfs` before their
/// renames) instead of one `fsync` each.
const BATCH_FSYNC_BELOW: u64 = 1 << 20;
/// Renames waiting for one batch `syncfs` (each `syncfs` costs milliseconds: batches are
/// large, bounded by count and by bytes).
const RENAME_BATCH: usize = 4096;
/// Bytes of small files waiting for one batch `syncfs`.
const RENAME_BATCH_BYTES: u64 = 128 << 20;
/// Files requested ahead of the one being received, per stream.
const PIPELINE: usize = 32;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SyncError {
    let context = context.into();
    move |source| SyncError::Io { context, source }
}

fn nix_err(context: impl Into<String>) -> impl FnOnce(Errno) -> SyncError {
    let context = context.into();
    move |e| SyncError::Io {
        context,
        source: e.into(),
    }
}

fn unexpected(expected: &'static str, got: &Message) -> SyncError {
    match got {
        Message::Error(e) => ProtocolError::Remote(e.clone()).into(),
        other => ProtocolError::Unexpected {
            expected,
            got: other.name(),
        }
        .into(),
    }
}

/// One open stream, after the hello.
struct Conn<S> {
    reader: FrameReader<ReadHalf<S>>,
    writer: FrameWriter<tokio::io::BufWriter<WriteHalf<S>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn<S> {
    async fn open(stream: S, volume: &str, opts: &SyncOptions) -> Result<Self, SyncError> {
        let (rd, wr) = tokio::io::split(stream);
        let mut c = Conn {
            reader: FrameReader::new(rd, MAX_FRAME),
            writer: FrameWriter::new(tokio::io::BufWriter::with_capacity(64 * 1024, wr), 0),
        };
        let level = if opts.compress {
            opts.compress_level.max(1)
        } else {
            0
        };
        c.writer
            .send(&Message::Hello {
                version: VERSION,
                volume: volume.to_string(),
                compress_level: level,
            })
            .await?;
        c.writer.flush().await?;
        match c.reader.read().await? {
            Message::HelloOk { version } if version == VERSION => Ok(c),
            Message::HelloOk { version } => Err(ProtocolError::Version {
                ours: VERSION,
                theirs: version,
            }
            .into()),
            other => Err(unexpected("HelloOk", &other)),
        }
    }

    async fn list(&mut self, opts: &SyncOptions) -> Result<Vec<Entry>, SyncError> {
        self.writer
            .send(&Message::ListRequest {
                excludes: opts.excludes.clone(),
                hash_percent: if opts.checksum {
                    100
                } else {
                    opts.verify_sample_percent.min(100)
                },
                xattrs: opts.xattrs,
            })
            .await?;
        self.writer.flush().await?;
        let mut entries = Vec::new();
        loop {
            match self.reader.read().await? {
                Message::Entries(batch) => entries.extend(batch),
                Message::ListEnd { count } if count == entries.len() as u64 => return Ok(entries),
                Message::ListEnd { .. } => {
                    return Err(ProtocolError::malformed("list count mismatch").into());
                }
                other => return Err(unexpected("Entries", &other)),
            }
        }
    }

    async fn bye(mut self) -> u64 {
        let _ = self.writer.send(&Message::Bye).await;
        let _ = self.writer.flush().await;
        self.reader.bytes + self.writer.bytes
    }
}

/// Checks a sender's list: parents before children, no duplicates, sane hard links; drops
/// excluded entries. A malicious sender cannot make us write through a path it did not
/// first declare as a directory.
fn validate(entries: Vec<Entry>, excludes: &Excludes) -> Result<Vec<Entry>, SyncError> {
    let refuse = |e: &Entry, reason: &str| SyncError::Refused {
        path: e.path.display(),
        reason: reason.to_string(),
    };
    let mut kinds: HashMap<Vec<u8>, EntryKind> = HashMap::with_capacity(entries.len());
    let mut new_index: Vec<Option<u64>> = Vec::with_capacity(entries.len());
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    for (i, mut e) in entries.into_iter().enumerate() {
        if let Some(parent) = e.path.parent()
            && kinds.get(parent.as_bytes()) != Some(&EntryKind::Dir)
        {
            return Err(refuse(&e, "parent is not a listed directory"));
        }
        if is_temp_name(e.path.file_name()) {
            return Err(refuse(&e, "reserved temporary name"));
        }
        if kinds.insert(e.path.as_bytes().to_vec(), e.kind).is_some() {
            return Err(refuse(&e, "duplicate entry"));
        }
        if let Some(l) = e.hardlink_to {
            let ok = e.kind == EntryKind::File && (l as usize) < i;
            if !ok {
                return Err(refuse(&e, "invalid hard link reference"));
            }
            e.hardlink_to = new_index[l as usize];
            if let Some(n) = e.hardlink_to {
                let leader = &out[n as usize];
                if leader.kind != EntryKind::File || leader.hardlink_to.is_some() {
                    return Err(refuse(&e, "hard link to a non-leader"));
                }
            }
        }
        if excludes.excludes(e.path.as_bytes(), e.kind == EntryKind::Dir) {
            new_index.push(None);
            continue;
        }
        new_index.push(Some(out.len() as u64));
        out.push(e);
    }
    Ok(out)
}

/// Names of a file's temporary (partial) and basis files in its directory.
fn temp_names(name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let h = blake3::hash(name).to_hex();
    let base = [crate::paths::TEMP_PREFIX, &h.as_bytes()[..24]].concat();
    (
        [&base[..], b".part"].concat(),
        [&base[..], b".basis"].concat(),
    )
}

fn mtime_of(e: &Entry) -> TimeSpec {
    TimeSpec::new(e.mtime_sec, i64::from(e.mtime_nsec))
}

fn same_mtime(st: &FileStat, e: &Entry) -> bool {
    st.st_mtime == e.mtime_sec && st.st_mtime_nsec == i64::from(e.mtime_nsec)
}

/// Shared state of one pull on the blocking side.
struct Ctx {
    root: OwnedFd,
    opts: SyncOptions,
    as_root: bool,
    /// Dry run into a destination that does not exist: `root` must not be looked at.
    dest_missing: bool,
}

impl Ctx {
    fn chown(&self) -> bool {
        self.opts.owner && self.as_root
    }

    /// Sets owner, mode and mtime on an open file or directory.
    fn set_meta(&self, fd: &OwnedFd, e: &Entry) -> Result<(), SyncError> {
        let ctx = || format!("setting metadata of {}", e.path.display());
        if self.chown() {
            fchown(fd, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
                .map_err(nix_err(ctx()))?;
        }
        fchmod(fd, Mode::from_bits_truncate(e.mode & 0o7777)).map_err(nix_err(ctx()))?;
        if self.opts.xattrs {
            fsops::write_xattrs(fd, &e.xattrs).map_err(io_err(ctx()))?;
        }
        futimens(fd, &TimeSpec::UTIME_OMIT, &mtime_of(e)).map_err(nix_err(ctx()))?;
        Ok(())
    }
}

/// A file to fetch.
struct Job {
    id: u64,
    entry: Entry,
}

/// A job ready for the applier: basis chosen, signatures being sent.
struct Prepared {
    job: Job,
    basis: Basis,
    sig_count: u32,
}

/// The data a new version is diffed against: a leftover partial from an interrupted run
/// (the new version's first bytes) and/or the current file. Each window takes its bytes
/// from the partial where the partial covers the window, else from the current file, so
/// an interrupted transfer resumes with both halves matched.
#[derive(Default)]
struct Basis {
    partial: Option<(File, u64)>,
    current: Option<(File, u64)>,
}

impl Basis {
    /// Length the window layout is computed from.
    fn len(&self) -> u64 {
        let l = |b: &Option<(File, u64)>| b.as_ref().map_or(0, |(_, n)| *n);
        l(&self.partial).max(l(&self.current))
    }

    /// Maps the bytes of basis window `i` (the same choice for signature and apply).
    fn map_window(&self, i: u64, window: u64) -> io::Result<Option<memmap2::Mmap>> {
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

    fn try_clone(&self) -> io::Result<Basis> {
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

/// Counters of one stream.
#[derive(Default)]
struct Counters {
    transferred: u64,
    literal: u64,
    matched: u64,
    vanished: u64,
}

/// Pulls `volume` into `dest` over `streams` (each already running the subsystem).
/// Files are spread over the streams; the bandwidth limit is shared by all of them.
/// Order: list, directories, files (verified, atomically renamed), symlinks, hard links,
/// deletions, directory metadata.
pub async fn pull<S>(
    streams: Vec<S>,
    volume: &str,
    dest: &Path,
    opts: &SyncOptions,
) -> Result<SyncSummary, SyncError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let t0 = Instant::now();
    if !(4096..=1 << 30).contains(&opts.window) {
        return Err(SyncError::Refused {
            path: String::new(),
            reason: "window must be between 4 KiB and 1 GiB".into(),
        });
    }
    if streams.is_empty() {
        return Err(SyncError::NoStreams);
    }
    let excludes = Excludes::new(&opts.excludes).map_err(|e| SyncError::Refused {
        path: String::new(),
        reason: e.to_string(),
    })?;
    let mut conns = Vec::with_capacity(streams.len());
    for s in streams {
        conns.push(Conn::open(s, volume, opts).await?);
    }
    let entries = conns[0].list(opts).await?;
    let entries = Arc::new(validate(entries, &excludes)?);
    let mut summary = SyncSummary {
        dry_run: opts.dry_run,
        files_scanned: entries.len() as u64,
        total_size: entries
            .iter()
            .filter(|e| e.kind == EntryKind::File && e.hardlink_to.is_none())
            .map(|e| e.size)
            .sum(),
        ..SyncSummary::default()
    };
    let ctx = {
        let (dest, opts) = (dest.to_path_buf(), opts.clone());
        blocking(move || open_ctx(&dest, opts)).await??
    };
    let ctx = Arc::new(ctx);
    let jobs = {
        let (ctx, entries) = (Arc::clone(&ctx), Arc::clone(&entries));
        blocking(move || plan(&ctx, &entries)).await??
    };
    summary.other_entries_changed += jobs.dirs_changed;
    summary.metadata_updated += jobs.metadata_updated;
    summary.files_verified += jobs.verified;
    if opts.dry_run {
        summary.files_transferred = jobs.jobs.len() as u64;
    } else {
        let counters = transfer(&mut conns, jobs.jobs, &ctx, opts).await?;
        for c in counters {
            summary.files_transferred += c.transferred;
            summary.literal_bytes += c.literal;
            summary.matched_bytes += c.matched;
            summary.files_vanished += c.vanished;
        }
    }
    let wire = Arc::new(AtomicU64::new(0));
    for c in conns {
        wire.fetch_add(c.bye().await, Ordering::Relaxed);
    }
    let (changed, deleted) = {
        let (ctx, entries) = (Arc::clone(&ctx), Arc::clone(&entries));
        blocking(move || finish(&ctx, &entries, &excludes)).await??
    };
    summary.other_entries_changed += changed;
    summary.files_deleted = deleted;
    summary.wire_bytes = wire.load(Ordering::Relaxed);
    summary.duration_seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Io {
            context: "worker thread".into(),
            source: io::Error::other(e.to_string()),
        })
}

fn open_ctx(dest: &PathBuf, opts: SyncOptions) -> Result<Ctx, SyncError> {
    if !opts.dry_run {
        std::fs::create_dir_all(dest).map_err(io_err(format!("creating {}", dest.display())))?;
    }
    let (root, dest_missing) = match fsops::open_root(dest) {
        Ok(r) => (Some(r), false),
        // dry run into a missing destination: everything is new, nothing to delete
        Err(e) if opts.dry_run && e.kind() == io::ErrorKind::NotFound => (None, true),
        Err(e) => return Err(io_err(format!("opening {}", dest.display()))(e)),
    };
    let root = match root {
        Some(r) => r,
        None => fsops::open_root(Path::new("/")).map_err(io_err("opening /"))?,
    };
    Ok(Ctx {
        root,
        opts,
        as_root: nix::unistd::geteuid().is_root(),
        dest_missing,
    })
}

/// Result of planning.
struct Planned {
    jobs: VecDeque<Job>,
    dirs_changed: u64,
    metadata_updated: u64,
    /// Existing files compared by content.
    verified: u64,
}

/// Creates directories (write access for us; final modes come last) and decides which
/// files need data, by quick check (size + mtime) or checksum.
fn plan(ctx: &Ctx, entries: &[Entry]) -> Result<Planned, SyncError> {
    let mut p = Planned {
        jobs: VecDeque::new(),
        dirs_changed: 0,
        metadata_updated: 0,
        verified: 0,
    };
    let dry = ctx.opts.dry_run;
    let mut dirs = DirCache::new(&ctx.root).map_err(io_err("dup root"))?;
    for (i, e) in entries.iter().enumerate() {
        let ctxs = || format!("preparing {}", e.path.display());
        let parent = match dirs.parent(&e.path) {
            _ if ctx.dest_missing => None,
            Ok(p) => Some(p),
            Err(err) if dry && err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(io_err(ctxs())(err)),
        };
        let st = match parent {
            Some(dir) => fsops::lstat_at(dir, e.path.file_name()).map_err(io_err(ctxs()))?,
            None => None,
        };
        match e.kind {
            EntryKind::Dir => {
                let is_dir = st
                    .as_ref()
                    .is_some_and(|s| fsops::is_kind(s, SFlag::S_IFDIR));
                if !is_dir {
                    p.dirs_changed += 1;
                    if let (Some(dir), false) = (parent, dry) {
                        if st.is_some() {
                            fsops::remove_at(dir, e.path.file_name()).map_err(io_err(ctxs()))?;
                        }
                        mkdirat(dir, os(e.path.file_name()), Mode::from_bits_truncate(0o700))
                            .map_err(nix_err(ctxs()))?;
                    }
                }
            }
            EntryKind::File if e.hardlink_to.is_none() => {
                let current = match (&st, parent) {
                    (Some(s), Some(dir)) => {
                        let (current, compared) = file_is_current(dir, s, e)?;
                        p.verified += u64::from(compared);
                        current
                    }
                    _ => false,
                };
                if !current {
                    p.jobs.push_back(Job {
                        id: i as u64,
                        entry: e.clone(),
                    });
                } else if let (Some(s), Some(dir)) = (&st, parent)
                    && fix_file_meta(ctx, dir, s, e)?
                {
                    p.metadata_updated += 1;
                }
            }
            EntryKind::File | EntryKind::Symlink => {}
        }
    }
    Ok(p)
}

/// Whether the target file already has the source's content: by content hash when the
/// sender hashed it (checksum mode or the verification sample), else by size and mtime.
/// Returns (current, compared by content).
fn file_is_current(dir: &OwnedFd, st: &FileStat, e: &Entry) -> Result<(bool, bool), SyncError> {
    if !fsops::is_kind(st, SFlag::S_IFREG) || st.st_size as u64 != e.size {
        return Ok((false, false));
    }
    let Some(want) = e.hash else {
        return Ok((same_mtime(st, e), false));
    };
    let f = open_at_nofollow(dir, e.path.file_name(), OFlag::O_RDONLY)
        .map_err(io_err(format!("hashing {}", e.path.display())))?;
    let same = hash_file(&f).map_err(io_err(format!("hashing {}", e.path.display())))? == want;
    Ok((same, true))
}

/// Brings mode, owner and mtime of an up-to-date file in line. Returns whether it changed.
fn fix_file_meta(ctx: &Ctx, dir: &OwnedFd, st: &FileStat, e: &Entry) -> Result<bool, SyncError> {
    let owner_ok = !ctx.chown() || (st.st_uid == e.uid && st.st_gid == e.gid);
    let xattrs_ok = !ctx.opts.xattrs
        || fsops::read_xattrs(dir, e.path.file_name())
            .map_err(io_err(format!("reading xattrs of {}", e.path.display())))?
            == e.xattrs;
    if owner_ok && xattrs_ok && (st.st_mode & 0o7777) == (e.mode & 0o7777) && same_mtime(st, e) {
        return Ok(false);
    }
    if ctx.opts.dry_run {
        return Ok(true);
    }
    let f = open_at_nofollow(dir, e.path.file_name(), OFlag::O_RDONLY)
        .map_err(io_err(format!("opening {}", e.path.display())))?;
    ctx.set_meta(&OwnedFd::from(f), e)?;
    Ok(true)
}

fn open_at_nofollow(dir: &OwnedFd, name: &[u8], flags: OFlag) -> io::Result<File> {
    let fd = openat(
        dir,
        os(name),
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::from_bits_truncate(0o600),
    )?;
    Ok(File::from(fd))
}

/// Runs the jobs over all streams; each stream takes the next job from a shared queue.
async fn transfer<S>(
    conns: &mut [Conn<S>],
    jobs: VecDeque<Job>,
    ctx: &Arc<Ctx>,
    opts: &SyncOptions,
) -> Result<Vec<Counters>, SyncError>
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
) -> Result<Counters, SyncError>
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
        Ok::<Counters, SyncError>(counters)
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

fn panicked(e: tokio::task::JoinError) -> SyncError {
    SyncError::Io {
        context: "worker thread".into(),
        source: io::Error::other(e.to_string()),
    }
}

/// Planner: for each job, picks the basis (a leftover partial first, then the current
/// file), hands the job to the applier and sends the request and window signatures.
fn prepare_all(
    ctx: &Ctx,
    queue: &Mutex<VecDeque<Job>>,
    req_tx: &mpsc::Sender<Message>,
    job_tx: &std::sync::mpsc::SyncSender<Prepared>,
) -> Result<(), SyncError> {
    let gone = || SyncError::Protocol(ProtocolError::malformed("stream closed"));
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
) -> Result<(Option<ChunkHashes>, fast_rsync::Signature), SyncError> {
    if data.len() < PARALLEL_HASHES_MIN {
        let chunks = ChunkHashes::of_basis(data, basis_len, shift, source_len);
        return Ok((chunks, delta::signature(data, basis_len)));
    }
    std::thread::scope(|s| {
        let sig = s.spawn(|| delta::signature(data, basis_len));
        let chunks = ChunkHashes::of_basis(data, basis_len, shift, source_len);
        sig.join().map(|sig| (chunks, sig))
    })
    .map_err(|_| SyncError::Io {
        context: "signature thread".into(),
        source: io::Error::other("panicked"),
    })
}

fn prepare(ctx: &Ctx, dirs: &mut DirCache, job: Job) -> Result<Prepared, SyncError> {
    let e = &job.entry;
    let c = || format!("preparing {}", e.path.display());
    let dir = dirs.parent(&e.path).map_err(io_err(c()))?;
    let (part, basis_name) = temp_names(e.path.file_name());
    // a leftover partial from an interrupted run becomes the basis
    if fsops::lstat_at(dir, &part).map_err(io_err(c()))?.is_some() {
        renameat(dir, os(&part), dir, os(&basis_name)).map_err(nix_err(c()))?;
    }
    let mut basis = Basis::default();
    if !ctx.opts.whole_file {
        for (name, is_partial) in [(&basis_name[..], true), (e.path.file_name(), false)] {
            let st = fsops::lstat_at(dir, name).map_err(io_err(c()))?;
            if let Some(s) = st.filter(|s| fsops::is_kind(s, SFlag::S_IFREG) && s.st_size > 0) {
                let f = open_at_nofollow(dir, name, OFlag::O_RDONLY).map_err(io_err(c()))?;
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

type Inbox = mpsc::Receiver<Result<Message, ProtocolError>>;

fn next_msg(inbox: &mut Inbox) -> Result<Message, SyncError> {
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
) -> Result<Counters, SyncError> {
    let mut counters = Counters::default();
    let mut dirs = DirCache::new(&ctx.root).map_err(io_err("dup root"))?;
    let mut renames: Vec<PendingRename> = Vec::new();
    let mut pending_bytes = 0u64;
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
                    renames.push(r);
                    pending_bytes += size;
                    if renames.len() >= RENAME_BATCH || pending_bytes >= RENAME_BATCH_BYTES {
                        commit_renames(ctx, &mut dirs, &mut renames)?;
                        pending_bytes = 0;
                    }
                }
            }
            Message::FileError { id, message: _ } if id == p.job.id => {
                counters.vanished += 1;
            }
            other => return Err(unexpected("FileStart", &other)),
        }
    }
    commit_renames(ctx, &mut dirs, &mut renames)?;
    Ok(counters)
}

/// A verified temp file waiting for the batch `syncfs` before its rename.
struct PendingRename {
    entry_path: WirePath,
    part: Vec<u8>,
    basis_name: Option<Vec<u8>>,
}

struct Received {
    literal: u64,
    matched: u64,
    rename: Option<PendingRename>,
    vanished: bool,
}

fn receive_file(
    ctx: &Ctx,
    dirs: &mut DirCache,
    p: &Prepared,
    size: u64,
    inbox: &mut Inbox,
) -> Result<Received, SyncError> {
    let e = &p.job.entry;
    let c = || format!("writing {}", e.path.display());
    let dir = dirs.parent(&e.path).map_err(io_err(c()))?;
    let (part, basis_name) = temp_names(e.path.file_name());
    let tmp = open_at_nofollow(dir, &part, OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_TRUNC)
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
    if got != want {
        return Err(SyncError::Verify {
            path: e.path.display(),
        });
    }
    let fd = OwnedFd::from(file);
    ctx.set_meta(&fd, e)?;
    let pending = PendingRename {
        entry_path: e.path.clone(),
        part,
        basis_name: p.basis.partial.is_some().then_some(basis_name),
    };
    if size < BATCH_FSYNC_BELOW {
        return Ok(Received {
            literal,
            matched,
            rename: Some(pending),
            vanished: false,
        });
    }
    File::from(fd).sync_all().map_err(io_err(c()))?;
    rename_into_place(dir, &pending)?;
    Ok(Received {
        literal,
        matched,
        rename: None,
        vanished: false,
    })
}

/// Makes a batch of small temp files durable with one `syncfs`, then renames them.
fn commit_renames(
    ctx: &Ctx,
    dirs: &mut DirCache,
    renames: &mut Vec<PendingRename>,
) -> Result<(), SyncError> {
    if renames.is_empty() {
        return Ok(());
    }
    nix::unistd::syncfs(&ctx.root).map_err(nix_err("syncfs"))?;
    for r in renames.drain(..) {
        let c = || format!("renaming into {}", r.entry_path.display());
        let dir = dirs.parent(&r.entry_path).map_err(io_err(c()))?;
        rename_into_place(dir, &r)?;
    }
    Ok(())
}

/// Renames a durable temp file over its final name in `dir` (its parent directory).
fn rename_into_place(dir: &OwnedFd, r: &PendingRename) -> Result<(), SyncError> {
    let c = || format!("renaming into {}", r.entry_path.display());
    let name = r.entry_path.file_name();
    if let Some(st) = fsops::lstat_at(dir, name).map_err(io_err(c()))?
        && fsops::is_kind(&st, SFlag::S_IFDIR)
    {
        fsops::remove_at(dir, name).map_err(io_err(c()))?;
    }
    renameat(dir, os(&r.part), dir, os(name)).map_err(nix_err(c()))?;
    if let Some(b) = &r.basis_name {
        let _ = fsops::remove_at(dir, b);
    }
    Ok(())
}

/// After the data: symlinks, hard links, deletions, directory metadata, durability.
/// Returns (entries changed, entries deleted).
fn finish(ctx: &Ctx, entries: &[Entry], excludes: &Excludes) -> Result<(u64, u64), SyncError> {
    let mut changed = 0;
    let dry = ctx.opts.dry_run;
    if ctx.dest_missing {
        let others = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Symlink || e.hardlink_to.is_some());
        return Ok((others.count() as u64, 0));
    }
    for e in entries {
        match (e.kind, e.hardlink_to) {
            (EntryKind::Symlink, _) => changed += u64::from(sync_symlink(ctx, e, dry)?),
            (EntryKind::File, Some(l)) => {
                changed += u64::from(sync_hardlink(ctx, e, &entries[l as usize], dry)?);
            }
            _ => {}
        }
    }
    let deleted = if ctx.opts.delete {
        let keep: HashSet<&[u8]> = entries.iter().map(|e| e.path.as_bytes()).collect();
        delete_extraneous(ctx, &keep, excludes)?
    } else {
        0
    };
    if !dry {
        for e in entries.iter().rev().filter(|e| e.kind == EntryKind::Dir) {
            let c = || format!("directory metadata of {}", e.path.display());
            let parent = fsops::open_parent(&ctx.root, &e.path).map_err(io_err(c()))?;
            let fd = fsops::open_subdir(&parent, e.path.file_name()).map_err(io_err(c()))?;
            ctx.set_meta(&fd, e)?;
        }
        nix::unistd::syncfs(&ctx.root).map_err(nix_err("syncfs"))?;
    }
    Ok((changed, deleted))
}

/// Places a symlink atomically (temp link + rename). Returns whether it changed.
fn sync_symlink(ctx: &Ctx, e: &Entry, dry: bool) -> Result<bool, SyncError> {
    let c = || format!("symlink {}", e.path.display());
    let dir = match fsops::open_parent(&ctx.root, &e.path) {
        Ok(d) => d,
        Err(err) if dry && err.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(err) => return Err(io_err(c())(err)),
    };
    let name = e.path.file_name();
    let st = fsops::lstat_at(&dir, name).map_err(io_err(c()))?;
    let same = match &st {
        Some(s) if fsops::is_kind(s, SFlag::S_IFLNK) => {
            nix::fcntl::readlinkat(&dir, os(name))
                .map_err(nix_err(c()))?
                .as_bytes()
                == e.link_target
        }
        _ => false,
    };
    if same && st.as_ref().is_some_and(|s| same_mtime(s, e)) {
        return Ok(false);
    }
    if dry {
        return Ok(true);
    }
    if !same {
        let (tmp, _) = temp_names(name);
        let _ = fsops::remove_at(&dir, &tmp);
        symlinkat(os(&e.link_target), &dir, os(&tmp)).map_err(nix_err(c()))?;
        if st
            .as_ref()
            .is_some_and(|s| fsops::is_kind(s, SFlag::S_IFDIR))
        {
            fsops::remove_at(&dir, name).map_err(io_err(c()))?;
        }
        renameat(&dir, os(&tmp), &dir, os(name)).map_err(nix_err(c()))?;
    }
    if ctx.chown() {
        fchownat(
            &dir,
            os(name),
            Some(Uid::from_raw(e.uid)),
            Some(Gid::from_raw(e.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(nix_err(c()))?;
    }
    utimensat(
        &dir,
        os(name),
        &TimeSpec::UTIME_OMIT,
        &mtime_of(e),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(nix_err(c()))?;
    Ok(true)
}

/// Makes `e` a hard link of `leader` (temp link + rename). Returns whether it changed.
fn sync_hardlink(ctx: &Ctx, e: &Entry, leader: &Entry, dry: bool) -> Result<bool, SyncError> {
    let c = || format!("hard link {}", e.path.display());
    let open = |p: &WirePath| fsops::open_parent(&ctx.root, p);
    let (dir, ldir) = match (open(&e.path), open(&leader.path)) {
        (Ok(d), Ok(l)) => (d, l),
        (Err(err), _) | (_, Err(err)) if dry && err.kind() == io::ErrorKind::NotFound => {
            return Ok(true);
        }
        (Err(err), _) | (_, Err(err)) => return Err(io_err(c())(err)),
    };
    let name = e.path.file_name();
    let st = fsops::lstat_at(&dir, name).map_err(io_err(c()))?;
    let lst = fsops::lstat_at(&ldir, leader.path.file_name()).map_err(io_err(c()))?;
    let same = match (&st, &lst) {
        (Some(a), Some(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    };
    if same {
        return Ok(false);
    }
    if dry {
        return Ok(true);
    }
    let (tmp, _) = temp_names(name);
    let _ = fsops::remove_at(&dir, &tmp);
    linkat(
        &ldir,
        os(leader.path.file_name()),
        &dir,
        os(&tmp),
        AtFlags::empty(),
    )
    .map_err(nix_err(c()))?;
    if st
        .as_ref()
        .is_some_and(|s| fsops::is_kind(s, SFlag::S_IFDIR))
    {
        fsops::remove_at(&dir, name).map_err(io_err(c()))?;
    }
    renameat(&dir, os(&tmp), &dir, os(name)).map_err(nix_err(c()))?;
    Ok(true)
}

/// Deletes what is not in the source list (except excluded entries, unless asked), and
/// leftover temp files. Never follows symlinks. Returns entries deleted.
fn delete_extraneous(
    ctx: &Ctx,
    keep: &HashSet<&[u8]>,
    excludes: &Excludes,
) -> Result<u64, SyncError> {
    let dry = ctx.opts.dry_run;
    let mut deleted = 0;
    let root = ctx.root.try_clone().map_err(io_err("dup root"))?;
    let mut stack: Vec<(OwnedFd, Vec<u8>)> = vec![(root, Vec::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let names = fsops::list_dir_typed(&dir).map_err(io_err("listing destination"))?;
        for (name, typed_dir) in names {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                [&prefix[..], b"/", &name[..]].concat()
            };
            // the directory entry's type saves a stat per entry; some filesystems leave it
            // unknown, then we ask
            let is_dir = match typed_dir {
                Some(d) => d,
                None => {
                    match fsops::lstat_at(&dir, &name).map_err(io_err("listing destination"))? {
                        Some(st) => fsops::is_kind(&st, SFlag::S_IFDIR),
                        None => continue,
                    }
                }
            };
            if is_temp_name(&name) {
                if !dry {
                    fsops::remove_at(&dir, &name).map_err(io_err("removing temp file"))?;
                }
                continue;
            }
            if keep.contains(&path[..]) {
                if is_dir {
                    let sub =
                        fsops::open_subdir(&dir, &name).map_err(io_err("listing destination"))?;
                    stack.push((sub, path));
                }
                continue;
            }
            if !ctx.opts.delete_excluded && excludes.matches(&path, is_dir) {
                continue;
            }
            deleted += if dry {
                1
            } else {
                fsops::remove_at(&dir, &name).map_err(io_err(format!(
                    "deleting {}",
                    String::from_utf8_lossy(&path)
                )))?
            };
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &[u8], kind: EntryKind, link: Option<u64>) -> Entry {
        Entry {
            path: WirePath::new(path.to_vec()).unwrap(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            link_target: Vec::new(),
            hardlink_to: link,
            hash: None,
            xattrs: Vec::new(),
        }
    }

    fn none() -> Excludes {
        Excludes::new(&[]).unwrap()
    }

    #[test]
    fn validate_refuses_bad_lists() {
        use EntryKind::{Dir, File, Symlink};
        let bad: Vec<Vec<Entry>> = vec![
            vec![e(b"a/b", File, None)],                         // parent not listed
            vec![e(b"a", File, None), e(b"a/b", File, None)],    // parent not a dir
            vec![e(b"a", Symlink, None), e(b"a/b", File, None)], // parent a symlink
            vec![e(b"a", File, None), e(b"a", File, None)],      // duplicate
            vec![e(b"a", File, Some(1)), e(b"b", File, None)],   // forward hard link
            vec![e(b"d", Dir, None), e(b"b", File, Some(0))],    // hard link to a dir
            vec![e(b".dr-syncer.x.part", File, None)],           // reserved name
            vec![
                e(b"a", File, None),
                e(b"b", File, Some(0)),
                e(b"c", File, Some(1)),
            ],
        ];
        for list in bad {
            let names: Vec<_> = list.iter().map(|x| x.path.display()).collect();
            assert!(
                matches!(validate(list, &none()), Err(SyncError::Refused { .. })),
                "{names:?}"
            );
        }
    }

    #[test]
    fn validate_remaps_hard_links_around_excludes() {
        use EntryKind::{Dir, File};
        let list = vec![
            e(b"skip.tmp", File, None),
            e(b"d", Dir, None),
            e(b"d/a", File, None),
            e(b"d/b", File, Some(2)),
            e(b"c", File, Some(0)),
        ];
        let ex = Excludes::new(&["*.tmp".to_string()]).unwrap();
        let out = validate(list, &ex).unwrap();
        let paths: Vec<_> = out.iter().map(|x| x.path.display()).collect();
        assert_eq!(paths, ["d", "d/a", "d/b", "c"]);
        assert_eq!(
            out[2].hardlink_to,
            Some(1),
            "index remapped after the excluded entry"
        );
        assert_eq!(
            out[3].hardlink_to, None,
            "leader excluded: fetched on its own"
        );
    }

    #[test]
    fn temp_names_fit_any_name_and_are_reserved() {
        let (part, basis) = temp_names(&[b'x'; 255]);
        assert!(part.len() < 64 && basis.len() < 64);
        assert!(is_temp_name(&part) && is_temp_name(&basis));
        assert_ne!(temp_names(b"a").0, temp_names(b"b").0);
    }
}

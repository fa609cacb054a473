//! [`pull`]: one pull from start to end (list, plan, transfer, finish, summary), the
//! async side handing the filesystem work to blocking threads.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use super::dest::open_ctx;
use super::error::{ReceiveError, panicked};
use super::finish::finish;
use super::plan::{plan, validate};
use super::session::Conn;
use super::stream::transfer;
use super::summary::SyncSummary;
use crate::excludes::Excludes;
use crate::filelist::EntryKind;
use crate::options::SyncOptions;

/// Pulls `volume` into `dest` over `streams` (each already running the subsystem).
/// Files are spread over the streams; the bandwidth limit is shared by all of them.
/// Order: lock, list, directories, files (verified, atomically renamed), symlinks, hard
/// links, deletions (unless the prune guard refuses them), directory metadata.
pub async fn pull<S>(
    streams: Vec<S>,
    volume: &str,
    dest: &Path,
    opts: &SyncOptions,
) -> Result<SyncSummary, ReceiveError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let t0 = Instant::now();
    if !(4096..=1 << 30).contains(&opts.window) {
        return Err(ReceiveError::Refused {
            path: String::new(),
            reason: "window must be between 4 KiB and 1 GiB".into(),
        });
    }
    if streams.is_empty() {
        return Err(ReceiveError::NoStreams);
    }
    let excludes = Excludes::new(&opts.excludes).map_err(|e| ReceiveError::Refused {
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
    let jobs_present = jobs.present_files;
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
    let present = jobs_present;
    let (changed, pruned) = {
        let (ctx, entries) = (Arc::clone(&ctx), Arc::clone(&entries));
        blocking(move || finish(&ctx, &entries, present, &excludes)).await??
    };
    summary.other_entries_changed += changed;
    summary.files_deleted = pruned.deleted;
    summary.prune_refused = pruned.refused;
    summary.wire_bytes = wire.load(Ordering::Relaxed);
    summary.duration_seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// Runs filesystem work on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReceiveError> {
    tokio::task::spawn_blocking(f).await.map_err(panicked)
}

//! Committing received data: a verified temp file gets its metadata and is renamed over
//! its final name, durable first (one `fsync` for a large file, one `syncfs` per batch of
//! small ones, [`RenameBatch`]); symlinks and hard links are placed the same way (temp name
//! + rename), so a reader never sees a half-written entry.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

use nix::sys::stat::SFlag;

use super::dest::{Ctx, same_mtime};
use super::error::{ReceiveError, io_err};
use crate::filelist::Entry;
use crate::fsops::{self, DirCache};
use crate::paths::WirePath;

/// Files smaller than this are made durable in batches (one `syncfs` before their
/// renames) instead of one `fsync` each.
const BATCH_FSYNC_BELOW: u64 = 1 << 20;
/// Renames waiting for one batch `syncfs` (each `syncfs` costs milliseconds: batches are
/// large, bounded by count and by bytes).
const RENAME_BATCH: usize = 4096;
/// Bytes of small files waiting for one batch `syncfs`.
const RENAME_BATCH_BYTES: u64 = 128 << 20;

/// A verified temp file waiting for the batch `syncfs` before its rename.
pub(super) struct PendingRename {
    /// The entry's final path.
    pub(super) entry_path: WirePath,
    /// The temp file's name in the same directory.
    pub(super) part: Vec<u8>,
    /// The basis file to remove after the rename (a leftover partial was used).
    pub(super) basis_name: Option<Vec<u8>>,
}

/// Verified small files whose renames wait for one `syncfs` (bounded by count and bytes).
#[derive(Default)]
pub(super) struct RenameBatch {
    renames: Vec<PendingRename>,
    bytes: u64,
}

impl RenameBatch {
    /// Adds the rename of a file of `size` bytes; commits the batch once it is full.
    pub(super) fn add(
        &mut self,
        ctx: &Ctx,
        dirs: &mut DirCache,
        r: PendingRename,
        size: u64,
    ) -> Result<(), ReceiveError> {
        self.renames.push(r);
        self.bytes += size;
        if self.renames.len() >= RENAME_BATCH || self.bytes >= RENAME_BATCH_BYTES {
            commit_renames(ctx, dirs, &mut self.renames)?;
            self.bytes = 0;
        }
        Ok(())
    }

    /// Commits what is waiting (at the end of a stream).
    pub(super) fn commit(&mut self, ctx: &Ctx, dirs: &mut DirCache) -> Result<(), ReceiveError> {
        commit_renames(ctx, dirs, &mut self.renames)
    }
}

/// Commits a verified temp file (`file`, in `dir`): sets its metadata, then a large file is
/// made durable and renamed now; a small one's rename is returned for a [`RenameBatch`].
pub(super) fn commit_file(
    ctx: &Ctx,
    dir: &OwnedFd,
    file: File,
    e: &Entry,
    pending: PendingRename,
    size: u64,
) -> Result<Option<PendingRename>, ReceiveError> {
    let c = || format!("writing {}", e.path.display());
    let fd = OwnedFd::from(file);
    ctx.set_meta(&fd, e)?;
    if size < BATCH_FSYNC_BELOW {
        return Ok(Some(pending));
    }
    File::from(fd).sync_all().map_err(io_err(c()))?;
    rename_into_place(dir, &pending)?;
    Ok(None)
}

/// Makes a batch of small temp files durable with one `syncfs`, then renames them.
fn commit_renames(
    ctx: &Ctx,
    dirs: &mut DirCache,
    renames: &mut Vec<PendingRename>,
) -> Result<(), ReceiveError> {
    if renames.is_empty() {
        return Ok(());
    }
    fsops::sync_fs(&ctx.root).map_err(io_err("syncfs"))?;
    for r in renames.drain(..) {
        let c = || format!("renaming into {}", r.entry_path.display());
        let dir = dirs.parent(&r.entry_path).map_err(io_err(c()))?;
        rename_into_place(dir, &r)?;
    }
    Ok(())
}

/// Renames a durable temp file over its final name in `dir` (its parent directory).
fn rename_into_place(dir: &OwnedFd, r: &PendingRename) -> Result<(), ReceiveError> {
    let c = || format!("renaming into {}", r.entry_path.display());
    let name = r.entry_path.file_name();
    if let Some(st) = fsops::lstat_at(dir, name).map_err(io_err(c()))?
        && fsops::is_kind(&st, SFlag::S_IFDIR)
    {
        fsops::remove_at(dir, name).map_err(io_err(c()))?;
    }
    fsops::rename_at(dir, &r.part, name).map_err(io_err(c()))?;
    if let Some(b) = &r.basis_name {
        let _ = fsops::remove_at(dir, b);
    }
    Ok(())
}

/// Places a symlink atomically (temp link + rename). Returns whether it changed.
pub(super) fn sync_symlink(ctx: &Ctx, e: &Entry, dry: bool) -> Result<bool, ReceiveError> {
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
            fsops::read_link_at(&dir, name).map_err(io_err(c()))? == e.link_target
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
        let tmp = ctx.temp_link_name(name);
        let _ = fsops::remove_at(&dir, &tmp);
        fsops::symlink_at(&e.link_target, &dir, &tmp).map_err(io_err(c()))?;
        if st
            .as_ref()
            .is_some_and(|s| fsops::is_kind(s, SFlag::S_IFDIR))
        {
            fsops::remove_at(&dir, name).map_err(io_err(c()))?;
        }
        fsops::rename_at(&dir, &tmp, name).map_err(io_err(c()))?;
    }
    if ctx.chown() {
        fsops::chown_at_nofollow(&dir, name, e.uid, e.gid).map_err(io_err(c()))?;
    }
    fsops::set_mtime_at_nofollow(&dir, name, e.mtime_sec, e.mtime_nsec).map_err(io_err(c()))?;
    Ok(true)
}

/// Makes `e` a hard link of `leader` (temp link + rename). Returns whether it changed.
pub(super) fn sync_hardlink(
    ctx: &Ctx,
    e: &Entry,
    leader: &Entry,
    dry: bool,
) -> Result<bool, ReceiveError> {
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
    let tmp = ctx.temp_link_name(name);
    let _ = fsops::remove_at(&dir, &tmp);
    fsops::hard_link_at(&ldir, leader.path.file_name(), &dir, &tmp).map_err(io_err(c()))?;
    if st
        .as_ref()
        .is_some_and(|s| fsops::is_kind(s, SFlag::S_IFDIR))
    {
        fsops::remove_at(&dir, name).map_err(io_err(c()))?;
    }
    fsops::rename_at(&dir, &tmp, name).map_err(io_err(c()))?;
    Ok(true)
}

//! After the data ([`finish`]): symlinks and hard links, deletions of what is gone at the
//! source, directory metadata (last, so writing into a directory does not change its
//! mtime again), and one `syncfs` for durability.

use std::collections::HashSet;
use std::os::fd::OwnedFd;

use nix::sys::stat::SFlag;

use super::commit::{sync_hardlink, sync_symlink};
use super::dest::Ctx;
use super::error::{ReceiveError, io_err};
use crate::excludes::Excludes;
use crate::filelist::{Entry, EntryKind};
use crate::fsops;
use crate::paths::is_temp_name;

/// After the data: symlinks, hard links, deletions, directory metadata, durability.
/// Returns (entries changed, entries deleted).
pub(super) fn finish(
    ctx: &Ctx,
    entries: &[Entry],
    excludes: &Excludes,
) -> Result<(u64, u64), ReceiveError> {
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
        fsops::sync_fs(&ctx.root).map_err(io_err("syncfs"))?;
    }
    Ok((changed, deleted))
}

/// Deletes what is not in the source list (except excluded entries, unless asked), and
/// leftover temp files. Never follows symlinks. Returns entries deleted.
fn delete_extraneous(
    ctx: &Ctx,
    keep: &HashSet<&[u8]>,
    excludes: &Excludes,
) -> Result<u64, ReceiveError> {
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

//! After the data ([`finish`]): symlinks and hard links, deletions of what is gone at the
//! source (behind the prune guard, [`super::prune`]), directory metadata (last, so writing
//! into a directory does not change its mtime again), and one `syncfs` for durability.

use std::collections::HashSet;

use super::commit::{sync_hardlink, sync_symlink};
use super::dest::Ctx;
use super::error::{ReceiveError, io_err};
use super::prune::{Pruned, prune};
use crate::excludes::Excludes;
use crate::filelist::{Entry, EntryKind};
use crate::fsops;

/// After the data: symlinks, hard links, deletions, directory metadata, durability.
/// `present_files` is the plan's count of listed files that existed before the pull.
/// Returns the entries changed and what the deletion pass did.
pub(super) fn finish(
    ctx: &Ctx,
    entries: &[Entry],
    present_files: u64,
    excludes: &Excludes,
) -> Result<(u64, Pruned), ReceiveError> {
    let mut changed = 0;
    let dry = ctx.opts.dry_run;
    if ctx.dest_missing {
        let others = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Symlink || e.hardlink_to.is_some());
        return Ok((others.count() as u64, Pruned::default()));
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
    let pruned = if ctx.opts.delete {
        let keep: HashSet<&[u8]> = entries.iter().map(|e| e.path.as_bytes()).collect();
        let listed_files = entries.iter().filter(|e| e.kind != EntryKind::Dir).count();
        prune(ctx, &keep, listed_files as u64, present_files, excludes)?
    } else {
        Pruned::default()
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
    if let Some(lock) = &ctx.lock {
        lock.release(&ctx.root)?;
    }
    Ok((changed, pruned))
}

//! Deleting what is gone at the source, behind the prune guard ([`super::guard`]): one walk
//! of the target ([`scan`]) removes leftover temp files and collects what the listing
//! lacks with its file counts; then either everything collected is deleted ([`prune`]) or,
//! when the guard refuses, nothing is.

use std::collections::HashSet;
use std::os::fd::OwnedFd;

use nix::sys::stat::SFlag;

use super::dest::Ctx;
use super::error::{ReceiveError, io_err};
use super::guard::{PruneCounts, verdict};
use crate::excludes::Excludes;
use crate::fsops;
use crate::paths::{LOCK_NAME, is_temp_name};

/// What the deletion pass did: entries deleted, or why none were.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Pruned {
    /// Entries deleted (a directory with its contents counts each entry).
    pub(super) deleted: u64,
    /// The guard's refusal (nothing was deleted then).
    pub(super) refused: Option<String>,
}

/// Target entries the source listing lacks, found by [`scan`].
struct Doomed {
    /// Paths relative to the root (raw bytes), in walk order.
    paths: Vec<Vec<u8>>,
    /// Non-directory entries among them, counting the contents of directories.
    files: u64,
}

/// Deletes what is not in the source list (except excluded entries, unless asked), unless
/// the guard refuses; removes leftover temp files either way (never the lock file). Never
/// follows symlinks. `present_files` is the number of listed non-directory entries that
/// existed at the target before the pull (from the plan).
pub(super) fn prune(
    ctx: &Ctx,
    keep: &HashSet<&[u8]>,
    listed_files: u64,
    present_files: u64,
    excludes: &Excludes,
) -> Result<Pruned, ReceiveError> {
    let doomed = scan(ctx, keep, excludes)?;
    let counts = PruneCounts {
        listed: keep.len() as u64,
        listed_files,
        existing_files: present_files + doomed.files,
        doomed_entries: doomed.paths.len() as u64,
        doomed_files: doomed.files,
    };
    if !ctx.opts.allow_mass_deletion
        && let Some(why) = verdict(&counts)
    {
        tracing::warn!(reason = %why, "prune refused");
        return Ok(Pruned {
            deleted: 0,
            refused: Some(why),
        });
    }
    let mut deleted = 0;
    for path in &doomed.paths {
        deleted += if ctx.opts.dry_run {
            1
        } else {
            delete(&ctx.root, path)?
        };
    }
    Ok(Pruned {
        deleted,
        refused: None,
    })
}

/// Walks the target: removes temp files (unless dry), descends into listed directories,
/// collects unlisted entries (counting the files inside unlisted directories).
fn scan(ctx: &Ctx, keep: &HashSet<&[u8]>, excludes: &Excludes) -> Result<Doomed, ReceiveError> {
    let dry = ctx.opts.dry_run;
    let mut doomed = Doomed {
        paths: Vec::new(),
        files: 0,
    };
    let root = ctx.root.try_clone().map_err(io_err("dup root"))?;
    let mut stack: Vec<(OwnedFd, Vec<u8>)> = vec![(root, Vec::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let names = fsops::list_dir_typed(&dir).map_err(io_err("listing destination"))?;
        for (name, typed_dir) in names {
            if prefix.is_empty() && name == LOCK_NAME {
                continue;
            }
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                [&prefix[..], b"/", &name[..]].concat()
            };
            // the directory entry's type saves a stat per entry; some filesystems leave it
            // unknown, then we ask
            let Some(is_dir) = entry_is_dir(&dir, &name, typed_dir)? else {
                continue;
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
            doomed.files += if is_dir { count_files(&dir, &name)? } else { 1 };
            doomed.paths.push(path);
        }
    }
    Ok(doomed)
}

/// Whether `name` in `dir` is a directory: from its directory entry type, else `lstat`;
/// `None` if it vanished.
fn entry_is_dir(
    dir: &OwnedFd,
    name: &[u8],
    typed_dir: Option<bool>,
) -> Result<Option<bool>, ReceiveError> {
    if typed_dir.is_some() {
        return Ok(typed_dir);
    }
    let st = fsops::lstat_at(dir, name).map_err(io_err("listing destination"))?;
    Ok(st.map(|st| fsops::is_kind(&st, SFlag::S_IFDIR)))
}

/// Non-directory entries below directory `name` in `dir` (never following links).
fn count_files(dir: &OwnedFd, name: &[u8]) -> Result<u64, ReceiveError> {
    let c = || format!("counting {}", String::from_utf8_lossy(name));
    let mut n = 0;
    let mut stack = vec![fsops::open_subdir(dir, name).map_err(io_err(c()))?];
    while let Some(d) = stack.pop() {
        for (child, typed_dir) in fsops::list_dir_typed(&d).map_err(io_err(c()))? {
            match entry_is_dir(&d, &child, typed_dir)? {
                Some(true) => stack.push(fsops::open_subdir(&d, &child).map_err(io_err(c()))?),
                Some(false) => n += 1,
                None => {}
            }
        }
    }
    Ok(n)
}

/// Deletes the entry at `path` (relative to `root`, components opened without following
/// links). Returns the entries removed.
fn delete(root: &OwnedFd, path: &[u8]) -> Result<u64, ReceiveError> {
    let c = || format!("deleting {}", String::from_utf8_lossy(path));
    let mut parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    let Some(name) = parts.pop() else {
        return Ok(0);
    };
    let mut dir = root.try_clone().map_err(io_err(c()))?;
    for p in parts {
        dir = fsops::open_subdir(&dir, p).map_err(io_err(c()))?;
    }
    fsops::remove_at(&dir, name).map_err(io_err(c()))
}

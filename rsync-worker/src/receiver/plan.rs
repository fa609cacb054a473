//! What to transfer: the sender's list checked ([`validate`]), directories created, and
//! each file decided by quick check (size + mtime) or by content ([`plan`]).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, SFlag};

use super::dest::{Ctx, same_mtime};
use super::error::{ReceiveError, io_err};
use crate::excludes::Excludes;
use crate::filelist::{Entry, EntryKind, hash_file};
use crate::fsops::{self, DirCache};
use crate::paths::is_temp_name;

/// Checks a sender's list: parents before children, no duplicates, sane hard links; drops
/// excluded entries. A malicious sender cannot make us write through a path it did not
/// first declare as a directory.
pub(super) fn validate(
    entries: Vec<Entry>,
    excludes: &Excludes,
) -> Result<Vec<Entry>, ReceiveError> {
    let refuse = |e: &Entry, reason: &str| ReceiveError::Refused {
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

/// A file to fetch.
pub(super) struct Job {
    /// The request id: the entry's index in the validated list.
    pub(super) id: u64,
    /// The entry to fetch.
    pub(super) entry: Entry,
}

/// Result of planning.
pub(super) struct Planned {
    pub(super) jobs: VecDeque<Job>,
    pub(super) dirs_changed: u64,
    pub(super) metadata_updated: u64,
    /// Existing files compared by content.
    pub(super) verified: u64,
    /// Listed non-directory entries that existed at the target before the pull (for the
    /// prune guard's "more than half" rule).
    pub(super) present_files: u64,
}

/// Creates directories (write access for us; final modes come last) and decides which
/// files need data, by quick check (size + mtime) or checksum.
pub(super) fn plan(ctx: &Ctx, entries: &[Entry]) -> Result<Planned, ReceiveError> {
    let mut p = Planned {
        jobs: VecDeque::new(),
        dirs_changed: 0,
        metadata_updated: 0,
        verified: 0,
        present_files: 0,
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
        if e.kind != EntryKind::Dir && st.is_some() {
            p.present_files += 1;
        }
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
                        fsops::make_dir_at(dir, e.path.file_name(), 0o700)
                            .map_err(io_err(ctxs()))?;
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
fn file_is_current(dir: &OwnedFd, st: &FileStat, e: &Entry) -> Result<(bool, bool), ReceiveError> {
    if !fsops::is_kind(st, SFlag::S_IFREG) || st.st_size as u64 != e.size {
        return Ok((false, false));
    }
    let Some(want) = e.hash else {
        return Ok((same_mtime(st, e), false));
    };
    let f = fsops::open_at_nofollow(dir, e.path.file_name(), OFlag::O_RDONLY)
        .map_err(io_err(format!("hashing {}", e.path.display())))?;
    let same = hash_file(&f).map_err(io_err(format!("hashing {}", e.path.display())))? == want;
    Ok((same, true))
}

/// Brings mode, owner and mtime of an up-to-date file in line. Returns whether it changed.
fn fix_file_meta(ctx: &Ctx, dir: &OwnedFd, st: &FileStat, e: &Entry) -> Result<bool, ReceiveError> {
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
    let f = fsops::open_at_nofollow(dir, e.path.file_name(), OFlag::O_RDONLY)
        .map_err(io_err(format!("opening {}", e.path.display())))?;
    ctx.set_meta(&OwnedFd::from(f), e)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::WirePath;

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
                matches!(validate(list, &none()), Err(ReceiveError::Refused { .. })),
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
}

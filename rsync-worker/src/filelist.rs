//! The file list: what the sender has, entry by entry, in walk order (parents before
//! children, names sorted bytewise), and which entries carry a content hash.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

use nix::sys::stat::{FileStat, SFlag};

use crate::excludes::Excludes;
use crate::fsops;
use crate::paths::{WirePath, is_temp_name};

/// The kinds of entries we replicate. Devices, FIFOs and sockets are skipped (PVC data
/// does not need them and recreating devices is a privilege we do not want).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// Regular file.
    File = 0,
    /// Directory.
    Dir = 1,
    /// Symbolic link (target kept verbatim, never followed).
    Symlink = 2,
}

impl EntryKind {
    /// Decodes the wire byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(EntryKind::File),
            1 => Some(EntryKind::Dir),
            2 => Some(EntryKind::Symlink),
            _ => None,
        }
    }
}

/// One entry of the sender's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the root.
    pub path: WirePath,
    /// Kind.
    pub kind: EntryKind,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Size in bytes (regular files).
    pub size: u64,
    /// Modification time, seconds.
    pub mtime_sec: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Symlink target bytes, verbatim.
    pub link_target: Vec<u8>,
    /// For the second and later names of a hard-linked file: index (in the list) of the
    /// first name, which carries the data.
    pub hardlink_to: Option<u64>,
    /// BLAKE3 of the content (checksum mode, or the file is in the verification sample).
    pub hash: Option<[u8; 32]>,
    /// Extended attributes (when asked for).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What the sender's walk includes.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Pruned while walking.
    pub excludes: Excludes,
    /// Percentage of regular files to hash (100: checksum mode; see
    /// [`hash_sampled`]).
    pub hash_percent: u8,
    /// Read `user.*` extended attributes of files and directories.
    pub xattrs: bool,
}

/// One open directory of the walk: fd, its path, its sorted names, next name index.
type WalkFrame = (OwnedFd, Option<WirePath>, Vec<Vec<u8>>, usize);

/// Walks the tree under `root` depth-first (parents first, names sorted), calling `emit`
/// for each entry. Never follows symlinks; skips receiver temp files, special files and
/// entries that vanish during the walk. Returns the number of entries emitted.
pub fn walk(
    root: &OwnedFd,
    opts: &WalkOptions,
    mut emit: impl FnMut(Entry) -> io::Result<()>,
) -> io::Result<u64> {
    let mut links: HashMap<(u64, u64), u64> = HashMap::new();
    let mut count = 0u64;
    // stack of (directory fd, its path, its sorted names, next name index)
    let mut stack: Vec<WalkFrame> = vec![(root.try_clone()?, None, fsops::list_dir(root)?, 0)];
    while let Some(top) = stack.last_mut() {
        let (dir, dir_path, names, next) = top;
        let Some(name) = names.get(*next).cloned() else {
            stack.pop();
            continue;
        };
        *next += 1;
        if is_temp_name(&name) {
            continue;
        }
        let path = match dir_path {
            Some(p) => p.join(&name),
            None => WirePath::new(name.clone()),
        };
        let Ok(path) = path else { continue };
        let Some(st) = fsops::lstat_at(&*dir, &name)? else {
            continue;
        };
        let kind = if fsops::is_kind(&st, SFlag::S_IFREG) {
            EntryKind::File
        } else if fsops::is_kind(&st, SFlag::S_IFDIR) {
            EntryKind::Dir
        } else if fsops::is_kind(&st, SFlag::S_IFLNK) {
            EntryKind::Symlink
        } else {
            continue;
        };
        if opts
            .excludes
            .matches(path.as_bytes(), kind == EntryKind::Dir)
        {
            continue;
        }
        let mut entry = entry_from_stat(path.clone(), kind, &st);
        match kind {
            EntryKind::Symlink => match fsops::read_link_at(&*dir, &name) {
                Ok(t) => entry.link_target = t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            },
            EntryKind::File => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    match links.get(&key) {
                        Some(&first) => entry.hardlink_to = Some(first),
                        None => {
                            links.insert(key, count);
                        }
                    }
                }
                if entry.hardlink_to.is_none() && hash_sampled(path.as_bytes(), opts.hash_percent) {
                    match fsops::open_file_beneath(root, &path) {
                        Ok(f) => entry.hash = Some(hash_file(&f)?),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            EntryKind::Dir => {}
        }
        if opts.xattrs && kind != EntryKind::Symlink {
            match fsops::read_xattrs(&*dir, &name) {
                Ok(x) => entry.xattrs = x,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        emit(entry)?;
        count += 1;
        if kind == EntryKind::Dir {
            match fsops::open_subdir(&*dir, &name) {
                Ok(sub) => {
                    let names = fsops::list_dir(&sub)?;
                    stack.push((sub, Some(path), names, 0));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(count)
}

/// Whether a file at `path` is in the `percent` sample whose contents are hashed and
/// compared (`verificationMode: sample`). Deterministic in the path, so sender and receiver
/// agree without sending the selection, and the same files are re-checked every run.
pub fn hash_sampled(path: &[u8], percent: u8) -> bool {
    match percent {
        0 => false,
        100.. => true,
        p => {
            let h = blake3::hash(path);
            u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]) % 100 < u16::from(p)
        }
    }
}

/// Builds an entry's metadata from a stat.
pub fn entry_from_stat(path: WirePath, kind: EntryKind, st: &FileStat) -> Entry {
    Entry {
        path,
        kind,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        size: if kind == EntryKind::File {
            st.st_size as u64
        } else {
            0
        },
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as u32,
        link_target: Vec::new(),
        hardlink_to: None,
        hash: None,
        xattrs: Vec::new(),
    }
}

/// BLAKE3 of a whole file, read through bounded mmap windows.
pub fn hash_file(file: &File) -> io::Result<[u8; 32]> {
    let len = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    let mut off = 0;
    while off < len {
        let n = (len - off).min(crate::delta::WINDOW);
        if let Some(map) = fsops::map_range(file, off, n)? {
            hasher.update(&map);
        }
        off += n;
    }
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_sample_is_deterministic_and_close_to_its_percentage() {
        let paths: Vec<Vec<u8>> = (0..10_000)
            .map(|i| format!("d{}/f{i}", i % 7).into_bytes())
            .collect();
        for percent in [0u8, 1, 10, 50, 99, 100] {
            let picked = paths.iter().filter(|p| hash_sampled(p, percent)).count();
            let want = 10_000 * usize::from(percent) / 100;
            assert!(
                picked.abs_diff(want) <= 200,
                "{percent}%: {picked} of 10000 picked"
            );
            // The same paths every time: sender and receiver agree without sending a list.
            let again = paths.iter().filter(|p| hash_sampled(p, percent)).count();
            assert_eq!(picked, again);
        }
        assert!(paths.iter().all(|p| hash_sampled(p, 100)));
        assert!(!paths.iter().any(|p| hash_sampled(p, 0)));
    }
}

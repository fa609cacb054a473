//! Filesystem access relative to a root directory descriptor, never following symlinks.
//!
//! Every path is walked component by component with `openat(O_NOFOLLOW | O_DIRECTORY)`
//! from the root fd, so neither a `..` (already refused by [`WirePath`]) nor a symlink —
//! including one swapped in while we work — can take an operation outside the root.
//! Used by the sender (reads) and the receiver (writes) alike.
//!
//! - Opening: [`open_root`], [`open_subdir`], [`open_parent`], [`DirCache`],
//!   [`open_file_beneath`], [`open_at_nofollow`].
//! - Looking: [`lstat_at`], [`is_kind`], [`list_dir`], [`list_dir_typed`], [`read_link_at`].
//! - Changing, relative to a directory fd: [`make_dir_at`], [`rename_at`], [`symlink_at`],
//!   [`hard_link_at`], [`remove_at`], [`chown_at_nofollow`], [`set_mtime_at_nofollow`].
//! - Metadata of an open file: [`set_owner`], [`set_mode`], [`set_mtime`]; durability:
//!   [`sync_fs`].
//! - Data and extended attributes: [`map_range`], [`read_xattrs`], [`write_xattrs`].

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use memmap2::{Mmap, MmapOptions};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{
    FileStat, Mode, SFlag, UtimensatFlags, fchmod, fstat, fstatat, futimens, mkdirat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use crate::paths::WirePath;

/// A file name as something nix accepts.
pub fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Opens the root directory of a volume or destination (a trusted, locally chosen path).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens directory `name` inside `dir` without following a symlink.
pub fn open_subdir(dir: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(openat(dir, os(name), DIR_FLAGS, Mode::empty())?)
}

/// Opens the directory that contains `path` (walking from `root`, no symlinks).
pub fn open_parent(root: &OwnedFd, path: &WirePath) -> io::Result<OwnedFd> {
    let mut dir = root.try_clone()?;
    let mut comps = path.components().peekable();
    while let Some(c) = comps.next() {
        if comps.peek().is_none() {
            break;
        }
        dir = open_subdir(&dir, c)?;
    }
    Ok(dir)
}

/// Directory fds of the directories used last, so a walk over a sorted entry list opens
/// each directory about once instead of once per entry (20,000 files in 100 directories:
/// 100 opens, not 40,000). Small and bounded: a volume with millions of directories never
/// holds more than [`DirCache::CAPACITY`] descriptors.
///
/// A cached fd keeps naming the directory it was opened as; callers that remove or replace
/// a directory under the root (deletions) must not look it up again afterwards, or must
/// [`DirCache::clear`] the cache.
pub struct DirCache {
    root: OwnedFd,
    /// Most recently used last: (parent path bytes, its fd).
    slots: Vec<(Vec<u8>, OwnedFd)>,
}

impl DirCache {
    /// Directories kept open at most.
    pub const CAPACITY: usize = 32;

    /// A cache of directories under `root` (the fd is duplicated).
    pub fn new(root: &OwnedFd) -> io::Result<Self> {
        Ok(Self {
            root: root.try_clone()?,
            slots: Vec::with_capacity(Self::CAPACITY),
        })
    }

    /// The directory containing `path`, opened like [`open_parent`] (no symlinks followed).
    pub fn parent(&mut self, path: &WirePath) -> io::Result<&OwnedFd> {
        let bytes = path.as_bytes();
        let Some(cut) = bytes.iter().rposition(|&b| b == b'/') else {
            return Ok(&self.root);
        };
        let key = &bytes[..cut];
        let hit = self.slots.iter().rposition(|(k, _)| k.as_slice() == key);
        let slot = match hit {
            Some(i) => self.slots.remove(i),
            None => {
                if self.slots.len() == Self::CAPACITY {
                    self.slots.remove(0);
                }
                (key.to_vec(), open_parent(&self.root, path)?)
            }
        };
        self.slots.push(slot);
        Ok(&self.slots[self.slots.len() - 1].1)
    }

    /// Forgets every cached directory (after the tree was reshaped).
    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

/// Opens the regular file at `path` for reading; a symlink anywhere on the way (or at the
/// end) or a non-regular file is refused with `ELOOP`/`ENOTDIR`/`EINVAL`.
pub fn open_file_beneath(root: &OwnedFd, path: &WirePath) -> io::Result<File> {
    let parent = open_parent(root, path)?;
    let fd = openat(
        &parent,
        os(path.file_name()),
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY
            | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?;
    let st = fstat(&fd)?;
    if !is_kind(&st, SFlag::S_IFREG) {
        return Err(io::Error::from(Errno::EINVAL));
    }
    Ok(File::from(fd))
}

/// Opens (or with `O_CREAT` creates, mode 0600) `name` in `dir` with `flags`, refusing a
/// symlink at the name: the receiver's way to open its own files and temp files.
pub fn open_at_nofollow(dir: &OwnedFd, name: &[u8], flags: OFlag) -> io::Result<File> {
    let fd = openat(
        dir,
        os(name),
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::from_bits_truncate(0o600),
    )?;
    Ok(File::from(fd))
}

/// `lstat` of `name` in `dir`; `None` if it does not exist.
pub fn lstat_at(dir: impl AsFd, name: &[u8]) -> io::Result<Option<FileStat>> {
    match fstatat(dir, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a stat has the given file type.
pub fn is_kind(st: &FileStat, kind: SFlag) -> bool {
    (st.st_mode & SFlag::S_IFMT.bits()) == kind.bits()
}

/// Names in a directory (without `.`/`..`), sorted bytewise for a deterministic walk.
pub fn list_dir(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    Ok(list_dir_typed(dir)?.into_iter().map(|(n, _)| n).collect())
}

/// Like [`list_dir`], with whether each entry is a directory when the filesystem says so
/// in the directory entry (`d_type`); `None` when it does not (then `lstat` it).
pub fn list_dir_typed(dir: &OwnedFd) -> io::Result<Vec<(Vec<u8>, Option<bool>)>> {
    let fd = dir.try_clone()?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for ent in d.iter() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            let is_dir = ent.file_type().map(|t| t == nix::dir::Type::Directory);
            names.push((n.to_vec(), is_dir));
        }
    }
    names.sort();
    Ok(names)
}

/// Removes `name` in `dir` whatever it is; directories recursively, never following links.
/// Returns the number of entries removed.
pub fn remove_at(dir: &OwnedFd, name: &[u8]) -> io::Result<u64> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(0);
    };
    if !is_kind(&st, SFlag::S_IFDIR) {
        unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir)?;
        return Ok(1);
    }
    let sub = open_subdir(dir, name)?;
    let mut n = 0;
    for child in list_dir(&sub)? {
        n += remove_at(&sub, &child)?;
    }
    unlinkat(dir, os(name), UnlinkatFlags::RemoveDir)?;
    Ok(n + 1)
}

/// The target of symlink `name` in `dir`, verbatim.
pub fn read_link_at(dir: impl AsFd, name: &[u8]) -> io::Result<Vec<u8>> {
    Ok(readlinkat(dir, os(name))?.as_bytes().to_vec())
}

/// Creates directory `name` in `dir` with permission bits `mode`.
pub fn make_dir_at(dir: impl AsFd, name: &[u8], mode: u32) -> io::Result<()> {
    Ok(mkdirat(dir, os(name), Mode::from_bits_truncate(mode))?)
}

/// Renames `from` to `to` within `dir` (atomically replacing `to` unless it is a
/// non-empty directory).
pub fn rename_at(dir: impl AsFd, from: &[u8], to: &[u8]) -> io::Result<()> {
    Ok(renameat(&dir, os(from), &dir, os(to))?)
}

/// Creates symlink `name` in `dir` pointing at `target` (kept verbatim, never resolved).
pub fn symlink_at(target: &[u8], dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    Ok(symlinkat(os(target), dir, os(name))?)
}

/// Makes `name` in `dir` a hard link of `from_name` in `from_dir` (no symlink followed).
pub fn hard_link_at(
    from_dir: impl AsFd,
    from_name: &[u8],
    dir: impl AsFd,
    name: &[u8],
) -> io::Result<()> {
    Ok(linkat(
        from_dir,
        os(from_name),
        dir,
        os(name),
        AtFlags::empty(),
    )?)
}

/// Sets the numeric owner of `name` in `dir` itself (a symlink is changed, not followed).
pub fn chown_at_nofollow(dir: impl AsFd, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    Ok(fchownat(
        dir,
        os(name),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?)
}

/// Sets the mtime of `name` in `dir` itself (a symlink is changed, not followed); the
/// atime is left alone.
pub fn set_mtime_at_nofollow(dir: impl AsFd, name: &[u8], sec: i64, nsec: u32) -> io::Result<()> {
    Ok(utimensat(
        dir,
        os(name),
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::new(sec, i64::from(nsec)),
        UtimensatFlags::NoFollowSymlink,
    )?)
}

/// Sets the numeric owner of an open file or directory.
pub fn set_owner(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    Ok(fchown(
        fd,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )?)
}

/// Sets the permission bits (`mode & 0o7777`) of an open file or directory.
pub fn set_mode(fd: impl AsFd, mode: u32) -> io::Result<()> {
    Ok(fchmod(fd, Mode::from_bits_truncate(mode & 0o7777))?)
}

/// Sets the mtime of an open file or directory; the atime is left alone.
pub fn set_mtime(fd: impl AsFd, sec: i64, nsec: u32) -> io::Result<()> {
    Ok(futimens(
        fd,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::new(sec, i64::from(nsec)),
    )?)
}

/// Makes everything written to the filesystem holding `fd` durable (`syncfs`): one call
/// for a batch of files instead of one `fsync` each.
pub fn sync_fs(fd: impl AsFd) -> io::Result<()> {
    Ok(nix::unistd::syncfs(fd)?)
}

/// Maps `len` bytes of `file` from `offset` read-only. Empty ranges map nothing.
///
/// A file truncated by someone else while mapped raises SIGBUS on access; the sender
/// maps bounded windows and re-checks the size first, which narrows but cannot close this
/// window (documented in `docs/dataplane.md`).
pub fn map_range(file: &File, offset: u64, len: u64) -> io::Result<Option<Mmap>> {
    if len == 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| io::Error::from(Errno::EFBIG))?;
    #[allow(unsafe_code)]
    // SAFETY: the mapping is read-only and private to this process; the only hazard is a
    // concurrent truncation by another process (SIGBUS), see the function docs.
    let map = unsafe { MmapOptions::new().offset(offset).len(len).map(file)? };
    Ok(Some(map))
}

/// Largest total size of the extended attributes copied for one entry.
pub const MAX_XATTR_BYTES: usize = 64 * 1024;

/// Whether an extended attribute is one we copy: the `user.` namespace only, the one an
/// unprivileged process can read and write and that carries no security meaning.
pub fn copied_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.")
}

/// Reads the copied extended attributes of `name` in `dir` without following a symlink
/// (through `/proc/self/fd/<dir>/<name>`, so no path outside the root is involved).
pub fn read_xattrs(dir: &OwnedFd, name: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use std::os::fd::AsRawFd;
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    let path = Path::new(os(&path));
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(Errno::EOPNOTSUPP as i32) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut total = 0;
    for n in names {
        let nb = n.as_bytes();
        if !copied_xattr(nb) {
            continue;
        }
        let Some(v) = xattr::get(path, &n)? else {
            continue;
        };
        total += nb.len() + v.len();
        if total > MAX_XATTR_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "extended attributes larger than 64 KiB",
            ));
        }
        out.push((nb.to_vec(), v));
    }
    out.sort();
    Ok(out)
}

/// Makes the copied extended attributes of an open file or directory exactly `want`.
pub fn write_xattrs(fd: &OwnedFd, want: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    use xattr::FileExt;
    let f = File::from(fd.try_clone()?);
    for n in f.list_xattr()? {
        let nb = n.as_bytes();
        if copied_xattr(nb) && !want.iter().any(|(k, _)| k == nb) {
            f.remove_xattr(&n)?;
        }
    }
    for (k, v) in want {
        if copied_xattr(k) {
            f.set_xattr(os(k), v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_on_the_way() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), b"ok").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), t.path().join("d/ls")).unwrap();
        let root = open_root(t.path()).unwrap();
        let p = |s: &[u8]| WirePath::new(s.to_vec()).unwrap();
        assert!(open_file_beneath(&root, &p(b"d/f")).is_ok());
        assert!(open_file_beneath(&root, &p(b"link/secret")).is_err());
        assert!(open_file_beneath(&root, &p(b"d/ls")).is_err());
        assert!(open_file_beneath(&root, &p(b"d")).is_err());
    }

    #[test]
    fn dir_cache_finds_each_parent_refuses_symlinks_and_stays_bounded() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("marker"), b"x").unwrap();
        for i in 0..(DirCache::CAPACITY + 8) {
            let d = t.path().join(format!("a/d{i}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("f{i}")), b"").unwrap();
        }
        std::fs::write(t.path().join("top"), b"").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("a/link")).unwrap();
        let root = open_root(t.path()).unwrap();
        let p = |s: String| WirePath::new(s.into_bytes()).unwrap();
        let mut cache = DirCache::new(&root).unwrap();
        // twice over, so the second round mixes hits and (after eviction) misses
        for _ in 0..2 {
            for i in 0..(DirCache::CAPACITY + 8) {
                let dir = cache.parent(&p(format!("a/d{i}/f{i}"))).unwrap();
                assert!(lstat_at(dir, format!("f{i}").as_bytes()).unwrap().is_some());
                assert!(cache.slots.len() <= DirCache::CAPACITY);
            }
        }
        let top = cache.parent(&p("top".into())).unwrap();
        assert!(lstat_at(top, b"top").unwrap().is_some());
        assert!(cache.parent(&p("a/link/marker".into())).is_err());
        cache.clear();
        assert!(cache.slots.is_empty());
    }
}

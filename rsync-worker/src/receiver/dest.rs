//! The destination of one pull on the blocking side ([`Ctx`]): its root fd, the options,
//! how metadata is set, and the reserved names of the receiver's temporary files.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::stat::FileStat;

use super::error::{ReceiveError, io_err};
use crate::filelist::Entry;
use crate::fsops;
use crate::options::SyncOptions;
use crate::paths::TEMP_PREFIX;

/// Names of a file's temporary (partial) and basis files in its directory.
pub(super) fn temp_names(name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let h = blake3::hash(name).to_hex();
    let base = [TEMP_PREFIX, &h.as_bytes()[..24]].concat();
    (
        [&base[..], b".part"].concat(),
        [&base[..], b".basis"].concat(),
    )
}

/// Whether a stat's mtime is the entry's, to the nanosecond (the quick check).
pub(super) fn same_mtime(st: &FileStat, e: &Entry) -> bool {
    st.st_mtime == e.mtime_sec && st.st_mtime_nsec == i64::from(e.mtime_nsec)
}

/// Shared state of one pull on the blocking side.
pub(super) struct Ctx {
    /// The destination directory; every path is opened beneath it.
    pub(super) root: OwnedFd,
    /// The pull's options.
    pub(super) opts: SyncOptions,
    /// Whether we run as root (owners can only be set then).
    pub(super) as_root: bool,
    /// Dry run into a destination that does not exist: `root` must not be looked at.
    pub(super) dest_missing: bool,
}

impl Ctx {
    /// Whether owners are set: asked for, and we are root (else `chown` fails).
    pub(super) fn chown(&self) -> bool {
        self.opts.owner && self.as_root
    }

    /// Sets owner, mode and mtime on an open file or directory.
    pub(super) fn set_meta(&self, fd: &OwnedFd, e: &Entry) -> Result<(), ReceiveError> {
        let ctx = || format!("setting metadata of {}", e.path.display());
        if self.chown() {
            fsops::set_owner(fd, e.uid, e.gid).map_err(io_err(ctx()))?;
        }
        fsops::set_mode(fd, e.mode).map_err(io_err(ctx()))?;
        if self.opts.xattrs {
            fsops::write_xattrs(fd, &e.xattrs).map_err(io_err(ctx()))?;
        }
        fsops::set_mtime(fd, e.mtime_sec, e.mtime_nsec).map_err(io_err(ctx()))?;
        Ok(())
    }
}

/// Opens (creating it unless dry) the destination directory as the pull's [`Ctx`].
pub(super) fn open_ctx(dest: &PathBuf, opts: SyncOptions) -> Result<Ctx, ReceiveError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::is_temp_name;

    #[test]
    fn temp_names_fit_any_name_and_are_reserved() {
        let (part, basis) = temp_names(&[b'x'; 255]);
        assert!(part.len() < 64 && basis.len() < 64);
        assert!(is_temp_name(&part) && is_temp_name(&basis));
        assert_ne!(temp_names(b"a").0, temp_names(b"b").0);
    }
}

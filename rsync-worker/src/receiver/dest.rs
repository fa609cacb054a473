//! The destination of one pull on the blocking side ([`Ctx`]): its root fd, the options,
//! the lock that makes this pull its only writer, how metadata is set, and the names of
//! this pull's temporary files.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::stat::FileStat;

use super::error::{ReceiveError, io_err};
use super::lock::{DestLock, lock};
use crate::filelist::Entry;
use crate::fsops;
use crate::options::SyncOptions;
use crate::paths::{RunId, temp_name};

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
    /// This pull's run id (in its temporary names).
    pub(super) run: RunId,
    /// The destination's lock, held until the pull ends (`None` in a dry run, which
    /// writes nothing), with the previous run whose partial files may be reused.
    pub(super) lock: Option<DestLock>,
}

impl Ctx {
    /// Names of file `name`'s partial (this run's data being received) and basis (an
    /// earlier partial reused as basis) in its directory. Unique to this run, so they are
    /// created with `O_EXCL` and no other pull can write into them.
    pub(super) fn temp_names(&self, name: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (
            temp_name(name, &self.run, "part"),
            temp_name(name, &self.run, "basis"),
        )
    }

    /// The name of this run's temporary link for `name` (symlinks, hard links).
    pub(super) fn temp_link_name(&self, name: &[u8]) -> Vec<u8> {
        temp_name(name, &self.run, "link")
    }

    /// The partial of `name` that the previous (interrupted) pull may have left.
    pub(super) fn leftover_partial(&self, name: &[u8]) -> Option<Vec<u8>> {
        let previous = self.lock.as_ref()?.previous.as_ref()?;
        Some(temp_name(name, previous, "part"))
    }

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

/// Opens (creating it unless dry) the destination directory as the pull's [`Ctx`], and
/// takes its lock unless dry ([`ReceiveError::Busy`] when another pull holds it).
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
    let lock = if opts.dry_run {
        None
    } else {
        Some(lock(&root)?)
    };
    Ok(Ctx {
        root,
        run: lock.as_ref().map_or_else(RunId::new, |l| l.run.clone()),
        lock,
        opts,
        as_root: nix::unistd::geteuid().is_root(),
        dest_missing,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::paths::is_temp_name;

    #[test]
    fn temp_names_fit_any_name_are_reserved_and_belong_to_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = open_ctx(&dir.path().to_path_buf(), SyncOptions::default()).unwrap();
        let (part, basis) = ctx.temp_names(&[b'x'; 255]);
        assert!(part.len() < 64 && basis.len() < 64);
        assert!(is_temp_name(&part) && is_temp_name(&basis));
        assert_ne!(ctx.temp_names(b"a").0, ctx.temp_names(b"b").0);
        assert_eq!(
            ctx.leftover_partial(b"a"),
            None,
            "first run: nothing left over"
        );
        let first = ctx.temp_names(b"a").0;
        drop(ctx);
        let next = open_ctx(&dir.path().to_path_buf(), SyncOptions::default()).unwrap();
        assert_ne!(next.temp_names(b"a").0, first, "each run has its own names");
        assert_eq!(next.leftover_partial(b"a"), Some(first));
    }
}

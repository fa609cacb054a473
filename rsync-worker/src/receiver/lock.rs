//! One writer per destination ([`lock`]): an exclusive `flock` on [`LOCK_NAME`] in the
//! destination root, held for the whole pull. A second pull into the same directory (a
//! leader split-brain, a retry racing a slow pod) is refused at once with
//! [`ReceiveError::Busy`] before it writes anything; the lock dies with its process, so a
//! killed pull never leaves the destination locked.
//!
//! The lock file also remembers the [`RunId`] of the pull that last held it: the next pull
//! reuses that run's partial files as delta bases (resuming an interrupted copy) while
//! writing its own under its own run id.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use super::error::{ReceiveError, io_err};
use crate::fsops;
use crate::paths::{LOCK_NAME, RunId};

/// The held lock of one pull, with its run id and the previous holder's.
#[derive(Debug)]
pub(super) struct DestLock {
    /// Released when dropped (or when the process dies).
    _held: Flock<File>,
    /// This pull's run id (written into the lock file).
    pub(super) run: RunId,
    /// The run that held the lock before, whose partial files may be left over.
    pub(super) previous: Option<RunId>,
}

/// How often [`lock`] retries when the lock file it locked was unlinked by the previous
/// holder in the meantime (each retry means another pull finished just then).
const LOCK_ATTEMPTS: usize = 8;

/// Takes the destination's lock without waiting: [`ReceiveError::Busy`] when another pull
/// holds it. Records this pull's run id in it.
///
/// A successful pull unlinks the lock file while still holding it ([`DestLock::release`]),
/// so the copy carries no file the source lacks; a pull that locked the old, unlinked
/// file must not count as the holder, so after locking the file must still be the one
/// at [`LOCK_NAME`] (same inode), else it tries again.
pub(super) fn lock(root: &OwnedFd) -> Result<DestLock, ReceiveError> {
    let c = "locking the destination";
    for _ in 0..LOCK_ATTEMPTS {
        let file = fsops::open_at_nofollow(root, LOCK_NAME, OFlag::O_RDWR | OFlag::O_CREAT)
            .map_err(io_err(c))?;
        let held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => held,
            Err((_, Errno::EWOULDBLOCK)) => return Err(ReceiveError::Busy),
            Err((_, errno)) => return Err(io_err(c)(errno.into())),
        };
        let ours = held.metadata().map_err(io_err(c))?;
        let current = fsops::lstat_at(root, LOCK_NAME).map_err(io_err(c))?;
        if current.is_some_and(|st| st.st_dev == ours.dev() && st.st_ino == ours.ino()) {
            return record_run(held);
        }
    }
    Err(ReceiveError::Busy)
}

/// Reads the previous run id from the held lock file and writes ours.
fn record_run(mut held: Flock<File>) -> Result<DestLock, ReceiveError> {
    let c = "locking the destination";
    let mut text = Vec::with_capacity(64);
    (&*held)
        .take(64)
        .read_to_end(&mut text)
        .map_err(io_err(c))?;
    let previous = RunId::parse(&text);
    let run = RunId::new();
    held.set_len(0).map_err(io_err(c))?;
    held.seek(SeekFrom::Start(0)).map_err(io_err(c))?;
    held.write_all(format!("{}\n", run.as_str()).as_bytes())
        .map_err(io_err(c))?;
    Ok(DestLock {
        _held: held,
        run,
        previous,
    })
}

impl DestLock {
    /// At the end of a successful pull: removes the lock file (still holding it, so no
    /// other pull can take over a half-released lock). An interrupted pull leaves it, with
    /// its run id, so the next one finds its partial files.
    pub(super) fn release(&self, root: &OwnedFd) -> Result<(), ReceiveError> {
        fsops::remove_at(root, LOCK_NAME).map_err(io_err("removing the destination lock"))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn root(dir: &Path) -> OwnedFd {
        fsops::open_root(dir).unwrap()
    }

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_released_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(&root(dir.path())).unwrap();
        assert_eq!(first.previous, None);
        // another open file description of the same lock file (as another process has)
        assert!(matches!(lock(&root(dir.path())), Err(ReceiveError::Busy)));
        let run = first.run.clone();
        drop(first);
        let second = lock(&root(dir.path())).unwrap();
        assert_eq!(second.previous, Some(run));
        assert_ne!(second.run, second.previous.clone().unwrap());
    }

    #[test]
    fn a_released_lock_leaves_no_file_and_a_late_locker_of_the_old_file_is_not_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(&root(dir.path())).unwrap();
        // a second pull opened the file before it was unlinked (it still holds that inode)
        let stale = fsops::open_at_nofollow(&root(dir.path()), LOCK_NAME, OFlag::O_RDWR).unwrap();
        first.release(&root(dir.path())).unwrap();
        assert!(!dir.path().join(".dr-syncer.lock").exists());
        drop(first);
        let late = Flock::lock(stale, FlockArg::LockExclusiveNonblock).unwrap();
        // the late locker holds a dead inode: a new pull takes the lock at the path
        let next = lock(&root(dir.path())).unwrap();
        assert_eq!(
            next.previous, None,
            "a released lock leaves no run to resume"
        );
        drop((late, next));
    }

    #[test]
    fn garbage_in_the_lock_file_is_no_previous_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dr-syncer.lock"), "../../etc\n").unwrap();
        assert_eq!(lock(&root(dir.path())).unwrap().previous, None);
    }
}

//! The receiver's safety guards on real files: the prune guard (an empty or shrunken
//! source deletes nothing unless allowed), one writer per destination (a held lock
//! refuses a second pull before it writes; two pulls racing never corrupt the copy).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "core_common/mod.rs"]
mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{assert_same_tree, pull_over, write_files};
use dr_syncer_rsync::{ReceiveError, SyncOptions};

/// `n` files `f<i>` (and a few in a subdirectory) under `root`.
fn populate(root: &Path, n: usize) {
    for i in 0..n {
        let rel = if i % 4 == 0 {
            format!("sub/f{i}")
        } else {
            format!("f{i}")
        };
        write_files(root, &[(&rel, format!("content {i}\n").as_bytes())]);
    }
}

fn count_files(root: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += count_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn an_empty_source_deletes_nothing_and_says_why() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    populate(dst.path(), 20);
    let s = pull_over(src.path(), dst.path(), &SyncOptions::default(), 2)
        .await
        .unwrap();
    assert_eq!(s.files_deleted, 0, "{s:?}");
    let why = s.prune_refused.expect("refusal reported");
    assert!(why.contains("listing is empty"), "{why}");
    assert_eq!(count_files(dst.path()), 20, "every file kept");
    // the mapping's opt-in lets the deletion happen
    let allowed = SyncOptions {
        allow_mass_deletion: true,
        ..SyncOptions::default()
    };
    let s = pull_over(src.path(), dst.path(), &allowed, 1)
        .await
        .unwrap();
    assert_eq!(
        (s.files_deleted, s.prune_refused),
        (21, None),
        "20 files + sub/"
    );
    assert_same_tree(src.path(), dst.path());
}

#[tokio::test]
async fn a_source_that_lost_more_than_half_deletes_nothing_but_still_copies() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    populate(src.path(), 100);
    pull_over(src.path(), dst.path(), &SyncOptions::default(), 2)
        .await
        .unwrap();
    // 60 of 100 files vanish at the source, one changes, one is new
    for i in 40..100 {
        let rel = if i % 4 == 0 {
            format!("sub/f{i}")
        } else {
            format!("f{i}")
        };
        fs::remove_file(src.path().join(rel)).unwrap();
    }
    write_files(src.path(), &[("f1", b"changed\n"), ("new", b"new\n")]);
    let s = pull_over(src.path(), dst.path(), &SyncOptions::default(), 2)
        .await
        .unwrap();
    assert_eq!(s.files_deleted, 0, "{s:?}");
    let why = s.prune_refused.expect("refusal reported");
    assert!(why.contains("60 of the target's 100 files"), "{why}");
    assert_eq!(count_files(dst.path()), 101);
    assert_eq!(fs::read(dst.path().join("f1")).unwrap(), b"changed\n");
    assert_eq!(fs::read(dst.path().join("new")).unwrap(), b"new\n");
}

#[tokio::test]
async fn deleting_up_to_half_is_an_ordinary_sync() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    populate(src.path(), 100);
    pull_over(src.path(), dst.path(), &SyncOptions::default(), 1)
        .await
        .unwrap();
    for i in 50..100 {
        let rel = if i % 4 == 0 {
            format!("sub/f{i}")
        } else {
            format!("f{i}")
        };
        fs::remove_file(src.path().join(rel)).unwrap();
    }
    let s = pull_over(src.path(), dst.path(), &SyncOptions::default(), 1)
        .await
        .unwrap();
    assert_eq!((s.files_deleted, s.prune_refused), (50, None));
    assert_same_tree(src.path(), dst.path());
}

#[tokio::test]
async fn a_held_lock_refuses_the_pull_before_it_writes() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    populate(src.path(), 10);
    write_files(dst.path(), &[("old", b"old\n")]);
    // another pull (as another process would) holds the destination's lock
    let lock_path = dst
        .path()
        .join(OsStr::from_bytes(dr_syncer_rsync::paths::LOCK_NAME));
    let file = fs::File::create(&lock_path).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let err = pull_over(src.path(), dst.path(), &SyncOptions::default(), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, ReceiveError::Busy), "{err}");
    assert!(err.is_transient());
    let names: Vec<_> = fs::read_dir(dst.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "only the old file and the lock: {names:?}");
    drop(held);
    pull_over(src.path(), dst.path(), &SyncOptions::default(), 1)
        .await
        .unwrap();
    assert_same_tree(src.path(), dst.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pulls_into_one_destination_at_once_never_corrupt_it() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for i in 0..40 {
        let data = dr_syncer_rsync::testing::noise(64 * 1024 + i * 1000, i as u64);
        write_files(src.path(), &[(&format!("d/f{i}"), &data)]);
    }
    let opts = SyncOptions::default();
    for round in 0..5 {
        let (a, b) = tokio::join!(
            pull_over(src.path(), dst.path(), &opts, 2),
            pull_over(src.path(), dst.path(), &opts, 2)
        );
        let results = [a, b];
        for r in &results {
            assert!(
                matches!(r, Ok(_) | Err(ReceiveError::Busy)),
                "round {round}: {r:?}"
            );
        }
        assert!(
            results.iter().any(Result::is_ok),
            "round {round}: one pull ran"
        );
        // every file equals the source (and no temp file or lock is left)
        assert_same_tree(src.path(), dst.path());
        // the next round changes the source, so both pulls have work
        let data = dr_syncer_rsync::testing::noise(70_000, 1000 + round);
        write_files(src.path(), &[(&format!("d/f{round}"), &data)]);
    }
}

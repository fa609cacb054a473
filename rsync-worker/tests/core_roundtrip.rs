//! Round trip of the core over in-memory streams: every kind of entry arrives identical
//! (content, metadata, link structure, holes); after mutations it is identical again and
//! the delta path was used; a no-change rerun transfers nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "core_common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use common::{assert_same_tree, pull_over, set_mtime, write_sparse};
use dr_syncer_rsync::SyncOptions;

fn build_source(src: &std::path::Path) {
    fs::create_dir_all(src.join("dir/sub")).unwrap();
    fs::create_dir_all(src.join("empty/nested-empty")).unwrap();
    fs::write(src.join("small.txt"), b"hello world\n").unwrap();
    fs::write(src.join("zero-length"), b"").unwrap();
    fs::write(src.join("with space and\nnewline"), b"odd name").unwrap();
    let nonutf8 = std::ffi::OsStr::from_bytes_compat(b"bin\xff\xfename");
    fs::write(src.join("dir").join(nonutf8), b"non-utf8").unwrap();
    // a file spanning many 64 KiB windows
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(src.join("dir/sub/big.bin"), &big).unwrap();
    fs::set_permissions(
        src.join("dir/sub/big.bin"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    fs::write(src.join("script.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("script.sh"), fs::Permissions::from_mode(0o751)).unwrap();
    // symlinks: relative, absolute dangling, to a directory; never followed
    symlink("small.txt", src.join("rel-link")).unwrap();
    symlink("/nonexistent/absolute/target", src.join("abs-link")).unwrap();
    symlink("dir/sub", src.join("dir-link")).unwrap();
    // hard links: a group of three and a group of two
    fs::write(src.join("h1"), b"hard linked content").unwrap();
    fs::hard_link(src.join("h1"), src.join("dir/h2")).unwrap();
    fs::hard_link(src.join("h1"), src.join("dir/sub/h3")).unwrap();
    fs::write(src.join("dir/pair-a"), b"pair").unwrap();
    fs::hard_link(src.join("dir/pair-a"), src.join("dir/pair-b")).unwrap();
    // sparse: data, 8 MiB hole, data, trailing hole
    write_sparse(
        &src.join("sparse.img"),
        &[(0, b"head"), (8 << 20, b"tail")],
        12 << 20,
    );
    set_mtime(&src.join("small.txt"), 1_600_000_000, 123_456_789);
    set_mtime(&src.join("dir"), 1_500_000_000, 987_654_321);
    fs::set_permissions(src.join("dir/sub"), fs::Permissions::from_mode(0o750)).unwrap();
}

trait FromBytesCompat {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr;
}
impl FromBytesCompat for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn mutate(src: &std::path::Path) {
    // scattered edits in the big file and an insertion that shifts the tail
    let mut big = fs::read(src.join("dir/sub/big.bin")).unwrap();
    big[100_000..100_010].copy_from_slice(b"0123456789");
    big[2_000_000] ^= 0xff;
    big.splice(1_500_000..1_500_000, b"inserted bytes".iter().copied());
    fs::write(src.join("dir/sub/big.bin"), &big).unwrap();
    fs::write(src.join("small.txt"), b"hello world, changed\n").unwrap();
    fs::remove_file(src.join("zero-length")).unwrap();
    fs::remove_dir_all(src.join("empty")).unwrap();
    fs::remove_file(src.join("rel-link")).unwrap();
    symlink("script.sh", src.join("rel-link")).unwrap();
    fs::remove_file(src.join("dir/pair-b")).unwrap();
    fs::write(src.join("dir/pair-b"), b"no longer linked").unwrap();
    fs::remove_file(src.join("script.sh")).unwrap();
    fs::create_dir(src.join("script.sh")).unwrap();
    fs::write(src.join("script.sh/now-a-dir"), b"x").unwrap();
    fs::write(src.join("new file"), b"brand new").unwrap();
    fs::set_permissions(src.join("h1"), fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_mutate_and_rerun() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    build_source(src.path());
    // an extraneous target file that must be deleted
    fs::write(dst.path().join("stale"), b"gone at the source").unwrap();
    let opts = SyncOptions {
        window: 64 * 1024,
        ..SyncOptions::default()
    };

    let first = pull_over(src.path(), dst.path(), &opts, 3).await.unwrap();
    assert_same_tree(src.path(), dst.path());
    assert!(first.files_transferred >= 9, "{first:?}");
    assert_eq!(first.files_deleted, 1, "{first:?}");
    assert!(first.literal_bytes >= 3_000_000, "{first:?}");

    mutate(src.path());
    let second = pull_over(src.path(), dst.path(), &opts, 2).await.unwrap();
    assert_same_tree(src.path(), dst.path());
    assert!(
        second.matched_bytes > 2_500_000,
        "delta path used: {second:?}"
    );
    assert!(second.literal_bytes < 200_000, "{second:?}");
    assert!(second.files_deleted >= 3, "{second:?}");

    let third = pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert_same_tree(src.path(), dst.path());
    assert_eq!(third.files_transferred, 0, "{third:?}");
    assert_eq!(third.files_deleted, 0, "{third:?}");
}

#[tokio::test]
async fn leftover_partial_is_used_as_basis() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
    fs::write(src.path().join("f"), &data).unwrap();
    let opts = SyncOptions {
        window: 64 * 1024,
        ..SyncOptions::default()
    };
    pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    // simulate an interrupted run: the final file is gone, a partial with the first half
    let part = fs::read_dir(dst.path()).unwrap().count();
    assert_eq!(part, 1, "no temp file left behind");
    let run = common::interrupted_run(dst.path());
    let partial_name = common::partial_name(b"f", &run);
    fs::remove_file(dst.path().join("f")).unwrap();
    fs::write(dst.path().join(&partial_name), &data[..500_000]).unwrap();
    let s = pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert_same_tree(src.path(), dst.path());
    assert!(s.matched_bytes >= 400_000, "partial used as basis: {s:?}");
    assert!(!dst.path().join(&partial_name).exists());
}

#[tokio::test]
async fn excludes_dry_run_and_no_delete() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    common::write_files(
        src.path(),
        &[("cache/x", b"x"), ("a.tmp", b"t"), ("keep", b"k")],
    );
    common::write_files(
        dst.path(),
        &[
            ("extra", b"e"),
            ("b.tmp", b"excluded on the target: protected"),
        ],
    );

    let mut opts = SyncOptions::default();
    opts.apply_rsync_options(&[
        "--exclude=*.tmp".into(),
        "--exclude".into(),
        "cache/".into(),
        "-n".into(),
    ])
    .unwrap();
    let dry = pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.files_transferred, 1, "{dry:?}");
    assert_eq!(dry.files_deleted, 1, "{dry:?}");
    assert!(!dst.path().join("keep").exists(), "dry run writes nothing");
    assert!(dst.path().join("extra").exists(), "dry run deletes nothing");

    // dry run into a destination that does not exist yet
    let missing = dst.path().join("not-yet");
    let s = pull_over(src.path(), &missing, &opts, 1).await.unwrap();
    assert_eq!((s.files_transferred, s.files_deleted), (1, 0), "{s:?}");
    assert!(!missing.exists());

    opts.dry_run = false;
    opts.delete = false;
    pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert_eq!(fs::read(dst.path().join("keep")).unwrap(), b"k");
    assert!(!dst.path().join("cache").exists() && !dst.path().join("a.tmp").exists());
    assert!(
        dst.path().join("extra").exists(),
        "--no-delete keeps extraneous files"
    );

    opts.delete = true;
    let s = pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert_eq!(s.files_deleted, 1);
    assert!(!dst.path().join("extra").exists());
    assert!(
        dst.path().join("b.tmp").exists(),
        "excluded files are not deleted"
    );
}

#[tokio::test]
async fn checksum_and_compression() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), vec![b'a'; 200_000]).unwrap();
    set_mtime(&src.path().join("f"), 1_700_000_000, 0);
    let mut opts = SyncOptions::default();
    opts.apply_rsync_options(&["-z".into()]).unwrap();
    let s = pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert!(s.wire_bytes < 20_000, "compressed: {s:?}");
    // same size and mtime but different content: only checksum mode notices
    fs::write(dst.path().join("f"), vec![b'b'; 200_000]).unwrap();
    set_mtime(&dst.path().join("f"), 1_700_000_000, 0);
    let s = pull_over(src.path(), dst.path(), &SyncOptions::default(), 1)
        .await
        .unwrap();
    assert_eq!(s.files_transferred, 0);
    opts.checksum = true;
    let s = pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert_eq!(s.files_transferred, 1);
    assert_same_tree(src.path(), dst.path());
}

#[tokio::test]
async fn verification_sample_compares_and_repairs_only_the_sampled_files() {
    use dr_syncer_rsync::filelist::hash_sampled;
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..200).map(|i| format!("f{i:03}")).collect();
    for name in &names {
        fs::write(src.path().join(name), vec![b'a'; 4096]).unwrap();
        set_mtime(&src.path().join(name), 1_700_000_000, 0);
    }
    pull_over(src.path(), dst.path(), &SyncOptions::default(), 1)
        .await
        .unwrap();
    // Silent corruption at the target: same size and mtime, other content, in every file.
    for name in &names {
        fs::write(dst.path().join(name), vec![b'b'; 4096]).unwrap();
        set_mtime(&dst.path().join(name), 1_700_000_000, 0);
    }
    let sampled: Vec<&String> = names
        .iter()
        .filter(|n| hash_sampled(n.as_bytes(), 25))
        .collect();
    assert!(
        (20..=80).contains(&sampled.len()),
        "25% of 200 files, by path: {}",
        sampled.len()
    );
    let opts = SyncOptions {
        verify_sample_percent: 25,
        ..SyncOptions::default()
    };
    let s = pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    // Exactly the sampled files were compared by content, found different and repaired.
    assert_eq!(s.files_verified, sampled.len() as u64, "{s:?}");
    assert_eq!(s.files_transferred, sampled.len() as u64, "{s:?}");
    for name in &names {
        let content = fs::read(dst.path().join(name)).unwrap();
        let want = if sampled.contains(&name) { b'a' } else { b'b' };
        assert!(content.iter().all(|&b| b == want), "{name}");
    }
    // The same sample next time: now current, compared again, nothing sent.
    let s = pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert_eq!(s.files_verified, sampled.len() as u64);
    assert_eq!(s.files_transferred, 0);
}

#[tokio::test]
async fn user_xattrs_are_copied_with_x() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    common::write_files(src.path(), &[("d/f", b"x")]);
    xattr::set(src.path().join("d/f"), "user.color", b"blue").unwrap();
    xattr::set(src.path().join("d"), "user.dir", b"yes").unwrap();
    let mut opts = SyncOptions::default();
    opts.apply_rsync_options(&["-aX".into()]).unwrap();
    pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert_eq!(xattr_of(&dst, "d/f", "user.color"), Some(b"blue".to_vec()));
    assert_eq!(xattr_of(&dst, "d", "user.dir"), Some(b"yes".to_vec()));
    // changed and removed attributes follow, even when the content is current
    xattr::set(src.path().join("d/f"), "user.color", b"red").unwrap();
    xattr::remove(src.path().join("d"), "user.dir").unwrap();
    let s = pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert_eq!(s.files_transferred, 0, "{s:?}");
    assert_eq!(s.metadata_updated, 1, "{s:?}");
    assert_eq!(xattr_of(&dst, "d/f", "user.color"), Some(b"red".to_vec()));
    assert_eq!(xattr_of(&dst, "d", "user.dir"), None);
    assert_same_tree(src.path(), dst.path());
}

#[tokio::test]
async fn interrupted_update_resumes_from_partial_and_current_file() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let old: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    fs::write(dst.path().join("f"), &old).unwrap();
    // the new version differs from the old one only at the front...
    let mut new = old.clone();
    new[..200_000]
        .iter_mut()
        .for_each(|b| *b = b.wrapping_add(1));
    fs::write(src.path().join("f"), &new).unwrap();
    set_mtime(&src.path().join("f"), 1_700_000_000, 5);
    // ...and an interrupted run already wrote the new version's first 400 kB
    let run = common::interrupted_run(dst.path());
    fs::write(
        dst.path().join(common::partial_name(b"f", &run)),
        &new[..400_000],
    )
    .unwrap();
    let opts = SyncOptions {
        window: 64 * 1024,
        ..SyncOptions::default()
    };
    let s = pull_over(src.path(), dst.path(), &opts, 1).await.unwrap();
    assert_eq!(fs::read(dst.path().join("f")).unwrap(), new);
    // the changed front comes from the partial, the tail from the current file
    assert!(s.literal_bytes < 50_000, "{s:?}");
    assert!(s.matched_bytes > 950_000, "{s:?}");
    assert_eq!(
        fs::read_dir(dst.path()).unwrap().count(),
        1,
        "temp files cleaned up"
    );
}

/// The extended attribute `name` of `rel` under `dir`, if set.
fn xattr_of(dir: &tempfile::TempDir, rel: &str, name: &str) -> Option<Vec<u8>> {
    xattr::get(dir.path().join(rel), name).unwrap()
}

//! Shared helpers of the core tests: run serve/pull over in-memory streams, build sparse
//! files, compare two trees entry by entry.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use dr_syncer_rsync::{Limits, ReceiveError, ServeStats, StaticVolumes, SyncOptions, SyncSummary};

/// Pulls `src` (served as volume "vol") into `dst` over `n` duplex streams.
pub async fn pull_over(
    src: &Path,
    dst: &Path,
    opts: &SyncOptions,
    n: usize,
) -> Result<SyncSummary, ReceiveError> {
    pull_with_stats(src, dst, opts, n).await.0
}

/// Like [`pull_over`], also returning what each serve returned.
pub async fn pull_with_stats(
    src: &Path,
    dst: &Path,
    opts: &SyncOptions,
    n: usize,
) -> (
    Result<SyncSummary, ReceiveError>,
    Vec<Result<ServeStats, dr_syncer_rsync::ProtocolError>>,
) {
    let vols: Arc<StaticVolumes> = Arc::new(format!("vol={}", src.display()).parse().unwrap());
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..n {
        let (c, s) = tokio::io::duplex(256 * 1024);
        clients.push(c);
        let vols = Arc::clone(&vols);
        servers.push(tokio::spawn(async move {
            dr_syncer_rsync::serve(s, vols.as_ref(), &Limits::default()).await
        }));
    }
    let summary = dr_syncer_rsync::pull(clients, "vol", dst, opts).await;
    let mut stats = Vec::new();
    for s in servers {
        stats.push(s.await.unwrap());
    }
    (summary, stats)
}

/// Writes each `(relative path, content)` under `root`, creating parent directories.
pub fn write_files(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, data) in files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, data).unwrap();
    }
}

/// Writes a file of `len` bytes with data only at the given offsets (holes elsewhere).
pub fn write_sparse(path: &Path, parts: &[(u64, &[u8])], len: u64) {
    let f = fs::File::create(path).unwrap();
    for (off, data) in parts {
        f.write_all_at(data, *off).unwrap();
    }
    f.set_len(len).unwrap();
}

/// Sets a path's mtime (not following symlinks).
pub fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::new(sec, nsec),
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// Leaves `dst` as a pull interrupted mid-copy does: its lock file naming the dead run.
/// Returns that run's id, for [`partial_name`].
pub fn interrupted_run(dst: &Path) -> dr_syncer_rsync::paths::RunId {
    let run = dr_syncer_rsync::paths::RunId::new();
    fs::write(
        dst.join(OsStr::from_bytes(dr_syncer_rsync::paths::LOCK_NAME)),
        run.as_str(),
    )
    .unwrap();
    run
}

/// The partial-file name the receiver of `run` writes for file `name`.
pub fn partial_name(name: &[u8], run: &dr_syncer_rsync::paths::RunId) -> std::ffi::OsString {
    OsStr::from_bytes(&dr_syncer_rsync::paths::temp_name(name, run, "part")).to_owned()
}

#[derive(Debug, PartialEq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    size: u64,
    content: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    /// Paths (relative) sharing this node's inode, for hard-link structure.
    link_group: Vec<Vec<u8>>,
}

fn scan(root: &Path) -> (BTreeMap<Vec<u8>, Node>, HashMap<Vec<u8>, u64>) {
    let mut out = BTreeMap::new();
    let mut blocks = HashMap::new();
    let mut inodes: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let (kind, content, link) = if ft.is_dir() {
                stack.push(p.clone());
                ("dir", None, None)
            } else if ft.is_symlink() {
                let t = fs::read_link(&p).unwrap();
                ("symlink", None, Some(t.as_os_str().as_bytes().to_vec()))
            } else {
                inodes.entry(md.ino()).or_default().push(rel.clone());
                blocks.insert(rel.clone(), md.blocks());
                ("file", Some(fs::read(&p).unwrap()), None)
            };
            out.insert(
                rel,
                Node {
                    kind,
                    mode: md.mode(),
                    uid: md.uid(),
                    gid: md.gid(),
                    // directory mtimes are compared; symlink mtimes too
                    mtime: (md.mtime(), md.mtime_nsec()),
                    size: if ft.is_file() { md.len() } else { 0 },
                    content,
                    link,
                    link_group: Vec::new(),
                },
            );
        }
    }
    for group in inodes.values() {
        let mut g = group.clone();
        g.sort();
        for p in group {
            if let Some(n) = out.get_mut(p) {
                n.link_group = g.clone();
            }
        }
    }
    (out, blocks)
}

/// Asserts two trees are identical: kinds, modes, owners, mtimes (ns), sizes, contents,
/// symlink targets, hard-link groups, and holes (target uses no more blocks than source
/// plus one block of slack per file).
pub fn assert_same_tree(src: &Path, dst: &Path) {
    let (a, ablocks) = scan(src);
    let (b, bblocks) = scan(dst);
    let ak: Vec<_> = a
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let bk: Vec<_> = b
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(ak, bk, "same entries");
    for (k, na) in &a {
        let nb = &b[k];
        assert_eq!(na, nb, "entry {}", String::from_utf8_lossy(k));
    }
    for (k, blocks) in &ablocks {
        assert!(
            bblocks[k] <= blocks + 8,
            "holes kept for {}: {} > {}",
            String::from_utf8_lossy(k),
            bblocks[k],
            blocks
        );
    }
}

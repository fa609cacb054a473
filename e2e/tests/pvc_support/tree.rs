//! Volume contents: a seeded tree written straight into a PV directory, a 1% change, and a
//! manifest (path, type, size, mode, owner, mtime, symlink target, BLAKE3 of the content,
//! hard-link grouping) to compare a source volume with its copy.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Prefix of the worker's temporary names (`.dr-syncer.<h>.part`, `.basis`, temp links):
/// never a final name.
pub const TEMP_PREFIX: &str = ".dr-syncer.";

/// Pseudo-random bytes from a seed and a label (BLAKE3 in XOF mode: fast, deterministic,
/// incompressible, and no two labels share a block, so rsync matches only what is really
/// the same data).
pub fn random_reader(seed: u64, label: &str) -> blake3::OutputReader {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(label.as_bytes());
    h.finalize_xof()
}

/// Writes a file of `size` pseudo-random bytes (1 MiB at a time).
pub fn random_file(path: &Path, size: u64, seed: u64) {
    let mut reader = random_reader(seed, &path.to_string_lossy());
    let mut file = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        reader.fill(&mut buf[..n]);
        file.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    file.sync_all().unwrap();
}

fn mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The tree of the "identical copy" scenario, under `root`: nested directories (one 0750,
/// one empty), `files` small files of 100 B - 8 KiB, one `big` byte file, a 0755 script, a
/// 0600 file, a file owned by 1000:1000, a relative symlink, a dangling symlink and a hard
/// link. Returns the bytes of regular file content written.
pub fn write_tree(root: &Path, seed: u64, files: usize, big: u64) -> u64 {
    for d in ["a/b/c", "docs", "empty"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut total = 0;
    let mut sizes = random_reader(seed, "sizes");
    for i in 0..files {
        let dir = ["a", "a/b", "a/b/c", "docs"][i % 4];
        let mut n = [0u8; 2];
        sizes.fill(&mut n);
        let size = 100 + u64::from(u16::from_le_bytes(n)) % 8000;
        random_file(&root.join(format!("{dir}/small-{i}.txt")), size, seed);
        total += size;
    }
    random_file(&root.join("big.bin"), big, seed);
    total += big;
    fs::write(root.join("run.sh"), "#!/bin/sh\necho hello\n").unwrap();
    mode(&root.join("run.sh"), 0o755);
    fs::write(root.join("docs/secret.txt"), "only for the owner\n").unwrap();
    mode(&root.join("docs/secret.txt"), 0o600);
    fs::write(root.join("docs/owned.txt"), "owned by 1000\n").unwrap();
    std::os::unix::fs::chown(root.join("docs/owned.txt"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::symlink("../big.bin", root.join("a/big-link")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", root.join("docs/dangling")).unwrap();
    fs::hard_link(
        root.join("a/small-0.txt"),
        root.join("a/b/c/hard-link-to-small-0"),
    )
    .unwrap();
    mode(&root.join("a/b"), 0o750);
    total + 21 + 19 + 14
}

/// Changes about 1% of `bytes_total` of a [`write_tree`] tree: [`change_in_place`] on `file`,
/// plus one small file rewritten, one added and one deleted (so the delta pass, the literal
/// path and the deletion pass all run). Returns the bytes changed in `file`.
pub fn change_one_percent(root: &Path, file: &str, bytes_total: u64, seed: u64) -> u64 {
    let changed = change_in_place(root, file, bytes_total, seed);
    fs::write(root.join("docs/secret.txt"), "rotated secret\n").unwrap();
    fs::write(root.join("docs/new.txt"), "added after the first sync\n").unwrap();
    fs::remove_file(root.join("a/b/small-1.txt")).unwrap();
    changed
}

/// Overwrites about 1% of `bytes_total` in place in `file` (16 scattered runs, size kept);
/// returns the bytes changed.
pub fn change_in_place(root: &Path, file: &str, bytes_total: u64, seed: u64) -> u64 {
    let path = root.join(file);
    let size = fs::metadata(&path).unwrap().len();
    let changed = (bytes_total / 100).min(size);
    let runs = 16u64;
    let run = changed / runs;
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut data = random_reader(seed ^ 0x5eed, "change");
    let mut buf = vec![0u8; run as usize];
    for i in 0..runs {
        let offset = (size / runs) * i + (size / runs / 3);
        data.fill(&mut buf);
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
    run * runs
}

/// One entry of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: &'static str,
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size of a regular file.
    pub size: u64,
    /// Modification time of a regular file (s, ns).
    pub mtime: Option<(i64, i64)>,
    /// Target of a symlink.
    pub target: Option<PathBuf>,
    /// BLAKE3 of a regular file's content.
    pub hash: Option<String>,
    /// For a regular file with several names: the first of them (sorted), so two trees
    /// with the same grouping compare equal.
    pub link_group: Option<String>,
}

/// BLAKE3 of a file's content.
pub fn hash_file(path: &Path) -> String {
    try_hash_file(path).unwrap_or_else(|e| panic!("hashing {}: {e}", path.display()))
}

/// BLAKE3 of a file's content, or why it could not be read (it may vanish meanwhile).
pub fn try_hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Every entry below `root` (not `root` itself), by relative path.
pub fn manifest(root: &Path) -> BTreeMap<String, Entry> {
    let mut raw = Vec::new();
    walk(root, root, &mut raw);
    raw.sort_by(|a, b| a.0.cmp(&b.0));
    let mut first_name: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (rel, meta) in raw {
        let path = root.join(&rel);
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            "file"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else {
            "other"
        };
        let link_group = (ft.is_file() && meta.nlink() > 1).then(|| {
            first_name
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        });
        let entry = Entry {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: if ft.is_file() { meta.len() } else { 0 },
            mtime: ft.is_file().then(|| (meta.mtime(), meta.mtime_nsec())),
            target: ft.is_symlink().then(|| fs::read_link(&path).unwrap()),
            hash: ft.is_file().then(|| hash_file(&path)),
            link_group,
        };
        out.insert(rel, entry);
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, fs::Metadata)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).unwrap();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if meta.is_dir() {
            walk(root, &path, out);
        }
        out.push((rel, meta));
    }
}

/// The worker's temporary names left below `root`.
pub fn temp_names(root: &Path) -> Vec<String> {
    let mut raw = Vec::new();
    walk(root, root, &mut raw);
    raw.into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| {
            Path::new(rel)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX))
        })
        .collect()
}

/// Differences between two manifests, one line each (empty when identical).
pub fn diff(source: &BTreeMap<String, Entry>, target: &BTreeMap<String, Entry>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, s) in source {
        match target.get(path) {
            None => out.push(format!("missing at target: {path}")),
            Some(t) if t != s => out.push(format!("{path}: source {s:?} != target {t:?}")),
            Some(_) => {}
        }
    }
    for path in target.keys().filter(|p| !source.contains_key(*p)) {
        out.push(format!("extra at target: {path}"));
    }
    out
}

//! A watcher of a target directory while a PVC data sync runs (issue 6: never a partial
//! file under its final name), polling from a thread so it sees the directory between the
//! worker's writes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::tree::{self, manifest};

/// Polls a target directory while a sync runs: every regular file under a final name must
/// be the source's file (same size and content) or absent; temporary names are ignored.
/// Returns (violations, polls, largest temporary file seen).
pub struct PartialWatch {
    stop: Arc<AtomicBool>,
    /// Largest temporary file seen so far (bytes).
    pub largest_part: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<(Vec<String>, u64)>,
}

impl PartialWatch {
    /// Starts polling `target` against the tree of `source`.
    pub fn start(source: &Path, target: PathBuf) -> PartialWatch {
        let expected = manifest(source);
        let stop = Arc::new(AtomicBool::new(false));
        let largest_part = Arc::new(AtomicU64::new(0));
        let (stop2, largest2) = (stop.clone(), largest_part.clone());
        let thread = std::thread::spawn(move || {
            let mut verified = BTreeSet::new();
            let mut violations = Vec::new();
            let mut polls = 0;
            while !stop2.load(Ordering::Relaxed) {
                polls += 1;
                for (rel, meta) in files_below(&target) {
                    let name = Path::new(&rel).file_name().unwrap().to_string_lossy();
                    if name.starts_with(tree::TEMP_PREFIX) {
                        largest2.fetch_max(meta.len(), Ordering::Relaxed);
                        continue;
                    }
                    let Some(want) = expected.get(&rel) else {
                        continue;
                    };
                    use std::os::unix::fs::MetadataExt;
                    if meta.len() != want.size {
                        violations.push(format!("{rel}: {} of {} bytes", meta.len(), want.size));
                        continue;
                    }
                    let key = (meta.ino(), meta.mtime(), meta.mtime_nsec());
                    if verified.insert((rel.clone(), key))
                        && let Ok(hash) = tree::try_hash_file(&target.join(&rel))
                        && Some(&hash) != want.hash.as_ref()
                    {
                        violations.push(format!("{rel}: content differs under its final name"));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (violations, polls)
        });
        PartialWatch {
            stop,
            largest_part,
            thread,
        }
    }

    /// Stops polling; returns (violations, polls).
    pub fn finish(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Regular files below a directory (relative path, metadata); entries that vanish while
/// walking are skipped.
fn files_below(root: &Path) -> Vec<(String, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file() {
                let rel = entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, meta));
            }
        }
    }
    out
}

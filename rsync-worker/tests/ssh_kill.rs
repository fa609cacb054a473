//! The real worker binary, killed with SIGKILL at seeded pseudo-random points of a pull
//! over real SSH: no file under its final name is ever partial (it is the old version or
//! the new one), and a rerun converges to the source tree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "ssh_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestAgent, key, write_private_key, write_public_key};

const RUNS: usize = 20;
const SEED: u64 = 0x5eed_d15a_57e2;

/// xorshift64*: deterministic data and kill points without an RNG dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Relative path -> contents of every regular file under `root`.
type Tree = BTreeMap<PathBuf, Vec<u8>>;

fn read_tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

fn write_tree(root: &Path, tree: &Tree) {
    for (rel, data) in tree {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

/// The old version (what the target holds) and the new one (the source): big files with
/// scattered edits so that deltas are used, a few new, changed and removed small files.
fn versions() -> (Tree, Tree) {
    let mut rng = Rng(SEED);
    let (mut old, mut new) = (Tree::new(), Tree::new());
    for i in 0..4 {
        let mut data = vec![0u8; (2 + i) << 20];
        rng.fill(&mut data);
        let mut changed = data.clone();
        for _ in 0..8 {
            let at = rng.below(changed.len() as u64 - 4096) as usize;
            rng.fill(&mut changed[at..at + 4096]);
        }
        changed.extend_from_slice(&[i as u8; 10_000]);
        old.insert(PathBuf::from(format!("big/file-{i}.bin")), data);
        new.insert(PathBuf::from(format!("big/file-{i}.bin")), changed);
    }
    for i in 0..40 {
        let mut data = vec![0u8; rng.below(20_000) as usize];
        rng.fill(&mut data);
        let name = PathBuf::from(format!("small/d{}/f{i}.dat", i % 4));
        if i % 5 != 0 {
            old.insert(name.clone(), data.clone());
        }
        if i % 7 == 0 {
            data.push(b'!');
        }
        if i % 11 != 3 {
            new.insert(name, data);
        }
    }
    (old, new)
}

struct Harness {
    _dir: tempfile::TempDir,
    src: PathBuf,
    dest: PathBuf,
    pin: PathBuf,
    identity: PathBuf,
    termination_log: PathBuf,
    agent: TestAgent,
}

impl Harness {
    fn worker(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_dr-syncer-rsync-worker"))
            .args([
                "--agent",
                &self.agent.addr.to_string(),
                "--volume",
                "data",
                "--streams",
                "2",
                "--retries",
                "0",
            ])
            .arg("--host-key-file")
            .arg(&self.pin)
            .arg("--key-file")
            .arg(&self.identity)
            .arg("--dest")
            .arg(&self.dest)
            .arg("--termination-log")
            .arg(&self.termination_log)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs the worker to completion and returns its stdout (the JSON summary).
    async fn converge(&self) -> serde_json::Value {
        let child = self.worker();
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "rerun failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn reset_dest(&self, old: &Tree) {
        let _ = std::fs::remove_dir_all(&self.dest);
        std::fs::create_dir_all(&self.dest).unwrap();
        write_tree(&self.dest, old);
    }
}

async fn harness(new: &Tree) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_tree(&src, new);
    let (host, client) = (key(21), key(22));
    let pin = write_public_key(dir.path(), "agent.pub", host.public_key());
    let identity = write_private_key(dir.path(), "worker_key", &client);
    let agent = TestAgent::protocol(&[("data", &src)], host, &client).await;
    Harness {
        src,
        dest: dir.path().join("dest"),
        pin,
        identity,
        termination_log: dir.path().join("termination-log"),
        _dir: dir,
        agent,
    }
}

/// Every file under a final name is either the old or the new version, never partial.
fn assert_no_partial_file(dest: &Path, old: &Tree, new: &Tree, run: usize, delay: Duration) {
    for (rel, data) in read_tree(dest) {
        let (o, n) = (old.get(&rel), new.get(&rel));
        if o.is_none() && n.is_none() {
            continue; // a temporary file of the interrupted transfer, under its own name
        }
        assert!(
            o == Some(&data) || n == Some(&data),
            "run {run} (killed after {delay:?}): {} is neither the old nor the new version ({} bytes)",
            rel.display(),
            data.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_at_random_points_never_leaves_partial_files_and_rerun_converges() {
    let (old, new) = versions();
    let h = harness(&new).await;

    // Calibrate: how long a full pull from the old version takes on this machine. The
    // fastest of three (the first pays for cold caches) bounds the kill points, so kills land
    // inside the transfer even when later pulls run faster than the first.
    let mut full = Duration::MAX;
    for _ in 0..3 {
        h.reset_dest(&old);
        let started = Instant::now();
        let summary = h.converge().await;
        full = full.min(started.elapsed());
        assert_eq!(
            read_tree(&h.dest),
            new,
            "a full pull must reproduce the source"
        );
        assert!(
            summary["matched_bytes"].as_u64().unwrap() > 0,
            "the delta path must be used: {summary}"
        );
    }

    let mut rng = Rng(SEED ^ 0x4b11);
    let mut killed_mid_transfer = 0;
    for run in 0..RUNS {
        h.reset_dest(&old);
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64 * 9 / 10));
        let mut child = h.worker();
        tokio::time::sleep(delay).await;
        if child.try_wait().unwrap().is_none() {
            killed_mid_transfer += 1;
        }
        child.kill().unwrap();
        let _ = child.wait();
        assert_no_partial_file(&h.dest, &old, &new, run, delay);
        h.converge().await;
        assert_eq!(
            read_tree(&h.dest),
            new,
            "run {run}: the rerun after a kill must converge to the source"
        );
    }
    assert!(
        killed_mid_transfer >= RUNS / 2,
        "only {killed_mid_transfer} of {RUNS} kills hit a running transfer"
    );
    let _ = &h.src;
}

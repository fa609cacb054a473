//! A large file with scattered edits, to look at throughput and memory by hand:
//! `cargo test --release -p dr-syncer-rsync-worker --test core_large -- --ignored --nocapture`.
//! Ignored by default (it writes ~1 GiB); `make bench` measures the real figures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::print_stdout
)]

#[path = "core_common/mod.rs"]
mod common;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use dr_syncer_rsync::SyncOptions;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes ~1 GiB; run by hand in release"]
async fn large_file_with_scattered_edits() {
    let size: u64 = std::env::var("CORE_LARGE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
        << 20;
    let src = tempfile::tempdir_in("/var/tmp").unwrap();
    let dst = tempfile::tempdir_in("/var/tmp").unwrap();
    let path = src.path().join("big");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut x: u64 = 1;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..(size >> 20) {
            for b in buf.iter_mut() {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                *b = (x >> 56) as u8;
            }
            f.write_all(&buf).unwrap();
        }
    }
    let opts = SyncOptions::default();
    let t = Instant::now();
    let first = common::pull_over(src.path(), dst.path(), &opts, 2)
        .await
        .unwrap();
    println!("initial: {:.2}s {first:?}", t.elapsed().as_secs_f64());
    // 200 scattered 4 KiB edits
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for i in 0..200u64 {
        f.write_all_at(&[0xAB; 4096], (i * 7_919 * 4096) % (size - 4096))
            .unwrap();
    }
    drop(f);
    let t = Instant::now();
    let second = common::pull_over(src.path(), dst.path(), &opts, 2)
        .await
        .unwrap();
    println!("edited: {:.2}s {second:?}", t.elapsed().as_secs_f64());
    println!(
        "peak RSS of both sides together: {} MiB",
        peak_rss_kib() / 1024
    );
    assert!(second.matched_bytes > size / 2);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(dst.path().join("big")).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes 20,000 files; run by hand in release"]
async fn many_small_files() {
    let src = tempfile::tempdir_in("/var/tmp").unwrap();
    let dst = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut x: u32 = 7;
    for d in 0..100 {
        let dir = src.path().join(format!("d{d:03}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..200 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = 512 + (x % 8192) as usize;
            std::fs::write(dir.join(format!("f{f:03}")), vec![(x >> 8) as u8; len]).unwrap();
        }
    }
    let opts = SyncOptions::default();
    for label in ["initial", "no change"] {
        let t = Instant::now();
        let s = common::pull_over(src.path(), dst.path(), &opts, 4)
            .await
            .unwrap();
        println!("{label}: {:.2}s {s:?}", t.elapsed().as_secs_f64());
    }
    common::assert_same_tree(src.path(), dst.path());
}

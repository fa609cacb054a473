//! The bandwidth limit holds within 10% over a 10 s transfer, shared by several streams.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "core_common/mod.rs"]
mod common;

use std::time::Instant;

use dr_syncer_rsync::SyncOptions;
use dr_syncer_rsync::testing::noise;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limit_holds_within_ten_percent() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    const RATE: u64 = 1024 * 1024;
    // 10 s worth of incompressible data over four files and two streams
    let data = noise(10 * RATE as usize, 0x9e37_79b9_7f4a_7c15);
    for (i, part) in data.chunks(data.len() / 4).enumerate() {
        std::fs::write(src.path().join(format!("f{i}")), part).unwrap();
    }
    let mut opts = SyncOptions::default();
    opts.apply_rsync_options(&["--bwlimit=1M".to_string()])
        .unwrap();
    assert_eq!(opts.bwlimit, Some(RATE));
    let t0 = Instant::now();
    let s = common::pull_over(src.path(), dst.path(), &opts, 2)
        .await
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let rate = s.wire_bytes as f64 / secs;
    assert!(s.wire_bytes >= 10 * RATE, "{s:?}");
    assert!(
        (0.9..=1.1).contains(&(rate / RATE as f64)),
        "rate {rate:.0} B/s over {secs:.2} s, limit {RATE}"
    );
    common::assert_same_tree(src.path(), dst.path());
}

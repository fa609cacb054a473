//! `make bench`, end-to-end PVC data section (issue 6): on the 3-cluster x 2-node test bed,
//! the time from the manual trigger to the mapping's Completed data sync for a 1 GiB volume
//! (one 640 MiB file and 1,536 files of 256 KiB), initially and after 1% of the bytes
//! changed. Prints `FIGURE` lines and writes `target/bench/e2e_pvc.json`.
//!
//! Ignored in the normal e2e run (a measurement, not a test): `make bench` runs it with
//! `--ignored` against release builds of the controller, agent and worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;
mod pvc_support;

use std::time::Instant;

use controller_support::*;
use dr_syncer_crds::NamespaceMapping;
use kube::api::Api;
use pvc_support::tree::{self, manifest};
use pvc_support::*;
use serde_json::json;

const MIB: u64 = 1 << 20;
const BIG: u64 = 640 * MIB;
const SMALL: u64 = 256 * 1024;
const SMALL_FILES: u64 = 1536;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by `make bench`"]
async fn controller_pvc_bench() {
    let _serial = SERIAL.lock().await;
    let c = setup().await;
    let ns = namespace(&c.controller, "bench").await;
    let src = namespace(&c.source, "vol").await;
    remote_clusters_with_pvc_sync(&c, &ns, "enabled: true\n").await;
    let source = source_volume(&c, &src, "data", None).await;
    let t = Instant::now();
    tree::random_file(&source.join("big.bin"), BIG, 7);
    for d in 0..16 {
        std::fs::create_dir_all(source.join(format!("d{d}"))).unwrap();
    }
    for i in 0..SMALL_FILES {
        tree::random_file(&source.join(format!("d{}/f{i}", i % 16)), SMALL, 7);
    }
    let total = BIG + SMALL * SMALL_FILES;
    eprintln!("wrote {total} bytes in {:?}", t.elapsed());

    let controller = start_controller(None).await;
    let mappings: Api<NamespaceMapping> = Api::namespaced(c.controller.clone(), &ns);
    let mapping = data_mapping("bench", &src, &src, DataSyncFixture::timeout("30m"))
        .direct()
        .build();
    apply(&c.controller, &ns, &mapping).await;
    let deadline = std::time::Duration::from_secs(1200);

    let t = Instant::now();
    trigger(&mappings, "bench", "1").await;
    let nm = wait_data_sync(&mappings, "bench", "1", &["data"], None, deadline).await;
    let initial = t.elapsed();
    let first = pvc_status(&nm, "data").unwrap();
    assert_eq!(first["result"], "Succeeded", "{first:#}");
    let target = volume_dir(&c.target, TARGET, &src, "data", deadline)
        .await
        .1;
    assert!(tree::diff(&manifest(&source), &manifest(&target)).is_empty());

    let changed = tree::change_in_place(&source, "big.bin", total, 7);
    let t = Instant::now();
    trigger(&mappings, "bench", "2").await;
    let nm = wait_data_sync(&mappings, "bench", "2", &["data"], Some(&nm), deadline).await;
    let delta = t.elapsed();
    let second = pvc_status(&nm, "data").unwrap();
    assert_eq!(second["result"], "Succeeded", "{second:#}");
    assert!(tree::diff(&manifest(&source), &manifest(&target)).is_empty());

    eprintln!(
        "FIGURE e2e PVC sync 1 GiB initial (trigger to Completed): {:.1} s",
        initial.as_secs_f64()
    );
    eprintln!(
        "FIGURE e2e PVC sync 1 GiB after 1% change (trigger to Completed): {:.1} s, wire {} bytes, matched {} bytes",
        delta.as_secs_f64(),
        int(&second, "wireBytes"),
        int(&second, "matchedBytes")
    );
    let report = json!({
        "data_bytes": total,
        "changed_bytes": changed,
        "initial_seconds": initial.as_secs_f64(),
        "one_percent_seconds": delta.as_secs_f64(),
        "initial_status": first,
        "one_percent_status": second,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("e2e_pvc.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!("wrote {}", path.display());
    controller.kill().await;
}

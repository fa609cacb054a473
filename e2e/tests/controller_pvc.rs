//! PVC data replication end to end (issue 6), on a bed of three clusters (controller,
//! source, target) with two simulated nodes each: the real controller deploys the real
//! agent DaemonSet into the source cluster and runs real rsync-worker pods in the target
//! cluster, which pull over SSH from the agent on the node holding each source volume.
//!
//! Data is written straight into the source PV directories on the node and read back from
//! the target PV directories, and every test ends by checking that no worker pod and no
//! per-run credential Secret is left in its target namespace, after success or failure.
//!
//! | issue 6 "done when" | test |
//! |---|---|
//! | identical tree (class fast, remapped namespace); 1% change: matched > 0, wire well under the data | `manual_sync_copies_an_identical_tree_then_a_one_percent_change_moves_little` |
//! | two PVCs on two nodes within `concurrentSyncs`, a third waits | `pvcs_on_two_nodes_sync_concurrently_within_concurrent_syncs_and_a_third_waits` |
//! | agent killed mid-transfer: clean failure, retry, success, never a partial file under its final name | `killing_the_agent_mid_transfer_fails_cleanly_is_retried_and_never_exposes_a_partial_file` |
//! | wrong pinned host key / missing key Secret / unreachable agent / unmounted CSI volume: condition + event | `a_wrong_pinned_host_key_...`, `a_missing_key_secret_...`, `an_unreachable_agent_...`, `an_unmounted_csi_volume_...` (and `sync_data_without_pvc_sync_enabled_is_reported`) |
//! | no worker pod or Secret copy left after success or failure | `assert_no_leftovers` at the end of every test above |
//! | `make bench` end-to-end figure | `controller_pvc_bench.rs` |
//! | issue 12: a populated DR volume pulled from an empty source keeps every file (`filesDeleted == 0`) and the mapping says why | `an_emptied_source_volume_keeps_every_target_file_until_the_mapping_allows_it` |
//! | (build item 4) Continuous mode copies data every `backgroundSyncInterval` and on the manual trigger | `continuous_mode_copies_data_on_start_every_background_interval_and_on_the_trigger` |

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;
mod pvc_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use controller_support::*;
use dr_syncer_crds::NamespaceMapping;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use pvc_support::partial::PartialWatch;
use pvc_support::tree::{self, manifest, temp_names};
use pvc_support::*;
use serde_json::json;

const MIB: u64 = 1 << 20;

/// Everything a data test starts from: clients, its controller-cluster namespace, a fresh
/// source namespace, the remapped destination namespace name, and the mappings API.
struct Scenario {
    c: Clusters,
    ns: String,
    src: String,
    dst: String,
    mappings: Api<NamespaceMapping>,
}

/// Fresh namespaces and RemoteClusters (`source` with the given `pvcSync` YAML).
async fn scenario(pvc_sync: &str) -> Scenario {
    let c = setup().await;
    let ns = namespace(&c.controller, "dr").await;
    let src = namespace(&c.source, "app").await;
    let dst = format!("{src}-dr");
    remote_clusters_with_pvc_sync(&c, &ns, pvc_sync).await;
    let mappings = Api::namespaced(c.controller.clone(), &ns);
    Scenario {
        c,
        ns,
        src,
        dst,
        mappings,
    }
}

impl Scenario {
    /// The data mapping `name` of this scenario's namespaces (clusters still to choose).
    fn data(&self, name: &str, config: DataSyncFixture) -> MappingFixture {
        data_mapping(name, &self.src, &self.dst, config)
    }

    /// Applies a mapping into the scenario's controller-cluster namespace.
    async fn mapping(&self, fixture: MappingFixture) {
        apply(&self.c.controller, &self.ns, &fixture.build()).await;
    }

    /// The target copy of a source PVC: bound (the worker pod was its first consumer).
    async fn target_dir(&self, pvc: &str) -> PathBuf {
        volume_dir(&self.c.target, TARGET, &self.dst, pvc, SYNC_DEADLINE)
            .await
            .1
    }

    /// Triggers `value` and waits for the data sync of `pvcs`.
    async fn sync(
        &self,
        name: &str,
        value: &str,
        pvcs: &[&str],
        previous: Option<&NamespaceMapping>,
    ) -> NamespaceMapping {
        trigger(&self.mappings, name, value).await;
        wait_data_sync(&self.mappings, name, value, pvcs, previous, SYNC_DEADLINE).await
    }
}

/// Asserts the last data sync of `pvc` succeeded; returns its status entry.
fn succeeded(nm: &NamespaceMapping, pvc: &str) -> serde_json::Value {
    let entry = pvc_status(nm, pvc).unwrap_or_else(|| panic!("no pvcSyncStatus for {pvc}"));
    assert_eq!(
        entry["result"],
        "Succeeded",
        "{pvc}: {entry:#}\nconditions: {:#}",
        as_json(nm)["status"]["conditions"]
    );
    entry
}

/// Asserts the target copy equals the source tree and holds no temporary name.
fn assert_identical(source: &Path, target: &Path) {
    let diff = tree::diff(&manifest(source), &manifest(target));
    assert!(
        diff.is_empty(),
        "target differs from source:\n{}",
        diff.join("\n")
    );
    assert_eq!(
        temp_names(target),
        Vec::<String>::new(),
        "temporary names left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_sync_copies_an_identical_tree_then_a_one_percent_change_moves_little() {
    let _serial = SERIAL.lock().await;
    let s = scenario("enabled: true\n").await;
    let source = source_volume(&s.c, &s.src, "data", None).await;
    let total = tree::write_tree(&source, 1, 200, 40 * MIB);
    let (source_node, _) = volume_dir(&s.c.source, SOURCE, &s.src, "data", DEADLINE).await;

    let controller = start_controller(None).await;
    s.mapping(
        s.data("app", DataSyncFixture::timeout("10m").concurrent(2))
            .direct(),
    )
    .await;
    let started = Instant::now();
    let nm = s.sync("app", "1", &["data"], None).await;
    eprintln!("initial data sync: {:?}", started.elapsed());
    let entry = succeeded(&nm, "data");
    let (status, reason, _) = condition(&nm, "DataSynced").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "DataSyncSucceeded")
    );
    assert_eq!(entry["node"], source_node.as_str(), "{entry:#}");
    assert!(int(&entry, "filesTransferred") >= 200, "{entry:#}");
    assert!(int(&entry, "filesScanned") >= 200, "{entry:#}");
    assert!(int(&entry, "bytesTransferred") as u64 >= total, "{entry:#}");
    assert!(int(&entry, "literalBytes") as u64 >= total, "{entry:#}");
    assert!(int(&entry, "wireBytes") as u64 >= total, "{entry:#}");
    assert!(entry["lastSyncTime"].is_string(), "{entry:#}");

    // The target PVC: remapped namespace, class through storageClassMappings, same tree.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(s.c.target.clone(), &s.dst);
    let claim = claims.get("data").await.unwrap();
    assert_eq!(
        claim.spec.unwrap().storage_class_name.as_deref(),
        Some("fast")
    );
    let target = s.target_dir("data").await;
    assert_identical(&source, &target);

    // Events on the mapping and the target PVC; the bytes metric.
    for reason in ["DataSyncStarted", "DataSyncSucceeded"] {
        wait_event(
            &s.c.controller,
            &s.ns,
            "NamespaceMapping",
            "app",
            reason,
            &["data"],
            DEADLINE,
        )
        .await;
        wait_event(
            &s.c.target,
            &s.dst,
            "PersistentVolumeClaim",
            "data",
            reason,
            &[],
            DEADLINE,
        )
        .await;
    }
    let bytes = metric_with(
        &controller,
        "dr_syncer_data_bytes_transferred_total",
        &[("pvc", "data")],
    )
    .await;
    assert!(
        bytes.is_some_and(|b| b as u64 >= total),
        "dr_syncer_data_bytes_transferred_total for pvc=data: {bytes:?}"
    );
    assert_no_leftovers(&s.c.target, &s.dst).await;

    // 1% of the data changes: the second sync reuses the target's data.
    let changed = tree::change_one_percent(&source, "big.bin", total, 1);
    let started = Instant::now();
    let nm2 = s.sync("app", "2", &["data"], Some(&nm)).await;
    eprintln!("1% change data sync: {:?}", started.elapsed());
    let entry = succeeded(&nm2, "data");
    let (matched, wire) = (int(&entry, "matchedBytes"), int(&entry, "wireBytes") as u64);
    eprintln!("after {changed} changed bytes of {total}: {entry:#}");
    assert!(matched > 0, "nothing matched: {entry:#}");
    assert!(
        wire < total / 10,
        "wire bytes {wire} not well under the data size {total}: {entry:#}"
    );
    assert!(int(&entry, "filesDeleted") >= 1, "{entry:#}");
    assert_identical(&source, &target);
    assert_no_leftovers(&s.c.target, &s.dst).await;
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvcs_on_two_nodes_sync_concurrently_within_concurrent_syncs_and_a_third_waits() {
    let _serial = SERIAL.lock().await;
    let s = scenario("enabled: true\n").await;
    let (n1, n2) = (node(SOURCE, 1), node(SOURCE, 2));
    let mut sources = Vec::new();
    for (pvc, on) in [("vol-a", &n1), ("vol-b", &n2), ("vol-c", &n1)] {
        let dir = source_volume(&s.c, &s.src, pvc, Some(on)).await;
        tree::write_tree(&dir, 2, 8, 24 * MIB);
        sources.push((pvc, on.clone(), dir));
    }

    let controller = start_controller(None).await;
    // 8 MiB/s per copy: each worker runs for seconds, so overlaps are real.
    s.mapping(
        s.data(
            "three",
            DataSyncFixture::timeout("10m")
                .concurrent(2)
                .bandwidth(8192),
        )
        .direct(),
    )
    .await;
    let (seen, watch) = watch_workers(&s.c.target, &s.dst);
    let nm = s
        .sync("three", "1", &["vol-a", "vol-b", "vol-c"], None)
        .await;
    watch.abort();
    let seen = seen.lock().unwrap().clone();
    for (pvc, on, dir) in &sources {
        let entry = succeeded(&nm, pvc);
        assert_eq!(entry["node"], on.as_str(), "{pvc}: {entry:#}");
        assert_identical(dir, &s.target_dir(pvc).await);
    }
    assert_eq!(
        seen.max_active, 2,
        "worker pods active at once (concurrentSyncs 2, 3 PVCs): {seen:#?}"
    );
    let pvcs: BTreeSet<&str> = seen.seen.values().map(String::as_str).collect();
    assert_eq!(
        pvcs,
        ["vol-a", "vol-b", "vol-c"].into(),
        "worker pods by their dr-syncer.io/pvc label: {seen:#?}"
    );
    assert_no_leftovers(&s.c.target, &s.dst).await;
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_agent_mid_transfer_fails_cleanly_is_retried_and_never_exposes_a_partial_file()
{
    let _serial = SERIAL.lock().await;
    let s = scenario("enabled: true\n").await;
    let source = source_volume(&s.c, &s.src, "big", None).await;
    let size = 320 * MIB;
    let t = Instant::now();
    tree::random_file(&source.join("huge.bin"), size, 3);
    std::fs::create_dir_all(source.join("etc")).unwrap();
    for i in 0..20 {
        tree::random_file(&source.join(format!("etc/f{i}")), 4096 + i * 100, 3);
    }
    eprintln!("wrote {size} bytes in {:?}", t.elapsed());
    let (source_node, _) = volume_dir(&s.c.source, SOURCE, &s.src, "big", DEADLINE).await;

    let controller = start_controller(None).await;
    // 32 MiB/s: the copy lasts ~10 s, long enough to kill the agent in the middle. Each
    // attempt is bounded at 90 s (several times the copy): once in CI a first worker made
    // no progress for 240 s (cause not found, see issue 4's open transport stall); with the
    // bound such an attempt times out and is retried in a fresh pod, as in production,
    // instead of holding the test until a 10 min timeout.
    s.mapping(
        s.data("kill", DataSyncFixture::timeout("90s").bandwidth(32768))
            .direct(),
    )
    .await;
    let (seen, watch) = watch_workers(&s.c.target, &s.dst);
    trigger(&s.mappings, "kill", "1").await;
    let target = s.target_dir("big").await;
    let partials = PartialWatch::start(&source, target.clone());

    // Wait until bytes are moving: a temporary file of at least 16 MiB, not the whole file.
    let until = Instant::now() + SYNC_DEADLINE;
    loop {
        let part = partials.largest_part.load(Ordering::Relaxed);
        if part >= 16 * MIB {
            assert!(
                part < size,
                "the transfer finished before the agent could be killed"
            );
            break;
        }
        assert!(
            !target.join("huge.bin").exists(),
            "huge.bin arrived before any partial was seen"
        );
        assert!(Instant::now() < until, "no transfer started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let agents = agent_pods(&s.c.source).await;
    let victim = agents
        .get(&source_node)
        .unwrap_or_else(|| panic!("no agent pod on {source_node}: {:?}", agents.keys()));
    let victim_uid = victim.metadata.uid.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(s.c.source.clone(), AGENT_NAMESPACE);
    let kill = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete(victim.metadata.name.as_deref().unwrap(), &kill)
        .await
        .unwrap();
    eprintln!(
        "killed agent {:?} on {source_node} with {} bytes in a partial",
        victim.metadata.name,
        partials.largest_part.load(Ordering::Relaxed)
    );

    let nm = wait_data_sync(
        &s.mappings,
        "kill",
        "1",
        &["big"],
        None,
        Duration::from_secs(600),
    )
    .await;
    let (violations, polls) = partials.finish();
    watch.abort();
    let entry = succeeded(&nm, "big");
    eprintln!("after the kill: {entry:#}");
    assert!(polls > 10, "the target was polled only {polls} times");
    assert!(
        violations.is_empty(),
        "partial files under final names: {violations:#?}"
    );
    assert_identical(&source, &target);

    // The agent really was replaced, and the copy really was retried.
    let now = agent_pods(&s.c.source).await;
    assert_ne!(
        now.get(&source_node).and_then(|p| p.metadata.uid.clone()),
        Some(victim_uid)
    );
    // The failed attempt is retried in a fresh worker pod, and the retry resumes from the
    // partial the killed attempt left (the data plane uses it as the basis).
    let workers = seen.lock().unwrap().seen.len();
    assert!(
        int(&entry, "attempts") >= 2 && workers >= 2,
        "no retry: attempts {}, worker pods {workers}: {entry:#}",
        int(&entry, "attempts")
    );
    assert!(
        int(&entry, "matchedBytes") > 0,
        "the partial was not reused: {entry:#}"
    );
    assert_no_leftovers(&s.c.target, &s.dst).await;
    controller.kill().await;
}

/// A small source volume and a first successful sync (the agents are deployed and work).
async fn deployed(s: &Scenario, name: &str, config: DataSyncFixture) -> NamespaceMapping {
    let dir = source_volume(&s.c, &s.src, "data", None).await;
    tree::write_tree(&dir, 4, 5, MIB);
    s.mapping(s.data(name, config).direct()).await;
    let nm = s.sync(name, "1", &["data"], None).await;
    succeeded(&nm, "data");
    nm
}

/// A fresh Ed25519 host key in OpenSSH format (`ssh-keygen`).
fn other_host_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pinned_host_key_is_reported_with_condition_and_event() {
    let _serial = SERIAL.lock().await;
    let s = scenario("enabled: true\n").await;
    let controller = start_controller(None).await;
    let nm = deployed(&s, "hostkey", DataSyncFixture::timeout("60s")).await;
    controller.kill().await;

    // The agents restart with another host key than the one the controller pins.
    let secrets: Api<Secret> = Api::namespaced(s.c.source.clone(), AGENT_NAMESPACE);
    let patch = json!({"stringData": {"ssh_host_ed25519_key": other_host_key()}});
    secrets
        .patch(AGENT_SECRET, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let old: BTreeSet<String> = agent_pods(&s.c.source)
        .await
        .values()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let pods: Api<Pod> = Api::namespaced(s.c.source.clone(), AGENT_NAMESPACE);
    for p in agent_pods(&s.c.source).await.values() {
        let kill = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        pods.delete(p.metadata.name.as_deref().unwrap(), &kill)
            .await
            .unwrap();
    }
    wait_agents_ready(&s.c.source, &old, DEADLINE).await;

    let controller = start_controller(None).await;
    trigger(&s.mappings, "hostkey", "2").await;
    let message = wait_data_condition(
        &s.mappings,
        "hostkey",
        "False",
        "HostKeyMismatch",
        SYNC_DEADLINE,
    )
    .await;
    assert!(message.contains("data"), "{message}");
    let nm2 = wait_data_sync(
        &s.mappings,
        "hostkey",
        "2",
        &["data"],
        Some(&nm),
        SYNC_DEADLINE,
    )
    .await;
    let entry = pvc_status(&nm2, "data").unwrap();
    assert_eq!(entry["result"], "Failed", "{entry:#}");
    assert_eq!(entry["reason"], "HostKeyMismatch", "{entry:#}");
    wait_event(
        &s.c.controller,
        &s.ns,
        "NamespaceMapping",
        "hostkey",
        "DataSyncFailed",
        &["data", "host key"],
        DEADLINE,
    )
    .await;
    wait_event(
        &s.c.target,
        &s.dst,
        "PersistentVolumeClaim",
        "data",
        "DataSyncFailed",
        &["host key"],
        DEADLINE,
    )
    .await;
    assert_no_leftovers(&s.c.target, &s.dst).await;
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_secret_is_reported_with_condition_and_event() {
    let _serial = SERIAL.lock().await;
    let s = scenario("enabled: true\n").await;
    let pair = PairFixture::new("pair", SOURCE, TARGET)
        .no_connectivity_check()
        .ssh_key_secret("no-such-worker-key", Some(&s.ns))
        .build();
    apply(&s.c.controller, &s.ns, &pair).await;
    let dir = source_volume(&s.c, &s.src, "data", None).await;
    tree::write_tree(&dir, 5, 5, MIB);
    let controller = start_controller(None).await;
    s.mapping(
        s.data("nokey", DataSyncFixture::timeout("60s"))
            .cluster_mapping_in("pair", &s.ns),
    )
    .await;
    trigger(&s.mappings, "nokey", "1").await;
    let message = wait_data_condition(
        &s.mappings,
        "nokey",
        "False",
        "KeySecretMissing",
        SYNC_DEADLINE,
    )
    .await;
    assert!(message.contains("no-such-worker-key"), "{message}");
    wait_event(
        &s.c.controller,
        &s.ns,
        "NamespaceMapping",
        "nokey",
        "DataSyncFailed",
        &["no-such-worker-key"],
        DEADLINE,
    )
    .await;
    assert_no_leftovers(&s.c.target, &s.dst).await;
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_agent_is_reported_with_condition_and_event() {
    let _serial = SERIAL.lock().await;
    let s = scenario("enabled: true\nretryConfig:\n  maxRetries: 0\n").await;
    let controller = start_controller(None).await;
    // A 10 s timeout bounds each connection attempt of the worker.
    let nm = deployed(&s, "unreach", DataSyncFixture::timeout("10s")).await;
    let (source_node, _) = volume_dir(&s.c.source, SOURCE, &s.src, "data", DEADLINE).await;

    // The agent on the volume's node stops answering (its port still accepts: the kernel
    // completes handshakes for a stopped process, so its readiness probe still passes).
    let pids = agent_pids(&source_node).await;
    assert!(!pids.is_empty(), "no agent process for {source_node}");
    let frozen = Frozen::freeze(pids);
    trigger(&s.mappings, "unreach", "2").await;
    let message = wait_data_condition(
        &s.mappings,
        "unreach",
        "False",
        "AgentUnreachable",
        Duration::from_secs(400),
    )
    .await;
    assert!(message.contains("data"), "{message}");
    wait_event(
        &s.c.controller,
        &s.ns,
        "NamespaceMapping",
        "unreach",
        "DataSyncFailed",
        &["data"],
        DEADLINE,
    )
    .await;
    let nm2 = wait_data_sync(&s.mappings, "unreach", "2", &["data"], Some(&nm), DEADLINE).await;
    assert_eq!(pvc_status(&nm2, "data").unwrap()["result"], "Failed");
    drop(frozen);
    assert_no_leftovers(&s.c.target, &s.dst).await;
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmounted_csi_volume_is_reported_with_condition_and_event() {
    let _serial = SERIAL.lock().await;
    let s = scenario("enabled: true\n").await;
    // A CSI PV of a driver no node runs, bound to the claim by name, used by no pod.
    let pv_name = format!("csi-{}", s.src);
    let pvs: Api<PersistentVolume> = Api::all(s.c.source.clone());
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "standard",
            "csi": {"driver": "csi.fake.dr-syncer.io", "volumeHandle": format!("vol-{}", s.src)},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": s.src, "name": "csi-data"},
        },
    }))
    .unwrap();
    pvs.create(&Default::default(), &pv).await.unwrap();
    apply_yaml::<PersistentVolumeClaim>(
        &s.c.source,
        &s.src,
        &format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: csi-data\nspec:\n  storageClassName: standard\n  volumeName: {pv_name}\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n"
        ),
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(s.c.source.clone(), &s.src);
    wait_for(&claims, "csi-data", |p: Option<&PersistentVolumeClaim>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Bound")
    })
    .await;

    let controller = start_controller(None).await;
    s.mapping(s.data("csi", DataSyncFixture::timeout("60s")).direct())
        .await;
    trigger(&s.mappings, "csi", "1").await;
    let message = wait_data_condition(
        &s.mappings,
        "csi",
        "False",
        "VolumeNotMounted",
        SYNC_DEADLINE,
    )
    .await;
    assert!(message.contains("csi-data"), "{message}");
    wait_event(
        &s.c.controller,
        &s.ns,
        "NamespaceMapping",
        "csi",
        "DataSyncFailed",
        &["csi-data"],
        DEADLINE,
    )
    .await;
    assert_no_leftovers(&s.c.target, &s.dst).await;
    controller.kill().await;
    let _ = pvs.delete(&pv_name, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_source_volume_keeps_every_target_file_until_the_mapping_allows_it() {
    let _serial = SERIAL.lock().await;
    let s = scenario("enabled: true\n").await;
    let source = source_volume(&s.c, &s.src, "data", None).await;
    tree::write_tree(&source, 3, 30, MIB);
    let controller = start_controller(None).await;
    s.mapping(s.data("app", DataSyncFixture::timeout("5m")).direct())
        .await;
    let nm = s.sync("app", "1", &["data"], None).await;
    succeeded(&nm, "data");
    let target = s.target_dir("data").await;
    let copy = manifest(&target);
    assert!(copy.len() > 30, "{} entries", copy.len());

    // The source volume loses everything (an unmounted disk looks just like this).
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    let nm2 = s.sync("app", "2", &["data"], Some(&nm)).await;
    let entry = pvc_status(&nm2, "data").unwrap();
    assert_eq!(int(&entry, "filesDeleted"), 0, "{entry:#}");
    assert_eq!(entry["reason"], "DataPruneRefused", "{entry:#}");
    let (status, reason, message) = condition(&nm2, "DataSynced").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "DataPruneRefused")
    );
    assert!(
        message.contains("listing is empty") && message.contains("allowMassDataDeletion"),
        "{message}"
    );
    let (_, ready, _) = condition(&nm2, "Ready").unwrap();
    assert_eq!(ready, "DataPruneRefused");
    let kept = tree::diff(&copy, &manifest(&target));
    assert!(kept.is_empty(), "the DR copy changed:\n{}", kept.join("\n"));
    wait_event(
        &s.c.controller,
        &s.ns,
        "NamespaceMapping",
        "app",
        "DataPruneRefused",
        &["data", "listing is empty"],
        DEADLINE,
    )
    .await;

    // The user says the deletion is intended: the copy follows the source.
    s.mapping(
        s.data("app", DataSyncFixture::timeout("5m"))
            .direct()
            .with(|spec| {
                spec.safety =
                    Some(serde_json::from_value(json!({"allowMassDataDeletion": true})).unwrap());
            }),
    )
    .await;
    let nm3 = s.sync("app", "3", &["data"], Some(&nm2)).await;
    let entry = succeeded(&nm3, "data");
    assert!(int(&entry, "filesDeleted") > 30, "{entry:#}");
    assert_identical(&source, &target);
    assert_no_leftovers(&s.c.target, &s.dst).await;
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_data_without_pvc_sync_enabled_is_reported() {
    let _serial = SERIAL.lock().await;
    let s = scenario("enabled: false\n").await;
    let dir = source_volume(&s.c, &s.src, "data", None).await;
    tree::write_tree(&dir, 6, 2, MIB);
    let controller = start_controller(None).await;
    s.mapping(s.data("disabled", DataSyncFixture::timeout("60s")).direct())
        .await;
    trigger(&s.mappings, "disabled", "1").await;
    let message = wait_data_condition(
        &s.mappings,
        "disabled",
        "False",
        "PvcSyncDisabled",
        SYNC_DEADLINE,
    )
    .await;
    assert!(message.contains("source"), "{message}");
    assert!(worker_pods(&s.c.target, &s.dst).await.is_empty());
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_mode_copies_data_on_start_every_background_interval_and_on_the_trigger() {
    let _serial = SERIAL.lock().await;
    let c = setup().await;
    let ns = namespace(&c.controller, "dr").await;
    let src = namespace(&c.source, "app").await;
    let dst = format!("{src}-dr");
    remote_clusters_with_pvc_sync(&c, &ns, "enabled: true\n").await;
    let mappings: Api<NamespaceMapping> = Api::namespaced(c.controller.clone(), &ns);
    let source = source_volume(&c, &src, "data", None).await;
    tree::write_tree(&source, 7, 5, 1 << 20);
    let controller = start_controller(None).await;
    let mapping = data_mapping("cont", &src, &dst, DataSyncFixture::timeout("60s"))
        .direct()
        .continuous_every("20s")
        .build();
    apply(&c.controller, &ns, &mapping).await;

    // On start: the first full sync copies the data, with no trigger.
    let first = wait_for_within(
        &mappings,
        "cont",
        |nm: Option<&NamespaceMapping>| {
            nm.and_then(|nm| pvc_status(nm, "data"))
                .is_some_and(|e| e["result"] == "Succeeded")
        },
        SYNC_DEADLINE,
    )
    .await;
    let (_, target) = volume_dir(&c.target, TARGET, &dst, "data", DEADLINE).await;
    assert_eq!(manifest(&target), manifest(&source));

    // Every backgroundSyncInterval: a new file arrives without any trigger (a later copy
    // than the first, and the file is there once it succeeded).
    let first_time = pvc_status(&first, "data").unwrap()["lastSyncTime"].clone();
    std::fs::write(source.join("new-file.txt"), b"hello continuous").unwrap();
    let arrived = target.join("new-file.txt");
    let second = wait_for_within(
        &mappings,
        "cont",
        move |nm: Option<&NamespaceMapping>| {
            nm.and_then(|nm| pvc_status(nm, "data")).is_some_and(|e| {
                e["result"] == "Succeeded"
                    && e["lastSyncTime"] != first_time
                    && std::fs::read(&arrived).is_ok_and(|b| b == b"hello continuous")
            })
        },
        Duration::from_secs(120),
    )
    .await;

    // And on the manual trigger.
    std::fs::write(source.join("second.txt"), b"by trigger").unwrap();
    trigger(&mappings, "cont", "t1").await;
    wait_data_sync(
        &mappings,
        "cont",
        "t1",
        &["data"],
        Some(&second),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        std::fs::read(target.join("second.txt")).unwrap(),
        b"by trigger"
    );
    assert_eq!(manifest(&target), manifest(&source));
    assert_no_leftovers(&c.target, &dst).await;
    controller.kill().await;
}

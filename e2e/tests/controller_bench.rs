//! `make bench`, controller section (issue 5): on a test bed with three clusters,
//! - time for a 2,000-object namespace (1,000 ConfigMaps, 500 Secrets, 300 Deployments,
//!   200 Services) to converge on the target after a manual trigger;
//! - continuous-mode propagation latency (p50/p99) over 200 changes;
//! - the controller's peak RSS (VmHWM).
//!
//! Written to `target/bench/controller.json`. Ignored in the normal e2e run (it is a
//! measurement, not a test): `make bench` runs it with `--ignored` against release builds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;

use std::time::{Duration, Instant};

use controller_support::*;
use dr_syncer_crds::NamespaceMapping;
use dr_syncer_crds::namespace_mapping::SyncPhase;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

const CONFIGMAPS: usize = 1000;
const SECRETS: usize = 500;
const DEPLOYMENTS: usize = 300;
const SERVICES: usize = 200;
const CHANGES: usize = 200;

/// Creates the 2,000 source objects, 32 requests in flight.
async fn populate(client: &Client, ns: &str) {
    let params = PatchParams::apply("bench").force();
    let mut bodies = Vec::new();
    for i in 0..CONFIGMAPS {
        bodies.push(("configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}")}, "data": {"v": "0", "payload": "x".repeat(256)}})));
    }
    for i in 0..SECRETS {
        bodies.push(("secrets", json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("secret-{i}")}, "stringData": {"token": format!("t-{i}")}})));
    }
    for i in 0..DEPLOYMENTS {
        bodies.push(("deployments", json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("dep-{i}")},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": format!("dep-{i}")}},
                "template": {"metadata": {"labels": {"app": format!("dep-{i}")}},
                    "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]}}}})));
    }
    for i in 0..SERVICES {
        bodies.push((
            "services",
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}")},
            "spec": {"selector": {"app": format!("dep-{i}")}, "ports": [{"port": 80}]}}),
        ));
    }
    futures::stream::iter(bodies)
        .for_each_concurrent(32, |(kind, body)| {
            let client = client.clone();
            let params = params.clone();
            async move {
                let name = body["metadata"]["name"].as_str().unwrap().to_owned();
                let patch = Patch::Apply(&body);
                let result = match kind {
                    "configmaps" => Api::<ConfigMap>::namespaced(client, ns)
                        .patch(&name, &params, &patch)
                        .await
                        .map(|_| ()),
                    "secrets" => Api::<Secret>::namespaced(client, ns)
                        .patch(&name, &params, &patch)
                        .await
                        .map(|_| ()),
                    "deployments" => Api::<Deployment>::namespaced(client, ns)
                        .patch(&name, &params, &patch)
                        .await
                        .map(|_| ()),
                    _ => Api::<Service>::namespaced(client, ns)
                        .patch(&name, &params, &patch)
                        .await
                        .map(|_| ()),
                };
                result.unwrap_or_else(|e| panic!("creating {kind}/{name}: {e}"));
            }
        })
        .await;
}

async fn count<K>(api: &Api<K>) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list_metadata(&ListParams::default().labels("dr-syncer.io/managed-by-mapping"))
        .await
        .unwrap()
        .items
        .len()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by `make bench`"]
async fn controller_bench() {
    let (_serial, c, ns, src, mappings) = scenario_named("bench", "big").await.into_parts();
    let t = Instant::now();
    populate(&c.source, &src).await;
    eprintln!(
        "populated {} objects in {:?}",
        CONFIGMAPS + SECRETS + DEPLOYMENTS + SERVICES,
        t.elapsed()
    );

    let controller = start_controller(None).await;
    let pid = controller.child.id().unwrap();
    let mapping = MappingFixture::manual("big")
        .direct()
        .source_ns(&src)
        .resource_types(&["configmaps", "secrets", "deployments", "services"])
        .build();
    apply(&c.controller, &ns, &mapping).await;
    wait_condition(&mappings, "big", ("Ready", "False", "AwaitingTrigger")).await;

    // Convergence: trigger -> every object at the target.
    let t = Instant::now();
    trigger(&mappings, "big", "1").await;
    let nm = wait_synced_value(&mappings, "big", "1").await;
    let converge = t.elapsed();
    let status = nm.status.unwrap();
    assert_eq!(
        status.phase,
        Some(SyncPhase::Completed),
        "{:?}",
        status.last_error
    );
    let counts = (
        count(&Api::<ConfigMap>::namespaced(c.target.clone(), &src)).await,
        count(&Api::<Secret>::namespaced(c.target.clone(), &src)).await,
        count(&Api::<Deployment>::namespaced(c.target.clone(), &src)).await,
        count(&Api::<Service>::namespaced(c.target.clone(), &src)).await,
    );
    assert_eq!(counts, (CONFIGMAPS, SECRETS, DEPLOYMENTS, SERVICES));
    eprintln!("converged 2000 objects in {converge:?}");

    // Continuous: switch the mapping, wait for its full resync, then 200 single changes.
    mappings
        .patch(
            "big",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicationMode": "Continuous"}})),
        )
        .await
        .unwrap();
    let generation = mappings.get("big").await.unwrap().metadata.generation;
    wait_for(&mappings, "big", move |nm: Option<&NamespaceMapping>| {
        nm.and_then(|n| n.status.as_ref()).is_some_and(|s| {
            s.observed_generation == generation && s.phase == Some(SyncPhase::Completed)
        })
    })
    .await;
    let source_cms: Api<ConfigMap> = Api::namespaced(c.source.clone(), &src);
    let target_cms: Api<ConfigMap> = Api::namespaced(c.target.clone(), &src);
    let mut latencies = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let name = format!("cm-{}", i * (CONFIGMAPS / CHANGES));
        let value = format!("{}", i + 1);
        let t = Instant::now();
        source_cms
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"data": {"v": value}})),
            )
            .await
            .unwrap();
        let expected = value.clone();
        wait_for_within(
            &target_cms,
            &name,
            move |o: Option<&ConfigMap>| {
                o.and_then(|cm| cm.data.as_ref()).and_then(|d| d.get("v")) == Some(&expected)
            },
            Duration::from_secs(30),
        )
        .await;
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let max = latencies.last().copied().unwrap_or_default();
    let rss_kib = peak_rss_kib(pid);
    let rss_mib = rss_kib as f64 / 1024.0;
    eprintln!("continuous latency over {CHANGES} changes: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    eprintln!("controller peak RSS: {rss_mib:.1} MiB");

    let report = json!({
        "objects": {"configmaps": CONFIGMAPS, "secrets": SECRETS, "deployments": DEPLOYMENTS, "services": SERVICES},
        "converge_seconds": converge.as_secs_f64(),
        "continuous_latency_ms": {
            "changes": CHANGES,
            "p50": p50.as_secs_f64() * 1000.0,
            "p99": p99.as_secs_f64() * 1000.0,
            "max": max.as_secs_f64() * 1000.0,
        },
        "controller_peak_rss_mib": rss_mib,
        "targets": {"converge_seconds": 20, "p99_ms": 1000, "rss_mib": 64},
        "met": {
            "converge": converge <= Duration::from_secs(20),
            "p99": p99 <= Duration::from_secs(1),
            "rss": rss_mib <= 64.0,
        },
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("controller.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!(
        "wrote {}:\n{}",
        path.display(),
        serde_json::to_string_pretty(&report).unwrap()
    );
    controller.kill().await;
}

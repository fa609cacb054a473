//! Test bed lifecycle: `testbed up` for 3 clusters x 2 nodes within the 60 s budget,
//! and `testbed down` leaving no process and no mount behind (asserted from /proc), even with
//! a sandboxed pod running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dr_syncer_e2e::cleanup;
use dr_syncer_e2e::{TestBed, TestBedOptions};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The budget for `up` of 3 clusters x 2 nodes once the binaries are built.
const UP_BUDGET: Duration = Duration::from_secs(60);

/// Creates a pod in `default` of one cluster and waits (120 s) until it is Running, so that
/// `down` has pod processes (and mounts) to clean up.
async fn run_pod(bed: &TestBed, cluster: &str, manifest: &str) {
    let client = bed.client(cluster).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_saphyr::from_str(manifest).unwrap();
    let name = pod.metadata.name.clone().unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = await_condition(pods.clone(), &name, |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Running")
    });
    tokio::time::timeout(Duration::from_secs(120), running)
        .await
        .unwrap_or_else(|_| panic!("{name} pod not Running in time"))
        .unwrap();
}

#[test]
fn up_three_clusters_of_two_nodes_within_budget_and_down_leaves_nothing() {
    let clusters = ["controller", "source", "target"];
    let opts = TestBedOptions::new(env!("CARGO_BIN_EXE_testbed"), &clusters, 2);
    let started = Instant::now();
    let bed = TestBed::start(&opts).unwrap();
    let took = started.elapsed();
    eprintln!("FIGURE testbed up 3x2: {:.1} s", took.as_secs_f64());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for cluster in clusters {
            let client = bed.client(cluster).await.unwrap();
            let nodes: Api<Node> = Api::all(client.clone());
            let list = nodes.list(&ListParams::default()).await.unwrap();
            let ready = list
                .items
                .iter()
                .filter(|n| dr_syncer_e2e::readiness::is_ready(n));
            assert_eq!(ready.count(), 2, "{cluster}: {list:#?}");
        }
        // A sandboxed pod (our image running a system command, with a volume) so that
        // `down` has pod processes and mounts to clean up, not just the control plane.
        run_pod(
            &bed,
            "source",
            "metadata: {name: sleeper}
spec:
  containers:
  - name: sleeper
    image: dr-syncer-e2e-probe:e2e
    command: [sleep, '3600']
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes: [{name: scratch, emptyDir: {}}]",
        )
        .await;
    });
    drop(rt);

    let status = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["status", "--dir"])
        .arg(bed.dir())
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let status = String::from_utf8(status.stdout).unwrap();
    assert!(status.contains("running, phase Ready"), "{status}");
    let ready_nodes = status
        .lines()
        .filter(|l| l.trim_start().starts_with("node ") && l.ends_with(" Ready"))
        .count();
    assert_eq!(ready_nodes, 6, "six Ready nodes: {status}");

    let dir = bed.dir().to_path_buf();
    let supervisor = bed.state().pid;
    let before = cleanup::processes(&dir, Some(supervisor));
    // Supervisor + 4 control-plane processes per cluster + the sleeper.
    assert!(before.len() > 1 + 4 * clusters.len(), "{before:?}");

    let started = Instant::now();
    bed.down().unwrap();
    eprintln!(
        "FIGURE testbed down 3x2: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let left = cleanup::processes(&dir, Some(supervisor));
    assert!(left.is_empty(), "processes left: {left:?}");
    for pid in before {
        assert!(!dr_syncer_e2e::process::alive(pid), "pid {pid} alive");
    }
    assert_eq!(
        cleanup::mounts_under(&dir),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(!dir.join("clusters").exists(), "state not removed");
    assert!(dir.join("logs/supervisor.log").exists(), "logs are kept");

    assert!(
        took <= UP_BUDGET,
        "testbed up 3x2 took {took:?}, budget {UP_BUDGET:?}"
    );
}

/// `down` must leave a clean machine even when the supervisor died without cleaning up
/// (SIGKILL): control-plane children die with it (PDEATHSIG), orphaned pod processes are
/// found from /proc and killed.
#[test]
fn down_cleans_up_after_a_killed_supervisor() {
    let opts = TestBedOptions::new(env!("CARGO_BIN_EXE_testbed"), &["solo"], 1);
    let bed = TestBed::start(&opts).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        run_pod(
            &bed,
            "solo",
            "metadata: {name: orphan}
spec:
  containers: [{name: c, image: dr-syncer-e2e-probe:e2e, command: [sleep, '3600']}]",
        )
        .await;
    });
    drop(rt);

    let dir = bed.dir().to_path_buf();
    let supervisor = bed.state().pid;
    let before = cleanup::processes(&dir, Some(supervisor));
    kill(Pid::from_raw(supervisor as i32), Signal::SIGKILL).unwrap();
    bed.down().unwrap();
    for pid in &before {
        assert!(!dr_syncer_e2e::process::alive(*pid), "pid {pid} alive");
    }
    assert!(cleanup::processes(&dir, Some(supervisor)).is_empty());
    assert!(cleanup::mounts_under(&dir).is_empty());
    assert!(!dir.join("clusters").exists(), "state not removed");
}

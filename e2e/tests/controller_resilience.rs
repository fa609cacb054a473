//! Controller e2e, failures around the controller (issue 5): two replicas with leader
//! election never both run, a stopped source API server deletes nothing and the mapping
//! recovers by itself, and a controller killed mid-sync converges after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;

use controller_support::*;
use std::time::Duration;

use dr_syncer_crds::NamespaceMapping;
use dr_syncer_e2e::wait;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_leader_election_never_both_run() {
    let (_serial, c, ns, src, mappings) = scenario("ha").await.into_parts();
    let lease = format!("lease-{ns}");
    let a = start_controller(Some((&ns, &lease))).await;
    let b = start_controller(Some((&ns, &lease))).await;
    // Exactly one becomes ready (the other waits for the Lease), and stays the only one.
    let (a_ref, b_ref) = (&a, &b);
    let a_leads = poll_until(
        "a leader elected",
        DEADLINE,
        Duration::from_millis(100),
        || async move {
            let (ra, rb) = (a_ref.is_ready().await, b_ref.is_ready().await);
            assert!(!(ra && rb), "both replicas are active");
            match (ra, rb) {
                (true, _) => Ok(true),
                (_, true) => Ok(false),
                _ => Err("no leader elected"),
            }
        },
    )
    .await;
    let (leader, follower) = if a_leads { (a, b) } else { (b, a) };
    for _ in 0..20 {
        assert!(
            !follower.is_ready().await,
            "follower became active while the leader runs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(c.controller.clone(), &ns);
    let holder = lease_holder(&leases, &lease).await;
    assert!(holder.is_some());

    // The leader freezes (SIGSTOP) and cannot renew: the follower takes over after the
    // lease expires; when the old leader wakes up it sees it lost the Lease and exits.
    let mut leader = leader;
    let leader_pid = nix::unistd::Pid::from_raw(leader.child.id().unwrap() as i32);
    nix::sys::signal::kill(leader_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let follower_ref = &follower;
    let took_over = wait::poll(
        "the follower takes over",
        DEADLINE,
        Duration::from_millis(200),
        || async move {
            if follower_ref.is_ready().await {
                Ok(())
            } else {
                Err("follower not ready")
            }
        },
    )
    .await;
    if let Err(e) = took_over {
        let _ = nix::sys::signal::kill(leader_pid, nix::sys::signal::Signal::SIGCONT);
        panic!("follower never took over: {e}");
    }
    nix::sys::signal::kill(leader_pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let exit = tokio::time::timeout(DEADLINE, leader.child.wait())
        .await
        .expect("the old leader kept running after losing the Lease")
        .unwrap();
    assert_eq!(exit.code(), Some(3), "old leader exit: {exit:?}");
    let new_holder = lease_holder(&leases, &lease).await;
    assert_ne!(new_holder, holder);
    // And it does the work.
    apply_configmap(&c.source, &src, "ha", &[("k", "v")]).await;
    MappingFixture::triggered("ha", &src)
        .resource_types(&["configmaps"])
        .apply(&c.controller, &ns)
        .await;
    wait_synced_value(&mappings, "ha", "1").await;
    configmap(&c.target, &src, "ha").await;
    follower.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_source_api_server_deletes_nothing_and_the_mapping_recovers_by_itself() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let (_serial, c, ns, src, mappings) = scenario("outage").await.into_parts();
    for name in ["a", "b", "c"] {
        apply_configmap(&c.source, &src, name, &[("k", "v")]).await;
    }
    for name in ["s1", "s2"] {
        apply_yaml::<Secret>(
            &c.source,
            &src,
            &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\ndata:\n  k: dg==\n"),
        )
        .await;
    }
    let controller = start_controller(None).await;
    // ConfigMaps are synced before Secrets (resourceTypes order): stopping the source while
    // ConfigMaps are applied makes the Secrets listing fail mid-sync.
    MappingFixture::triggered("outage", &src)
        .resource_types(&["configmaps", "secrets"])
        .prune()
        .retry(100, "1s", "3s")
        .apply(&c.controller, &ns)
        .await;
    wait_synced_value(&mappings, "outage", "1").await;
    let target: Api<ConfigMap> = Api::namespaced(c.target.clone(), &src);
    let target_secrets: Api<Secret> = Api::namespaced(c.target.clone(), &src);
    for name in ["s1", "s2"] {
        assert!(target_secrets.get_opt(name).await.unwrap().is_some());
    }

    // Enough new ConfigMaps that the next sync takes a while to apply them.
    const N: usize = 1000;
    let source: Api<ConfigMap> = Api::namespaced(c.source.clone(), &src);
    create_numbered_configmaps(&source, N).await;

    let bed = bed().await;
    let server = bed
        .state()
        .clusters
        .iter()
        .find(|cl| cl.name == SOURCE)
        .unwrap()
        .server
        .clone();
    let pid = Pid::from_raw(apiserver_pid(&server));
    trigger(&mappings, "outage", "2").await;
    // Stop the source API server once the sync has started writing the new ConfigMaps.
    let managed = kube::api::ListParams::default().labels("dr-syncer.io/managed-by-mapping");
    let copied_at_stop = wait_list(
        &target,
        managed_by_mapping(),
        "the second sync writes the new ConfigMaps",
        DEADLINE,
        |copied: &[ConfigMap]| match copied.len() {
            n if n > 3 => Ok(n),
            n => Err(format!(
                "the second sync never wrote anything ({n} objects)"
            )),
        },
    )
    .await;
    kill(pid, Signal::SIGSTOP).unwrap();
    let outcome = wait::object(
        &mappings,
        "outage",
        "Ready with reason SourceUnavailable",
        source_unavailable,
        DEADLINE,
    )
    .await;
    // Whatever happened, let the API server run again before asserting.
    kill(pid, Signal::SIGCONT).unwrap();
    assert!(
        copied_at_stop < N + 3,
        "the sync had already finished ({copied_at_stop} objects) when the source stopped"
    );
    let nm = outcome.expect("the mapping never reported the source as unavailable");
    assert!(
        condition_message(&nm, "Ready").contains("source"),
        "{}",
        condition_message(&nm, "Ready")
    );
    // A partial listing pruned nothing: the Secrets it could not list are still there.
    for name in ["s1", "s2"] {
        assert!(
            target_secrets.get_opt(name).await.unwrap().is_some(),
            "secret {name} was deleted"
        );
    }
    for name in ["a", "b", "c"] {
        assert!(
            target.get_opt(name).await.unwrap().is_some(),
            "{name} was deleted"
        );
    }
    // Recovers by itself (retryConfig), without a new trigger, and finishes the job.
    wait_condition(&mappings, "outage", ("Ready", "True", "SyncSucceeded")).await;
    let copied = target.list_metadata(&managed).await.unwrap().items.len();
    assert_eq!(copied, N + 3, "not every ConfigMap arrived after recovery");
    for name in ["s1", "s2"] {
        assert!(target_secrets.get_opt(name).await.unwrap().is_some());
    }
    controller.kill().await;
}

/// The holder of Lease `name`.
async fn lease_holder(
    leases: &Api<k8s_openapi::api::coordination::v1::Lease>,
    name: &str,
) -> Option<String> {
    leases
        .get(name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
}

/// The pid of the kube-apiserver serving `server` (`https://127.0.0.1:PORT`).
fn apiserver_pid(server: &str) -> i32 {
    let port = server.rsplit(':').next().unwrap().trim_end_matches('/');
    let flag = format!("--secure-port={port}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a.contains("kube-apiserver")) && args.contains(&flag) {
            return pid;
        }
    }
    panic!("no kube-apiserver with {flag}");
}

/// The mapping reports its source as unavailable (condition Ready, reason SourceUnavailable).
fn source_unavailable(nm: Option<&NamespaceMapping>) -> bool {
    let v = serde_json::to_value(nm).unwrap();
    v["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["reason"] == "SourceUnavailable")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_controller_mid_sync_then_restarting_converges() {
    let (_serial, c, ns, src, mappings) = scenario("crash").await.into_parts();
    const N: usize = 400;
    let source: Api<ConfigMap> = Api::namespaced(c.source.clone(), &src);
    create_numbered_configmaps(&source, N).await;
    let first = start_controller(None).await;
    MappingFixture::triggered("crash", &src)
        .resource_types(&["configmaps"])
        .apply(&c.controller, &ns)
        .await;
    // Kill it while the sync runs.
    wait_for(&mappings, "crash", |nm: Option<&NamespaceMapping>| {
        nm.and_then(|n| n.status.as_ref())
            .is_some_and(|s| s.phase == Some(dr_syncer_crds::namespace_mapping::SyncPhase::Running))
    })
    .await;
    let target: Api<ConfigMap> = Api::namespaced(c.target.clone(), &src);
    // ...once it has written something (watch with a deadline).
    wait_list(
        &target,
        managed_by_mapping(),
        "the sync writes something",
        DEADLINE,
        |copied: &[ConfigMap]| {
            if copied.is_empty() {
                Err("the sync never wrote anything")
            } else {
                Ok(())
            }
        },
    )
    .await;
    first.kill().await;
    let copied_at_kill = target
        .list_metadata(&kube::api::ListParams::default().labels("dr-syncer.io/managed-by-mapping"))
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    eprintln!("{copied_at_kill} of {N} objects copied when the controller was killed");

    let second = start_controller(None).await;
    let nm = wait_synced_value(&mappings, "crash", "1").await;
    assert_eq!(
        nm.status.as_ref().unwrap().phase,
        Some(dr_syncer_crds::namespace_mapping::SyncPhase::Completed)
    );
    let names: std::collections::BTreeSet<String> = target
        .list_metadata(&kube::api::ListParams::default().labels("dr-syncer.io/managed-by-mapping"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.metadata.name.unwrap())
        .collect();
    let expected: std::collections::BTreeSet<String> = (0..N).map(|i| format!("cm-{i}")).collect();
    assert_eq!(names, expected);
    second.kill().await;
}

//! Controller e2e, the rules of a sync whatever its mode (issue 5): invalid specs are named
//! in conditions, pruning deletes only what the mapping wrote (and never on an empty
//! source), immutable fields are recreated only on objects the mapping wrote, and object
//! selectors pick the objects. Against the real controller and three real clusters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;

use controller_support::*;
use dr_syncer_crds::RemoteCluster;
use dr_syncer_crds::namespace_mapping::ImmutableResourceHandling;
use dr_syncer_e2e::wait::Watched;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

/// Waits ([`DEADLINE`]) for condition `(type, status, reason)` on object `name` and checks
/// that its message names `says` (the problem), failing with the message; returns the object.
async fn wait_condition_naming<K>(
    api: &Api<K>,
    name: &str,
    cond: (&'static str, &'static str, &'static str),
    says: &str,
) -> K
where
    K: Watched + serde::Serialize,
{
    let object = wait_condition(api, name, cond).await;
    let message = condition_message(&object, cond.0);
    assert!(message.contains(says), "{message}");
    object
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_report_conditions_naming_the_problem_without_crashing() {
    let (_serial, c, ns, src, mappings) = scenario("bad").await.into_parts();
    let mut controller = start_controller(None).await;
    let rcs: Api<RemoteCluster> = Api::namespaced(c.controller.clone(), &ns);

    // Unknown RemoteCluster.
    MappingFixture::manual("unknown-cluster")
        .clusters("nope", TARGET)
        .source_ns(&src)
        .apply(&c.controller, &ns)
        .await;
    let cond = ("Ready", "False", "RemoteClusterNotFound");
    wait_condition_naming(&mappings, "unknown-cluster", cond, "nope").await;

    // Missing kubeconfig Secret.
    apply(
        &c.controller,
        &ns,
        &RemoteClusterFixture::new("no-secret", "missing", &ns).build(),
    )
    .await;
    let cond = ("KubeconfigAvailable", "False", "SecretNotFound");
    let rc = wait_condition_naming(&rcs, "no-secret", cond, &format!("{ns}/missing")).await;
    assert_eq!(
        rc.status.unwrap().health,
        Some(dr_syncer_crds::remote_cluster::ClusterHealth::Unhealthy)
    );

    // Malformed kubeconfig.
    kubeconfig_secret(
        &c,
        &ns,
        "garbage",
        "kubeconfig",
        b"this: [is not a kubeconfig".to_vec(),
    )
    .await;
    apply(
        &c.controller,
        &ns,
        &RemoteClusterFixture::new("garbage", "garbage", &ns).build(),
    )
    .await;
    wait_condition(
        &rcs,
        "garbage",
        ("KubeconfigValid", "False", "KubeconfigInvalid"),
    )
    .await;
    // Fixing the Secret rebuilds the client: the cluster becomes available.
    let good = std::fs::read(bed().await.kubeconfig(SOURCE)).unwrap();
    kubeconfig_secret(&c, &ns, "garbage", "kubeconfig", good).await;
    let rc = wait_condition(
        &rcs,
        "garbage",
        ("ClusterAvailable", "True", "ApiServerReachable"),
    )
    .await;
    assert_eq!(
        rc.status.unwrap().health,
        Some(dr_syncer_crds::remote_cluster::ClusterHealth::Healthy)
    );

    // Bad cron (passes the API server's pattern, fails the parser).
    // Each bad mapping writes its own destination namespace: two mappings into one
    // namespace are refused as overlapping (issue 12) before their other faults show.
    MappingFixture::scheduled("bad-cron", "61 * * * *")
        .direct()
        .source_ns(&src)
        .target_ns(&format!("{src}-cron"))
        .apply(&c.controller, &ns)
        .await;
    let cond = ("Stalled", "True", "InvalidSchedule");
    wait_condition_naming(&mappings, "bad-cron", cond, "minute").await;

    // Unknown resource type.
    MappingFixture::triggered("bad-type", &src)
        .target_ns(&format!("{src}-type"))
        .resource_types(&["configmaps", "frobnicators"])
        .apply(&c.controller, &ns)
        .await;
    let cond = ("Stalled", "True", "InvalidSpec");
    wait_condition_naming(&mappings, "bad-type", cond, "frobnicators").await;

    // Still alive and healthy: no crash loop.
    assert!(
        controller.child.try_wait().unwrap().is_none(),
        "controller exited"
    );
    assert!(matches!(controller.get("/healthz").await, Some((200, _))));
    controller.kill().await;
}

/// Checks that each named ConfigMap is still at the target, failing with
/// "<name> was deleted<how>".
async fn assert_kept(target: &Api<ConfigMap>, names: &[&str], how: &str) {
    for name in names {
        assert!(
            target.get_opt(name).await.unwrap().is_some(),
            "{name} was deleted{how}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_deletes_only_managed_objects_and_refuses_an_empty_source() {
    let (_serial, c, ns, src, mappings) = scenario("prune").await.into_parts();
    for name in ["a", "b", "c", "d"] {
        apply_configmap(&c.source, &src, name, &[("k", "v")]).await;
    }
    let controller = start_controller(None).await;
    MappingFixture::triggered("prune", &src)
        .resource_types(&["configmaps"])
        .prune()
        .apply(&c.controller, &ns)
        .await;
    wait_synced_value(&mappings, "prune", "1").await;
    let target: Api<ConfigMap> = Api::namespaced(c.target.clone(), &src);
    apply_configmap(&c.target, &src, "local", &[("mine", "true")]).await;

    let source: Api<ConfigMap> = Api::namespaced(c.source.clone(), &src);
    source.delete("a", &DeleteParams::default()).await.unwrap();
    // `b` still exists at the source but is now ignored: its DR copy is kept (pruning is for
    // objects deleted at the source, not for objects filtered out).
    let ignore = serde_json::json!({"metadata": {"labels": {"dr-syncer.io/ignore": "true"}}});
    source
        .patch("b", &PatchParams::default(), &Patch::Merge(&ignore))
        .await
        .unwrap();
    trigger(&mappings, "prune", "2").await;
    wait_synced_value(&mappings, "prune", "2").await;
    assert!(
        target.get_opt("a").await.unwrap().is_none(),
        "a was not pruned"
    );
    assert_kept(&target, &["b", "c", "d", "local", "kube-root-ca.crt"], "").await;

    // Everything gone at the source: refused, nothing deleted, condition says why.
    for name in ["b", "c", "d"] {
        source.delete(name, &DeleteParams::default()).await.unwrap();
    }
    trigger(&mappings, "prune", "3").await;
    wait_synced_value(&mappings, "prune", "3").await;
    let cond = ("PruneBlocked", "True", "PruneRefused");
    wait_condition_naming(&mappings, "prune", cond, "nothing was deleted").await;
    assert_kept(&target, &["b", "c", "d", "local"], "").await;

    // Deleting the mapping keeps the DR copy and removes the finalizer.
    let nm = mappings.get("prune").await.unwrap();
    assert!(
        nm.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"dr-syncer.io/finalizer".to_owned())
    );
    mappings
        .delete("prune", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&mappings, "prune", DEADLINE).await;
    assert_kept(&target, &["b", "c", "d"], " with its mapping").await;
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_on_immutable_fields_replaces_only_objects_the_mapping_wrote() {
    let (_serial, c, ns, src, mappings) = scenario("immutable").await.into_parts();
    let immutable_cm = |name: &str, value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\nimmutable: true\ndata:\n  v: \"{value}\"\n"
        )
    };
    apply_yaml::<ConfigMap>(&c.source, &src, &immutable_cm("ours", "1")).await;
    apply_yaml::<ConfigMap>(&c.source, &src, &immutable_cm("theirs", "1")).await;
    // A user's own object of the same name already sits in the target namespace.
    namespace_named(&c.target, &src).await;
    apply_yaml::<ConfigMap>(&c.target, &src, &immutable_cm("theirs", "user")).await;

    let controller = start_controller(None).await;
    MappingFixture::triggered("immutable", &src)
        .resource_types(&["configmaps"])
        .immutable(ImmutableResourceHandling::Recreate)
        .apply(&c.controller, &ns)
        .await;
    wait_synced_value(&mappings, "immutable", "1").await;
    let target: Api<ConfigMap> = Api::namespaced(c.target.clone(), &src);
    assert_eq!(data(&target.get("ours").await.unwrap())["v"], "1");

    // Change both at the source: ours is recreated with the new data, theirs is left alone.
    let source: Api<ConfigMap> = Api::namespaced(c.source.clone(), &src);
    for name in ["ours", "theirs"] {
        source.delete(name, &DeleteParams::default()).await.unwrap();
        wait_gone(&source, name, DEADLINE).await;
        apply_yaml::<ConfigMap>(&c.source, &src, &immutable_cm(name, "2")).await;
    }
    trigger(&mappings, "immutable", "2").await;
    let nm = wait_synced_value(&mappings, "immutable", "2").await;
    assert_eq!(data(&target.get("ours").await.unwrap())["v"], "2");
    let theirs = target.get("theirs").await.unwrap();
    assert_eq!(
        data(&theirs)["v"],
        "user",
        "an unmanaged object was recreated"
    );
    // The mapping says which object it left alone, and why (issue 12: foreign objects).
    let foreign = condition_message(&nm, "ForeignObjects");
    assert!(
        foreign.contains("ConfigMap/theirs") && foreign.contains("not created by this mapping"),
        "ForeignObjects should name theirs: {foreign:?}"
    );
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_selector_label_selector_and_name_regexes_pick_the_objects() {
    let (_serial, c, ns, src, mappings) = scenario("select").await.into_parts();
    // (name, tier label): only app-config passes all three filters.
    let objects = [
        ("app-config", "app"), // label ok, included, not excluded
        ("app-cache", "app"),  // excluded by excludeNames
        ("web-config", "app"), // not matched by includeNames
        ("app-db", "db"),      // fails the label selector
    ];
    for (name, tier) in objects {
        apply_yaml::<ConfigMap>(
            &c.source,
            &src,
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    tier: {tier}\ndata:\n  k: v\n"
            ),
        )
        .await;
    }
    let controller = start_controller(None).await;
    MappingFixture::triggered("select", &src)
        .resource_types(&["configmaps"])
        .select(&[("tier", "app")], &["app-.*"], &[".*-cache"])
        .apply(&c.controller, &ns)
        .await;
    let nm = wait_synced_value(&mappings, "select", "1").await;
    assert_eq!(
        nm.status.as_ref().and_then(|s| s.phase),
        Some(dr_syncer_crds::namespace_mapping::SyncPhase::Completed)
    );
    let target: Api<ConfigMap> = Api::namespaced(c.target.clone(), &src);
    assert!(target.get_opt("app-config").await.unwrap().is_some());
    for name in ["app-cache", "web-config", "app-db"] {
        assert!(
            target.get_opt(name).await.unwrap().is_none(),
            "{name} should have been filtered out"
        );
    }
    controller.kill().await;
}

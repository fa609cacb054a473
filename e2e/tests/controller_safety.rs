//! The misconfiguration battery (issue 12): bad and dangerous NamespaceMappings against the
//! real controller and three real clusters. For every case: no source object changed
//! (resourceVersions unchanged), no destination object the mapping did not create changed
//! or vanished, a named condition and a Warning event, and no crash or hot loop (the
//! controller stays ready; writes of mappings and events per 30 s are bounded, read from
//! the controller cluster's API server metrics).
//!
//! | case group | test |
//! |---|---|
//! | same cluster and namespace (by name, alias RemoteCluster, reverse alias, a kubeconfig for the wrong cluster, a ClusterMapping loop; Manual, Scheduled, Continuous, prune), protected namespaces, unusable clusters and references, invalid specs | `every_bad_mapping_is_refused_with_a_condition_and_an_event_and_harms_nothing` |
//! | foreign objects and namespace, forged marks, overlapping mappings (direct and through a ClusterMapping), a recreated mapping, the adopt opt-in, same cluster into another namespace | `foreign_objects_forged_marks_and_overlaps_are_left_alone` |
//! | Continuous deletion of all 20 ConfigMaps at the source | `a_continuous_mass_deletion_leaves_at_least_half_with_a_refusal` |

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;

use std::collections::BTreeMap;
use std::time::Duration;

use controller_support::*;
use dr_syncer_crds::NamespaceMapping;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The namespace the controller is told it runs in (protected like kube-system).
const CONTROLLER_NS: &str = "dr-syncer-ctl";
/// The agents' namespace (protected).
const AGENT_NS: &str = "dr-syncer-agent";

/// `Kind/name` -> resourceVersion of the namespace and its ConfigMaps, Secrets,
/// Deployments and Services.
async fn snapshot(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let namespace = Api::<Namespace>::all(client.clone()).get(ns).await.unwrap();
    out.insert(
        format!("Namespace/{ns}"),
        namespace.resource_version().unwrap(),
    );
    macro_rules! kind {
        ($t:ty, $k:literal) => {
            for o in Api::<$t>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await
                .unwrap()
            {
                out.insert(
                    format!("{}/{}", $k, o.name_any()),
                    o.resource_version().unwrap(),
                );
            }
        };
    }
    kind!(ConfigMap, "ConfigMap");
    kind!(Secret, "Secret");
    kind!(Deployment, "Deployment");
    kind!(Service, "Service");
    out
}

/// A user's own ConfigMap `settings` (and the namespace, when missing) in `ns`; returns
/// the resourceVersions of both.
async fn user_settings(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    if nss.get_opt(ns).await.unwrap().is_none() {
        nss.patch(ns, &PatchParams::apply("e2e-user"), &Patch::Apply(&body))
            .await
            .unwrap();
    }
    apply_configmap(client, ns, "settings", &[("owner", "user")]).await;
    settings_now(client, ns).await
}

/// The resourceVersions of namespace `ns` and its ConfigMap `settings`, read back.
async fn settings_now(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    BTreeMap::from([
        (
            format!("Namespace/{ns}"),
            nss.get(ns).await.unwrap().resource_version().unwrap(),
        ),
        (
            format!("ConfigMap/{ns}/settings"),
            cm.get("settings")
                .await
                .unwrap()
                .resource_version()
                .unwrap(),
        ),
    ])
}

/// Writes (create, update, patch, apply, delete) of NamespaceMappings and Events so far,
/// from the API server's `apiserver_request_total`.
async fn writes(client: &Client) -> f64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            l.contains("resource=\"namespacemappings\"") || l.contains("resource=\"events\"")
        })
        .filter(|l| {
            ["POST", "PUT", "PATCH", "APPLY", "DELETE"]
                .iter()
                .any(|v| l.contains(&format!("verb=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One bad mapping and what it must produce.
struct Case {
    mapping: MappingFixture,
    name: &'static str,
    /// (condition type, status, reason).
    cond: (&'static str, &'static str, &'static str),
    /// Words the condition message contains.
    says: String,
    /// Reason of the Warning event about the mapping.
    event: &'static str,
}

fn case(
    name: &'static str,
    mapping: MappingFixture,
    cond: (&'static str, &'static str, &'static str),
    says: impl Into<String>,
    event: &'static str,
) -> Case {
    Case {
        mapping,
        name,
        cond,
        says: says.into(),
        event,
    }
}

/// Waits until every case has a Warning event with its reason; fails naming the missing.
async fn wait_events(client: &Client, ns: &str, cases: &[Case]) {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    poll_until(
        "a Warning event for every case",
        DEADLINE,
        Duration::from_millis(500),
        || {
            let events = events.clone();
            async move {
                let all = events.list(&ListParams::default()).await.unwrap();
                let missing: Vec<String> = cases
                    .iter()
                    .filter(|c| {
                        !all.items.iter().any(|e| {
                            e.involved_object.name.as_deref() == Some(c.name)
                                && e.reason.as_deref() == Some(c.event)
                                && e.type_.as_deref() == Some("Warning")
                        })
                    })
                    .map(|c| format!("{} ({})", c.name, c.event))
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(missing)
                }
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_mapping_is_refused_with_a_condition_and_an_event_and_harms_nothing() {
    let (_serial, c, ns, src, mappings) = scenario("victim").await.into_parts();
    let bed = bed().await;
    // The production namespace: what a same-cluster mapping would overwrite and scale.
    apply_configmap(&c.source, &src, "app-config", &[("mode", "prod")]).await;
    apply_yaml::<Secret>(
        &c.source,
        &src,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: s3cret\n",
    )
    .await;
    apply_yaml::<Deployment>(
        &c.source,
        &src,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - {name: web, image: nginx}\n",
    )
    .await;
    apply_yaml::<Service>(
        &c.source,
        &src,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {port: 80}\n",
    )
    .await;
    // Extra RemoteClusters: an alias of the source, a "target" whose kubeconfig reaches
    // the source, a garbled kubeconfig, a Secret without the key; a ClusterMapping loop.
    let source_kubeconfig = std::fs::read(bed.kubeconfig(SOURCE)).unwrap();
    kubeconfig_secret(&c, &ns, "wrong", "kubeconfig", source_kubeconfig.clone()).await;
    kubeconfig_secret(
        &c,
        &ns,
        "garbled",
        "kubeconfig",
        b"clusters: [oops".to_vec(),
    )
    .await;
    kubeconfig_secret(&c, &ns, "no-key", "config", source_kubeconfig).await;
    for (name, secret) in [
        ("source-alias", "source-kubeconfig"),
        ("target-wrong", "wrong"),
        ("garbled", "garbled"),
        ("no-key", "no-key"),
    ] {
        let rc = RemoteClusterFixture::new(name, secret, &ns)
            .health_check_every("5s")
            .build();
        apply(&c.controller, &ns, &rc).await;
    }
    for (name, from, to) in [("loop", SOURCE, "source-alias"), ("good", SOURCE, TARGET)] {
        let cm = PairFixture::new(name, from, to)
            .no_connectivity_check()
            .build();
        apply(&c.controller, &ns, &cm).await;
    }
    // Users' objects in the protected namespaces of the target.
    let protected = [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        AGENT_NS,
        CONTROLLER_NS,
    ];
    let mut target_before = BTreeMap::new();
    for p in protected {
        target_before.extend(user_settings(&c.target, p).await);
    }
    let source_before = snapshot(&c.source, &src).await;

    let same = ("Ready", "False", "SourceIsDestination");
    let prot = ("Ready", "False", "ProtectedNamespace");
    let into = |suffix: &str| format!("{src}-{suffix}");
    let m = |name: &str| MappingFixture::manual(name).sync_now("1").source_ns(&src);
    let mut cases = vec![
        case(
            "same-name",
            m("same-name").clusters(SOURCE, SOURCE),
            same,
            &src,
            "SourceIsDestination",
        ),
        case(
            "same-name-explicit-ns",
            m("same-name-explicit-ns")
                .clusters(SOURCE, SOURCE)
                .target_ns(&src),
            same,
            &src,
            "SourceIsDestination",
        ),
        case(
            "same-alias",
            m("same-alias").clusters(SOURCE, "source-alias"),
            same,
            "source-alias",
            "SourceIsDestination",
        ),
        case(
            "same-reverse-alias",
            m("same-reverse-alias").clusters("source-alias", SOURCE),
            same,
            "source-alias",
            "SourceIsDestination",
        ),
        case(
            "same-wrong-kubeconfig",
            m("same-wrong-kubeconfig").clusters(SOURCE, "target-wrong"),
            same,
            "target-wrong",
            "SourceIsDestination",
        ),
        case(
            "same-cluster-mapping-loop",
            m("same-cluster-mapping-loop").cluster_mapping("loop"),
            same,
            &src,
            "SourceIsDestination",
        ),
        case(
            "same-prune",
            m("same-prune").clusters(SOURCE, SOURCE).prune(),
            same,
            &src,
            "SourceIsDestination",
        ),
        case(
            "same-continuous",
            MappingFixture::continuous("same-continuous")
                .clusters(SOURCE, SOURCE)
                .source_ns(&src),
            same,
            &src,
            "SourceIsDestination",
        ),
        case(
            "same-scheduled",
            MappingFixture::scheduled("same-scheduled", "* * * * *")
                .clusters(SOURCE, "source-alias")
                .source_ns(&src),
            same,
            &src,
            "SourceIsDestination",
        ),
        case(
            "same-data",
            m("same-data")
                .clusters(SOURCE, SOURCE)
                .pvc_data(DataSyncFixture::timeout("1m")),
            same,
            &src,
            "SourceIsDestination",
        ),
        case(
            "into-kube-system",
            m("into-kube-system")
                .direct()
                .target_ns("kube-system")
                .prune(),
            prot,
            "kube-system",
            "ProtectedNamespace",
        ),
        case(
            "into-kube-public",
            m("into-kube-public").direct().target_ns("kube-public"),
            prot,
            "kube-public",
            "ProtectedNamespace",
        ),
        case(
            "into-kube-node-lease",
            m("into-kube-node-lease")
                .direct()
                .target_ns("kube-node-lease"),
            prot,
            "kube-node-lease",
            "ProtectedNamespace",
        ),
        case(
            "into-agent-ns",
            m("into-agent-ns").direct().target_ns(AGENT_NS),
            prot,
            AGENT_NS,
            "ProtectedNamespace",
        ),
        case(
            "into-controller-ns",
            m("into-controller-ns").direct().target_ns(CONTROLLER_NS),
            prot,
            CONTROLLER_NS,
            "ProtectedNamespace",
        ),
        case(
            "into-kube-system-continuous",
            MappingFixture::continuous("into-kube-system-continuous")
                .direct()
                .source_ns(&src)
                .target_ns("kube-system"),
            prot,
            "kube-system",
            "ProtectedNamespace",
        ),
        case(
            "garbled-kubeconfig",
            m("garbled-kubeconfig")
                .clusters(SOURCE, "garbled")
                .target_ns(&into("garbled")),
            ("Ready", "False", "RemoteClusterNotReady"),
            "garbled",
            "RemoteClusterNotReady",
        ),
        case(
            "kubeconfig-key-missing",
            m("kubeconfig-key-missing")
                .clusters(SOURCE, "no-key")
                .target_ns(&into("nokey")),
            ("Ready", "False", "RemoteClusterNotReady"),
            "no-key",
            "RemoteClusterNotReady",
        ),
        case(
            "missing-remote-cluster",
            m("missing-remote-cluster")
                .clusters(SOURCE, "nowhere")
                .target_ns(&into("nowhere")),
            ("Ready", "False", "RemoteClusterNotFound"),
            "nowhere",
            "RemoteClusterNotFound",
        ),
        case(
            "missing-source-cluster",
            m("missing-source-cluster")
                .clusters("elsewhere", TARGET)
                .target_ns(&into("elsewhere")),
            ("Ready", "False", "RemoteClusterNotFound"),
            "elsewhere",
            "RemoteClusterNotFound",
        ),
        case(
            "missing-cluster-mapping",
            m("missing-cluster-mapping")
                .cluster_mapping("absent")
                .target_ns(&into("absent")),
            ("Ready", "False", "ClusterMappingNotFound"),
            "absent",
            "ClusterMappingNotFound",
        ),
        case(
            "invalid-cron",
            MappingFixture::scheduled("invalid-cron", "61 * * * *")
                .direct()
                .source_ns(&src)
                .target_ns(&into("cron")),
            ("Stalled", "True", "InvalidSchedule"),
            "minute",
            "InvalidSchedule",
        ),
        case(
            "unknown-kind",
            m("unknown-kind")
                .direct()
                .target_ns(&into("kind"))
                .resource_types(&["configmaps", "frobnicators"]),
            ("Stalled", "True", "InvalidSpec"),
            "frobnicators",
            "SyncFailed",
        ),
        case(
            "bad-label-selector",
            m("bad-label-selector")
                .direct()
                .target_ns(&into("selector"))
                .with(|spec| {
                    spec.object_selector = Some(
                        serde_json::from_value(json!({"labelSelector": {"matchExpressions":
                            [{"key": "app", "operator": "Frob", "values": ["x"]}]}}))
                        .unwrap(),
                    );
                }),
            ("Stalled", "True", "InvalidSpec"),
            "Frob",
            "SyncFailed",
        ),
        case(
            "missing-source-namespace",
            m("missing-source-namespace")
                .direct()
                .source_ns(&into("gone"))
                .target_ns(&into("gone-dr")),
            ("Ready", "False", "SourceNamespaceMissing"),
            "gone",
            "SyncFailed",
        ),
        case(
            "no-destination-namespace",
            m("no-destination-namespace")
                .direct()
                .target_ns(&into("absent-dr"))
                .no_create_namespace(),
            ("Ready", "False", "DestinationNamespaceMissing"),
            "absent-dr",
            "SyncFailed",
        ),
        case(
            "same-via-good-cluster-mapping-into-protected",
            m("same-via-good-cluster-mapping-into-protected")
                .cluster_mapping("good")
                .target_ns("kube-public"),
            prot,
            "kube-public",
            "ProtectedNamespace",
        ),
    ];
    let env = [("POD_NAMESPACE", CONTROLLER_NS)];
    let mut controller = start_controller_with(None, &env).await;
    for case in cases.iter_mut() {
        let fixture = std::mem::replace(&mut case.mapping, MappingFixture::manual("unused"));
        fixture.apply(&c.controller, &ns).await;
    }
    for case in &cases {
        let nm: NamespaceMapping = wait_condition(&mappings, case.name, case.cond).await;
        let message = condition_message(&nm, case.cond.0);
        assert!(
            message.contains(&case.says),
            "{}: {message} should name {}",
            case.name,
            case.says
        );
    }
    wait_events(&c.controller, &ns, &cases).await;

    // No hot loop: over 30 s, a bounded number of writes of mappings and events.
    let before = writes(&c.controller).await;
    let window = Duration::from_secs(30);
    let quiet = tokio::time::timeout(window, controller.child.wait()).await;
    assert!(quiet.is_err(), "the controller exited: {quiet:?}");
    let written = writes(&c.controller).await - before;
    eprintln!(
        "{} bad mappings: {written} mapping/event writes in 30 s",
        cases.len()
    );
    assert!(
        written <= cases.len() as f64 * 2.0,
        "{written} writes in 30 s for {} mappings: a hot loop",
        cases.len()
    );
    assert!(controller.is_ready().await, "controller not ready");

    // Nothing harmed: the source untouched, the users' objects untouched.
    assert_eq!(
        snapshot(&c.source, &src).await,
        source_before,
        "source changed"
    );
    let mut target_after = BTreeMap::new();
    for p in protected {
        target_after.extend(settings_now(&c.target, p).await);
    }
    assert_eq!(target_after, target_before, "a protected namespace changed");
    let deployment: Deployment = Api::namespaced(c.source.clone(), &src)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        deployment.spec.unwrap().replicas,
        Some(2),
        "production scaled"
    );
    assert!(cases.len() >= 25, "{} cases", cases.len());
    controller.kill().await;
}

/// A destination ConfigMap in `ns` carrying the marks of mapping `dr_ns/name`, with the
/// given mapping uid (or none, as marks before mapping uids were).
async fn forged(client: &Client, ns: &str, cm: &str, dr_ns: &str, uid: Option<&str>) {
    let mut annotations = json!({"dr-syncer.io/mapping": format!("{dr_ns}/fg")});
    if let Some(uid) = uid {
        annotations["dr-syncer.io/mapping-uid"] = json!(uid);
    }
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": cm, "labels": {"dr-syncer.io/managed-by-mapping": format!("{dr_ns}.fg")},
            "annotations": annotations},
        "data": {"owner": "user"}});
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(cm, &PatchParams::apply("e2e-user"), &Patch::Apply(&body))
        .await
        .unwrap();
}

/// Creates mapping `fg` (`src` into `dst`, pruning), waits for its first sync and
/// returns its `ForeignObjects` message (which must be True/ForeignObjectsFound).
async fn first_sync_of_fg(c: &Clusters, ns: &str, src: &str, dst: &str) -> String {
    let mappings: Api<NamespaceMapping> = Api::namespaced(c.controller.clone(), ns);
    MappingFixture::triggered("fg", src)
        .target_ns(dst)
        .prune()
        .apply(&c.controller, ns)
        .await;
    wait_synced_value(&mappings, "fg", "1").await;
    let found = ("ForeignObjects", "True", "ForeignObjectsFound");
    let nm = wait_condition(&mappings, "fg", found).await;
    condition_message(&nm, "ForeignObjects")
}

/// Asserts every object of `before` still has its resourceVersion in `after`.
fn assert_untouched(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) {
    for (object, rv) in before {
        assert_eq!(after.get(object), Some(rv), "{object} changed or vanished");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_objects_forged_marks_and_overlaps_are_left_alone() {
    let (_serial, c, ns, src, mappings) = scenario("foreign").await.into_parts();
    for name in ["a", "b", "theirs", "forged-nouid", "forged-wronguid"] {
        apply_configmap(&c.source, &src, name, &[("from", "source")]).await;
    }
    // The user's own destination namespace and objects, three named like source objects,
    // two of them with forged marks of mapping `fg` (no uid, another uid).
    let dst = format!("{src}-dr");
    let user_ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": dst, "labels": {"team": "payments",
            "pod-security.kubernetes.io/enforce": "restricted"}}});
    Api::<Namespace>::all(c.target.clone())
        .patch(
            &dst,
            &PatchParams::apply("e2e-user"),
            &Patch::Apply(&user_ns),
        )
        .await
        .unwrap();
    apply_configmap(&c.target, &dst, "theirs", &[("owner", "user")]).await;
    forged(&c.target, &dst, "forged-nouid", &ns, None).await;
    let other_uid = "00000000-0000-0000-0000-000000000000";
    forged(&c.target, &dst, "forged-wronguid", &ns, Some(other_uid)).await;
    let victims = snapshot(&c.target, &dst).await;

    let controller = start_controller(None).await;
    let message = first_sync_of_fg(&c, &ns, &src, &dst).await;
    for name in ["theirs", "forged-nouid", "forged-wronguid"] {
        assert!(message.contains(name), "{message} should list {name}");
    }
    assert_untouched(&victims, &snapshot(&c.target, &dst).await);
    let target: Api<ConfigMap> = Api::namespaced(c.target.clone(), &dst);
    assert_eq!(data(&target.get("a").await.unwrap())["from"], "source");

    // Deleting the source copies never prunes the user's objects.
    let source: Api<ConfigMap> = Api::namespaced(c.source.clone(), &src);
    for name in ["theirs", "forged-wronguid"] {
        source.delete(name, &DeleteParams::default()).await.unwrap();
    }
    trigger(&mappings, "fg", "2").await;
    wait_synced_value(&mappings, "fg", "2").await;
    // A mark without a uid (written before marks carried one) is this mapping's once it
    // has synced: the upgrade path. A fresh or recreated mapping never accepts one (above
    // and below); a mark with another uid is never accepted.
    let mut victims = victims;
    victims.remove("ConfigMap/forged-nouid");
    assert_untouched(&victims, &snapshot(&c.target, &dst).await);

    // Two more mappings into the same namespace, directly and through a ClusterMapping:
    // the older mapping keeps it.
    let pair = PairFixture::new("pair", SOURCE, TARGET)
        .no_connectivity_check()
        .build();
    apply(&c.controller, &ns, &pair).await;
    MappingFixture::triggered("ov-direct", &src)
        .target_ns(&dst)
        .apply(&c.controller, &ns)
        .await;
    MappingFixture::manual("ov-cm")
        .sync_now("1")
        .cluster_mapping("pair")
        .source_ns(&src)
        .target_ns(&dst)
        .apply(&c.controller, &ns)
        .await;
    for name in ["ov-direct", "ov-cm"] {
        let nm = wait_condition(&mappings, name, ("Ready", "False", "OverlappingMapping")).await;
        let message = condition_message(&nm, "Ready");
        assert!(message.contains(&format!("{ns}/fg")), "{message}");
        mappings
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        wait_gone(&mappings, name, DEADLINE).await;
    }

    // A recreated mapping (new uid) does not own its predecessor's copies: listed, kept.
    mappings
        .delete("fg", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&mappings, "fg", DEADLINE).await;
    let copies = snapshot(&c.target, &dst).await;
    source.delete("a", &DeleteParams::default()).await.unwrap();
    let message = first_sync_of_fg(&c, &ns, &src, &dst).await;
    assert!(message.contains("ConfigMap/b"), "{message}");
    assert_untouched(&copies, &snapshot(&c.target, &dst).await);

    // The adopt opt-in takes the look-alikes over (positive control of the guard).
    MappingFixture::triggered("fg", &src)
        .sync_now("adopt")
        .target_ns(&dst)
        .prune()
        .adopt_existing()
        .apply(&c.controller, &ns)
        .await;
    wait_synced_value(&mappings, "fg", "adopt").await;
    assert_eq!(
        data(&target.get("forged-nouid").await.unwrap())["from"],
        "source"
    );
    assert_eq!(data(&target.get("b").await.unwrap())["from"], "source");
    assert_eq!(
        data(&target.get("theirs").await.unwrap())["owner"],
        "user",
        "gone at the source: adopting overwrites, it does not prune"
    );

    // Same cluster, another namespace: allowed, and the source stays as it is.
    let source_before = snapshot(&c.source, &src).await;
    let copy = format!("{src}-copy");
    MappingFixture::triggered("copy", &src)
        .clusters(SOURCE, SOURCE)
        .target_ns(&copy)
        .apply(&c.controller, &ns)
        .await;
    wait_synced_value(&mappings, "copy", "1").await;
    let copied: Api<ConfigMap> = Api::namespaced(c.source.clone(), &copy);
    assert_eq!(data(&copied.get("b").await.unwrap())["from"], "source");
    assert_eq!(
        snapshot(&c.source, &src).await,
        source_before,
        "source changed"
    );
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_mass_deletion_leaves_at_least_half_with_a_refusal() {
    let (_serial, c, ns, src, mappings) = scenario("mass").await.into_parts();
    let source: Api<ConfigMap> = Api::namespaced(c.source.clone(), &src);
    create_numbered_configmaps(&source, 20).await;
    let controller = start_controller(None).await;
    MappingFixture::continuous("mass")
        .direct()
        .source_ns(&src)
        .resource_types(&["configmaps"])
        .prune()
        .apply(&c.controller, &ns)
        .await;
    let target: Api<ConfigMap> = Api::namespaced(c.target.clone(), &src);
    let copies = || async {
        let list = target.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .filter(|cm| cm.name_any().starts_with("cm-"))
            .count()
    };
    poll_until(
        "20 copies",
        DEADLINE,
        Duration::from_millis(200),
        || async {
            match copies().await {
                20 => Ok(()),
                n => Err(n),
            }
        },
    )
    .await;
    for i in 0..20 {
        source
            .delete(&format!("cm-{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    let cond = ("PruneBlocked", "True", "ContinuousPruneRefused");
    wait_condition(&mappings, "mass", cond).await;
    let events: Api<Event> = Api::namespaced(c.controller.clone(), &ns);
    poll_until(
        "a ContinuousPruneRefused event",
        DEADLINE,
        Duration::from_millis(200),
        || async {
            let list = events.list(&ListParams::default()).await.unwrap();
            let hit = list.items.iter().any(|e| {
                e.reason.as_deref() == Some("ContinuousPruneRefused")
                    && e.involved_object.name.as_deref() == Some("mass")
            });
            if hit { Ok(()) } else { Err(list.items.len()) }
        },
    )
    .await;
    let left = copies().await;
    assert!(left >= 10, "only {left} of 20 copies left");
    assert!(controller.is_ready().await);
    controller.kill().await;
}

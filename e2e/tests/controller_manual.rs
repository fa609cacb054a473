//! Controller e2e, Manual mode (issue 5): the real `dr-syncer-controller` binary against
//! three real clusters of the test bed (controller, source and target). A mapping does
//! nothing until its `dr-syncer.io/sync-now` annotation changes, then syncs once per value:
//! with transformations and remapping, through a ClusterMapping, and with custom resources
//! and their CRDs. Each test takes the serial lock, starts its own controller, and works in
//! fresh namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;

use controller_support::*;
use std::collections::BTreeMap;
use std::ops::Not;

use dr_syncer_crds::namespace_mapping::AccessMode;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use kube::api::{Api, Patch, PatchParams};

const ANNOTATION_MAPPING: &str = "dr-syncer.io/mapping";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_sync_replicates_transformed_objects_once_per_trigger_value() {
    let (_serial, c, ns, src, mappings) = scenario("app").await.into_parts();
    let dst = format!("{src}-dr");

    apply_configmap(&c.source, &src, "settings", &[("a", "1")]).await;
    apply_yaml::<ConfigMap>(&c.source, &src, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: skipme\n  labels:\n    dr-syncer.io/ignore: \"true\"\ndata:\n  x: \"y\"\n").await;
    apply_yaml::<Secret>(&c.source, &src, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ntype: Opaque\ndata:\n  password: aHVudGVyMg==\n").await;
    let deployment = |name: &str, replicas: i32, extra: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n{extra}spec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: main\n        image: registry.example/web:1\n"
        )
    };
    apply_yaml::<Deployment>(&c.source, &src, &deployment("web", 3, "")).await;
    apply_yaml::<Deployment>(
        &c.source,
        &src,
        &deployment(
            "api",
            4,
            "  annotations:\n    dr-syncer.io/scale-override: \"2\"\n",
        ),
    )
    .await;
    let svc = apply_yaml::<Service>(&c.source, &src, "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n").await;
    let source_ip = svc.spec.unwrap().cluster_ip.unwrap();
    apply_yaml::<PersistentVolumeClaim>(&c.source, &src, "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  storageClassName: standard\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n").await;

    let controller = start_controller(None).await;
    MappingFixture::manual("app")
        .direct()
        .source_ns(&src)
        .target_ns(&dst)
        .storage_class("standard", "fast")
        .access_mode(AccessMode::ReadWriteOnce, AccessMode::ReadWriteMany)
        .add_patch("configmaps", "/data/patched", serde_json::json!("yes"))
        .apply(&c.controller, &ns)
        .await;
    // Manual mode does nothing until triggered, and says so.
    wait_condition(&mappings, "app", ("Ready", "False", "AwaitingTrigger")).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.target.clone(), &dst);
    assert!(cms.get_opt("settings").await.unwrap().is_none());

    trigger(&mappings, "app", "1").await;
    let nm = wait_synced_value(&mappings, "app", "1").await;
    let status = nm.status.clone().unwrap();
    assert_eq!(
        status.phase,
        Some(dr_syncer_crds::namespace_mapping::SyncPhase::Completed),
        "{status:#?}"
    );

    // ConfigMap: remapped namespace, JSON patch applied, marked.
    let settings = cms.get("settings").await.unwrap();
    assert_eq!(data(&settings).get("a").map(String::as_str), Some("1"));
    assert_eq!(
        data(&settings).get("patched").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        settings
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(ANNOTATION_MAPPING),
        Some(&format!("{ns}/app"))
    );
    assert!(
        cms.get_opt("skipme").await.unwrap().is_none(),
        "ignored object copied"
    );
    // kube-root-ca.crt at the target is the target's own.
    let root = cms.get("kube-root-ca.crt").await.unwrap();
    assert!(
        root.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ANNOTATION_MAPPING)
            .not()
    );

    let secrets: Api<Secret> = Api::namespaced(c.target.clone(), &dst);
    let creds = secrets.get("creds").await.unwrap();
    assert_eq!(creds.data.unwrap()["password"].0, b"hunter2");

    // Deployments: scaled to 0 with the original count kept; override honoured.
    let deployments: Api<Deployment> = Api::namespaced(c.target.clone(), &dst);
    let web = deployments.get("web").await.unwrap();
    assert_eq!(web.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(
        web.metadata
            .annotations
            .as_ref()
            .unwrap()
            .get("dr-syncer.io/original-replicas")
            .map(String::as_str),
        Some("3")
    );
    let api_dep = deployments.get("api").await.unwrap();
    assert_eq!(api_dep.spec.as_ref().unwrap().replicas, Some(2));
    let scales: BTreeMap<String, i32> = status
        .deployment_scales
        .iter()
        .map(|s| (s.name.clone(), s.original_replicas))
        .collect();
    assert_eq!(scales.get("web"), Some(&3), "{scales:?}");
    // Per-kind counts of the sync (extension `syncStats.byKind`).
    let by_kind = &status.sync_stats.as_ref().unwrap().by_kind;
    let configmaps = by_kind.iter().find(|k| k.kind == "ConfigMap").unwrap();
    assert!(configmaps.created >= 1, "{by_kind:?}");
    assert!(
        configmaps.skipped >= 1,
        "the ignored ConfigMap counts as skipped: {by_kind:?}"
    );
    let deployments_count = by_kind.iter().find(|k| k.kind == "Deployment").unwrap();
    assert_eq!(deployments_count.created, 2, "{by_kind:?}");
    assert_eq!(deployments_count.failed, 0, "{by_kind:?}");

    // Service: cluster IP allocated by the target, not copied.
    let services: Api<Service> = Api::namespaced(c.target.clone(), &dst);
    let target_svc = services.get("web").await.unwrap();
    let ours = target_svc
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("dr-syncer"))
        .expect("dr-syncer manages the service");
    let fields = serde_json::to_string(&ours.fields_v1).unwrap();
    assert!(
        !fields.contains("clusterIP"),
        "dr-syncer set clusterIP: {fields}"
    );
    assert!(target_svc.spec.unwrap().cluster_ip.is_some());
    let _ = source_ip;

    // PVC: storage class and access mode mapped.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.target.clone(), &dst);
    let pvc = pvcs.get("data").await.unwrap();
    let spec = pvc.spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(spec.access_modes, Some(vec!["ReadWriteMany".to_owned()]));
    assert!(spec.volume_name.is_none());

    // Same value again (plus an unrelated change that triggers a reconcile): no new sync.
    apply_configmap(&c.source, &src, "settings", &[("a", "2")]).await;
    annotate(&mappings, "app", "unrelated", "touch").await;
    trigger(&mappings, "app", "1").await;
    // A new value runs exactly one more sync.
    trigger(&mappings, "app", "2").await;
    wait_synced_value(&mappings, "app", "2").await;
    let settings = cms.get("settings").await.unwrap();
    assert_eq!(data(&settings).get("a").map(String::as_str), Some("2"));
    let syncs = controller
        .metric(&format!(
            "dr_syncer_sync_duration_seconds_count{{namespace=\"{ns}\",mapping=\"app\",result=\"success\"}}"
        ))
        .await;
    assert_eq!(syncs, Some(2.0), "exactly two syncs for two trigger values");
    // Events on the mapping for sync start and end.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(c.controller.clone(), &ns);
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("app"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "SyncStarted"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "SyncSucceeded"), "{reasons:?}");
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mapping_pairs_the_clusters_and_namespace_mappings_sync_through_it() {
    use dr_syncer_crds::ClusterMapping;
    let (_serial, c, ns, src, mappings) = scenario("pair").await.into_parts();
    apply_configmap(&c.source, &src, "via-pair", &[("k", "v")]).await;
    let controller = start_controller(None).await;
    let cms: Api<ClusterMapping> = Api::namespaced(c.controller.clone(), &ns);
    apply(
        &c.controller,
        &ns,
        &PairFixture::new("pair", SOURCE, TARGET).build(),
    )
    .await;
    let cm = wait_for(&cms, "pair", |cm: Option<&ClusterMapping>| {
        cm.and_then(|c| c.status.as_ref())
            .and_then(|s| s.phase)
            .is_some_and(|p| p == dr_syncer_crds::cluster_mapping::ClusterMappingPhase::Connected)
    })
    .await;
    // The source runs no agents (no pvcSync): connectivity is not checked, and the status
    // says why.
    let agents = condition_message(&cm, "AgentsConnected");
    assert!(agents.contains("pvcSync.enabled"), "{agents}");
    // A ClusterMapping naming a missing RemoteCluster fails with the name.
    apply(
        &c.controller,
        &ns,
        &PairFixture::new("broken", SOURCE, "elsewhere").build(),
    )
    .await;
    let broken = wait_condition(&cms, "broken", ("Ready", "False", "RemoteClusterNotFound")).await;
    assert!(condition_message(&broken, "Ready").contains("elsewhere"));

    MappingFixture::manual("via-pair")
        .sync_now("1")
        .cluster_mapping("pair")
        .source_ns(&src)
        .resource_types(&["configmaps"])
        .apply(&c.controller, &ns)
        .await;
    wait_synced_value(&mappings, "via-pair", "1").await;
    configmap(&c.target, &src, "via-pair").await;

    // A missing source namespace: a condition naming it, nothing written.
    MappingFixture::manual("no-ns")
        .sync_now("1")
        .cluster_mapping("pair")
        .source_ns("does-not-exist")
        .resource_types(&["configmaps"])
        .apply(&c.controller, &ns)
        .await;
    let nm = wait_condition(
        &mappings,
        "no-ns",
        ("Ready", "False", "SourceNamespaceMissing"),
    )
    .await;
    assert!(condition_message(&nm, "Ready").contains("does-not-exist"));
    assert!(
        Api::<k8s_openapi::api::core::v1::Namespace>::all(c.target.clone())
            .get_opt("does-not-exist")
            .await
            .unwrap()
            .is_none()
    );
    controller.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_and_their_crds_are_replicated_with_sync_crds() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let (_serial, c, ns, src, mappings) = scenario("crs").await.into_parts();
    let crds: Api<CustomResourceDefinition> = Api::all(c.source.clone());
    let crd: CustomResourceDefinition = serde_saphyr::from_str(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
",
    )
    .unwrap();
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    wait_for(
        &crds,
        "widgets.example.com",
        kube::runtime::conditions::is_crd_established(),
    )
    .await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(c.source.clone(), &src, &ar);
    let w = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}});
    widgets
        .patch("w1", &PatchParams::apply("e2e"), &Patch::Apply(&w))
        .await
        .unwrap();

    let controller = start_controller(None).await;
    MappingFixture::triggered("crs", &src)
        .resource_types(&["configmaps"])
        .namespace_scoped(&["widgets.example.com"])
        .sync_crds()
        .apply(&c.controller, &ns)
        .await;
    let nm = wait_synced_value(&mappings, "crs", "1").await;
    assert_eq!(
        nm.status.as_ref().unwrap().phase,
        Some(dr_syncer_crds::namespace_mapping::SyncPhase::Completed),
        "{:?}",
        nm.status.as_ref().unwrap().last_error
    );
    Api::<CustomResourceDefinition>::all(c.target.clone())
        .get("widgets.example.com")
        .await
        .unwrap();
    let copied = Api::<DynamicObject>::namespaced_with(c.target.clone(), &src, &ar)
        .get("w1")
        .await
        .unwrap();
    assert_eq!(copied.data["spec"]["size"], 3);
    controller.kill().await;
}

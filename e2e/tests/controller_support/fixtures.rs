//! Builders of the DR-Syncer objects the controller tests create, as typed
//! `dr_syncer_crds` objects (in the manner of kube-rs controller-rs's test fixtures): a test
//! says what is particular about its mapping (`MappingFixture::manual("app").source_ns(..)
//! .sync_now("1").build()`) instead of repeating a YAML manifest.
//!
//! Every builder starts from the object the API server would default an empty spec to
//! (serde defaults, which are the CRD defaults), so a fixture holds exactly the fields the
//! test sets, as the manifests did. Apply them with [`super::apply`].

use std::collections::BTreeMap;

use dr_syncer_crds::cluster_mapping::{ClusterMappingSpec, ClusterMappingSshKeySecretRef};
use dr_syncer_crds::common::LabelSelector;
use dr_syncer_crds::namespace_mapping::{
    AccessMode, AccessModeMapping, ClusterMappingReference, ContinuousConfig,
    ImmutableResourceConfig, ImmutableResourceHandling, JsonPatchOperation, NamespaceMappingSpec,
    ObjectSelector, PvcConfig, PvcDataSyncConfig, ReplicationMode, RetryConfig,
    StorageClassMapping, Transformation,
};
use dr_syncer_crds::remote_cluster::{HealthCheckConfig, PvcSyncSpec, RemoteClusterSpec};
use dr_syncer_crds::{ClusterMapping, NamespaceMapping, RemoteCluster};
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{SOURCE, TARGET};

/// A CRD type as its serde defaults fill it from `value` (the fields it requires, or
/// `{}`): the same object the tests' manifests deserialized to.
fn defaulted<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("defaults of a CRD type")
}

/// Builds a NamespaceMapping. The mode is chosen by the constructor; the clusters default
/// to none (set [`clusters`](Self::clusters), [`direct`](Self::direct) or
/// [`cluster_mapping`](Self::cluster_mapping)).
pub struct MappingFixture {
    name: String,
    annotations: BTreeMap<String, String>,
    spec: NamespaceMappingSpec,
}

impl MappingFixture {
    fn new(name: &str, mode: ReplicationMode) -> Self {
        let mut spec: NamespaceMappingSpec = defaulted(json!({"sourceNamespace": ""}));
        spec.replication_mode = Some(mode);
        MappingFixture {
            name: name.to_owned(),
            annotations: BTreeMap::new(),
            spec,
        }
    }

    /// A Manual mapping: syncs when `dr-syncer.io/sync-now` changes.
    pub fn manual(name: &str) -> Self {
        Self::new(name, ReplicationMode::Manual)
    }

    /// A Manual mapping from `src` between the bed's clusters, triggered once (`sync-now:
    /// "1"`) from the start: the shape of most rule tests.
    pub fn triggered(name: &str, src: &str) -> Self {
        Self::manual(name).sync_now("1").direct().source_ns(src)
    }

    /// A Continuous mapping: watches the source.
    pub fn continuous(name: &str) -> Self {
        Self::new(name, ReplicationMode::Continuous)
    }

    /// A Scheduled mapping on `schedule` (cron).
    pub fn scheduled(name: &str, schedule: &str) -> Self {
        let mut fixture = Self::new(name, ReplicationMode::Scheduled);
        fixture.spec.schedule = Some(schedule.to_owned());
        fixture
    }

    /// Switches to Continuous with a full resync every `interval` (Go duration).
    pub fn continuous_every(mut self, interval: &str) -> Self {
        self.spec.replication_mode = Some(ReplicationMode::Continuous);
        let mut continuous: ContinuousConfig = defaulted(json!({}));
        continuous.background_sync_interval = interval.to_owned();
        self.spec.continuous = Some(continuous);
        self
    }

    /// Replicates from RemoteCluster `source` to RemoteCluster `destination`.
    pub fn clusters(mut self, source: &str, destination: &str) -> Self {
        self.spec.source_cluster = Some(source.to_owned());
        self.spec.destination_cluster = Some(destination.to_owned());
        self
    }

    /// Replicates between the bed's RemoteClusters `source` and `target`.
    pub fn direct(self) -> Self {
        self.clusters(SOURCE, TARGET)
    }

    /// Replicates through ClusterMapping `name` (of the mapping's namespace).
    pub fn cluster_mapping(mut self, name: &str) -> Self {
        self.spec.cluster_mapping_ref = Some(ClusterMappingReference {
            name: name.to_owned(),
            namespace: None,
        });
        self
    }

    /// Replicates through ClusterMapping `namespace/name`.
    pub fn cluster_mapping_in(mut self, name: &str, namespace: &str) -> Self {
        self.spec.cluster_mapping_ref = Some(ClusterMappingReference {
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
        });
        self
    }

    /// The source namespace.
    pub fn source_ns(mut self, ns: &str) -> Self {
        self.spec.source_namespace = ns.to_owned();
        self
    }

    /// The destination namespace (default: the source namespace).
    pub fn target_ns(mut self, ns: &str) -> Self {
        self.spec.destination_namespace = Some(ns.to_owned());
        self
    }

    /// Lets the mapping take over destination objects it did not create
    /// (`spec.safety.adoptExistingObjects`).
    pub fn adopt_existing(mut self) -> Self {
        self.spec
            .safety
            .get_or_insert_with(|| defaulted(json!({})))
            .adopt_existing_objects = true;
        self
    }

    /// Requires the destination namespace to exist (`namespaceConfig.createNamespace:
    /// false`).
    pub fn no_create_namespace(mut self) -> Self {
        let mut config: dr_syncer_crds::namespace_mapping::NamespaceConfig = defaulted(json!({}));
        config.create_namespace = false;
        self.spec.namespace_config = Some(config);
        self
    }

    /// Any other change of the spec, for the odd spec a test needs once.
    pub fn with(mut self, change: impl FnOnce(&mut NamespaceMappingSpec)) -> Self {
        change(&mut self.spec);
        self
    }

    /// The resource types replicated.
    pub fn resource_types(mut self, types: &[&str]) -> Self {
        self.spec.resource_types = types.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Extra namespaced resources (`resource.group`).
    pub fn namespace_scoped(mut self, resources: &[&str]) -> Self {
        self.spec.namespace_scoped_resources = resources.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Also replicates the CRDs of replicated custom resources.
    pub fn sync_crds(mut self) -> Self {
        self.spec.sync_crds = true;
        self
    }

    /// Deletes destination objects whose source is gone.
    pub fn prune(mut self) -> Self {
        self.spec.prune = true;
        self
    }

    /// Starts with the annotation `dr-syncer.io/sync-now: value` (a first trigger).
    pub fn sync_now(mut self, value: &str) -> Self {
        self.annotations
            .insert("dr-syncer.io/sync-now".to_owned(), value.to_owned());
        self
    }

    /// Retries `max` times with a backoff from `initial` to `max_backoff` (Go durations).
    pub fn retry(mut self, max: i32, initial: &str, max_backoff: &str) -> Self {
        let mut retry: RetryConfig = defaulted(json!({}));
        retry.max_retries = max;
        retry.initial_backoff = initial.to_owned();
        retry.max_backoff = max_backoff.to_owned();
        self.spec.retry_config = Some(retry);
        self
    }

    /// A JSON-Patch `add` of `value` at `path` for objects of `resource`.
    pub fn add_patch(mut self, resource: &str, path: &str, value: Value) -> Self {
        let op: JsonPatchOperation = defaulted(json!({"op": "add", "path": path, "value": value}));
        self.spec.transformations.push(Transformation {
            resource: resource.to_owned(),
            patch: vec![op],
        });
        self
    }

    /// How immutable-field changes are handled for every resource type.
    pub fn immutable(mut self, handling: ImmutableResourceHandling) -> Self {
        let mut config: ImmutableResourceConfig = defaulted(json!({}));
        config.default_handling = handling;
        self.spec.immutable_resource_config = Some(config);
        self
    }

    /// Only objects labelled `labels` whose names match `include` and not `exclude`.
    pub fn select(mut self, labels: &[(&str, &str)], include: &[&str], exclude: &[&str]) -> Self {
        let match_labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.spec.object_selector = Some(ObjectSelector {
            label_selector: Some(LabelSelector {
                match_labels: Some(match_labels),
                ..Default::default()
            }),
            include_names: include.iter().map(|n| n.to_string()).collect(),
            exclude_names: exclude.iter().map(|n| n.to_string()).collect(),
        });
        self
    }

    /// The PVC settings, created on first use.
    fn pvc_config(&mut self) -> &mut PvcConfig {
        self.spec
            .pvc_config
            .get_or_insert_with(|| defaulted(json!({})))
    }

    /// Renames storage class `from` to `to` on replicated PVCs.
    pub fn storage_class(mut self, from: &str, to: &str) -> Self {
        self.pvc_config()
            .storage_class_mappings
            .push(StorageClassMapping {
                from: from.to_owned(),
                to: to.to_owned(),
            });
        self
    }

    /// Renames access mode `from` to `to` on replicated PVCs.
    pub fn access_mode(mut self, from: AccessMode, to: AccessMode) -> Self {
        self.pvc_config()
            .access_mode_mappings
            .push(AccessModeMapping { from, to });
        self
    }

    /// Copies the data of the PVCs too (`syncData`), with `config`.
    pub fn pvc_data(mut self, config: DataSyncFixture) -> Self {
        let pvc = self.pvc_config();
        pvc.sync_data = true;
        pvc.data_sync_config = Some(config.0);
        self
    }

    /// Builds the NamespaceMapping and server-side applies it into `ns`.
    pub async fn apply(self, client: &Client, ns: &str) -> NamespaceMapping {
        super::apply(client, ns, &self.build()).await
    }

    /// The NamespaceMapping.
    pub fn build(self) -> NamespaceMapping {
        let mut nm = NamespaceMapping::new(&self.name, self.spec);
        if !self.annotations.is_empty() {
            nm.metadata.annotations = Some(self.annotations);
        }
        nm
    }
}

/// Builds a `pvcConfig.dataSyncConfig` (every field the CRD default unless set).
pub struct DataSyncFixture(PvcDataSyncConfig);

impl DataSyncFixture {
    /// Each PVC copy is bounded by `timeout` (Go duration).
    pub fn timeout(timeout: &str) -> Self {
        let mut config: PvcDataSyncConfig = defaulted(json!({}));
        config.timeout = timeout.to_owned();
        DataSyncFixture(config)
    }

    /// At most `n` PVCs of the mapping copied at once.
    pub fn concurrent(mut self, n: i32) -> Self {
        self.0.concurrent_syncs = n;
        self
    }

    /// Each copy limited to `kib_per_second`.
    pub fn bandwidth(mut self, kib_per_second: i32) -> Self {
        self.0.bandwidth_limit = Some(kib_per_second);
        self
    }
}

/// The NamespaceMapping of the PVC data tests: Manual, `src` -> `dst`, PVCs and
/// Deployments, class standard -> fast, `syncData` with `config`. Clusters are the
/// caller's ([`MappingFixture::direct`] or [`MappingFixture::cluster_mapping_in`]).
pub fn data_mapping(name: &str, src: &str, dst: &str, config: DataSyncFixture) -> MappingFixture {
    MappingFixture::manual(name)
        .source_ns(src)
        .target_ns(dst)
        .resource_types(&["persistentvolumeclaims", "deployments"])
        .storage_class("standard", "fast")
        .pvc_data(config)
}

/// Builds a ClusterMapping pairing two RemoteClusters.
pub struct PairFixture {
    name: String,
    spec: ClusterMappingSpec,
}

impl PairFixture {
    /// ClusterMapping `name` from RemoteCluster `source` to `target`.
    pub fn new(name: &str, source: &str, target: &str) -> Self {
        PairFixture {
            name: name.to_owned(),
            spec: defaulted(json!({"sourceCluster": source, "targetCluster": target})),
        }
    }

    /// Gives the connectivity check `seconds`.
    pub fn connectivity_timeout(mut self, seconds: i32) -> Self {
        self.spec.connectivity_timeout_seconds = seconds;
        self
    }

    /// Skips the connectivity check.
    pub fn no_connectivity_check(mut self) -> Self {
        self.spec.verify_connectivity = false;
        self
    }

    /// The workers' SSH key from Secret `name` (in `namespace`, default the mapping's),
    /// with the default key names.
    pub fn ssh_key_secret(mut self, name: &str, namespace: Option<&str>) -> Self {
        let mut reference: ClusterMappingSshKeySecretRef = defaulted(json!({"name": name}));
        reference.namespace = namespace.map(str::to_owned);
        self.spec.ssh_key_secret_ref = Some(reference);
        self
    }

    /// The workers' SSH key from Secret `name` (the mapping's namespace), under the keys
    /// `private_key` and `public_key`.
    pub fn ssh_key_secret_keys(mut self, name: &str, private_key: &str, public_key: &str) -> Self {
        let mut reference: ClusterMappingSshKeySecretRef = defaulted(json!({"name": name}));
        reference.private_key_key = private_key.to_owned();
        reference.public_key_key = public_key.to_owned();
        self.spec.ssh_key_secret_ref = Some(reference);
        self
    }

    /// Builds the ClusterMapping and server-side applies it into `ns`.
    pub async fn apply(self, client: &Client, ns: &str) -> ClusterMapping {
        super::apply(client, ns, &self.build()).await
    }

    /// The ClusterMapping.
    pub fn build(self) -> ClusterMapping {
        ClusterMapping::new(&self.name, self.spec)
    }
}

/// Builds a RemoteCluster.
pub struct RemoteClusterFixture {
    name: String,
    spec: RemoteClusterSpec,
}

impl RemoteClusterFixture {
    /// RemoteCluster `name` reaching its cluster with the kubeconfig in Secret
    /// `namespace/secret`.
    pub fn new(name: &str, secret: &str, namespace: &str) -> Self {
        RemoteClusterFixture {
            name: name.to_owned(),
            spec: defaulted(json!({
                "kubeconfigSecretRef": {"name": secret, "namespace": namespace},
            })),
        }
    }

    /// Checks the agents' health every `interval` (pvcSync otherwise defaulted: disabled).
    pub fn health_check_every(mut self, interval: &str) -> Self {
        let mut health: HealthCheckConfig = defaulted(json!({}));
        health.interval = interval.to_owned();
        self.spec
            .pvc_sync
            .get_or_insert_with(|| defaulted::<PvcSyncSpec>(json!({})))
            .health_check = Some(health);
        self
    }

    /// Builds the RemoteCluster and server-side applies it into `ns`.
    pub async fn apply(self, client: &Client, ns: &str) -> RemoteCluster {
        super::apply(client, ns, &self.build()).await
    }

    /// The RemoteCluster.
    pub fn build(self) -> RemoteCluster {
        RemoteCluster::new(&self.name, self.spec)
    }
}

/// The fixtures are the objects the tests' manifests described: each is compared with the
/// manifest it replaced, parsed into the same type.
#[test]
fn fixtures_equal_the_manifests_they_replace() {
    fn parsed<T: DeserializeOwned>(yaml: &str) -> T {
        serde_saphyr::from_str(yaml).unwrap()
    }
    let manual = MappingFixture::manual("app")
        .direct()
        .source_ns("src")
        .target_ns("dst")
        .storage_class("standard", "fast")
        .access_mode(AccessMode::ReadWriteOnce, AccessMode::ReadWriteMany)
        .add_patch("configmaps", "/data/patched", json!("yes"))
        .build();
    assert_eq!(
        manual,
        parsed::<NamespaceMapping>(
            "apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata:
  name: app
spec:
  replicationMode: Manual
  sourceCluster: source
  destinationCluster: target
  sourceNamespace: src
  destinationNamespace: dst
  pvcConfig:
    storageClassMappings:
    - from: standard
      to: fast
    accessModeMappings:
    - from: ReadWriteOnce
      to: ReadWriteMany
  transformations:
  - resource: configmaps
    patch:
    - op: add
      path: /data/patched
      value: \"yes\"
"
        )
    );
    let outage = MappingFixture::manual("outage")
        .sync_now("1")
        .direct()
        .source_ns("src")
        .resource_types(&["configmaps", "secrets"])
        .prune()
        .retry(100, "1s", "3s")
        .build();
    assert_eq!(
        outage,
        parsed::<NamespaceMapping>(
            "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata:\n  name: outage\n  annotations:\n    dr-syncer.io/sync-now: \"1\"\nspec:\n  replicationMode: Manual\n  sourceCluster: source\n  destinationCluster: target\n  sourceNamespace: src\n  resourceTypes: [configmaps, secrets]\n  prune: true\n  retryConfig:\n    maxRetries: 100\n    initialBackoff: 1s\n    maxBackoff: 3s\n"
        )
    );
    let select = MappingFixture::manual("select")
        .sync_now("1")
        .direct()
        .source_ns("src")
        .resource_types(&["configmaps"])
        .select(&[("tier", "app")], &["app-.*"], &[".*-cache"])
        .immutable(ImmutableResourceHandling::Recreate)
        .namespace_scoped(&["widgets.example.com"])
        .sync_crds()
        .build();
    assert_eq!(
        select,
        parsed::<NamespaceMapping>(
            "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata:\n  name: select\n  annotations:\n    dr-syncer.io/sync-now: \"1\"\nspec:\n  replicationMode: Manual\n  sourceCluster: source\n  destinationCluster: target\n  sourceNamespace: src\n  resourceTypes: [configmaps]\n  objectSelector:\n    labelSelector:\n      matchLabels:\n        tier: app\n    includeNames: [\"app-.*\"]\n    excludeNames: [\".*-cache\"]\n  immutableResourceConfig:\n    defaultHandling: Recreate\n  namespaceScopedResources: [widgets.example.com]\n  syncCRDs: true\n"
        )
    );
    let cron = MappingFixture::scheduled("cron", "*/1 * * * *")
        .cluster_mapping("pair")
        .source_ns("src")
        .build();
    assert_eq!(
        cron,
        parsed::<NamespaceMapping>(
            "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata:\n  name: cron\nspec:\n  replicationMode: Scheduled\n  schedule: \"*/1 * * * *\"\n  clusterMappingRef:\n    name: pair\n  sourceNamespace: src\n"
        )
    );
    let data = data_mapping(
        "cont",
        "src",
        "dst",
        DataSyncFixture::timeout("10m")
            .concurrent(2)
            .bandwidth(8192),
    )
    .cluster_mapping_in("pair", "ns")
    .continuous_every("20s")
    .build();
    assert_eq!(
        data,
        parsed::<NamespaceMapping>(
            "apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata:
  name: cont
spec:
  replicationMode: Continuous
  continuous:
    backgroundSyncInterval: 20s
  clusterMappingRef:
    name: pair
    namespace: ns
  sourceNamespace: src
  destinationNamespace: dst
  resourceTypes: [persistentvolumeclaims, deployments]
  pvcConfig:
    syncData: true
    storageClassMappings:
    - from: standard
      to: fast
    dataSyncConfig:
      concurrentSyncs: 2
      bandwidthLimit: 8192
      timeout: 10m
"
        )
    );
    let pair = PairFixture::new("pair", "source", "target")
        .connectivity_timeout(30)
        .ssh_key_secret_keys("my-client-key", "id_ed25519", "id_ed25519.pub")
        .build();
    assert_eq!(
        pair,
        parsed::<ClusterMapping>(
            "apiVersion: dr-syncer.io/v1alpha1\nkind: ClusterMapping\nmetadata:\n  name: pair\nspec:\n  sourceCluster: source\n  targetCluster: target\n  connectivityTimeoutSeconds: 30\n  sshKeySecretRef:\n    name: my-client-key\n    privateKeyKey: id_ed25519\n    publicKeyKey: id_ed25519.pub\n"
        )
    );
    let unchecked = PairFixture::new("pair", "source", "target")
        .no_connectivity_check()
        .ssh_key_secret("no-such-worker-key", Some("ns"))
        .build();
    assert_eq!(
        unchecked,
        parsed::<ClusterMapping>(
            "apiVersion: dr-syncer.io/v1alpha1\nkind: ClusterMapping\nmetadata:\n  name: pair\nspec:\n  sourceCluster: source\n  targetCluster: target\n  verifyConnectivity: false\n  sshKeySecretRef:\n    name: no-such-worker-key\n    namespace: ns\n"
        )
    );
    let rc = RemoteClusterFixture::new("source", "source-kubeconfig", "ns")
        .health_check_every("5s")
        .build();
    assert_eq!(
        rc,
        parsed::<RemoteCluster>(
            "apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata:
  name: source
spec:
  kubeconfigSecretRef:
    name: source-kubeconfig
    namespace: ns
  pvcSync:
    healthCheck:
      interval: 5s
"
        )
    );
}

//! `NamespaceMapping`: what to replicate from one namespace of a source cluster into a
//! namespace of a destination cluster, when, and how objects and PVC data are transformed.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Condition, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, LabelSelector,
    SecretReference, Time, VerificationMode, default_true,
};
use crate::common::{RESOURCE_TYPE_PATTERN, SCHEDULE_PATTERN};

/// An IANA time zone name such as `Europe/Berlin`, `UTC` or `America/Argentina/Buenos_Aires`.
pub const TIME_ZONE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$";

/// A namespaced resource in `resource.group` form (`widgets.example.com`), or `*` for all.
pub const GROUP_RESOURCE_PATTERN: &str =
    r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$";

/// A JSON Pointer (RFC 6901) as used in JSON-Patch `path` and `from`.
pub const JSON_POINTER_PATTERN: &str = r"^(/([^/~]|~[01])*)*$";

/// Desired state of a NamespaceMapping.
// Several printer columns share a type; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "dr-syncer.io",
    version = "v1alpha1",
    kind = "NamespaceMapping",
    namespaced,
    status = "NamespaceMappingStatus",
    shortname = "nm",
    category = "dr-syncer",
    derive = "PartialEq",
    doc = "Replication of one namespace of a source cluster into a namespace of a destination cluster: which objects, when (Scheduled, Continuous or Manual), with which transformations, and optionally the data of its PVCs.",
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".spec.sourceNamespace",
        description = "Source namespace"
    ),
    printcolumn(
        name = "Destination",
        type_ = "string",
        json_path = ".spec.destinationNamespace",
        description = "Destination namespace (empty: same as source)"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.replicationMode",
        description = "Replication mode (empty: Scheduled)"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Phase of the last sync"
    ),
    printcolumn(
        name = "Last Sync",
        type_ = "date",
        json_path = ".status.lastSyncTime",
        description = "End of the last successful sync"
    ),
    printcolumn(
        name = "Next Sync",
        type_ = "string",
        json_path = ".status.nextSyncTime",
        description = "Next scheduled sync (Scheduled mode)"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.clusterMappingRef) && (has(self.sourceCluster) || has(self.destinationCluster)))")
        .message("spec.clusterMappingRef and spec.sourceCluster/spec.destinationCluster are mutually exclusive: set one or the other")
        .field_path(".clusterMappingRef"),
    validation = Rule::new("has(self.clusterMappingRef) || (has(self.sourceCluster) && has(self.destinationCluster))")
        .message("spec.clusterMappingRef, or both spec.sourceCluster and spec.destinationCluster, must be set")
        .field_path(".sourceCluster"),
    validation = Rule::new("!has(self.replicationMode) || self.replicationMode != 'Scheduled' || has(self.schedule)")
        .message("spec.schedule is required when spec.replicationMode is Scheduled (leave replicationMode unset to use the source RemoteCluster's defaultSchedule)")
        .field_path(".schedule")
)]
pub struct NamespaceMappingSpec {
    /// Skip all replication for this mapping while true. Default: false.
    #[serde(default)]
    pub paused: bool,

    /// When to replicate. Scheduled: on `schedule`. Continuous: on every change at the source
    /// (watch) plus a periodic full resync. Manual: only when the annotation
    /// `dr-syncer.io/sync-now` changes. Unset means Scheduled with `schedule`, or with the
    /// source RemoteCluster's `defaultSchedule` when `schedule` is unset too. Setting it to
    /// Scheduled explicitly requires `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_mode: Option<ReplicationMode>,

    /// How the destination namespace itself is created and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_config: Option<NamespaceConfig>,

    /// Settings of the Continuous mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous: Option<ContinuousConfig>,

    /// Retry behaviour after a failed sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<RetryConfig>,

    /// DR-Syncer (Go) field, accepted so existing manifests apply: SSH keys of its temporary
    /// pods. This implementation keys workers through the ClusterMapping / RemoteCluster
    /// `sshKeySecretRef` instead; when set, the mapping reports a condition saying the field
    /// is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_pod_key_secret_ref: Option<SecretReference>,

    /// Name of the RemoteCluster (same namespace) to replicate from. Use together with
    /// `destinationCluster`, or use `clusterMappingRef` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub source_cluster: Option<String>,

    /// Name of the RemoteCluster (same namespace) to replicate to. Use together with
    /// `sourceCluster`, or use `clusterMappingRef` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub destination_cluster: Option<String>,

    /// Namespace in the source cluster to replicate.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub source_namespace: String,

    /// Namespace in the destination cluster to write to. Default: same as `sourceNamespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub destination_namespace: Option<String>,

    /// Cron schedule of the Scheduled mode: 5 fields (minute hour day-of-month month
    /// day-of-week, as in a CronJob; Sunday is 0 or 7; names like MON and JAN), 6 fields
    /// (seconds first), or a macro (@yearly, @annually, @monthly, @weekly, @daily, @midnight,
    /// @hourly). No default (see `replicationMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), regex(pattern = SCHEDULE_PATTERN))]
    pub schedule: Option<String>,

    /// Extension: IANA time zone `schedule` is evaluated in, e.g. `Europe/Berlin`.
    /// Default: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = TIME_ZONE_PATTERN))]
    pub schedule_time_zone: Option<String>,

    /// Resource types to replicate, by plural, singular, kind or short name, optionally with
    /// a group (`deployments`, `deploy`, `Deployment`, `deployments.apps`). Empty, or `*`:
    /// configmaps, secrets, deployments, services, ingresses, persistentvolumeclaims (or the
    /// source RemoteCluster's `defaultResourceTypes` when set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 128),
        inner(length(min = 1, max = 253), regex(pattern = RESOURCE_TYPE_PATTERN))
    )]
    pub resource_types: Vec<String>,

    /// Scale Deployments and StatefulSets to 0 replicas in the destination (the source count
    /// is kept in the annotation `dr-syncer.io/original-replicas`; the annotation
    /// `dr-syncer.io/scale-override` on a source object overrides). Default: true.
    #[serde(default = "default_true")]
    pub scale_to_zero: bool,

    /// Additional namespaced resources to replicate, as `resource.group`
    /// (`widgets.example.com`), or `*` for every namespaced custom resource. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), inner(length(min = 1, max = 253), regex(pattern = GROUP_RESOURCE_PATTERN)))]
    pub namespace_scoped_resources: Vec<String>,

    /// How PersistentVolumeClaims, and optionally their data, are replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_config: Option<PvcConfig>,

    /// What to do when a change touches an immutable field at the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_resource_config: Option<ImmutableResourceConfig>,

    /// Also replicate the CustomResourceDefinitions of replicated custom resources.
    /// Default: false.
    #[serde(default, rename = "syncCRDs")]
    pub sync_crds: bool,

    /// DR-Syncer (Go) failure policy per failure class. Accepted so existing manifests apply;
    /// this implementation retries per `retryConfig` and reports a condition when this field
    /// asks for a different policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_handling: Option<FailureHandlingConfig>,

    /// What of an Ingress is kept when it is replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_config: Option<IngressConfig>,

    /// ClusterMapping (source and destination RemoteClusters) to replicate through. The
    /// alternative to `sourceCluster` + `destinationCluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_mapping_ref: Option<ClusterMappingReference>,

    /// Extension: which source objects are replicated, beyond their type.
    /// Default: all objects of the selected types (except those annotated
    /// `dr-syncer.io/ignore: "true"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<ObjectSelector>,

    /// Extension: JSON-Patch (RFC 6902) edits applied to objects of a resource type before
    /// they are written to the destination, in list order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub transformations: Vec<Transformation>,

    /// Extension: delete destination objects whose source object is gone. Only objects this
    /// mapping created are ever deleted, and never because the source could not be read.
    /// Default: false.
    #[serde(default)]
    pub prune: bool,
}

/// How a NamespaceMapping is triggered.
// maxLength bounds the cost of the CEL rule comparing it (the API server rejects rules whose
// worst case, estimated from string sizes, is over budget).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(extend("maxLength" = 16))]
pub enum ReplicationMode {
    /// On a cron schedule.
    #[default]
    Scheduled,
    /// On every change at the source, plus a periodic full resync.
    Continuous,
    /// Only when the `dr-syncer.io/sync-now` annotation changes.
    Manual,
}

/// How the destination namespace is handled.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceConfig {
    /// Create the destination namespace when it does not exist. Default: true.
    #[serde(default = "default_true")]
    pub create_namespace: bool,
    /// Copy the source namespace's labels to the destination namespace. Default: true.
    #[serde(default = "default_true")]
    pub preserve_labels: bool,
    /// Copy the source namespace's annotations to the destination namespace. Default: true.
    #[serde(default = "default_true")]
    pub preserve_annotations: bool,
}

/// Settings of the Continuous mode.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousConfig {
    /// Watch the source and apply each change as it happens. Default: true.
    #[serde(default = "default_true")]
    pub watch_resources: bool,
    /// Interval of the full resync (which also prunes, when `prune` is on), as a Go duration
    /// (`1h`, `30m`). Default: 1h.
    #[serde(default = "default_background_sync_interval")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub background_sync_interval: String,
}

fn default_background_sync_interval() -> String {
    "1h".to_owned()
}

/// Retry behaviour after a failed sync: exponential backoff.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.initialBackoff) <= duration(self.maxBackoff)")
    .message("retryConfig.initialBackoff must not be longer than retryConfig.maxBackoff")
    .field_path(".initialBackoff"))]
pub struct RetryConfig {
    /// Retries before the sync is reported as failed and waits for its next trigger.
    /// 0-100. Default: 5.
    #[serde(default = "default_max_retries")]
    #[schemars(range(min = 0, max = 100))]
    pub max_retries: i32,
    /// Wait after the first failure (Go duration). Default: 5s.
    #[serde(default = "default_initial_backoff")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub initial_backoff: String,
    /// Longest wait between retries (Go duration). Default: 5m.
    #[serde(default = "default_max_backoff")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub max_backoff: String,
    /// Growth of the wait after each failure, in percent (200 doubles it). 100-1000.
    /// Default: 200.
    #[serde(default = "default_backoff_multiplier")]
    #[schemars(range(min = 100, max = 1000))]
    pub backoff_multiplier: i32,
}

fn default_max_retries() -> i32 {
    5
}

fn default_initial_backoff() -> String {
    "5s".to_owned()
}

fn default_max_backoff() -> String {
    "5m".to_owned()
}

fn default_backoff_multiplier() -> i32 {
    200
}

/// How an Ingress is replicated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressConfig {
    /// Keep all annotations of the Ingress. Default: true.
    #[serde(default = "default_true")]
    pub preserve_annotations: bool,
    /// Keep the `tls` section. Default: true.
    #[serde(default = "default_true", rename = "preserveTLS")]
    pub preserve_tls: bool,
    /// Keep backend service references. Default: true.
    #[serde(default = "default_true")]
    pub preserve_backends: bool,
}

/// Reference to a ClusterMapping.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMappingReference {
    /// Name of the ClusterMapping.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the ClusterMapping. Default: the NamespaceMapping's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
}

/// How PersistentVolumeClaims are replicated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcConfig {
    /// Also replicate the bound PersistentVolume and keep `volumeName`, for storage that can
    /// be attached from both clusters. Default: false (the destination provisions a new
    /// volume).
    #[serde(default)]
    pub sync_persistent_volumes: bool,
    /// Storage class renames applied to replicated PVCs. A class without a mapping is kept.
    /// The label `dr-syncer.io/storage-class` on a source PVC overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub storage_class_mappings: Vec<StorageClassMapping>,
    /// Access mode renames applied to replicated PVCs. A mode without a mapping is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub access_mode_mappings: Vec<AccessModeMapping>,
    /// Keep volume attributes (filesystem type, mount options, ...) when a new volume is
    /// created at the destination. Default: false (storage class defaults).
    #[serde(default)]
    pub preserve_volume_attributes: bool,
    /// Also copy the data inside the PVCs (agent in the source cluster, rsync worker in the
    /// destination). Default: false.
    #[serde(default)]
    pub sync_data: bool,
    /// Settings of the PVC data copy (used when `syncData` is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sync_config: Option<PvcDataSyncConfig>,
}

/// A storage class rename.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageClassMapping {
    /// Storage class in the source cluster.
    #[schemars(length(min = 1, max = 253))]
    pub from: String,
    /// Storage class to use in the destination cluster.
    #[schemars(length(min = 1, max = 253))]
    pub to: String,
}

/// An access mode rename.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessModeMapping {
    /// Access mode in the source cluster.
    pub from: AccessMode,
    /// Access mode to use in the destination cluster.
    pub to: AccessMode,
}

/// A PersistentVolumeClaim access mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    /// Mounted read-write by one node.
    ReadWriteOnce,
    /// Mounted read-only by many nodes.
    ReadOnlyMany,
    /// Mounted read-write by many nodes.
    ReadWriteMany,
    /// Mounted read-write by one pod.
    ReadWriteOncePod,
}

/// Settings of the PVC data copy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcDataSyncConfig {
    /// PVCs of this mapping copied at the same time. 1-100. Default: 2.
    #[serde(default = "default_concurrent_syncs")]
    #[schemars(range(min = 1, max = 100))]
    pub concurrent_syncs: i32,
    /// Paths, relative to the volume root, not copied (rsync-style patterns, e.g. `tmp/`,
    /// `*.log`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 4096)))]
    pub exclude_paths: Vec<String>,
    /// rsync command-line options, as accepted by DR-Syncer. The built-in delta transfer
    /// honours the ones with a meaning for it (such as `--delete`, `--checksum`); any other
    /// option makes the mapping report a condition naming it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256)))]
    pub rsync_options: Vec<String>,
    /// Transfer rate limit per PVC copy, in KiB/s. 0 or unset: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub bandwidth_limit: Option<i32>,
    /// Time limit of one PVC copy (Go duration). Default: 30m.
    #[serde(default = "default_data_sync_timeout")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub timeout: String,
    /// Verification after the copy: none, sample or full. Unset: the source RemoteCluster's
    /// `pvcSync.defaultVerificationMode` (itself none by default). The annotation
    /// `dr-syncer.io/verification-mode` on a PVC overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_mode: Option<VerificationMode>,
    /// Percentage of files re-hashed in `sample` mode. 1-100. Unset: the source
    /// RemoteCluster's `pvcSync.defaultSamplePercent` (itself 10 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub sample_percent: Option<i32>,
}

fn default_concurrent_syncs() -> i32 {
    2
}

fn default_data_sync_timeout() -> String {
    "30m".to_owned()
}

/// Handling of changes to immutable fields at the destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImmutableResourceConfig {
    /// Handling for all resource types without an override. Default: NoChange.
    #[serde(default)]
    pub default_handling: ImmutableResourceHandling,
    /// Handling per resource type, keyed by `resource.group` (`statefulsets.apps`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_overrides: BTreeMap<String, ImmutableResourceHandling>,
    /// How long to wait for pods to drain with RecreateWithPodDrain (Go duration).
    /// Default: 5m.
    #[serde(default = "default_drain_timeout")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub drain_timeout: String,
    /// How long to wait for a forced deletion with ForceUpdate (Go duration). Default: 2m.
    #[serde(default = "default_force_delete_timeout")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub force_delete_timeout: String,
}

fn default_drain_timeout() -> String {
    "5m".to_owned()
}

fn default_force_delete_timeout() -> String {
    "2m".to_owned()
}

/// What to do when a change touches an immutable field.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ImmutableResourceHandling {
    /// Leave the destination object as it is and report it.
    #[default]
    NoChange,
    /// Delete and recreate the destination object.
    Recreate,
    /// Scale workloads using it to zero, wait for their pods to go, then recreate.
    RecreateWithPodDrain,
    /// Apply only the mutable fields.
    PartialUpdate,
    /// Delete with cascading, force if needed, then recreate.
    ForceUpdate,
}

/// DR-Syncer (Go) failure policy per failure class.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureHandlingConfig {
    /// Policy for failures without a more specific entry. Default: RetryAndWait.
    #[serde(default = "default_retry_and_wait")]
    pub default_mode: FailureHandlingMode,
    /// Policy when a mapped storage class is missing. Default: WaitForNextSync.
    #[serde(default = "default_wait_for_next_sync")]
    pub storage_class_not_found: FailureHandlingMode,
    /// Policy when a resource type does not exist. Default: FailFast.
    #[serde(default = "default_fail_fast")]
    pub resource_not_found: FailureHandlingMode,
    /// Policy when the destination rejects an object. Default: FailFast.
    #[serde(default = "default_fail_fast")]
    pub validation_failure: FailureHandlingMode,
    /// Policy on network errors. Default: RetryAndWait.
    #[serde(default = "default_retry_and_wait")]
    pub network_error: FailureHandlingMode,
}

fn default_retry_and_wait() -> FailureHandlingMode {
    FailureHandlingMode::RetryAndWait
}

fn default_wait_for_next_sync() -> FailureHandlingMode {
    FailureHandlingMode::WaitForNextSync
}

fn default_fail_fast() -> FailureHandlingMode {
    FailureHandlingMode::FailFast
}

/// A DR-Syncer (Go) failure policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FailureHandlingMode {
    /// Retry with backoff, then wait for the next trigger.
    RetryAndWait,
    /// Retry with backoff until success or `maxRetries`.
    RetryOnly,
    /// Do not retry; wait for the next trigger.
    WaitForNextSync,
    /// Fail at once.
    FailFast,
}

/// Extension: which source objects are replicated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSelector {
    /// Only objects whose labels match. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Only objects whose name matches at least one of these regular expressions (Rust
    /// `regex` syntax, matched against the whole name). Default: all names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub include_names: Vec<String>,
    /// Skip objects whose name matches any of these regular expressions (Rust `regex` syntax,
    /// whole name). Applied after `includeNames`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub exclude_names: Vec<String>,
}

/// Extension: a JSON-Patch applied to every replicated object of one resource type.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transformation {
    /// Resource type the patch applies to, in `resourceTypes` syntax (`deployments`,
    /// `Deployment`, `widgets.example.com`).
    #[schemars(length(min = 1, max = 253))]
    pub resource: String,
    /// RFC 6902 operations, applied in order to the object as it will be written (namespace
    /// already remapped). A failing `test` skips the patch for that object.
    #[schemars(length(min = 1, max = 64))]
    pub patch: Vec<JsonPatchOperation>,
}

/// One RFC 6902 JSON-Patch operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
// No CEL rule for "add/replace/test need a value": `value` is free-form
// (x-kubernetes-preserve-unknown-fields without a type), and such fields are invisible to
// CEL, so the API server would refuse the CRD. `Transformation::json_patch` checks it.
#[x_kube(validation = Rule::new("!(self.op in ['move', 'copy']) || has(self.from)")
    .message("transformations[].patch[].from is required for move and copy operations")
    .field_path(".from"))]
pub struct JsonPatchOperation {
    /// Operation: add, remove, replace, move, copy or test.
    pub op: JsonPatchOp,
    /// JSON Pointer (RFC 6901) to the target location, e.g. `/spec/replicas` or
    /// `/metadata/labels/tier`.
    #[schemars(length(max = 1024), regex(pattern = JSON_POINTER_PATTERN))]
    pub path: String,
    /// Source location of move and copy (JSON Pointer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = JSON_POINTER_PATTERN))]
    pub from: Option<String>,
    /// Value of add, replace and test: any JSON value. Required for those operations; the
    /// controller reports a patch without one in the mapping's conditions (the API server
    /// cannot check inside free-form values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub value: Option<serde_json::Value>,
}

impl Transformation {
    /// The operations as an RFC 6902 patch, ready to apply. Fails when an operation lacks
    /// what its kind needs (`value` for add/replace/test, `from` for move/copy).
    pub fn json_patch(&self) -> Result<json_patch::Patch, TransformationError> {
        let operations =
            serde_json::to_value(&self.patch).map_err(|source| TransformationError {
                resource: self.resource.clone(),
                source,
            })?;
        serde_json::from_value(operations).map_err(|source| TransformationError {
            resource: self.resource.clone(),
            source,
        })
    }
}

/// A transformation whose operations do not form a valid RFC 6902 patch.
#[derive(Debug, thiserror::Error)]
#[error("transformations for {resource}: invalid JSON-Patch: {source}")]
pub struct TransformationError {
    /// The transformation's `resource`.
    pub resource: String,
    /// What is wrong with the operations.
    pub source: serde_json::Error,
}

/// An RFC 6902 operation name.
// maxLength bounds the cost of the CEL rules testing it, which run once per list item.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(extend("maxLength" = 8))]
pub enum JsonPatchOp {
    /// Insert a value.
    Add,
    /// Delete the value at `path`.
    Remove,
    /// Replace the value at `path`.
    Replace,
    /// Move the value at `from` to `path`.
    Move,
    /// Copy the value at `from` to `path`.
    Copy,
    /// Require the value at `path` to equal `value`.
    Test,
}

/// Observed state of a NamespaceMapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMappingStatus {
    /// Phase of the current or last sync: Pending, Running, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SyncPhase>,
    /// End of the last successful sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Next scheduled sync (Scheduled mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    /// Last source change applied (Continuous mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_watch_event: Option<Time>,
    /// Counts of the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_stats: Option<SyncStats>,
    /// Replica counts of source workloads scaled to zero at the destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployment_scales: Vec<DeploymentScale>,
    /// Per-object result of the last sync (failed objects first; may be truncated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_status: Vec<ResourceStatus>,
    /// Retry state after a failed sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_status: Option<RetryStatus>,
    /// Last error met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<SyncError>,
    /// Standard conditions (Ready, Synced, ...), one per type. Fields accepted but not
    /// acted on show up here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Value of the `dr-syncer.io/sync-now` (or `dr-syncer.io/trigger-sync`) annotation last
    /// acted on, so each new value triggers exactly one sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_now_value: Option<String>,
    /// Extension: result of the last data copy of each PVC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pvc_sync_status: Vec<PvcSyncResult>,
}

/// Phase of a NamespaceMapping sync.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SyncPhase {
    /// Waiting for its first sync.
    Pending,
    /// A sync is in progress.
    Running,
    /// The last sync succeeded.
    Completed,
    /// The last sync failed; see lastError and conditions.
    Failed,
}

/// Counts of a sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStats {
    /// Objects considered.
    #[serde(default)]
    pub total_resources: i32,
    /// Objects written successfully.
    #[serde(default)]
    pub successful_syncs: i32,
    /// Objects that failed.
    #[serde(default)]
    pub failed_syncs: i32,
    /// Wall time of the sync, as a Go duration (`1m2.5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    /// Extension: what the last full sync did, per resource kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512))]
    pub by_kind: Vec<KindSyncCounts>,
}

/// Extension: outcome counts of one resource kind in the last full sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindSyncCounts {
    /// Resource kind (`ConfigMap`, `Deployment`, ...).
    pub kind: String,
    /// Objects that did not exist at the destination and were created.
    #[serde(default)]
    pub created: i32,
    /// Objects that existed at the destination and changed.
    #[serde(default)]
    pub updated: i32,
    /// Objects already identical at the destination.
    #[serde(default)]
    pub unchanged: i32,
    /// Destination objects pruned because they were deleted at the source.
    #[serde(default)]
    pub deleted: i32,
    /// Objects that could not be written (see `resourceStatus` and `lastError`).
    #[serde(default)]
    pub failed: i32,
    /// Source objects left out by the selection rules (ignore label, selectors, ...).
    #[serde(default)]
    pub skipped: i32,
}

/// Replica count of a workload scaled to zero at the destination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentScale {
    /// Workload name.
    pub name: String,
    /// Replicas at the source.
    pub original_replicas: i32,
    /// When the count was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<Time>,
}

/// Result of syncing one object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// Object kind.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Object namespace (source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pending, InProgress, Synced or Failed.
    pub status: ResourceSyncState,
    /// Last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sync state of one object.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ResourceSyncState {
    /// Not attempted yet.
    Pending,
    /// Being written.
    InProgress,
    /// Written.
    Synced,
    /// Could not be written.
    Failed,
}

/// Retry state after a failed sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryStatus {
    /// When the next retry runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<Time>,
    /// Retries left before giving up until the next trigger.
    #[serde(default)]
    pub retries_remaining: i32,
    /// Current wait, as a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_duration: Option<String>,
}

/// An error met during a sync.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncError {
    /// What went wrong.
    pub message: String,
    /// When.
    pub time: Time,
    /// Object concerned (`kind/name`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// Extension: result of the last data copy of one PVC.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncResult {
    /// PVC name (source namespace).
    pub pvc: String,
    /// End of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Running, Succeeded or Failed.
    pub result: PvcSyncOutcome,
    /// Wall time of the copy, as a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Files created or updated.
    #[serde(default)]
    pub files_transferred: i64,
    /// Bytes of file content written at the destination.
    #[serde(default)]
    pub bytes_transferred: i64,
    /// Bytes that crossed the network (deltas, literals and protocol).
    #[serde(default)]
    pub wire_bytes: i64,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    // The extension counters below are omitted when 0, so a DR-Syncer (Go) status
    // round-trips unchanged.
    /// Bytes of changed files rebuilt from data the destination already had (the rsync
    /// delta's matched blocks): high on a small change, 0 on a first copy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub matched_bytes: i64,
    /// Bytes of file content sent literally (new data).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub literal_bytes: i64,
    /// Entries in the source file list (after `excludePaths`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub files_scanned: i64,
    /// Destination entries deleted because they are gone at the source.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub files_deleted: i64,
    /// Source node whose agent served the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Worker pods run for this PVC in the last sync (1 + retries per the source
    /// RemoteCluster's `pvcSync.retryConfig`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: i32,
    /// Condition reason of the last failure (`AgentUnreachable`, `HostKeyMismatch`, ...),
    /// `DataSyncSucceeded` after a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `skip_serializing_if` helper: the extension counters of [`PvcSyncResult`] are omitted
/// when 0.
fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Outcome of a PVC data copy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PvcSyncOutcome {
    /// In progress.
    Running,
    /// Finished; the destination matches the source.
    Succeeded,
    /// Failed; see lastError.
    Failed,
}

/// Which clusters a NamespaceMapping replicates between, as the spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterSelection<'a> {
    /// Through a ClusterMapping (`clusterMappingRef`).
    Mapping(&'a ClusterMappingReference),
    /// Directly between two RemoteClusters (`sourceCluster` + `destinationCluster`).
    Direct {
        /// Source RemoteCluster name.
        source: &'a str,
        /// Destination RemoteCluster name.
        destination: &'a str,
    },
}

/// A NamespaceMapping spec that names its clusters inconsistently. The CRD's CEL rules
/// reject these, so only objects stored before the rules existed can have them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterSelectionError {
    /// Both ways of naming the clusters are used.
    #[error(
        "spec.clusterMappingRef and spec.sourceCluster/spec.destinationCluster are mutually exclusive"
    )]
    Both,
    /// Neither way is (completely) used.
    #[error(
        "spec.clusterMappingRef, or both spec.sourceCluster and spec.destinationCluster, must be set"
    )]
    Neither,
}

impl NamespaceMappingSpec {
    /// The clusters this mapping replicates between, checked the same way as the CRD's CEL
    /// rules.
    pub fn cluster_selection(&self) -> Result<ClusterSelection<'_>, ClusterSelectionError> {
        let direct = (
            self.source_cluster.as_deref(),
            self.destination_cluster.as_deref(),
        );
        match (&self.cluster_mapping_ref, direct) {
            (Some(_), (Some(_), _) | (_, Some(_))) => Err(ClusterSelectionError::Both),
            (Some(reference), (None, None)) => Ok(ClusterSelection::Mapping(reference)),
            (None, (Some(source), Some(destination))) => Ok(ClusterSelection::Direct {
                source,
                destination,
            }),
            (None, _) => Err(ClusterSelectionError::Neither),
        }
    }

    /// The replication mode in effect: an unset `replicationMode` means Scheduled.
    pub fn effective_mode(&self) -> ReplicationMode {
        self.replication_mode.unwrap_or_default()
    }

    /// The cron schedule in effect, given the source RemoteCluster's `defaultSchedule`:
    /// `schedule` in Scheduled mode; when `replicationMode` is unset and `schedule` too, the
    /// RemoteCluster default. `None` outside Scheduled mode, or when nothing supplies one
    /// (the controller reports that as a condition).
    pub fn effective_schedule<'a>(&'a self, remote_default: Option<&'a str>) -> Option<&'a str> {
        match (self.replication_mode, self.schedule.as_deref()) {
            (Some(ReplicationMode::Scheduled) | None, Some(schedule)) => Some(schedule),
            (None, None) => remote_default,
            _ => None,
        }
    }

    /// The destination namespace in effect: `destinationNamespace`, else `sourceNamespace`.
    pub fn effective_destination_namespace(&self) -> &str {
        self.destination_namespace
            .as_deref()
            .unwrap_or(&self.source_namespace)
    }
}

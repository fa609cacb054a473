//! `NamespaceMapping`: what to replicate from one namespace of a source cluster into a
//! namespace of a destination cluster, when, and how objects and PVC data are transformed.
//!
//! - this module: the spec's top level (mode, schedule, clusters, namespaces, retries).
//! - [`pvc`]: how PVCs and their data are replicated.
//! - [`rules`]: immutable-field handling, failure handling, object selection, transforms.
//! - [`safety`]: the guards a mapping may opt out of.
//! - [`status`]: the observed state the controller writes.

mod pvc;
mod rules;
mod safety;
mod status;

pub use pvc::*;
pub use rules::*;
pub use safety::*;
pub use status::*;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, SecretReference, default_true,
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

    /// Extension: the safety guards this mapping opts out of (all guards are on when
    /// unset): protected destination namespaces, adopting objects DR-Syncer did not create,
    /// mass deletion of PVC files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<SafetyConfig>,
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

    /// The safety guards in effect (all on when `safety` is unset).
    pub fn safety(&self) -> SafetyConfig {
        self.safety.clone().unwrap_or_default()
    }

    /// The destination namespace in effect: `destinationNamespace`, else `sourceNamespace`.
    pub fn effective_destination_namespace(&self) -> &str {
        self.destination_namespace
            .as_deref()
            .unwrap_or(&self.source_namespace)
    }
}

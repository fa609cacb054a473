//! `ClusterMapping`: a source/target pair of RemoteClusters, the connection NamespaceMappings
//! refer to, and the SSH trust between their agents and workers.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Condition, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, SECRET_KEY_PATTERN, Time, default_true,
};

/// Desired state of a ClusterMapping: which RemoteCluster is replicated to which.
// Several printer columns share a type; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "dr-syncer.io",
    version = "v1alpha1",
    kind = "ClusterMapping",
    namespaced,
    status = "ClusterMappingStatus",
    shortname = "cm",
    category = "dr-syncer",
    derive = "PartialEq",
    doc = "A replication direction between two RemoteClusters (source to target), referenced by NamespaceMappings through clusterMappingRef.",
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".spec.sourceCluster",
        description = "Source RemoteCluster"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.targetCluster",
        description = "Target RemoteCluster"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Connection phase"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMappingSpec {
    /// Stop connectivity checks and all replication through this mapping while true.
    /// Default: false.
    #[serde(default)]
    pub paused: bool,

    /// Name of the RemoteCluster (same namespace) data is replicated from.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub source_cluster: String,

    /// Name of the RemoteCluster (same namespace) data is replicated to.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub target_cluster: String,

    /// Secret (in the controller cluster) holding the SSH key pair rsync workers in the
    /// target cluster use to authenticate to agents in the source cluster. The private key
    /// (`privateKeyKey`) must be an unencrypted OpenSSH Ed25519 key; the public key is
    /// derived from it (`publicKeyKey` is not required). Default: a Secret `<name>-worker-key`
    /// the controller generates (owned by this ClusterMapping; annotation
    /// `dr-syncer.io/rotate-keys: <new value>` regenerates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_secret_ref: Option<ClusterMappingSshKeySecretRef>,

    /// Check SSH connectivity from the target cluster to the source agents and report it in
    /// status: a short-lived pod (the rsync-worker image in `--check` mode) in the target
    /// cluster's `dr-syncer-system` namespace connects and authenticates to every agent.
    /// Needs `pvcSync.enabled` on the source RemoteCluster. Default: true.
    #[serde(default = "default_true")]
    pub verify_connectivity: bool,

    /// Time limit of one connectivity check, in seconds. 1-3600. Default: 60.
    #[serde(default = "default_connectivity_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub connectivity_timeout_seconds: i32,
}

fn default_connectivity_timeout() -> i32 {
    60
}

/// The Secret with the SSH key pair of a ClusterMapping.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMappingSshKeySecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret. Default: the ClusterMapping's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
    /// Key of the public key (OpenSSH format) in the Secret. Default: `id_rsa.pub`.
    #[serde(default = "default_public_key_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub public_key_key: String,
    /// Key of the private key (OpenSSH format) in the Secret. Default: `id_rsa`.
    #[serde(default = "default_private_key_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub private_key_key: String,
}

fn default_public_key_key() -> String {
    "id_rsa.pub".to_owned()
}

fn default_private_key_key() -> String {
    "id_rsa".to_owned()
}

/// Observed state of a ClusterMapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMappingStatus {
    /// Connection phase: Pending, Connecting, Connected or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClusterMappingPhase>,
    /// Human-readable detail about the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Last time connectivity was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<Time>,
    /// Agent connectivity found by the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_status: Option<ConnectionStatus>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Last time the controller tried to reconcile this mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
    /// Reconcile failures in a row; drives the retry backoff. Reset on success.
    #[serde(default)]
    pub consecutive_failures: i32,
}

/// Connection phase of a ClusterMapping.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ClusterMappingPhase {
    /// Not reconciled yet.
    Pending,
    /// Keys are distributed and connectivity is being checked.
    Connecting,
    /// Both clusters are reachable and the agents answer.
    Connected,
    /// A cluster or the agents cannot be reached; see message and conditions.
    Failed,
}

/// Agent connectivity between the two clusters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// Agents found in the source cluster.
    #[serde(default)]
    pub total_source_agents: i32,
    /// Agents found in the target cluster.
    #[serde(default)]
    pub total_target_agents: i32,
    /// Agents that answered the connectivity check.
    #[serde(default)]
    pub connected_agents: i32,
    /// Result per checked node pair.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connection_details: Vec<AgentConnectionDetail>,
}

/// Result of one connectivity check between two nodes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentConnectionDetail {
    /// Source node whose agent was contacted.
    pub source_node: String,
    /// Target node the check ran from.
    pub target_node: String,
    /// The SSH handshake and authentication succeeded.
    pub connected: bool,
    /// Why the connection failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

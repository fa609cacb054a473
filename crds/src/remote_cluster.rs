//! `RemoteCluster`: one Kubernetes cluster the controller can reach, and how PVC data is
//! served from it (the agent DaemonSet).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Condition, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, RESOURCE_TYPE_PATTERN,
    SCHEDULE_PATTERN, SECRET_KEY_PATTERN, SecretReference, Time, VerificationMode, default_true,
};

/// Desired state of a RemoteCluster: how to reach the cluster and how to run the PVC-sync
/// agent on it.
// Several printer columns share a type; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "dr-syncer.io",
    version = "v1alpha1",
    kind = "RemoteCluster",
    namespaced,
    status = "RemoteClusterStatus",
    shortname = "rc",
    category = "dr-syncer",
    derive = "PartialEq",
    doc = "A Kubernetes cluster DR-Syncer connects to, through a kubeconfig stored in a Secret, and the settings of the PVC-sync agent it deploys there.",
    printcolumn(
        name = "Health",
        type_ = "string",
        json_path = ".status.health",
        description = "Health of the connection to the cluster"
    ),
    printcolumn(
        name = "PVC Sync",
        type_ = "string",
        json_path = ".status.pvcSync.phase",
        description = "Phase of the PVC-sync agent deployment"
    ),
    printcolumn(
        name = "Ready Agents",
        type_ = "integer",
        json_path = ".status.pvcSync.agentStatus.readyNodes",
        description = "Nodes with a ready PVC-sync agent"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RemoteClusterSpec {
    /// Secret holding the kubeconfig the controller uses to talk to this cluster.
    pub kubeconfig_secret_ref: KubeconfigSecretRef,

    /// Schedule (cron syntax, as in NamespaceMapping `schedule`) used by NamespaceMappings
    /// whose source is this cluster and that leave `replicationMode` and `schedule` unset.
    /// No default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), regex(pattern = SCHEDULE_PATTERN))]
    pub default_schedule: Option<String>,

    /// Resource types replicated by NamespaceMappings whose source is this cluster and that
    /// leave `resourceTypes` empty. Same syntax as NamespaceMapping `resourceTypes`. Default:
    /// empty, meaning the built-in defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 128),
        inner(length(min = 1, max = 253), regex(pattern = RESOURCE_TYPE_PATTERN))
    )]
    pub default_resource_types: Vec<String>,

    /// PVC data synchronization: the agent DaemonSet deployed into this cluster so that its
    /// volumes can be read (as a source) by rsync workers. Absent: no agent is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_sync: Option<PvcSyncSpec>,
}

/// Where the kubeconfig for a RemoteCluster lives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeconfigSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret (in the controller's cluster).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// Key in the Secret's data holding the kubeconfig. Default: `kubeconfig`.
    #[serde(default = "default_kubeconfig_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

fn default_kubeconfig_key() -> String {
    "kubeconfig".to_owned()
}

/// Settings of the PVC-sync agent (an SSH server on every node that serves volume data
/// read-only to rsync workers).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncSpec {
    /// Deploy the agent and allow PVC data to be synced from this cluster. Default: false.
    #[serde(default)]
    pub enabled: bool,

    /// Agent container image. Default: the image matching the controller's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<PvcSyncImage>,

    /// SSH service of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<PvcSyncSsh>,

    /// Maximum number of PVC data syncs reading from this cluster at the same time.
    /// No default: `globalConcurrencyLimit` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: Option<i32>,

    /// Maximum number of PVC data syncs running at once across all NamespaceMappings that
    /// read from this cluster. Default: 4.
    #[serde(default = "default_global_concurrency_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub global_concurrency_limit: i32,

    /// Retry behaviour of failed PVC data syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<PvcSyncRetryConfig>,

    /// Pod settings of the agent DaemonSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<PvcSyncDeployment>,

    /// How the controller checks that agents are alive and reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,

    /// Verification mode for PVC syncs from this cluster, unless a NamespaceMapping's
    /// `pvcConfig.dataSyncConfig.verificationMode` says otherwise. One of none, sample, full.
    /// Default: none.
    #[serde(default)]
    pub default_verification_mode: VerificationMode,

    /// Percentage of files re-hashed when the verification mode is `sample`. 1-100.
    /// Default: 10.
    #[serde(default = "default_sample_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub default_sample_percent: i32,
}

fn default_global_concurrency_limit() -> i32 {
    4
}

fn default_sample_percent() -> i32 {
    10
}

/// Container image of the agent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncImage {
    /// Image repository, e.g. `ghcr.io/example/dr-syncer-agent`. Default: the controller's
    /// own agent image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub repository: Option<String>,
    /// Image tag. Default: the controller's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: Option<String>,
    /// Image pull policy: Always, IfNotPresent or Never. Default: IfNotPresent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
}

/// Kubernetes image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only when the image is not on the node.
    IfNotPresent,
    /// Never pull; the image must already be on the node.
    Never,
}

/// SSH service of the agent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncSsh {
    /// TCP port the agent's SSH server listens on (on the node, with hostNetwork).
    /// Default: 2222.
    #[serde(default = "default_ssh_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Secret (in the controller cluster) holding the agents' SSH host key: key
    /// `ssh_host_ed25519_key`, an unencrypted OpenSSH Ed25519 private key
    /// (`ssh-keygen -t ed25519 -N ''`); the public key is derived from it. Only this private
    /// key goes to the source cluster; workers pin its public half. Default: a Secret
    /// `<name>-agent-host-key` the controller generates (owned by this RemoteCluster;
    /// annotation `dr-syncer.io/rotate-keys: <new value>` regenerates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretReference>,
}

fn default_ssh_port() -> i32 {
    2222
}

/// Retry behaviour of failed PVC data syncs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "duration(self.initialDelay) <= duration(self.maxDelay)"
).message("pvcSync.retryConfig.initialDelay must not be longer than pvcSync.retryConfig.maxDelay").field_path(".initialDelay"))]
pub struct PvcSyncRetryConfig {
    /// Attempts after the first failure before the sync is reported as failed. 0-100.
    /// Default: 3.
    #[serde(default = "default_pvc_max_retries")]
    #[schemars(range(min = 0, max = 100))]
    pub max_retries: i32,
    /// Wait before the first retry (Go duration, e.g. `30s`). Default: 30s.
    #[serde(default = "default_initial_delay")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub initial_delay: String,
    /// Longest wait between retries; the wait doubles up to this (Go duration, e.g. `5m`).
    /// Default: 5m.
    #[serde(default = "default_max_delay")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub max_delay: String,
}

fn default_pvc_max_retries() -> i32 {
    3
}

fn default_initial_delay() -> String {
    "30s".to_owned()
}

fn default_max_delay() -> String {
    "5m".to_owned()
}

/// Pod settings of the agent DaemonSet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncDeployment {
    /// Run agent pods on the node's network, so workers reach them at the node address.
    /// Default: true.
    #[serde(default = "default_true")]
    pub host_network: bool,
    /// Node labels an agent pod's node must have. Default: every node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the agent pods, each a map with the keys of a Kubernetes toleration
    /// (key, operator, value, effect, tolerationSeconds) as strings, as in DR-Syncer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub tolerations: Vec<BTreeMap<String, String>>,
    /// CPU and memory requests and limits of the agent container. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra annotations on agent pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra labels on agent pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// PriorityClass of agent pods. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub priority_class_name: Option<String>,
    /// Run the agent container privileged. Needed to read other pods' volumes from the host
    /// filesystem. Default: true.
    #[serde(default = "default_true")]
    pub privileged: bool,
    /// Additional environment variables of the agent container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub extra_env: Vec<EnvVar>,
}

/// Compute resources of a container, as quantities (`500m`, `128Mi`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    /// Maximum resources, by resource name (cpu, memory, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    /// Guaranteed resources, by resource name (cpu, memory, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
}

/// An environment variable of the agent container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Literal value. Default: empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Take the value from a field of the pod instead of `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// Source of an environment variable's value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A field of the pod, e.g. `spec.nodeName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
}

/// Selects a field of the pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectFieldSelector {
    /// Path of the field, e.g. `spec.nodeName` or `metadata.name`.
    #[schemars(length(min = 1, max = 256))]
    pub field_path: String,
}

/// How the controller checks that agents are alive and reachable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckConfig {
    /// Time between health checks (Go duration). Default: 1m.
    #[serde(default = "default_health_interval")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// Timeout of one SSH connection attempt (Go duration). Default: 10s.
    #[serde(default = "default_ten_seconds")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub ssh_timeout: String,
    /// Failed checks in a row before an agent is reported not ready. 0-100. Default: 3.
    #[serde(default = "default_retry_attempts")]
    #[schemars(range(min = 0, max = 100))]
    pub retry_attempts: i32,
    /// Wait between retries of a failed check (Go duration). Default: 10s.
    #[serde(default = "default_ten_seconds")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub retry_interval: String,
}

fn default_health_interval() -> String {
    "1m".to_owned()
}

fn default_ten_seconds() -> String {
    "10s".to_owned()
}

fn default_retry_attempts() -> i32 {
    3
}

/// Observed state of a RemoteCluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteClusterStatus {
    /// Health of the connection: Healthy, Unhealthy or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ClusterHealth>,
    /// Last time the controller reached the cluster successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// State of the PVC-sync agent in this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_sync: Option<PvcSyncStatus>,
    /// Which cluster the kubeconfig reaches, read at the last health check. Two
    /// RemoteClusters with the same `kubeSystemUid` are one cluster: a NamespaceMapping
    /// between them into the same namespace is refused (`SourceIsDestination`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_identity: Option<ClusterIdentity>,
}

/// The identity of a cluster as seen through a kubeconfig.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIdentity {
    /// UID of the cluster's `kube-system` namespace: created once with the cluster, the same
    /// through every address and credential that reaches it.
    pub kube_system_uid: String,
    /// API server URL of the kubeconfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// BLAKE3 of the kubeconfig's CA bundle (hex, first 16 bytes), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
}

/// Health of the connection to a remote cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ClusterHealth {
    /// The API server answered and the credentials work.
    Healthy,
    /// The API server did not answer or refused the credentials.
    Unhealthy,
    /// Not checked yet.
    Unknown,
}

/// State of the PVC-sync agent in a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncStatus {
    /// Phase of the agent deployment, e.g. Deploying, Running, Failed, Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Agent readiness per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<PvcSyncAgentStatus>,
    /// Last time a PVC data sync from this cluster succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_sync: Option<Time>,
    /// Last time the agent DaemonSet was (re)deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deployment_time: Option<Time>,
    /// Number of failed PVC data syncs from this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_syncs: Option<i32>,
    /// Human-readable detail about the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Agent readiness across the cluster's nodes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncAgentStatus {
    /// Nodes whose agent is ready.
    #[serde(default)]
    pub ready_nodes: i32,
    /// Nodes that should run an agent.
    #[serde(default)]
    pub total_nodes: i32,
    /// Agent state by node name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_statuses: BTreeMap<String, PvcSyncNodeStatus>,
}

/// Agent state on one node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncNodeStatus {
    /// The agent pod is ready and answered its last health check.
    #[serde(default)]
    pub ready: bool,
    /// Last time the agent answered a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    /// Result of the last SSH connectivity check to this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_status: Option<SshConnectionStatus>,
    /// State of the agent pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_status: Option<AgentPodStatus>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Result of an SSH connectivity check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshConnectionStatus {
    /// When the check ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<Time>,
    /// The SSH handshake and authentication succeeded.
    #[serde(default)]
    pub connected: bool,
    /// Why the connection failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// State of an agent pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPodStatus {
    /// Pod phase (Pending, Running, ...).
    #[serde(default)]
    pub phase: String,
    /// The pod is ready.
    #[serde(default)]
    pub ready: bool,
    /// Container restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// Last change of the pod's ready state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

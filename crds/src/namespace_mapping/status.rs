//! The observed state of a NamespaceMapping: phase, stats, per-resource and per-PVC
//! results, retries and the last error.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, Time};

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
    pub last_error: Option<SyncErrorRecord>,
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
pub struct SyncErrorRecord {
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

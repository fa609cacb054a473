//! How PersistentVolumeClaims are replicated: storage class and access mode mappings, and
//! the copy of their data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DURATION_PATTERN, VerificationMode};

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

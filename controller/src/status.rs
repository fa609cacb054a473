//! Conditions, reasons and the small helpers every reconciler uses to write status.
//!
//! All condition types and reasons live here as constants so that users (and
//! `docs/troubleshooting.md`) can rely on one list, and so the reconcilers cannot drift into
//! slightly different spellings of the same situation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types.
pub mod types {
    /// The object is fully usable: for a mapping, its last sync succeeded and nothing blocks
    /// the next one; for a RemoteCluster, the cluster answers.
    pub const READY: &str = "Ready";
    /// The destination matches the source as of the last sync.
    pub const SYNCED: &str = "Synced";
    /// Progress is blocked by something only a user can fix (bad spec, missing object).
    pub const STALLED: &str = "Stalled";
    /// Some accepted spec fields are not acted on by this version of the controller.
    pub const UNSUPPORTED_FIELDS: &str = "UnsupportedFields";
    /// Pruning was refused for safety (see the reason).
    pub const PRUNE_BLOCKED: &str = "PruneBlocked";
    /// RemoteCluster: the kubeconfig Secret and key exist.
    pub const KUBECONFIG_AVAILABLE: &str = "KubeconfigAvailable";
    /// RemoteCluster: the kubeconfig parses and yields a client configuration.
    pub const KUBECONFIG_VALID: &str = "KubeconfigValid";
    /// RemoteCluster: the API server answers with these credentials.
    pub const CLUSTER_AVAILABLE: &str = "ClusterAvailable";
    /// ClusterMapping: both RemoteClusters exist and are healthy.
    pub const CLUSTERS_READY: &str = "ClustersReady";
    /// ClusterMapping: SSH connectivity between workers and agents was verified.
    pub const AGENTS_CONNECTED: &str = "AgentsConnected";
    /// NamespaceMapping with `pvcConfig.syncData`: every PVC of the last data sync was
    /// copied (reported apart from `Synced`, which is about the resources).
    pub const DATA_SYNCED: &str = "DataSynced";
    /// NamespaceMapping: destination objects this mapping did not create were left
    /// untouched (listed in the message); `safety.adoptExistingObjects` adopts them.
    pub const FOREIGN_OBJECTS: &str = "ForeignObjects";
}

/// Condition reasons (CamelCase, as Kubernetes requires).
pub mod reasons {
    /// Everything is as it should be.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The last sync wrote every selected object.
    pub const SYNC_SUCCEEDED: &str = "SyncSucceeded";
    /// Some objects failed to sync; see `resourceStatus` and `lastError`.
    pub const SYNC_PARTIALLY_FAILED: &str = "SyncPartiallyFailed";
    /// The sync as a whole failed (source or destination unreachable, ...).
    pub const SYNC_FAILED: &str = "SyncFailed";
    /// A sync is running.
    pub const SYNC_IN_PROGRESS: &str = "SyncInProgress";
    /// No sync has run yet.
    pub const AWAITING_FIRST_SYNC: &str = "AwaitingFirstSync";
    /// Manual mode waiting for the `dr-syncer.io/sync-now` annotation.
    pub const AWAITING_TRIGGER: &str = "AwaitingTrigger";
    /// The mapping (or its ClusterMapping) is paused.
    pub const PAUSED: &str = "Paused";
    /// The schedule does not parse.
    pub const INVALID_SCHEDULE: &str = "InvalidSchedule";
    /// The spec is inconsistent or names something that does not exist (resource type, ...).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A referenced RemoteCluster does not exist.
    pub const REMOTE_CLUSTER_NOT_FOUND: &str = "RemoteClusterNotFound";
    /// A referenced RemoteCluster exists but has no working client yet.
    pub const REMOTE_CLUSTER_NOT_READY: &str = "RemoteClusterNotReady";
    /// A referenced ClusterMapping does not exist.
    pub const CLUSTER_MAPPING_NOT_FOUND: &str = "ClusterMappingNotFound";
    /// The source cluster could not be read; nothing was deleted at the destination.
    pub const SOURCE_UNAVAILABLE: &str = "SourceUnavailable";
    /// The destination cluster could not be written.
    pub const DESTINATION_UNAVAILABLE: &str = "DestinationUnavailable";
    /// The source namespace does not exist or is terminating; nothing was deleted.
    pub const SOURCE_NAMESPACE_MISSING: &str = "SourceNamespaceMissing";
    /// The destination namespace does not exist and `namespaceConfig.createNamespace` is off.
    pub const DESTINATION_NAMESPACE_MISSING: &str = "DestinationNamespaceMissing";
    /// Pruning refused: it would delete too much, or the source listing was unusable.
    pub const PRUNE_REFUSED: &str = "PruneRefused";
    /// Pruning allowed.
    pub const PRUNE_ALLOWED: &str = "PruneAllowed";
    /// Fields accepted by the API but not acted on.
    pub const FIELDS_NOT_IMPLEMENTED: &str = "FieldsNotImplemented";
    /// Every accepted field is acted on.
    pub const ALL_FIELDS_SUPPORTED: &str = "AllFieldsSupported";
    /// The kubeconfig Secret does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// The kubeconfig Secret exists but lacks the key.
    pub const SECRET_KEY_MISSING: &str = "SecretKeyMissing";
    /// The kubeconfig Secret was found with its key.
    pub const SECRET_FOUND: &str = "SecretFound";
    /// The kubeconfig does not parse or does not yield a client.
    pub const KUBECONFIG_INVALID: &str = "KubeconfigInvalid";
    /// The kubeconfig yields a client.
    pub const KUBECONFIG_PARSED: &str = "KubeconfigParsed";
    /// The API server answered `/version`.
    pub const API_SERVER_REACHABLE: &str = "ApiServerReachable";
    /// The API server did not answer or refused the credentials.
    pub const API_SERVER_UNREACHABLE: &str = "ApiServerUnreachable";
    /// Not checked yet because an earlier step failed.
    pub const NOT_CHECKED: &str = "NotChecked";
    /// Both RemoteClusters are healthy.
    pub const CLUSTERS_HEALTHY: &str = "ClustersHealthy";
    /// One of the RemoteClusters is not healthy.
    pub const CLUSTER_UNHEALTHY: &str = "ClusterUnhealthy";
    /// `verifyConnectivity` is false.
    pub const VERIFICATION_DISABLED: &str = "VerificationDisabled";

    // PVC data sync (NamespaceMapping condition `DataSynced`, events, `pvcSyncStatus`).
    /// Every PVC of the last data sync was copied.
    pub const DATA_SYNC_SUCCEEDED: &str = "DataSyncSucceeded";
    /// A PVC copy failed for a reason without a more specific name (see the message).
    pub const DATA_SYNC_FAILED: &str = "DataSyncFailed";
    /// PVC copies are running.
    pub const DATA_SYNC_IN_PROGRESS: &str = "DataSyncInProgress";
    /// `pvcConfig.syncData` is set but the source RemoteCluster has no `pvcSync.enabled`.
    pub const PVC_SYNC_DISABLED: &str = "PvcSyncDisabled";
    /// No agent pod runs on the node holding a source PVC.
    pub const AGENT_NOT_FOUND: &str = "AgentNotFound";
    /// The worker could not connect to the agent (network, agent down, no address).
    pub const AGENT_UNREACHABLE: &str = "AgentUnreachable";
    /// The agent's host key is not the one the controller pinned for the worker.
    pub const HOST_KEY_MISMATCH: &str = "HostKeyMismatch";
    /// The agent refused the worker's client key.
    pub const AUTH_REJECTED: &str = "AuthRejected";
    /// A source volume is mounted on no node (CSI or other attachable volume, no pod using
    /// it), so no agent can read it.
    pub const VOLUME_NOT_MOUNTED: &str = "VolumeNotMounted";
    /// The target PVC the data is copied into does not exist at the destination.
    pub const TARGET_PVC_MISSING: &str = "TargetPvcMissing";
    /// A referenced SSH key Secret is absent, lacks a key, or holds no usable key.
    pub const KEY_SECRET_MISSING: &str = "KeySecretMissing";
    /// The agent DaemonSet did not become Ready (on the current keys) in time.
    pub const AGENTS_NOT_READY: &str = "AgentsNotReady";
    /// The check pod in the target cluster reached and authenticated to every agent.
    pub const CONNECTIVITY_VERIFIED: &str = "ConnectivityVerified";
    /// The check pod could not reach or authenticate to some agent; see connectionStatus.
    pub const CONNECTIVITY_FAILED: &str = "ConnectivityFailed";

    // Safety guards (issue: never damage the source, the DR copy, or what is not ours).
    /// Source and destination are one cluster (same `kube-system` UID, whatever the
    /// RemoteCluster names) and one namespace: syncing would write into the source.
    pub const SOURCE_IS_DESTINATION: &str = "SourceIsDestination";
    /// The destination namespace is protected (kube-system, kube-public, kube-node-lease,
    /// the controller's or the agents' namespace) and `safety.allowProtectedNamespace` is off.
    pub const PROTECTED_NAMESPACE: &str = "ProtectedNamespace";
    /// Another (older) NamespaceMapping already writes the same destination namespace of
    /// the same cluster.
    pub const OVERLAPPING_MAPPING: &str = "OverlappingMapping";
    /// A RemoteCluster's identity (its `kube-system` UID) is not known yet, so the guard
    /// against writing into the source cannot be checked; nothing is written until it is.
    pub const CLUSTER_IDENTITY_UNKNOWN: &str = "ClusterIdentityUnknown";
    /// Destination objects exist that this mapping did not create: left untouched.
    pub const FOREIGN_OBJECTS_FOUND: &str = "ForeignObjectsFound";
    /// Every destination object the sync wrote is this mapping's own.
    pub const NO_FOREIGN_OBJECTS: &str = "NoForeignObjects";
    /// Continuous mode refused to propagate a deletion: more than half of the copies
    /// would be gone before the next full resync, or the source listing is empty.
    pub const CONTINUOUS_PRUNE_REFUSED: &str = "ContinuousPruneRefused";
    /// A PVC data sync deleted nothing at the target: the source listing was empty or had
    /// lost more than half of the target's files (`safety.allowMassDataDeletion` allows it).
    pub const DATA_PRUNE_REFUSED: &str = "DataPruneRefused";
    /// The agent refused the source volume: its directory is not the volume's mount (an
    /// unmounted CSI or local volume), or no Running pod uses it.
    pub const SOURCE_VOLUME_UNSAFE: &str = "SourceVolumeUnsafe";
    /// Another pull into the same target PVC holds its lock; this one was refused.
    pub const TARGET_BUSY: &str = "TargetBusy";
}

/// The current time as a Kubernetes `Time`.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// A condition with `lastTransitionTime` = now; [`set_condition`] keeps the old time when
/// the status did not change, as the Kubernetes API conventions require.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: now(),
    }
}

/// Inserts or replaces the condition of the same type, keeping `lastTransitionTime` when the
/// status did not flip (so users can see how long a state has lasted).
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    if let Some(old) = conditions.iter_mut().find(|c| c.type_ == new.type_) {
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
        }
        *old = new;
    } else {
        conditions.push(new);
    }
}

/// Removes the condition of the given type, if present.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Looks a condition up by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Formats a duration the way Go does (`1m2.5s`, `350ms`), which is what DR-Syncer status
/// fields such as `lastSyncDuration` contain.
pub fn go_duration(d: std::time::Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".to_owned();
    }
    if total_ms < 1000 {
        return format!("{total_ms}ms");
    }
    let hours = total_ms / 3_600_000;
    let minutes = (total_ms / 60_000) % 60;
    let seconds_ms = total_ms % 60_000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    let secs = seconds_ms / 1000;
    let frac = seconds_ms % 1000;
    if frac == 0 {
        out.push_str(&format!("{secs}s"));
    } else {
        let frac = format!("{frac:03}");
        out.push_str(&format!("{secs}.{}s", frac.trim_end_matches('0')));
    }
    out
}

/// Converts a chrono time (what the schedule module speaks) to a Kubernetes `Time`.
pub fn time_from_chrono(t: chrono::DateTime<chrono::Utc>) -> Option<Time> {
    Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
        .ok()
        .map(Time)
}

/// Converts a Kubernetes `Time` to chrono.
pub fn time_to_chrono(t: &Time) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond() as u32)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_durations_format_like_go() {
        assert_eq!(go_duration(Duration::from_millis(0)), "0s");
        assert_eq!(go_duration(Duration::from_millis(350)), "350ms");
        assert_eq!(go_duration(Duration::from_millis(2_500)), "2.5s");
        assert_eq!(go_duration(Duration::from_millis(62_500)), "1m2.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(5_120)), "5.12s");
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = Vec::new();
        let mut first = condition(types::READY, true, reasons::SUCCEEDED, "ok", Some(1));
        first.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        set_condition(&mut conditions, first);
        set_condition(
            &mut conditions,
            condition(
                types::READY,
                true,
                reasons::SYNC_SUCCEEDED,
                "still ok",
                Some(2),
            ),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
        assert_eq!(conditions[0].reason, reasons::SYNC_SUCCEEDED);
        assert_eq!(conditions[0].observed_generation, Some(2));

        set_condition(
            &mut conditions,
            condition(types::READY, false, reasons::SYNC_FAILED, "broken", Some(2)),
        );
        assert_ne!(
            conditions[0].last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
        assert_eq!(conditions[0].status, "False");
    }

    #[test]
    fn chrono_round_trip() {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        let k = time_from_chrono(t).unwrap();
        assert_eq!(time_to_chrono(&k), Some(t));
    }
}

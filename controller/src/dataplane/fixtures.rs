//! Test fixtures shared by the data-plane modules' unit tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dr_syncer_crds::RemoteCluster;

/// A RemoteCluster `dr/<name>` with the given `spec.pvcSync` (the one field the data
/// plane reads from it).
pub(crate) fn remote_cluster(name: &str, pvc_sync: serde_json::Value) -> RemoteCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "dr-syncer.io/v1alpha1",
        "kind": "RemoteCluster",
        "metadata": {"name": name, "namespace": "dr"},
        "spec": {
            "kubeconfigSecretRef": {"name": "kc", "namespace": "dr"},
            "pvcSync": pvc_sync,
        }
    }))
    .unwrap()
}

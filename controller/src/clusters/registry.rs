//! The registry of remote-cluster clients: one client per RemoteCluster, shared by every
//! reconciler, so a sync never builds a client of its own.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dr_syncer_crds::remote_cluster::ClusterIdentity;
use kube::Client;

/// Longest wait for one API request to a remote cluster.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Identifies a RemoteCluster (they are namespaced).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClusterKey {
    /// Namespace of the RemoteCluster.
    pub namespace: String,
    /// Name of the RemoteCluster.
    pub name: String,
}

impl std::fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A client for one remote cluster and what the last health check found.
#[derive(Clone)]
pub struct RemoteClient {
    /// The client for requests: each one fails after [`REQUEST_TIMEOUT`], so a hung API
    /// server shows up as unavailable instead of stalling a sync.
    pub client: Client,
    /// The client for long-lived watches (no per-read timeout).
    pub watch_client: Client,
    /// Hash of the kubeconfig it was built from (rebuild when it changes).
    pub kubeconfig_hash: u64,
    /// API server URL, for messages.
    pub server: String,
    /// Result of the last health check.
    pub healthy: bool,
    /// Why the last health check failed.
    pub last_error: Option<String>,
    /// Which cluster the kubeconfig reaches (read at the health check; `None` until then).
    /// The guard against writing into the source needs it before any sync.
    pub identity: Option<ClusterIdentity>,
    /// BLAKE3 of the kubeconfig's CA bundle, for [`ClusterIdentity::ca_fingerprint`].
    pub ca_fingerprint: Option<String>,
}

/// Every RemoteCluster client, shared by all reconcilers.
#[derive(Clone, Default)]
pub struct ClusterRegistry {
    inner: Arc<RwLock<HashMap<ClusterKey, RemoteClient>>>,
}

impl ClusterRegistry {
    /// The client of a cluster, if one was built.
    pub fn get(&self, key: &ClusterKey) -> Option<RemoteClient> {
        self.inner.read().ok()?.get(key).cloned()
    }

    /// Stores (or replaces) the client of a cluster.
    pub fn insert(&self, key: ClusterKey, client: RemoteClient) {
        if let Ok(mut map) = self.inner.write() {
            map.insert(key, client);
        }
    }

    /// Forgets a cluster (deleted, or its kubeconfig became unusable).
    pub fn remove(&self, key: &ClusterKey) {
        if let Ok(mut map) = self.inner.write() {
            map.remove(key);
        }
    }

    /// Records which cluster the client reaches.
    pub fn set_identity(&self, key: &ClusterKey, identity: ClusterIdentity) {
        if let Ok(mut map) = self.inner.write()
            && let Some(entry) = map.get_mut(key)
        {
            entry.identity = Some(identity);
        }
    }

    /// Records a health-check result without touching the client.
    pub fn set_health(&self, key: &ClusterKey, healthy: bool, error: Option<String>) {
        if let Ok(mut map) = self.inner.write()
            && let Some(entry) = map.get_mut(key)
        {
            entry.healthy = healthy;
            entry.last_error = error;
        }
    }
}

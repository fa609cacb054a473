//! Concurrency slots of PVC data copies: how many copies run at once over the whole
//! controller, per source cluster and per mapping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dr_syncer_crds::namespace_mapping::NamespaceMapping;
use dr_syncer_crds::remote_cluster::RemoteCluster;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Concurrency limits shared by every mapping: one global semaphore (the controller's
/// `--concurrency`) and one per source cluster (`pvcSync.globalConcurrencyLimit`, lowered
/// by `pvcSync.concurrency`). Source clusters are named by their RemoteCluster's
/// `namespace/name`.
pub struct DataSlots {
    global: Arc<Semaphore>,
    per_cluster: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
}

/// The permits of one running copy; dropping it frees the slots.
pub struct Slot {
    _cluster: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl DataSlots {
    /// Limits with `global` copies at once over the whole controller (at least 1).
    pub fn new(global: usize) -> Self {
        DataSlots {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_cluster: Mutex::new(HashMap::new()),
        }
    }

    /// The semaphore of a source cluster, recreated when its limit changed (copies
    /// holding the old one finish under the old limit).
    fn cluster(&self, key: &str, limit: usize) -> Arc<Semaphore> {
        let limit = limit.max(1);
        let mut map = match self.per_cluster.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = map
            .entry(key.to_owned())
            .or_insert_with(|| (limit, Arc::new(Semaphore::new(limit))));
        if entry.0 != limit {
            *entry = (limit, Arc::new(Semaphore::new(limit)));
        }
        entry.1.clone()
    }

    /// Waits for a slot of the source cluster and a global one.
    pub async fn acquire(&self, key: &str, limit: usize) -> Option<Slot> {
        let cluster = self.cluster(key, limit).acquire_owned().await.ok()?;
        let global = self.global.clone().acquire_owned().await.ok()?;
        Some(Slot {
            _cluster: cluster,
            _global: global,
        })
    }
}

/// Copies of one source cluster at once: `globalConcurrencyLimit`, lowered by
/// `concurrency` when set.
pub fn cluster_limit(rc: &RemoteCluster) -> usize {
    let Some(p) = rc.spec.pvc_sync.as_ref() else {
        return 4;
    };
    let mut limit = p.global_concurrency_limit;
    if let Some(c) = p.concurrency {
        limit = limit.min(c);
    }
    usize::try_from(limit).unwrap_or(1).max(1)
}

/// PVCs of this mapping copied at once (`dataSyncConfig.concurrentSyncs`, default 2).
pub fn mapping_limit(nm: &NamespaceMapping) -> usize {
    let n = nm
        .spec
        .pvc_config
        .as_ref()
        .and_then(|p| p.data_sync_config.as_ref())
        .map_or(2, |c| c.concurrent_syncs);
    usize::try_from(n).unwrap_or(1).max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dataplane::fixtures::remote_cluster;
    use serde_json::json;
    use std::time::Duration;

    fn rc(pvc_sync: serde_json::Value) -> RemoteCluster {
        remote_cluster("a", pvc_sync)
    }

    fn nm(pvc_config: serde_json::Value) -> NamespaceMapping {
        serde_json::from_value(json!({
            "apiVersion": "dr-syncer.io/v1alpha1", "kind": "NamespaceMapping",
            "metadata": {"name": "web", "namespace": "dr"},
            "spec": {"sourceNamespace": "app", "sourceCluster": "a", "destinationCluster": "b",
                     "pvcConfig": pvc_config},
        }))
        .unwrap()
    }

    #[test]
    fn limits_from_specs() {
        assert_eq!(cluster_limit(&rc(json!({"enabled": true}))), 4);
        assert_eq!(
            cluster_limit(&rc(
                json!({"enabled": true, "globalConcurrencyLimit": 8, "concurrency": 3})
            )),
            3
        );
        assert_eq!(mapping_limit(&nm(json!({"syncData": true}))), 2);
        assert_eq!(
            mapping_limit(&nm(
                json!({"syncData": true, "dataSyncConfig": {"concurrentSyncs": 5}})
            )),
            5
        );
    }

    #[tokio::test]
    async fn slots_limit_per_cluster_and_globally() {
        let slots = DataSlots::new(3);
        let a = "dr/a";
        let b = "dr/b";
        let first = slots.acquire(a, 2).await.unwrap();
        let _second = slots.acquire(a, 2).await.unwrap();
        // Cluster a is full; b still has room (global 3).
        let third = tokio::time::timeout(Duration::from_millis(50), slots.acquire(a, 2)).await;
        assert!(third.is_err(), "a third copy of cluster a must wait");
        let _b1 = slots.acquire(b, 2).await.unwrap();
        // Global limit reached: even b waits now.
        let b2 = tokio::time::timeout(Duration::from_millis(50), slots.acquire(b, 2)).await;
        assert!(b2.is_err(), "the global limit must hold");
        drop(first);
        let again = tokio::time::timeout(Duration::from_secs(5), slots.acquire(a, 2)).await;
        assert!(again.is_ok(), "a freed slot is reusable");
    }
}

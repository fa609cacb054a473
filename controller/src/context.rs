//! The state every reconciler shares: the controller-cluster client, the registry of
//! remote-cluster clients, metrics, the event recorder and the continuous-mode watchers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clusters::ClusterRegistry;
use crate::dataplane::DataPlaneConfig;
use crate::dataplane::slots::DataSlots;
use crate::discovery::DiscoveryCache;
use crate::metrics::Metrics;
use crate::watchers::Watchers;

/// Field manager of every write (server-side apply) the controller makes.
pub const FIELD_MANAGER: &str = "dr-syncer";

/// Name the controller reports in Events.
pub const CONTROLLER_NAME: &str = "dr-syncer-controller";

/// Shared state of the reconcilers.
pub struct Context {
    /// Client of the cluster the controller runs in (where the CRDs live).
    pub client: Client,
    /// One client per RemoteCluster.
    pub clusters: ClusterRegistry,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events on our objects.
    pub recorder: Recorder,
    /// Continuous-mode watchers, one set per NamespaceMapping.
    pub watchers: Watchers,
    /// Discovery results per source cluster.
    pub discovery: DiscoveryCache,
    /// Images and limits of the PVC data plane.
    pub dataplane: DataPlaneConfig,
    /// Concurrency slots of PVC data copies (global and per source cluster).
    pub data_slots: DataSlots,
    /// Mappings this process has run a sync for: a `Running` phase on any other mapping
    /// was left by a controller that died mid-sync.
    synced_here: Mutex<HashSet<String>>,
}

impl Context {
    /// Builds the context for the given controller-cluster client.
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: Option<String>) -> Arc<Self> {
        Self::with_dataplane(client, metrics, instance, DataPlaneConfig::default())
    }

    /// Builds the context with the data-plane settings the binary was started with.
    pub fn with_dataplane(
        client: Client,
        metrics: Arc<Metrics>,
        instance: Option<String>,
        dataplane: DataPlaneConfig,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance,
        };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            clusters: ClusterRegistry::default(),
            metrics: metrics.clone(),
            watchers: Watchers::with_gauge(metrics.watched_mappings.clone()),
            discovery: DiscoveryCache::default(),
            data_slots: DataSlots::new(dataplane.global_concurrency),
            dataplane,
            synced_here: Mutex::new(HashSet::new()),
        })
    }

    /// Whether this process has run a sync of the mapping (`namespace/name`).
    pub fn has_synced_here(&self, mapping: &str) -> bool {
        self.synced_here
            .lock()
            .map(|s| s.contains(mapping))
            .unwrap_or(false)
    }

    /// Records that this process ran a sync of the mapping.
    pub fn mark_synced_here(&self, mapping: &str) {
        if let Ok(mut s) = self.synced_here.lock() {
            s.insert(mapping.to_owned());
        }
    }

    /// Publishes an Event on `obj`; failures are logged, never fatal (events are advisory).
    pub async fn event<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(truncate(note, 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(%error, reason, "publishing an event failed");
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Writes `status` of the object with server-side apply (field manager `dr-syncer`), so the
/// controller owns exactly the status fields it sets.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

//! The state every reconciler shares: the controller-cluster client, the registry of
//! remote-cluster clients, metrics, the event publisher and the continuous-mode watchers.
//!
//! Only reconcilers take a [`Context`]; the plumbing they share (server-side apply, events,
//! waits) lives in [`crate::k8s`] so no module imports the context just for a helper.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kube::{Client, Resource};

use crate::clusters::ClusterRegistry;
use crate::dataplane::DataPlaneConfig;
use crate::dataplane::agents::AgentSite;
use crate::dataplane::slots::DataSlots;
use crate::discovery::DiscoveryCache;
use crate::k8s::EventPublisher;
use crate::metrics::Metrics;
use crate::watchers::Watchers;

/// Shared state of the reconcilers.
pub struct Context {
    /// Client of the cluster the controller runs in (where the CRDs live).
    pub client: Client,
    /// One client per RemoteCluster.
    pub clusters: ClusterRegistry,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events on our objects.
    pub events: EventPublisher,
    /// Continuous-mode watchers, one set per NamespaceMapping.
    pub watchers: Watchers,
    /// Discovery results per source cluster.
    pub discovery: DiscoveryCache,
    /// Images and limits of the PVC data plane.
    pub dataplane: DataPlaneConfig,
    /// Concurrency slots of PVC data copies (global and per source cluster).
    pub data_slots: DataSlots,
    /// The namespace the controller runs in: protected as a destination, like kube-system
    /// (`None`: not run in a pod, nothing extra is protected).
    pub controller_namespace: Option<String>,
    /// Mappings this process has run a sync for: a `Running` phase on any other mapping
    /// was left by a controller that died mid-sync.
    synced_here: Mutex<HashSet<String>>,
}

impl Context {
    /// Builds the context for the given controller-cluster client.
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: Option<String>) -> Arc<Self> {
        Self::with_dataplane(client, metrics, instance, DataPlaneConfig::default(), None)
    }

    /// Builds the context with the data-plane settings the binary was started with.
    pub fn with_dataplane(
        client: Client,
        metrics: Arc<Metrics>,
        instance: Option<String>,
        dataplane: DataPlaneConfig,
        controller_namespace: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Context {
            events: EventPublisher::new(client.clone(), instance),
            client,
            clusters: ClusterRegistry::default(),
            metrics: metrics.clone(),
            watchers: Watchers::with_gauge(metrics.watched_mappings.clone()),
            discovery: DiscoveryCache::default(),
            data_slots: DataSlots::new(dataplane.global_concurrency),
            dataplane,
            controller_namespace,
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

    /// What deploying agents needs from this context: the controller-cluster client (key
    /// Secrets) and the default agent image.
    pub fn agent_site(&self) -> AgentSite<'_> {
        AgentSite {
            keys: &self.client,
            image: &self.dataplane.agent,
        }
    }

    /// Publishes an Event on `obj` (see [`EventPublisher::publish`]).
    pub async fn event<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.events
            .publish(obj, warning, reason, action, note)
            .await;
    }
}

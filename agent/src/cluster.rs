//! The agent's view of the cluster: reflector caches of PVCs, PVs, the pods of its own node,
//! its own Node and VolumeAttachments, kept current by watches. Resolving from caches keeps
//! [`VolumeResolver::resolve`] synchronous and free of API round trips per connection.

use std::fmt::Debug;
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dr_syncer_rsync::{VolumeError, VolumeResolver};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::resolve::{ClusterView, NodeContext, ResolveError, resolve};

/// Reflector stores the resolver reads. Cheap to clone (shared caches).
#[derive(Clone)]
pub struct ClusterStores {
    pvcs: Store<PersistentVolumeClaim>,
    pvs: Store<PersistentVolume>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    attachments: Store<VolumeAttachment>,
}

impl ClusterStores {
    /// Starts the four watches on the runtime (they run until the process exits, retrying
    /// with backoff on API errors) and returns their caches. Pods and the Node are watched
    /// with a field selector on this node, so other nodes' pods are never cached.
    pub fn start(client: &Client, node_name: &str) -> Self {
        let on_node = format!("spec.nodeName={node_name}");
        let this_node = format!("metadata.name={node_name}");
        Self {
            pvcs: spawn_reflector(Api::all(client.clone()), watcher::Config::default()),
            pvs: spawn_reflector(Api::all(client.clone()), watcher::Config::default()),
            pods: spawn_reflector(
                Api::all(client.clone()),
                watcher::Config::default().fields(&on_node),
            ),
            nodes: spawn_reflector(
                Api::all(client.clone()),
                watcher::Config::default().fields(&this_node),
            ),
            attachments: spawn_reflector(Api::all(client.clone()), watcher::Config::default()),
        }
    }

    /// Waits until every cache the rules need holds a first full list (VolumeAttachments
    /// only improve refusal messages, so they are not waited for), logging while it waits (missing
    /// RBAC shows up here as repeated watch errors in the log). Returns false if a watch
    /// task ended before its first list.
    pub async fn wait_ready(&self, log_every: Duration) -> bool {
        let all = async {
            self.pvcs.wait_until_ready().await.is_ok()
                && self.pvs.wait_until_ready().await.is_ok()
                && self.pods.wait_until_ready().await.is_ok()
                && self.nodes.wait_until_ready().await.is_ok()
        };
        tokio::pin!(all);
        loop {
            match tokio::time::timeout(log_every, &mut all).await {
                Ok(ok) => return ok,
                Err(_) => warn!("still waiting for the first list of PVCs, PVs, pods and node"),
            }
        }
    }
}

/// Runs a watch feeding a new store; returns the store's reader.
fn spawn_reflector<K>(api: Api<K>, config: watcher::Config) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store::<K>();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stream = watcher(api, config)
        .modify(|o| o.managed_fields_mut().clear())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                warn!(kind, error = %e, "watch error (retrying with backoff)");
            }
        }
    });
    reader
}

impl ClusterView for ClusterStores {
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&ObjectRef::new(name).within(namespace))
    }

    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.get(&ObjectRef::new(name))
    }

    fn pods_on_node(&self) -> Vec<Arc<Pod>> {
        self.pods.state()
    }

    fn node(&self) -> Option<Arc<Node>> {
        self.nodes.state().into_iter().next()
    }

    fn attached_node(&self, pv: &str) -> Option<String> {
        self.attachments
            .find(|va| {
                va.spec.source.persistent_volume_name.as_deref() == Some(pv)
                    && va.status.as_ref().is_some_and(|s| s.attached)
            })
            .map(|va| va.spec.node_name.clone())
    }
}

/// Resolves `<namespace>/<pvc>` volume names on this node from the cluster caches.
#[derive(Clone)]
pub struct ClusterResolver {
    stores: ClusterStores,
    node: NodeContext,
}

impl ClusterResolver {
    /// A resolver for `node` over `stores`.
    pub fn new(stores: ClusterStores, node: NodeContext) -> Self {
        Self { stores, node }
    }
}

impl VolumeResolver for ClusterResolver {
    fn resolve(&self, volume: &str) -> Result<PathBuf, VolumeError> {
        match resolve(&self.stores, &self.node, volume) {
            Ok(dir) => {
                info!(volume, dir = %dir.display(), "volume resolved");
                Ok(dir)
            }
            Err(e) => {
                warn!(volume, error = %e, "volume refused");
                let (volume, reason) = (volume.to_string(), e.to_string());
                Err(match e {
                    ResolveError::SourceUnsafe { .. } => VolumeError::Unsafe { volume, reason },
                    _ => VolumeError::Unavailable { volume, reason },
                })
            }
        }
    }
}

/// Static `name=/dir` volumes first (tests, local use), then the cluster resolver.
pub struct LayeredResolver {
    /// Volumes from `--volume`.
    pub fixed: dr_syncer_rsync::StaticVolumes,
    /// PVC resolution, when the agent knows its node.
    pub cluster: Option<ClusterResolver>,
}

impl VolumeResolver for LayeredResolver {
    fn resolve(&self, volume: &str) -> Result<PathBuf, VolumeError> {
        match (self.fixed.resolve(volume), &self.cluster) {
            (Ok(dir), _) => Ok(dir),
            (Err(_), Some(cluster)) => cluster.resolve(volume),
            (Err(e), None) => Err(e),
        }
    }
}

//! Wiring: the HTTP endpoints, leader election, the three controllers, graceful shutdown.
//!
//! Order matters for safety: the metrics/health server starts first (liveness works while
//! waiting for leadership), the controllers only start once this replica holds the Lease,
//! and they stop (watchers included) as soon as leadership is lost or SIGTERM arrives.

use std::fmt::Display;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;

use dr_syncer_crds::{ClusterMapping, NamespaceMapping, RemoteCluster};
use futures::StreamExt;
use futures::future::{Ready, ready};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::dataplane::DataPlaneConfig;
use crate::http::{self, Health};
use crate::leader::{self, LeaderConfig};
use crate::metrics::Metrics;
use crate::{cluster_mapping, clusters, mapping};

/// What the binary's flags decide.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: SocketAddr,
    /// Leader election on a Lease (`None`: off, this replica always runs).
    pub leader: Option<LeaderConfig>,
    /// Identity reported in Events.
    pub identity: String,
    /// Images and limits of the PVC data plane.
    pub dataplane: DataPlaneConfig,
    /// The controller's own namespace, protected as a destination.
    pub controller_namespace: Option<String>,
}

/// Why the controller stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// No usable client configuration for the controller's own cluster.
    #[error("cannot connect to the controller cluster: {0}")]
    Client(#[from] kube::Error),
    /// The metrics address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Leader election failed.
    #[error("leader election: {0}")]
    Leader(#[from] leader::LeaderError),
    /// Leadership was lost: stop at once so the new leader is the only writer.
    #[error("leadership lost; exiting so that only the new leader writes")]
    LostLeadership,
}

/// Runs until `shutdown` is cancelled (SIGTERM) or leadership is lost.
pub async fn run(config: RunConfig, shutdown: CancellationToken) -> Result<(), FatalError> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::new());
    let health = Health::new(metrics.clone());
    let listener = http::bind(config.metrics_addr)
        .await
        .map_err(|source| FatalError::Bind {
            addr: config.metrics_addr,
            source,
        })?;
    tracing::info!(addr = %config.metrics_addr, "serving /metrics, /healthz, /readyz");
    tokio::spawn(http::serve(listener, health.clone(), shutdown.clone()));

    let leadership = match &config.leader {
        None => None,
        Some(leader_config) => {
            tracing::info!(lease = %leader_config.name, namespace = %leader_config.namespace, "waiting for leadership");
            match leader::acquire(client.clone(), leader_config.clone(), shutdown.clone()).await? {
                None => return Ok(()),
                Some(leadership) => Some(leadership),
            }
        }
    };
    let stop = CancellationToken::new();
    let lost = leadership.as_ref().map(|l| l.lost.clone());
    {
        let stop = stop.clone();
        let shutdown = shutdown.clone();
        let lost = lost.clone().unwrap_or_default();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = lost.cancelled() => {}
            }
            stop.cancel();
        });
    }
    if let Some(lost) = lost.clone() {
        // Losing the Lease must stop every write at once: graceful shutdown would let
        // in-flight syncs finish while another replica may already lead.
        tokio::spawn(async move {
            lost.cancelled().await;
            tracing::error!("leadership lost; exiting immediately so only the new leader writes");
            std::process::exit(3);
        });
    }
    health.set_ready(true);
    let ctx = Context::with_dataplane(
        client.clone(),
        metrics,
        Some(config.identity.clone()),
        config.dataplane.clone(),
        config.controller_namespace.clone(),
    );
    run_controllers(client.clone(), ctx.clone(), stop).await;
    ctx.watchers.stop_all();
    health.set_ready(false);
    let was_lost = lost.as_ref().is_some_and(|l| l.is_cancelled());
    if let Some(leadership) = leadership {
        leadership.stop();
        if let (Some(leader_config), false) = (&config.leader, was_lost) {
            leader::release(client, leader_config).await;
        }
    }
    if was_lost {
        return Err(FatalError::LostLeadership);
    }
    tracing::info!("controller stopped");
    Ok(())
}

/// Runs the RemoteCluster, ClusterMapping and NamespaceMapping controllers until `stop`.
pub async fn run_controllers(client: Client, ctx: Arc<Context>, stop: CancellationToken) {
    let remote_clusters = remote_cluster_controller(client.clone(), ctx.clone(), stop.clone());
    let cluster_mappings = cluster_mapping_controller(client.clone(), ctx.clone(), stop.clone());
    let namespace_mappings = namespace_mapping_controller(client, ctx, stop);
    tokio::join!(remote_clusters, cluster_mappings, namespace_mappings);
}

async fn remote_cluster_controller(client: Client, ctx: Arc<Context>, stop: CancellationToken) {
    let controller = Controller::new(
        Api::<RemoteCluster>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        .watches(
            Api::<Secret>::all(client),
            watcher::Config::default(),
            referring(store, clusters::references_secret),
        )
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(clusters::reconcile, clusters::error_policy, ctx)
        .for_each(log_event("remote cluster"))
        .await;
}

async fn cluster_mapping_controller(client: Client, ctx: Arc<Context>, stop: CancellationToken) {
    let controller = Controller::new(
        Api::<ClusterMapping>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        .watches(
            Api::<RemoteCluster>::all(client),
            watcher::Config::default(),
            referring(store, cluster_mapping::references_cluster),
        )
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(
            cluster_mapping::reconcile,
            cluster_mapping::error_policy,
            ctx,
        )
        .for_each(log_event("cluster mapping"))
        .await;
}

async fn namespace_mapping_controller(client: Client, ctx: Arc<Context>, stop: CancellationToken) {
    let controller = Controller::new(
        Api::<NamespaceMapping>::all(client.clone()),
        watcher::Config::default(),
    );
    let by_cluster = controller.store();
    let by_mapping = controller.store();
    controller
        .watches(
            Api::<RemoteCluster>::all(client.clone()),
            watcher::Config::default(),
            referring(by_cluster, mapping::references_cluster),
        )
        .watches(
            Api::<ClusterMapping>::all(client),
            watcher::Config::default(),
            referring(by_mapping, mapping::references_cluster_mapping),
        )
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(mapping::reconcile, mapping::error_policy, ctx)
        .for_each(log_event("namespace mapping"))
        .await;
}

/// A `watches` mapper: a change to a watched object (a Secret, a RemoteCluster, a
/// ClusterMapping) wakes every object of `store` that `references` it by namespace and name.
fn referring<K, W>(
    store: Store<K>,
    references: fn(&K, &str, &str) -> bool,
) -> impl Fn(W) -> Vec<ObjectRef<K>> + Send + 'static
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
    W: Resource,
{
    move |watched| {
        let namespace = watched.namespace().unwrap_or_default();
        let name = watched.name_any();
        store
            .state()
            .into_iter()
            .filter(|ours| references(ours, &namespace, &name))
            .map(|ours| ObjectRef::from_obj(ours.as_ref()))
            .collect()
    }
}

/// What a controller's stream is drained with: its errors (already handled by the error
/// policy) at debug level, naming the controller `what`.
fn log_event<T, E: Display>(what: &'static str) -> impl FnMut(Result<T, E>) -> Ready<()> {
    move |result| {
        if let Err(error) = result {
            tracing::debug!(%error, "{what} controller event");
        }
        ready(())
    }
}

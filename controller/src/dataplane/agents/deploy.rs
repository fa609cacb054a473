//! Applying the agent's objects in a source cluster (server-side apply, field manager
//! `dr-syncer`), removing what we created, waiting for a roll to the current keys, and
//! handing a worker the credentials that reach the rolled agents.

use std::collections::BTreeMap;
use std::time::Duration;

use dr_syncer_crds::remote_cluster::RemoteCluster;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::render::{render, render_secret};
use super::status::agent_pods;
use super::{
    AGENT_NAME, AGENT_NAMESPACE, AGENT_SECRET, AGENT_SELECTOR, AgentError, AgentPod, READY_TIMEOUT,
};
use crate::clusters::ClusterKey;
use crate::dataplane::config::PodImage;
use crate::dataplane::keys::{self, KeyScope, MANAGED_BY, MANAGED_BY_LABEL, WorkerCredentials};
use crate::k8s::FIELD_MANAGER;

/// What deploying agents needs from the controller: the client of the controller's cluster,
/// where the SSH key Secrets live, and the agent image to use when the RemoteCluster names none.
#[derive(Clone, Copy)]
pub struct AgentSite<'a> {
    /// Client of the controller's cluster (the key Secrets).
    pub keys: &'a Client,
    /// The default agent image and its pull settings.
    pub image: &'a PodImage,
}

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

/// Applies every agent object for a RemoteCluster with pvcSync enabled: the Secret holds
/// the host key and every client key allowed to read from this cluster. Returns the keys
/// hash the DaemonSet's pods must carry once rolled.
pub async fn ensure_deployed(
    site: &AgentSite<'_>,
    rc: &RemoteCluster,
    source: &Client,
) -> Result<String, AgentError> {
    let host = keys::host_key(site.keys, rc).await?;
    let key = ClusterKey {
        namespace: rc.namespace().unwrap_or_default(),
        name: rc.name_any(),
    };
    let clients = keys::authorized_client_keys(site.keys, &key).await?;
    let authorized = keys::render_authorized_keys(clients.iter().map(String::as_str));
    let secret = render_secret(&host.private_openssh, &authorized);
    let hash = keys::data_hash(&secret.data.clone().unwrap_or_default());
    let objects = render(rc, site.image, &hash);
    apply(&Api::all(source.clone()), &objects.namespace).await?;
    let ns = |c: &Client| (c.clone(), AGENT_NAMESPACE);
    apply(
        &Api::namespaced(ns(source).0, ns(source).1),
        &objects.service_account,
    )
    .await?;
    apply(&Api::all(source.clone()), &objects.cluster_role).await?;
    apply(&Api::all(source.clone()), &objects.binding).await?;
    apply(&Api::namespaced(source.clone(), AGENT_NAMESPACE), &secret).await?;
    apply(
        &Api::namespaced(source.clone(), AGENT_NAMESPACE),
        &objects.daemon_set,
    )
    .await?;
    Ok(hash)
}

/// Removes the DaemonSet and Secret we created (only when labelled managed-by dr-syncer),
/// when `pvcSync.enabled` turns false. RBAC and the namespace stay: they grant nothing
/// without pods and cost nothing.
pub async fn remove(source: &Client) -> Result<bool, kube::Error> {
    let mut removed = false;
    let ds: Api<DaemonSet> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    if let Some(obj) = ds.get_opt(AGENT_NAME).await?
        && is_ours(obj.labels())
    {
        ds.delete(AGENT_NAME, &DeleteParams::background()).await?;
        removed = true;
    }
    let secrets: Api<Secret> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    if let Some(obj) = secrets.get_opt(AGENT_SECRET).await?
        && is_ours(obj.labels())
    {
        secrets
            .delete(AGENT_SECRET, &DeleteParams::default())
            .await?;
        removed = true;
    }
    Ok(removed)
}

fn is_ours(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

/// What the DaemonSet says about readiness: (desired, updated and ready on current hash).
fn rollout_done(ds: &DaemonSet) -> Option<(i32, bool)> {
    let status = ds.status.as_ref()?;
    let generation_seen = status.observed_generation >= ds.metadata.generation;
    let desired = status.desired_number_scheduled;
    let done = generation_seen
        && status.updated_number_scheduled.unwrap_or(0) == desired
        && status.number_ready == desired
        && status.number_available.unwrap_or(0) == desired;
    Some((desired, done))
}

/// Waits (polling with a deadline) until the DaemonSet rolled to `hash` and an agent is
/// Ready on every node it should run on.
pub async fn wait_ready(source: &Client, hash: &str, timeout: Duration) -> Result<(), AgentError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let ds_api: Api<DaemonSet> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let detail = loop {
        let ds = ds_api.get_opt(AGENT_NAME).await?;
        let list = pods
            .list(&ListParams::default().labels(AGENT_SELECTOR))
            .await?;
        let agents = agent_pods(&list.items, Some(hash));
        let ready = agents.values().filter(|a| a.ready).count();
        let detail = match ds.as_ref().and_then(rollout_done) {
            Some((desired, true)) if desired > 0 && ready as i32 >= desired => return Ok(()),
            Some((0, _)) => {
                "the DaemonSet schedules no pod (check nodeSelector and tolerations)".to_owned()
            }
            Some((desired, _)) => not_ready_detail(&agents, desired),
            None => "the DaemonSet has no status yet".to_owned(),
        };
        if tokio::time::Instant::now() >= deadline {
            break detail;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    Err(AgentError::NotReady {
        waited: timeout,
        detail,
    })
}

fn not_ready_detail(agents: &BTreeMap<String, AgentPod>, desired: i32) -> String {
    let waiting: Vec<String> = agents
        .values()
        .filter(|a| !a.ready)
        .map(|a| format!("{} (pod {})", a.node, a.pod))
        .collect();
    format!(
        "{} of {desired} agents ready on the current keys; not ready: {}",
        agents.values().filter(|a| a.ready).count(),
        if waiting.is_empty() {
            "pods not created yet".to_owned()
        } else {
            waiting.join(", ")
        }
    )
}

/// Ensures host key, the scope's client key, the agent Secret (its `authorized_keys`
/// includes the scope's key), RBAC and DaemonSet in the source cluster; waits (poll with a
/// deadline, [`READY_TIMEOUT`]) until the DaemonSet has rolled to the current keys-hash and
/// its pods on every node are Ready; returns the credentials a worker needs.
pub async fn prepare(
    site: &AgentSite<'_>,
    scope: &KeyScope,
    source_rc: &RemoteCluster,
    source: &Client,
) -> Result<WorkerCredentials, AgentError> {
    prepare_with_timeout(site, scope, source_rc, source, READY_TIMEOUT).await
}

/// [`prepare`] with an explicit readiness deadline (the connectivity check uses its own).
pub async fn prepare_with_timeout(
    site: &AgentSite<'_>,
    scope: &KeyScope,
    source_rc: &RemoteCluster,
    source: &Client,
    timeout: Duration,
) -> Result<WorkerCredentials, AgentError> {
    if !source_rc.spec.pvc_sync.as_ref().is_some_and(|p| p.enabled) {
        return Err(AgentError::Disabled(format!(
            "{}/{}",
            source_rc.namespace().unwrap_or_default(),
            source_rc.name_any()
        )));
    }
    // The client key must exist before the Secret is rendered, so it is authorized.
    let client = keys::client_key(site.keys, scope).await?;
    let hash = ensure_deployed(site, source_rc, source).await?;
    wait_ready(source, &hash, timeout).await?;
    let host = keys::host_key(site.keys, source_rc).await?;
    Ok(WorkerCredentials {
        client_private_key: client.private_openssh,
        agent_host_public_key: host.public_openssh,
    })
}

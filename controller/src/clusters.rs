//! `RemoteCluster`: a client per remote cluster, built from its kubeconfig Secret, kept in a
//! shared registry, rebuilt when the Secret changes, and health-checked on an interval.
//!
//! Status says what is wrong in words a user can act on: which Secret or key is missing,
//! why the kubeconfig does not load, whether the API server answers.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dr_syncer_crds::remote_cluster::{
    ClusterHealth, PvcSyncStatus, RemoteCluster, RemoteClusterStatus,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::Action;
use kube::{Client, Config, ResourceExt};
use tracing::Instrument;

use crate::context::{Context, apply_status};
use crate::dataplane::agents;
use crate::status::{condition, now, reasons, set_condition, types};

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

/// Why a RemoteCluster reconcile failed (status could not be written, ...).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A call to the controller cluster failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// What loading the kubeconfig Secret found, turned into conditions by [`conditions_for`].
#[derive(Debug)]
pub enum KubeconfigProblem {
    /// The Secret does not exist.
    SecretNotFound(String),
    /// The key is absent; the keys present are listed.
    KeyMissing {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The key asked for.
        key: String,
        /// The keys the Secret has.
        present: Vec<String>,
    },
    /// The Secret could not be read (RBAC, API down).
    SecretUnreadable(String),
    /// The kubeconfig does not load.
    Invalid(String),
}

/// Builds a client config from kubeconfig text.
pub async fn config_from_kubeconfig(text: &str) -> Result<Config, String> {
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| format!("not a kubeconfig: {e}"))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("cannot build a client from it: {e}"))
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// Reads the kubeconfig text out of the referenced Secret.
async fn read_kubeconfig(
    client: &Client,
    rc: &RemoteCluster,
) -> Result<Vec<u8>, KubeconfigProblem> {
    let r = &rc.spec.kubeconfig_secret_ref;
    let secret_name = format!("{}/{}", r.namespace, r.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &r.namespace);
    let secret = match secrets.get_opt(&r.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Err(KubeconfigProblem::SecretNotFound(secret_name)),
        Err(e) => {
            return Err(KubeconfigProblem::SecretUnreadable(format!(
                "cannot read Secret {secret_name}: {e}"
            )));
        }
    };
    let data = secret.data.unwrap_or_default();
    match data.get(&r.key) {
        Some(bytes) => Ok(bytes.0.clone()),
        None => Err(KubeconfigProblem::KeyMissing {
            secret: secret_name,
            key: r.key.clone(),
            present: data.keys().cloned().collect(),
        }),
    }
}

/// Makes sure the registry holds a client built from the current kubeconfig.
async fn ensure_client(
    ctx: &Context,
    key: &ClusterKey,
    rc: &RemoteCluster,
) -> Result<RemoteClient, KubeconfigProblem> {
    let bytes = read_kubeconfig(&ctx.client, rc).await?;
    let hash = hash_bytes(&bytes);
    if let Some(existing) = ctx.clusters.get(key)
        && existing.kubeconfig_hash == hash
    {
        return Ok(existing);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| KubeconfigProblem::Invalid("the kubeconfig is not UTF-8 text".to_owned()))?;
    let mut config = config_from_kubeconfig(&text)
        .await
        .map_err(KubeconfigProblem::Invalid)?;
    config.connect_timeout = Some(Duration::from_secs(5));
    let server = config.cluster_url.to_string();
    let watch_client = Client::try_from(config.clone())
        .map_err(|e| KubeconfigProblem::Invalid(format!("cannot build a client: {e}")))?;
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    let client = Client::try_from(config)
        .map_err(|e| KubeconfigProblem::Invalid(format!("cannot build a client: {e}")))?;
    let remote = RemoteClient {
        client,
        watch_client,
        kubeconfig_hash: hash,
        server,
        healthy: false,
        last_error: None,
    };
    if ctx.clusters.get(key).is_some() {
        tracing::info!(cluster = %key, "kubeconfig changed; client rebuilt");
    }
    ctx.clusters.insert(key.clone(), remote.clone());
    Ok(remote)
}

/// Checks the API server answers (`GET /version`) within `timeout`.
pub async fn check_health(client: &Client, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(info)) => Ok(info.git_version),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// Health-check interval: `pvcSync.healthCheck.interval`, default 1m.
pub fn health_interval(rc: &RemoteCluster) -> Duration {
    rc.spec
        .pvc_sync
        .as_ref()
        .and_then(|p| p.health_check.as_ref())
        .and_then(|h| dr_syncer_crds::common::parse_duration(&h.interval).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(60))
}

/// Conditions (KubeconfigAvailable, KubeconfigValid, ClusterAvailable) for a kubeconfig
/// problem: the failing step says why, later steps say they were not checked.
pub fn conditions_for(
    status: &mut RemoteClusterStatus,
    problem: &KubeconfigProblem,
    rc: &RemoteCluster,
    generation: Option<i64>,
) {
    let key = &rc.spec.kubeconfig_secret_ref.key;
    let (available, valid) = match problem {
        KubeconfigProblem::SecretNotFound(secret) => (
            Some(condition(
                types::KUBECONFIG_AVAILABLE,
                false,
                reasons::SECRET_NOT_FOUND,
                format!(
                    "Secret {secret} not found in the controller cluster; create it with the \
                     kubeconfig of the remote cluster under key {key:?}"
                ),
                generation,
            )),
            None,
        ),
        KubeconfigProblem::KeyMissing {
            secret,
            key,
            present,
        } => (
            Some(condition(
                types::KUBECONFIG_AVAILABLE,
                false,
                reasons::SECRET_KEY_MISSING,
                format!(
                    "Secret {secret} has no key {key:?} (keys present: {}); set \
                     spec.kubeconfigSecretRef.key or add the key",
                    if present.is_empty() {
                        "none".to_owned()
                    } else {
                        present.join(", ")
                    }
                ),
                generation,
            )),
            None,
        ),
        KubeconfigProblem::SecretUnreadable(message) => (
            Some(condition(
                types::KUBECONFIG_AVAILABLE,
                false,
                reasons::SECRET_NOT_FOUND,
                format!("{message}; check the controller's RBAC for Secrets"),
                generation,
            )),
            None,
        ),
        KubeconfigProblem::Invalid(message) => (
            Some(condition(
                types::KUBECONFIG_AVAILABLE,
                true,
                reasons::SECRET_FOUND,
                "kubeconfig Secret found",
                generation,
            )),
            Some(condition(
                types::KUBECONFIG_VALID,
                false,
                reasons::KUBECONFIG_INVALID,
                format!("the kubeconfig in the Secret does not load: {message}"),
                generation,
            )),
        ),
    };
    if let Some(c) = available {
        set_condition(&mut status.conditions, c);
    }
    let valid = valid.unwrap_or_else(|| {
        condition(
            types::KUBECONFIG_VALID,
            false,
            reasons::NOT_CHECKED,
            "not checked: the kubeconfig is not available",
            generation,
        )
    });
    set_condition(&mut status.conditions, valid);
    set_condition(
        &mut status.conditions,
        condition(
            types::CLUSTER_AVAILABLE,
            false,
            reasons::NOT_CHECKED,
            "not checked: no usable kubeconfig",
            generation,
        ),
    );
    status.health = Some(ClusterHealth::Unhealthy);
}

fn unsupported_fields(rc: &RemoteCluster) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if rc
        .spec
        .pvc_sync
        .as_ref()
        .is_some_and(|p| p.enabled && p.health_check.is_some())
    {
        fields.push(
            "spec.pvcSync.healthCheck.sshTimeout/retryAttempts/retryInterval (agents are \
             checked through their pods' readiness probes; only healthCheck.interval is used)",
        );
    }
    fields
}

/// The agents' part of a reconcile: deploy (or remove) them and say how they are doing.
/// `None` leaves `status.pvcSync` out (never enabled, or cleaned up).
async fn reconcile_agents(
    ctx: &Context,
    rc: &RemoteCluster,
    source: &Client,
    previous: Option<&PvcSyncStatus>,
) -> Option<PvcSyncStatus> {
    let enabled = rc.spec.pvc_sync.as_ref().is_some_and(|p| p.enabled);
    if !enabled {
        previous?;
        return match agents::remove(source).await {
            Ok(_) => None,
            Err(error) => Some(PvcSyncStatus {
                phase: Some("Failed".to_owned()),
                message: Some(format!(
                    "pvcSync disabled but removing the agent DaemonSet failed: {error}"
                )),
                ..PvcSyncStatus::default()
            }),
        };
    }
    let mut status = match agents::ensure_deployed(ctx, rc, source).await {
        Err(error) => {
            tracing::warn!(%error, "deploying the agents failed");
            PvcSyncStatus {
                phase: Some("Failed".to_owned()),
                message: Some(error.to_string()),
                ..previous.cloned().unwrap_or_default()
            }
        }
        Ok(_) => match agents::status(source).await {
            Ok(mut s) => {
                s.last_deployment_time = previous
                    .and_then(|p| p.last_deployment_time.clone())
                    .or_else(|| Some(now()));
                s
            }
            Err(error) => PvcSyncStatus {
                phase: Some("Failed".to_owned()),
                message: Some(format!("cannot read the agent DaemonSet: {error}")),
                ..previous.cloned().unwrap_or_default()
            },
        },
    };
    if let Some(p) = previous {
        status.last_successful_sync = p.last_successful_sync.clone();
        status.failed_syncs = p.failed_syncs;
        // Keep a node's last heartbeat while it is not ready.
        if let (Some(new), Some(old)) = (status.agent_status.as_mut(), p.agent_status.as_ref()) {
            for (node, line) in new.node_statuses.iter_mut() {
                if line.last_heartbeat.is_none() {
                    line.last_heartbeat = old
                        .node_statuses
                        .get(node)
                        .and_then(|o| o.last_heartbeat.clone());
                }
            }
        }
    }
    Some(status)
}

/// Reconciles one RemoteCluster: client, health, status. Requeues at the health interval.
pub async fn reconcile(rc: Arc<RemoteCluster>, ctx: Arc<Context>) -> Result<Action, ClusterError> {
    let span = tracing::info_span!("remotecluster", cluster = %format!("{}/{}", rc.namespace().unwrap_or_default(), rc.name_any()));
    reconcile_inner(rc, ctx).instrument(span).await
}

async fn reconcile_inner(
    rc: Arc<RemoteCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ClusterError> {
    let namespace = rc.namespace().unwrap_or_default();
    let key = ClusterKey {
        namespace: namespace.clone(),
        name: rc.name_any(),
    };
    let generation = rc.metadata.generation;
    let mut status = rc.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let interval = health_interval(&rc);

    match ensure_client(&ctx, &key, &rc).await {
        Err(problem) => {
            ctx.clusters.remove(&key);
            tracing::warn!(?problem, "remote cluster kubeconfig unusable");
            conditions_for(&mut status, &problem, &rc, generation);
        }
        Ok(remote) => {
            set_condition(
                &mut status.conditions,
                condition(
                    types::KUBECONFIG_AVAILABLE,
                    true,
                    reasons::SECRET_FOUND,
                    "kubeconfig Secret found",
                    generation,
                ),
            );
            set_condition(
                &mut status.conditions,
                condition(
                    types::KUBECONFIG_VALID,
                    true,
                    reasons::KUBECONFIG_PARSED,
                    format!("kubeconfig loads; API server {}", remote.server),
                    generation,
                ),
            );
            match check_health(&remote.client, Duration::from_secs(10)).await {
                Ok(version) => {
                    ctx.clusters.set_health(&key, true, None);
                    status.health = Some(ClusterHealth::Healthy);
                    status.last_sync_time = Some(now());
                    set_condition(
                        &mut status.conditions,
                        condition(
                            types::CLUSTER_AVAILABLE,
                            true,
                            reasons::API_SERVER_REACHABLE,
                            format!(
                                "API server {} answered (Kubernetes {version})",
                                remote.server
                            ),
                            generation,
                        ),
                    );
                }
                Err(error) => {
                    ctx.clusters.set_health(&key, false, Some(error.clone()));
                    status.health = Some(ClusterHealth::Unhealthy);
                    set_condition(
                        &mut status.conditions,
                        condition(
                            types::CLUSTER_AVAILABLE,
                            false,
                            reasons::API_SERVER_UNREACHABLE,
                            format!(
                                "API server {} did not answer GET /version: {error}; check the \
                                 server address, network and credentials in the kubeconfig",
                                remote.server
                            ),
                            generation,
                        ),
                    );
                }
            }
        }
    }
    let previous_agents = status.pvc_sync.take();
    if status.health == Some(ClusterHealth::Healthy)
        && let Some(remote) = ctx.clusters.get(&key)
    {
        status.pvc_sync =
            reconcile_agents(&ctx, &rc, &remote.client, previous_agents.as_ref()).await;
    } else {
        status.pvc_sync = previous_agents;
    }
    let agents_settling = status
        .pvc_sync
        .as_ref()
        .is_some_and(|p| p.phase.as_deref() != Some("Running"));
    let unsupported = unsupported_fields(&rc);
    let unsupported_condition = if unsupported.is_empty() {
        condition(
            types::UNSUPPORTED_FIELDS,
            false,
            reasons::ALL_FIELDS_SUPPORTED,
            "every field set is acted on",
            generation,
        )
    } else {
        condition(
            types::UNSUPPORTED_FIELDS,
            true,
            reasons::FIELDS_NOT_IMPLEMENTED,
            format!("accepted but not acted on yet: {}", unsupported.join("; ")),
            generation,
        )
    };
    set_condition(&mut status.conditions, unsupported_condition);
    let healthy = status.health == Some(ClusterHealth::Healthy);
    let ready_message = if healthy {
        "cluster reachable".to_owned()
    } else {
        crate::status::find_condition(&status.conditions, types::CLUSTER_AVAILABLE)
            .filter(|c| c.reason != reasons::NOT_CHECKED)
            .or_else(|| {
                status
                    .conditions
                    .iter()
                    .find(|c| c.status == "False" && c.reason != reasons::NOT_CHECKED)
            })
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "cluster not reachable".to_owned())
    };
    set_condition(
        &mut status.conditions,
        condition(
            types::READY,
            healthy,
            if healthy {
                reasons::API_SERVER_REACHABLE
            } else {
                reasons::API_SERVER_UNREACHABLE
            },
            ready_message,
            generation,
        ),
    );

    let api: Api<RemoteCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    apply_status(&api, &rc.name_any(), &status).await?;
    // Unhealthy clusters are re-checked sooner so recovery shows up quickly.
    Ok(Action::requeue(if healthy && agents_settling {
        // Agents rolling out: report progress every few seconds until they run.
        interval.min(Duration::from_secs(3))
    } else if healthy {
        interval
    } else {
        interval.min(Duration::from_secs(10))
    }))
}

/// Retry policy after a failed reconcile.
pub fn error_policy(_rc: Arc<RemoteCluster>, error: &ClusterError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "remote cluster reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

/// Whether the RemoteCluster references the given Secret (for the Secret watch).
pub fn references_secret(rc: &RemoteCluster, namespace: &str, name: &str) -> bool {
    let r = &rc.spec.kubeconfig_secret_ref;
    r.namespace == namespace && r.name == name
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rc() -> RemoteCluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dr-syncer.io/v1alpha1",
            "kind": "RemoteCluster",
            "metadata": {"name": "prod", "namespace": "dr"},
            "spec": {"kubeconfigSecretRef": {"name": "prod-kc", "namespace": "dr"}}
        }))
        .unwrap()
    }

    #[test]
    fn missing_secret_names_the_secret_and_key() {
        let mut status = RemoteClusterStatus::default();
        conditions_for(
            &mut status,
            &KubeconfigProblem::SecretNotFound("dr/prod-kc".into()),
            &rc(),
            Some(1),
        );
        let available =
            crate::status::find_condition(&status.conditions, types::KUBECONFIG_AVAILABLE).unwrap();
        assert_eq!(available.status, "False");
        assert_eq!(available.reason, reasons::SECRET_NOT_FOUND);
        assert!(available.message.contains("dr/prod-kc"));
        assert!(available.message.contains("\"kubeconfig\""));
        let cluster =
            crate::status::find_condition(&status.conditions, types::CLUSTER_AVAILABLE).unwrap();
        assert_eq!(cluster.reason, reasons::NOT_CHECKED);
        assert_eq!(status.health, Some(ClusterHealth::Unhealthy));
    }

    #[test]
    fn missing_key_lists_present_keys() {
        let mut status = RemoteClusterStatus::default();
        conditions_for(
            &mut status,
            &KubeconfigProblem::KeyMissing {
                secret: "dr/prod-kc".into(),
                key: "kubeconfig".into(),
                present: vec!["config".into()],
            },
            &rc(),
            None,
        );
        let c =
            crate::status::find_condition(&status.conditions, types::KUBECONFIG_AVAILABLE).unwrap();
        assert_eq!(c.reason, reasons::SECRET_KEY_MISSING);
        assert!(c.message.contains("keys present: config"), "{}", c.message);
    }

    #[tokio::test]
    async fn malformed_kubeconfig_is_reported_not_panicking() {
        assert!(config_from_kubeconfig("not: [valid").await.is_err());
        // Valid YAML but no clusters: still an error, with a message.
        let err = config_from_kubeconfig("apiVersion: v1\nkind: Config\n")
            .await
            .unwrap_err();
        assert!(!err.is_empty());
    }

    #[tokio::test]
    async fn valid_kubeconfig_builds_a_config() {
        let text = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: abc\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n";
        let config = config_from_kubeconfig(text).await.unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");
    }

    #[test]
    fn health_interval_defaults_and_parses() {
        assert_eq!(health_interval(&rc()), Duration::from_secs(60));
        let mut r = rc();
        r.spec.pvc_sync =
            serde_json::from_value(serde_json::json!({"healthCheck": {"interval": "15s"}}))
                .unwrap();
        assert_eq!(health_interval(&r), Duration::from_secs(15));
    }
}

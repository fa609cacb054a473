//! Building a remote cluster's client from its kubeconfig Secret, rebuilt only when the
//! Secret's content changes, and the health check of its API server.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use dr_syncer_crds::remote_cluster::{ClusterIdentity, RemoteCluster};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::registry::{ClusterKey, ClusterRegistry, REQUEST_TIMEOUT, RemoteClient};

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
pub async fn ensure_client(
    client: &Client,
    registry: &ClusterRegistry,
    key: &ClusterKey,
    rc: &RemoteCluster,
) -> Result<RemoteClient, KubeconfigProblem> {
    let bytes = read_kubeconfig(client, rc).await?;
    let hash = hash_bytes(&bytes);
    if let Some(existing) = registry.get(key)
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
    let ca_fingerprint = config.root_cert.as_ref().map(|certs| {
        let mut hasher = blake3::Hasher::new();
        for cert in certs {
            hasher.update(cert);
        }
        hasher.finalize().to_hex()[..32].to_owned()
    });
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
        identity: None,
        ca_fingerprint,
    };
    if registry.get(key).is_some() {
        tracing::info!(cluster = %key, "kubeconfig changed; client rebuilt");
    }
    registry.insert(key.clone(), remote.clone());
    Ok(remote)
}

/// Reads which cluster `remote` reaches: the uid of its `kube-system` namespace (empty when
/// the credentials may not read it: then the server URL and CA identify it).
pub async fn read_identity(remote: &RemoteClient) -> Result<ClusterIdentity, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(remote.client.clone());
    let uid = match namespaces.get_metadata_opt("kube-system").await {
        Ok(ns) => ns.and_then(|n| n.metadata.uid).unwrap_or_default(),
        Err(kube::Error::Api(status)) if status.code == 403 => String::new(),
        Err(error) => return Err(error),
    };
    Ok(ClusterIdentity {
        kube_system_uid: uid,
        server: Some(remote.server.clone()),
        ca_fingerprint: remote.ca_fingerprint.clone(),
    })
}

/// Checks the API server answers (`GET /version`) within `timeout`.
pub async fn check_health(client: &Client, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(info)) => Ok(info.git_version),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
}

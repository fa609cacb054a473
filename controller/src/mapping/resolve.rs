//! The mapping's references: which two RemoteClusters it replicates between (through its
//! ClusterMapping or directly) and their clients; and which mappings a change of a
//! RemoteCluster or ClusterMapping concerns.
//!
//! This is the one place a destination client is handed out, so the guards of
//! [`crate::safety`] are checked here: a mapping into its own source (one cluster by its
//! `kube-system` uid, one namespace), into a protected namespace, or into a namespace an
//! older mapping writes gets no [`Resolved`] and so can write nothing.

use dr_syncer_crds::cluster_mapping::ClusterMapping;
use dr_syncer_crds::namespace_mapping::NamespaceMapping;
use dr_syncer_crds::remote_cluster::ClusterIdentity;
use dr_syncer_crds::remote_cluster::RemoteCluster;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::clusters::{ClusterKey, ClusterRegistry, RemoteClient};
use crate::dataplane::agents::AGENT_NAMESPACE;
use crate::safety::{self, Claim, Ends, Refusal};
use crate::status::{find_condition, reasons, types};

/// Why the references of a mapping could not be resolved (named after the job, the
/// agent and the worker have resolve errors of their own).
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The referenced ClusterMapping does not exist.
    #[error("ClusterMapping {0} not found; create it or fix spec.clusterMappingRef")]
    ClusterMappingNotFound(String),
    /// The referenced ClusterMapping is paused.
    #[error("ClusterMapping {0} is paused")]
    ClusterMappingPaused(String),
    /// A referenced RemoteCluster does not exist.
    #[error("RemoteCluster {0} not found; create it or fix the cluster reference")]
    RemoteClusterNotFound(String),
    /// A RemoteCluster exists but has no working client.
    #[error("RemoteCluster {name} is not usable yet: {message}")]
    RemoteClusterNotReady {
        /// `namespace/name`.
        name: String,
        /// Its Ready condition message.
        message: String,
    },
    /// A cluster's identity has not been read yet, so the guard against writing into the
    /// source cannot be checked.
    #[error(
        "the identity of RemoteCluster {0} (its kube-system uid) is not known yet; nothing is written until the controller has read it"
    )]
    IdentityUnknown(String),
    /// A safety guard refuses the mapping's destination.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The controller cluster could not be read.
    #[error("reading the cluster references failed: {0}")]
    Api(#[from] kube::Error),
}

impl ReferenceError {
    /// The condition reason the mapping reports it with.
    pub fn reason(&self) -> &'static str {
        match self {
            ReferenceError::ClusterMappingNotFound(_) => reasons::CLUSTER_MAPPING_NOT_FOUND,
            ReferenceError::ClusterMappingPaused(_) => reasons::PAUSED,
            ReferenceError::RemoteClusterNotFound(_) => reasons::REMOTE_CLUSTER_NOT_FOUND,
            ReferenceError::RemoteClusterNotReady { .. } => reasons::REMOTE_CLUSTER_NOT_READY,
            ReferenceError::IdentityUnknown(_) => reasons::CLUSTER_IDENTITY_UNKNOWN,
            ReferenceError::Refused(refusal) => refusal.reason(),
            ReferenceError::Api(_) => reasons::SYNC_FAILED,
        }
    }

    /// Whether only a change of the objects can help (a missing object): `Stalled`.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ReferenceError::ClusterMappingNotFound(_)
                | ReferenceError::RemoteClusterNotFound(_)
                | ReferenceError::Refused(_)
        )
    }

    /// Whether the ClusterMapping is paused (which pauses the mapping too).
    pub fn is_paused(&self) -> bool {
        matches!(self, ReferenceError::ClusterMappingPaused(_))
    }
}

/// The two clusters of a mapping, with their clients.
pub struct Resolved {
    /// Source RemoteCluster.
    pub source_key: ClusterKey,
    /// Destination RemoteCluster.
    pub dest_key: ClusterKey,
    /// Source client.
    pub source: RemoteClient,
    /// Destination client.
    pub dest: RemoteClient,
    /// The source RemoteCluster object (defaults).
    pub source_rc: RemoteCluster,
    /// The ClusterMapping, when the mapping goes through one (PVC data keys are per
    /// ClusterMapping).
    pub cluster_mapping: Option<ClusterMapping>,
}

async fn remote_cluster(
    client: &Client,
    clusters: &ClusterRegistry,
    key: &ClusterKey,
) -> Result<(RemoteCluster, RemoteClient), ReferenceError> {
    let api: Api<RemoteCluster> = Api::namespaced(client.clone(), &key.namespace);
    let Some(rc) = api.get_opt(&key.name).await? else {
        return Err(ReferenceError::RemoteClusterNotFound(key.to_string()));
    };
    match clusters.get(key) {
        Some(client) => Ok((rc, client)),
        None => {
            let message = rc
                .status
                .as_ref()
                .and_then(|s| find_condition(&s.conditions, types::READY))
                .map(|c| c.message.clone())
                .unwrap_or_else(|| "its kubeconfig has not been loaded yet".to_owned());
            Err(ReferenceError::RemoteClusterNotReady {
                name: key.to_string(),
                message,
            })
        }
    }
}

/// The ClusterMapping a mapping goes through, as (namespace, name): its own namespace
/// unless the reference names another.
fn cluster_mapping_ref(nm: &NamespaceMapping) -> Option<(String, &str)> {
    nm.spec.cluster_mapping_ref.as_ref().map(|r| {
        let namespace = r.namespace.clone().or_else(|| nm.namespace());
        (namespace.unwrap_or_default(), r.name.as_str())
    })
}

/// The RemoteClusters of a mapping whose ClusterMapping (if any) is `cm`.
fn cluster_keys(nm: &NamespaceMapping, cm: Option<&ClusterMapping>) -> (ClusterKey, ClusterKey) {
    let namespace = nm.namespace().unwrap_or_default();
    match (cm, cluster_mapping_ref(nm)) {
        (Some(cm), Some((cm_namespace, _))) => (
            ClusterKey {
                namespace: cm_namespace.clone(),
                name: cm.spec.source_cluster.clone(),
            },
            ClusterKey {
                namespace: cm_namespace,
                name: cm.spec.target_cluster.clone(),
            },
        ),
        _ => (
            ClusterKey {
                namespace: namespace.clone(),
                name: nm.spec.source_cluster.clone().unwrap_or_default(),
            },
            ClusterKey {
                namespace,
                name: nm.spec.destination_cluster.clone().unwrap_or_default(),
            },
        ),
    }
}

/// Finds the source and destination clusters (through `clusterMappingRef`, or directly)
/// and checks the guards on them. `client` reads the controller cluster; `clusters` holds
/// the remote clients; `controller_namespace` is protected like kube-system.
pub async fn resolve(
    nm: &NamespaceMapping,
    client: &Client,
    clusters: &ClusterRegistry,
    controller_namespace: Option<&str>,
) -> Result<Resolved, ReferenceError> {
    let mut cluster_mapping = None;
    if let Some((cm_namespace, cm_name)) = cluster_mapping_ref(nm) {
        let api: Api<ClusterMapping> = Api::namespaced(client.clone(), &cm_namespace);
        let name = format!("{cm_namespace}/{cm_name}");
        let Some(cm) = api.get_opt(cm_name).await? else {
            return Err(ReferenceError::ClusterMappingNotFound(name));
        };
        if cm.spec.paused {
            return Err(ReferenceError::ClusterMappingPaused(name));
        }
        cluster_mapping = Some(cm);
    }
    let (source_key, dest_key) = cluster_keys(nm, cluster_mapping.as_ref());
    let (source_rc, source) = remote_cluster(client, clusters, &source_key).await?;
    let (_, dest) = remote_cluster(client, clusters, &dest_key).await?;
    let identity = |remote: &RemoteClient, key: &ClusterKey| {
        remote
            .identity
            .clone()
            .ok_or_else(|| ReferenceError::IdentityUnknown(key.to_string()))
    };
    let (source_id, dest_id) = (identity(&source, &source_key)?, identity(&dest, &dest_key)?);
    let dest_namespace = nm.spec.effective_destination_namespace();
    safety::check_ends(
        &Ends {
            source_cluster: &source_key.to_string(),
            dest_cluster: &dest_key.to_string(),
            source: &source_id,
            dest: &dest_id,
            source_namespace: &nm.spec.source_namespace,
            dest_namespace,
        },
        nm.spec.safety().allow_protected_namespace,
        controller_namespace,
        AGENT_NAMESPACE,
    )?;
    let mine = claim(nm, &dest_id);
    let others = claims(client, clusters).await?;
    if let Some(other) = safety::overlapping(&mine, &others) {
        return Err(Refusal::Overlapping {
            other: other.mapping.clone(),
            namespace: dest_namespace.to_owned(),
        }
        .into());
    }
    Ok(Resolved {
        source_key,
        dest_key,
        source,
        dest,
        source_rc,
        cluster_mapping,
    })
}

/// A mapping's claim on its destination namespace of the cluster `dest` identifies.
fn claim(nm: &NamespaceMapping, dest: &ClusterIdentity) -> Claim {
    Claim {
        mapping: format!("{}/{}", nm.namespace().unwrap_or_default(), nm.name_any()),
        created: nm.metadata.creation_timestamp.clone(),
        cluster: safety::identity_key(dest),
        namespace: nm.spec.effective_destination_namespace().to_owned(),
    }
}

/// Every live mapping's claim on a destination namespace, as far as the identities of
/// both its clusters are known (a mapping that cannot write claims nothing).
async fn claims(client: &Client, clusters: &ClusterRegistry) -> Result<Vec<Claim>, kube::Error> {
    let mappings = Api::<NamespaceMapping>::all(client.clone())
        .list(&Default::default())
        .await?;
    let cluster_mappings = Api::<ClusterMapping>::all(client.clone())
        .list(&Default::default())
        .await?;
    let claims = mappings
        .items
        .iter()
        .filter(|nm| nm.metadata.deletion_timestamp.is_none())
        .filter_map(|nm| {
            let cm = match cluster_mapping_ref(nm) {
                Some((cm_namespace, cm_name)) => {
                    Some(cluster_mappings.items.iter().find(|cm| {
                        cm.name_any() == cm_name && cm.namespace().as_deref() == Some(&cm_namespace)
                    })?)
                }
                None => None,
            };
            // Only a mapping that can write claims its namespace: one whose source
            // cluster is unknown (a typo, a cluster not set up yet) blocks nobody.
            let (source_key, dest_key) = cluster_keys(nm, cm);
            clusters.get(&source_key)?.identity?;
            let identity = clusters.get(&dest_key)?.identity?;
            Some(claim(nm, &identity))
        })
        .collect();
    Ok(claims)
}

/// Whether a mapping references the given RemoteCluster directly (for the RemoteCluster
/// watch: a cluster becoming healthy re-triggers its mappings).
pub fn references_cluster(nm: &NamespaceMapping, namespace: &str, name: &str) -> bool {
    nm.namespace().as_deref() == Some(namespace)
        && (nm.spec.source_cluster.as_deref() == Some(name)
            || nm.spec.destination_cluster.as_deref() == Some(name))
}

/// Whether a mapping references the given ClusterMapping.
pub fn references_cluster_mapping(nm: &NamespaceMapping, namespace: &str, name: &str) -> bool {
    nm.spec.cluster_mapping_ref.as_ref().is_some_and(|r| {
        r.name == name
            && r.namespace.clone().or_else(|| nm.namespace()).as_deref() == Some(namespace)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn nm(spec: serde_json::Value) -> NamespaceMapping {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dr-syncer.io/v1alpha1",
            "kind": "NamespaceMapping",
            "metadata": {"name": "web", "namespace": "dr", "annotations": {}, "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn references() {
        let m = nm(
            serde_json::json!({"sourceNamespace": "web", "sourceCluster": "a", "destinationCluster": "b", "replicationMode": "Manual"}),
        );
        assert!(references_cluster(&m, "dr", "a"));
        assert!(references_cluster(&m, "dr", "b"));
        assert!(!references_cluster(&m, "other", "a"));
        let cm = nm(
            serde_json::json!({"sourceNamespace": "web", "clusterMappingRef": {"name": "pair"}}),
        );
        assert!(references_cluster_mapping(&cm, "dr", "pair"));
        assert!(!references_cluster_mapping(&cm, "dr", "other"));
    }
}

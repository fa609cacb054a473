//! Test-bed storage: the `standard` (default) and `fast` StorageClasses and a small hostPath
//! provisioner serving both, like local-path-provisioner in kind and k3s.
//!
//! Both classes are WaitForFirstConsumer: the scheduler picks a node for the first pod and
//! records it in the PVC annotation `volume.kubernetes.io/selected-node`; the provisioner
//! then creates a hostPath PV on that node (directory created, node affinity for it, claimRef
//! to the PVC) and the PV controller in kube-controller-manager binds the pair. When a PV
//! with reclaim policy Delete is released, the provisioner removes its directory (only ever
//! below [`STORAGE_DIR`]) and deletes the PV.
//!
//! Path convention: a provisioned PV's `hostPath.path` is the path AS SEEN ON THE NODE, e.g.
//! `/var/lib/testbed-storage/pvc-<uid>`; on the machine it lives under that node's root
//! (`<root>/var/lib/testbed-storage/pvc-<uid>`). The pod runner maps it under the node root
//! when mounting, and the DR-Syncer agent (node root mounted at `/host`) resolves it as
//! `/host` + `hostPath.path`, so everyone agrees on one path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::fsio::PathIoError;

/// The provisioner name our StorageClasses name and our provisioner serves.
pub const PROVISIONER: &str = "dr-syncer.io/testbed-hostpath";

/// Where provisioned volumes live, as seen on the node (under the node root on the machine).
pub const STORAGE_DIR: &str = "/var/lib/testbed-storage";

/// The annotation the scheduler sets on a WaitForFirstConsumer claim.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The annotations the PV controller sets to hand a claim to an external provisioner.
const STORAGE_PROVISIONER: [&str; 2] = [
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
];
/// Marks PVs we created, as external provisioners do.
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Size of a claim that requests none.
const DEFAULT_SIZE: &str = "1Gi";

/// Why the provisioner could not start.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A call to the API server failed.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// A local filesystem operation failed.
    #[error(transparent)]
    Io(#[from] PathIoError),
    /// A built-in object failed to (de)serialize, which would be a bug here.
    #[error("building {0}: {1}")]
    Build(&'static str, serde_json::Error),
}

/// StorageClass objects `standard` (default) and `fast`, WaitForFirstConsumer.
pub fn storage_classes() -> Vec<StorageClass> {
    ["standard", "fast"]
        .into_iter()
        .filter_map(|name| {
            let default = if name == "standard" { "true" } else { "false" };
            serde_json::from_value(json!({
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": name,
                    "annotations": { "storageclass.kubernetes.io/is-default-class": default },
                },
                "provisioner": PROVISIONER,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
            }))
            .ok()
        })
        .collect()
}

/// Runs the hostPath provisioner until the returned handle is dropped/aborted.
///
/// The StorageClasses are created first if missing. `nodes` maps each node name to its
/// root directory on the machine.
pub async fn start_provisioner(
    client: kube::Client,
    nodes: Vec<(String, PathBuf)>,
) -> Result<tokio::task::JoinHandle<()>, StorageError> {
    ensure_classes(&client).await?;
    let nodes: BTreeMap<String, PathBuf> = nodes.into_iter().collect();
    Ok(tokio::spawn(async move {
        tokio::join!(
            provision_loop(client.clone(), nodes.clone()),
            reclaim_loop(client, nodes)
        );
    }))
}

/// Creates our StorageClasses unless they exist.
async fn ensure_classes(client: &kube::Client) -> Result<(), StorageError> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    for class in storage_classes() {
        match classes.create(&PostParams::default(), &class).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The objects of one kind as they are added or changed, for both provisioner loops; a
/// watch error is logged (`<what> watch error`) and skipped, as the watcher backs off and
/// resumes on its own.
fn applied<K>(api: Api<K>, what: &'static str) -> impl Stream<Item = K> + Send
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(move |event| async move {
            match event {
                Ok(object) => Some(object),
                Err(e) => {
                    tracing::warn!(error = %e, "{what} watch error");
                    None
                }
            }
        })
}

/// Watches claims and provisions the ones waiting for us.
async fn provision_loop(client: kube::Client, nodes: BTreeMap<String, PathBuf>) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let pvs: Api<PersistentVolume> = Api::all(client);
    let mut stream = std::pin::pin!(applied(claims, "claim"));
    while let Some(claim) = stream.next().await {
        let Some(node) = wants_volume(&claim) else {
            continue;
        };
        if let Err(e) = provision(&pvs, &nodes, &claim, &node).await {
            tracing::warn!(claim = ?claim.metadata.name, error = %e, "provisioning failed");
        }
    }
}

/// The selected node, when the claim is pending, ours, and scheduled.
pub fn wants_volume(claim: &PersistentVolumeClaim) -> Option<String> {
    let annotations = claim.metadata.annotations.as_ref()?;
    let ours = STORAGE_PROVISIONER
        .iter()
        .any(|a| annotations.get(*a).map(String::as_str) == Some(PROVISIONER));
    let bound = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty());
    let deleting = claim.metadata.deletion_timestamp.is_some();
    if !ours || bound || deleting {
        return None;
    }
    annotations.get(SELECTED_NODE).cloned()
}

/// Creates the directory and the PV for one claim (idempotent).
async fn provision(
    pvs: &Api<PersistentVolume>,
    nodes: &BTreeMap<String, PathBuf>,
    claim: &PersistentVolumeClaim,
    node: &str,
) -> Result<(), StorageError> {
    let Some(root) = nodes.get(node) else {
        tracing::warn!(
            node,
            "claim selected a node this provisioner does not serve"
        );
        return Ok(());
    };
    let pv = pv_for(claim, node)?;
    let name = pv.metadata.name.clone().unwrap_or_default();
    let dir = root.join(STORAGE_DIR.trim_start_matches('/')).join(&name);
    create_volume_dir(&dir)?;
    match pvs.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            tracing::info!(pv = %name, node, "provisioned");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A world-writable directory, as local-path-provisioner makes them (pods run as any uid).
fn create_volume_dir(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what| PathIoError::at(what, dir.to_path_buf());
    std::fs::create_dir_all(dir).map_err(io("create"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(io("chmod"))?;
    Ok(())
}

/// The PV for a claim on a node: `pvc-<claim uid>`, hostPath under [`STORAGE_DIR`] as seen
/// on the node, node affinity, claimRef, the claim's size, access modes, mode and class.
pub fn pv_for(claim: &PersistentVolumeClaim, node: &str) -> Result<PersistentVolume, StorageError> {
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let spec = claim.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| DEFAULT_SIZE.into());
    let modes = spec
        .access_modes
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": { PROVISIONED_BY: PROVISIONER },
        },
        "spec": {
            "capacity": { "storage": size },
            "accessModes": modes,
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.storage_class_name,
            "hostPath": { "path": format!("{STORAGE_DIR}/{name}"), "type": "DirectoryOrCreate" },
            "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [{
                "key": "kubernetes.io/hostname", "operator": "In", "values": [node],
            }]}]}},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": claim.metadata.namespace,
                "name": claim.metadata.name,
                "uid": uid,
                "resourceVersion": claim.metadata.resource_version,
            },
        },
    }))
    .map_err(|e| StorageError::Build("PersistentVolume", e))
}

/// Watches our PVs and deletes the released ones with reclaim policy Delete.
async fn reclaim_loop(client: kube::Client, nodes: BTreeMap<String, PathBuf>) {
    let pvs: Api<PersistentVolume> = Api::all(client);
    let mut stream = std::pin::pin!(applied(pvs.clone(), "volume"));
    while let Some(pv) = stream.next().await {
        if !released_for_deletion(&pv) {
            continue;
        }
        if let Err(e) = reclaim(&pvs, &nodes, &pv).await {
            tracing::warn!(pv = ?pv.metadata.name, error = %e, "reclaim failed");
        }
    }
}

/// Ours, Released, reclaim policy Delete.
pub fn released_for_deletion(pv: &PersistentVolume) -> bool {
    let annotations = pv.metadata.annotations.as_ref();
    let ours = annotations
        .and_then(|a| a.get(PROVISIONED_BY))
        .map(String::as_str)
        == Some(PROVISIONER);
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    ours && released && delete
}

/// Removes a released volume's directory, then the PV.
async fn reclaim(
    pvs: &Api<PersistentVolume>,
    nodes: &BTreeMap<String, PathBuf>,
    pv: &PersistentVolume,
) -> Result<(), StorageError> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    if let Some(dir) = volume_dir_on_machine(pv, nodes) {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PathIoError::at("remove", dir)(source).into());
            }
        }
    }
    match pvs.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Where a PV of ours lives on the machine: its node's root + its hostPath, but only when
/// that hostPath is directly inside [`STORAGE_DIR`] (nothing else is ever removed).
pub fn volume_dir_on_machine(
    pv: &PersistentVolume,
    nodes: &BTreeMap<String, PathBuf>,
) -> Option<PathBuf> {
    let spec = pv.spec.as_ref()?;
    let path = &spec.host_path.as_ref()?.path;
    let leaf = path.strip_prefix(STORAGE_DIR)?.strip_prefix('/')?;
    if leaf.is_empty() || leaf.contains('/') || leaf == ".." || leaf == "." {
        return None;
    }
    let terms = &spec
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    let node = terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|e| e.key == "kubernetes.io/hostname")?
        .values
        .as_ref()?
        .first()?;
    let root = nodes.get(node)?;
    Some(root.join(STORAGE_DIR.trim_start_matches('/')).join(leaf))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn claim() -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {
                "name": "data", "namespace": "app", "uid": "1234", "resourceVersion": "7",
                "annotations": {
                    "volume.kubernetes.io/storage-provisioner": PROVISIONER,
                    "volume.kubernetes.io/selected-node": "source-node-1",
                },
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "fast",
                "resources": {"requests": {"storage": "2Gi"}},
            },
        }))
        .unwrap()
    }

    #[test]
    fn classes_are_standard_default_and_fast_wait_for_first_consumer() {
        let classes = storage_classes();
        let names: Vec<_> = classes
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["standard", "fast"]);
        for c in &classes {
            assert_eq!(c.provisioner, PROVISIONER);
            assert_eq!(
                c.volume_binding_mode.as_deref(),
                Some("WaitForFirstConsumer")
            );
            assert_eq!(c.reclaim_policy.as_deref(), Some("Delete"));
        }
        let default = |c: &StorageClass| {
            c.metadata.annotations.as_ref().unwrap()["storageclass.kubernetes.io/is-default-class"]
                .clone()
        };
        assert_eq!(default(&classes[0]), "true");
        assert_eq!(default(&classes[1]), "false");
    }

    #[test]
    fn only_scheduled_unbound_claims_of_ours_are_provisioned() {
        assert_eq!(wants_volume(&claim()).as_deref(), Some("source-node-1"));
        let mut other = claim();
        other.metadata.annotations.as_mut().unwrap().insert(
            "volume.kubernetes.io/storage-provisioner".into(),
            "rancher.io/local-path".into(),
        );
        assert_eq!(wants_volume(&other), None);
        let mut unscheduled = claim();
        unscheduled
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(SELECTED_NODE);
        assert_eq!(wants_volume(&unscheduled), None);
        let mut bound = claim();
        bound.spec.as_mut().unwrap().volume_name = Some("pvc-1234".into());
        assert_eq!(wants_volume(&bound), None);
    }

    #[test]
    fn pv_is_a_node_relative_host_path_pinned_to_the_node_and_the_claim() {
        let pv = pv_for(&claim(), "source-node-1").unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-1234"));
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(
            spec.host_path.as_ref().unwrap().path,
            "/var/lib/testbed-storage/pvc-1234"
        );
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "2Gi");
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        let claim_ref = spec.claim_ref.as_ref().unwrap();
        assert_eq!(claim_ref.uid.as_deref(), Some("1234"));
        assert_eq!(claim_ref.namespace.as_deref(), Some("app"));
        let nodes: BTreeMap<String, PathBuf> =
            [("source-node-1".to_string(), PathBuf::from("/bed/n1"))].into();
        assert_eq!(
            volume_dir_on_machine(&pv, &nodes),
            Some(PathBuf::from("/bed/n1/var/lib/testbed-storage/pvc-1234"))
        );
    }

    #[test]
    fn reclaim_never_touches_paths_outside_the_storage_dir() {
        let nodes: BTreeMap<String, PathBuf> =
            [("source-node-1".to_string(), PathBuf::from("/bed/n1"))].into();
        for path in [
            "/var/lib/testbed-storage",
            "/var/lib/testbed-storage/..",
            "/etc",
            "/var/lib/testbed-storage/a/b",
        ] {
            let mut pv = pv_for(&claim(), "source-node-1").unwrap();
            pv.spec.as_mut().unwrap().host_path.as_mut().unwrap().path = path.into();
            assert_eq!(volume_dir_on_machine(&pv, &nodes), None, "{path}");
        }
        let mut pv = pv_for(&claim(), "source-node-1").unwrap();
        assert!(!released_for_deletion(&pv));
        pv.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
            phase: Some("Released".into()),
            ..Default::default()
        });
        assert!(released_for_deletion(&pv));
    }
}

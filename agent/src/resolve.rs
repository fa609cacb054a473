//! Pure volume resolution: from what this node can see of the cluster (a [`ClusterView`])
//! and the node's root filesystem as mounted in the agent (`/host`), to the directory that
//! holds a PVC's data. No API calls and no clocks here, so every rule is unit-tested on a
//! directory layout.
//!
//! Rules (issue 6, item 3):
//! - the volume name is `<namespace>/<pvc>`, both DNS-1123, validated before any lookup;
//! - PVC -> bound PV (`spec.volumeName`; the PV's `claimRef` must carry the PVC's uid);
//! - hostPath and local PVs -> `<host-root>/<path>`, served when the PV's required node
//!   affinity selects this node or a pod on this node uses the claim;
//! - CSI -> `<host-root>/<kubelet-dir>/pods/<pod-uid>/volumes/kubernetes.io~csi/<pv>/mount`
//!   of a pod on this node using the claim; other plugins -> `.../kubernetes.io~<plugin>/<pv>`;
//! - the result must be an existing directory, symlinks resolved inside the host root;
//! - safety (issue 12): a kubelet-mounted volume is served only from a pod that is Running
//!   and not terminating (a Pending pod's mount may not be set up yet, a terminating pod's
//!   is being torn down), and only when its directory is a mount point; a local PV's path
//!   must be a mount point too. An unmounted volume is an empty directory on the node's
//!   root disk, and serving it would make the worker see an empty volume. hostPath PVs are
//!   plain directories by definition and are exempt.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec, Pod,
};

/// The label every kubelet sets to its node's hostname; local/hostPath PVs pin to it.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Most symlinks followed while resolving one path (the kernel's own limit is 40).
const MAX_SYMLINKS: usize = 40;

/// What the resolver needs to know about the cluster, as seen from one node. The agent
/// implements it over reflector stores (`cluster.rs`); tests over plain maps.
pub trait ClusterView {
    /// The PVC `namespace/name`, if it exists.
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    /// The PV `name`, if it exists.
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    /// Pods scheduled on this node (other nodes' pods are never consulted).
    fn pods_on_node(&self) -> Vec<Arc<Pod>>;
    /// This node's Node object, for its labels (node affinity).
    fn node(&self) -> Option<Arc<Node>>;
    /// The node a PV is attached to according to its VolumeAttachment, if known; only used
    /// to say where a volume is when refusing it.
    fn attached_node(&self, _pv: &str) -> Option<String> {
        None
    }
    /// Whether `dir` (resolved, under the host root) is a mount point. The default asks the
    /// kernel ([`crate::mounts::is_mount_point`]); an error counts as "not mounted", so a
    /// volume is refused rather than served from a directory we cannot vouch for.
    fn is_mount_point(&self, dir: &Path) -> bool {
        crate::mounts::is_mount_point(dir).unwrap_or(false)
    }
}

/// Where this agent runs: the facts every resolution is relative to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContext {
    /// Name of the node this agent serves (downward API `spec.nodeName`).
    pub node_name: String,
    /// The node's `/` as mounted in the agent container (`/host`).
    pub host_root: PathBuf,
    /// The kubelet's root directory as seen on the node (`/var/lib/kubelet`).
    pub kubelet_dir: PathBuf,
}

/// Why a volume was refused. The messages reach the worker (and from there the
/// NamespaceMapping condition), so each says what is wrong and names the volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name is not `<namespace>/<pvc>` with DNS-1123 parts.
    #[error("invalid volume name {0:?}: expected <namespace>/<pvc-name> (DNS-1123 names)")]
    InvalidName(String),
    /// No such PVC.
    #[error("PVC {0} not found")]
    PvcNotFound(String),
    /// The PVC has no PV yet.
    #[error("PVC {volume} is not bound (phase {phase})")]
    NotBound {
        /// `namespace/pvc`.
        volume: String,
        /// The PVC's phase (`Pending`, `Lost`, ...).
        phase: String,
    },
    /// The PVC names a PV that does not exist.
    #[error("PV {pv} of PVC {volume} not found")]
    PvMissing {
        /// `namespace/pvc`.
        volume: String,
        /// The PV name from `spec.volumeName`.
        pv: String,
    },
    /// The PV's claimRef points at another claim (or another incarnation of this one).
    #[error("PV {pv} is not bound to PVC {volume} (its claimRef names another claim)")]
    ClaimMismatch {
        /// `namespace/pvc`.
        volume: String,
        /// The PV name.
        pv: String,
    },
    /// Raw block volumes have no directory to serve.
    #[error(
        "volume {0} is a raw block volume (volumeMode Block); only Filesystem volumes can be synced"
    )]
    BlockVolume(String),
    /// The PV has no volume source the agent knows how to find on a node.
    #[error("volume {volume}: PV {pv} has no volume source the agent can serve")]
    UnsupportedSource {
        /// `namespace/pvc`.
        volume: String,
        /// The PV name.
        pv: String,
    },
    /// A node-local (hostPath/local) volume that lives on another node.
    #[error("volume {volume} is not on node {node}{}", on_hint(.on.as_deref()))]
    NotOnNode {
        /// `namespace/pvc`.
        volume: String,
        /// This agent's node.
        node: String,
        /// The node the volume is on, when its node affinity says so.
        on: Option<String>,
    },
    /// A network/CSI volume with no pod on this node using it, so nothing is mounted here.
    #[error(
        "volume {volume} not mounted on this node ({node}): no running pod on this node uses the claim{}",
        attached_hint(.attached.as_deref())
    )]
    NotMounted {
        /// `namespace/pvc`.
        volume: String,
        /// This agent's node.
        node: String,
        /// The node its VolumeAttachment names, if any.
        attached: Option<String>,
    },
    /// Serving the volume could make its copy look empty: its pod is not Running, or its
    /// directory is not a mount point. Not transient by itself: the source must be fixed.
    #[error("volume {volume}: {reason}")]
    SourceUnsafe {
        /// `namespace/pvc`.
        volume: String,
        /// What is wrong, naming the pod or the directory.
        reason: String,
    },
    /// The directory the rules lead to does not exist or is not a directory.
    #[error("volume {volume}: directory {path} is missing or not a directory")]
    DirectoryMissing {
        /// `namespace/pvc`.
        volume: String,
        /// The path as seen in the agent (under the host root).
        path: String,
    },
}

fn attached_hint(node: Option<&str>) -> String {
    node.map(|n| format!(" (it is attached to node {n})"))
        .unwrap_or_default()
}

fn on_hint(on: Option<&str>) -> String {
    on.map(|n| format!(" (it is on node {n})"))
        .unwrap_or_default()
}

/// A parsed, validated volume name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeName {
    /// The PVC's namespace.
    pub namespace: String,
    /// The PVC's name.
    pub pvc: String,
}

impl std::fmt::Display for VolumeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.pvc)
    }
}

impl VolumeName {
    /// Parses `<namespace>/<pvc>`: the namespace a DNS-1123 label, the PVC name a DNS-1123
    /// subdomain. Anything else is refused before it reaches a lookup or a path.
    pub fn parse(volume: &str) -> Result<Self, ResolveError> {
        let invalid = || ResolveError::InvalidName(volume.to_string());
        let (ns, pvc) = volume.split_once('/').ok_or_else(invalid)?;
        if !is_dns1123_label(ns) || !is_dns1123_subdomain(pvc) {
            return Err(invalid());
        }
        Ok(Self {
            namespace: ns.to_string(),
            pvc: pvc.to_string(),
        })
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// Dot-separated DNS-1123 labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Where a PV's data is found on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// hostPath or local: a path on the node itself.
    NodePath(String),
    /// Mounted by the kubelet for a pod: `volumes/<plugin dir>/<pv>[/mount]`.
    Kubelet { plugin_dir: String, csi: bool },
}

/// Resolves `volume` on this node, or says precisely why not.
pub fn resolve(
    view: &dyn ClusterView,
    node: &NodeContext,
    volume: &str,
) -> Result<PathBuf, ResolveError> {
    let name = VolumeName::parse(volume)?;
    let vol = name.to_string();
    let pvc = view
        .pvc(&name.namespace, &name.pvc)
        .ok_or_else(|| ResolveError::PvcNotFound(vol.clone()))?;
    let pv = bound_pv(view, &pvc, &vol)?;
    let spec = pv
        .spec
        .as_ref()
        .ok_or_else(|| ResolveError::UnsupportedSource {
            volume: vol.clone(),
            pv: pv_name(&pv),
        })?;
    if pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block")
        || spec.volume_mode.as_deref() == Some("Block")
    {
        return Err(ResolveError::BlockVolume(vol));
    }
    let source = source(spec).ok_or_else(|| ResolveError::UnsupportedSource {
        volume: vol.clone(),
        pv: pv_name(&pv),
    })?;
    let pods = pods_using(view, node, &name);
    match source {
        Source::NodePath(path) => node_path(view, node, spec, &pods, &vol, &path),
        Source::Kubelet { plugin_dir, csi } => {
            let mount = KubeletMount {
                pv: pv_name(&pv),
                plugin_dir,
                csi,
            };
            kubelet_path(view, node, &pods, &vol, &mount)
        }
    }
}

fn pv_name(pv: &PersistentVolume) -> String {
    pv.metadata.name.clone().unwrap_or_default()
}

/// The PV the PVC is bound to, checked from both sides (claimRef uid).
fn bound_pv(
    view: &dyn ClusterView,
    pvc: &PersistentVolumeClaim,
    vol: &str,
) -> Result<Arc<PersistentVolume>, ResolveError> {
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".to_string());
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty());
    let Some(pv_name) = pv_name.filter(|_| phase == "Bound") else {
        return Err(ResolveError::NotBound {
            volume: vol.to_string(),
            phase,
        });
    };
    let pv = view.pv(&pv_name).ok_or_else(|| ResolveError::PvMissing {
        volume: vol.to_string(),
        pv: pv_name.clone(),
    })?;
    let claim = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let matches = claim.is_some_and(|c| {
        c.uid.is_some()
            && c.uid == pvc.metadata.uid
            && c.namespace == pvc.metadata.namespace
            && c.name == pvc.metadata.name
    });
    if !matches {
        return Err(ResolveError::ClaimMismatch {
            volume: vol.to_string(),
            pv: pv_name,
        });
    }
    Ok(pv)
}

/// The kubelet plugin directory of each in-tree volume source (`kubernetes.io~<plugin>`).
fn source(spec: &PersistentVolumeSpec) -> Option<Source> {
    if let Some(h) = &spec.host_path {
        return Some(Source::NodePath(h.path.clone()));
    }
    if let Some(l) = &spec.local {
        return Some(Source::NodePath(l.path.clone()));
    }
    if spec.csi.is_some() {
        return Some(kubelet("csi", true));
    }
    if let Some(flex) = &spec.flex_volume {
        // Flex drivers are named `vendor/driver`; the kubelet escapes `/` as `~`.
        return Some(Source::Kubelet {
            plugin_dir: flex.driver.replace('/', "~"),
            csi: false,
        });
    }
    let plugin = [
        (spec.nfs.is_some(), "nfs"),
        (spec.iscsi.is_some(), "iscsi"),
        (spec.rbd.is_some(), "rbd"),
        (spec.cephfs.is_some(), "cephfs"),
        (spec.fc.is_some(), "fc"),
        (spec.glusterfs.is_some(), "glusterfs"),
        (spec.azure_file.is_some(), "azure-file"),
        (spec.azure_disk.is_some(), "azure-disk"),
        (spec.aws_elastic_block_store.is_some(), "aws-ebs"),
        (spec.gce_persistent_disk.is_some(), "gce-pd"),
        (spec.cinder.is_some(), "cinder"),
        (spec.portworx_volume.is_some(), "portworx-volume"),
        (spec.vsphere_volume.is_some(), "vsphere-volume"),
        (spec.quobyte.is_some(), "quobyte"),
        (spec.scale_io.is_some(), "scaleio"),
        (spec.storageos.is_some(), "storageos"),
        (spec.photon_persistent_disk.is_some(), "photon-pd"),
        (spec.flocker.is_some(), "flocker"),
    ]
    .into_iter()
    .find_map(|(set, name)| set.then_some(name))?;
    Some(kubelet(plugin, false))
}

fn kubelet(plugin: &str, csi: bool) -> Source {
    Source::Kubelet {
        plugin_dir: format!("kubernetes.io~{plugin}"),
        csi,
    }
}

/// Pods on this node that use the claim and may have it mounted (not finished).
fn pods_using(view: &dyn ClusterView, node: &NodeContext, name: &VolumeName) -> Vec<Arc<Pod>> {
    let mut pods: Vec<Arc<Pod>> = view
        .pods_on_node()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(name.namespace.as_str()))
        .filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.node_name.as_str())
        })
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter(|p| uses_claim(p, &name.pvc))
        .collect();
    // Running pods first: their mounts are the ones known to be set up.
    pods.sort_by_key(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running"));
    pods
}

/// Whether the pod mounts the claim, directly or as a generic ephemeral volume (whose PVC
/// is named `<pod>-<volume>`).
fn uses_claim(pod: &Pod, claim: &str) -> bool {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes.into_iter().any(|v| {
        v.persistent_volume_claim
            .as_ref()
            .is_some_and(|c| c.claim_name == claim)
            || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == claim)
    })
}

/// A hostPath/local PV: served when it belongs to this node.
fn node_path(
    view: &dyn ClusterView,
    node: &NodeContext,
    spec: &PersistentVolumeSpec,
    pods: &[Arc<Pod>],
    vol: &str,
    path: &str,
) -> Result<PathBuf, ResolveError> {
    let labels = node_labels(view, &node.node_name);
    let terms = required_terms(spec);
    let pinned_here =
        terms.is_some_and(|t| t.iter().any(|t| term_matches(t, &node.node_name, &labels)));
    if !pinned_here && pods.is_empty() {
        return Err(ResolveError::NotOnNode {
            volume: vol.to_string(),
            node: node.node_name.clone(),
            on: terms.and_then(hostname_hint),
        });
    }
    let dir = existing_dir(&node.host_root, Path::new(path), vol)?;
    if spec.local.is_some() && !view.is_mount_point(&dir) {
        return Err(not_a_mount(vol, &dir));
    }
    Ok(dir)
}

/// The refusal of a directory that should be a volume's mount but is not.
fn not_a_mount(vol: &str, dir: &Path) -> ResolveError {
    ResolveError::SourceUnsafe {
        volume: vol.to_string(),
        reason: format!(
            "directory {} is not a mount point: the volume is not mounted there, and serving \
             it would look like an empty volume",
            dir.display()
        ),
    }
}

/// Whether a pod's mounts can be trusted: Running and not being deleted.
fn is_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// "pod a is Pending, pod b is terminating", for a refusal.
fn describe_pods(pods: &[Arc<Pod>]) -> String {
    let state = |p: &Pod| {
        if p.metadata.deletion_timestamp.is_some() {
            "terminating".to_string()
        } else {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            phase.unwrap_or("Pending").to_string()
        }
    };
    pods.iter()
        .map(|p| {
            format!(
                "pod {} is {}",
                p.metadata.name.as_deref().unwrap_or("?"),
                state(p)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the kubelet mounts a PV for a pod: `volumes/<plugin_dir>/<pv>[/mount]`.
struct KubeletMount {
    pv: String,
    plugin_dir: String,
    csi: bool,
}

/// A kubelet-mounted PV: the mount of the first Running pod on this node whose directory
/// exists and is a mount point; with pods that are not Running, unsafe; with no pod, not
/// mounted here (naming the node it is attached to, if known).
fn kubelet_path(
    view: &dyn ClusterView,
    node: &NodeContext,
    pods: &[Arc<Pod>],
    vol: &str,
    mount: &KubeletMount,
) -> Result<PathBuf, ResolveError> {
    let mut last = None;
    if !pods.is_empty() && !pods.iter().any(|p| is_running(p)) {
        return Err(ResolveError::SourceUnsafe {
            volume: vol.to_string(),
            reason: format!(
                "no pod using it on node {} is Running ({}): its mount may be missing or \
                 being torn down",
                node.node_name,
                describe_pods(pods)
            ),
        });
    }
    for pod in pods.iter().filter(|p| is_running(p)) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            continue;
        };
        let mut rel = node.kubelet_dir.join("pods").join(uid).join("volumes");
        rel.push(&mount.plugin_dir);
        rel.push(&mount.pv);
        if mount.csi {
            rel.push("mount");
        }
        match existing_dir(&node.host_root, &rel, vol) {
            Ok(dir) if view.is_mount_point(&dir) => return Ok(dir),
            Ok(dir) => last = Some(not_a_mount(vol, &dir)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ResolveError::NotMounted {
        volume: vol.to_string(),
        node: node.node_name.clone(),
        attached: view.attached_node(&mount.pv),
    }))
}

/// This node's labels; without a readable Node object, the hostname label kubelets set by
/// default (the node name), so hostname affinity still works.
fn node_labels(view: &dyn ClusterView, node_name: &str) -> BTreeMap<String, String> {
    view.node()
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_else(|| BTreeMap::from([(HOSTNAME_LABEL.to_string(), node_name.to_string())]))
}

fn required_terms(spec: &PersistentVolumeSpec) -> Option<&[NodeSelectorTerm]> {
    spec.node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.as_slice())
}

/// A node selector term (expressions AND fields, all must hold; an empty term matches
/// nothing, as in the scheduler).
pub fn term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name_field = BTreeMap::from([("metadata.name".to_string(), node_name.to_string())]);
    exprs.iter().all(|r| requirement_matches(r, labels))
        && fields.iter().all(|r| requirement_matches(r, &name_field))
}

fn requirement_matches(req: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.as_deref().unwrap_or_default();
    let int = |v: &str| v.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(|v| int(v)), values.first().and_then(|v| int(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(|v| int(v)), values.first().and_then(|v| int(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// The node a volume is pinned to, when the affinity names exactly one by hostname or name.
fn hostname_hint(terms: &[NodeSelectorTerm]) -> Option<String> {
    let reqs = terms.iter().flat_map(|t| {
        let e = t.match_expressions.iter().flatten();
        e.chain(t.match_fields.iter().flatten())
    });
    let mut names = reqs
        .filter(|r| r.operator == "In" && (r.key == HOSTNAME_LABEL || r.key == "metadata.name"))
        .flat_map(|r| r.values.iter().flatten().cloned());
    let first = names.next()?;
    names.all(|n| n == first).then_some(first)
}

/// `path` (as seen on the node) under `root`, symlinks resolved inside `root`, and it must
/// be a directory.
fn existing_dir(root: &Path, path: &Path, vol: &str) -> Result<PathBuf, ResolveError> {
    let missing = || ResolveError::DirectoryMissing {
        volume: vol.to_string(),
        path: root.join(relative(path)).display().to_string(),
    };
    let dir = resolve_in_root(root, path).map_err(|_| missing())?;
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        _ => Err(missing()),
    }
}

/// `path` without its root, so that joining it never replaces the host root.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Resolves `path` as the node would, but inside `root`: absolute symlink targets restart
/// at `root`, `..` never climbs above it. This keeps a symlink on the node (e.g.
/// `/var/lib/kubelet -> /data/kubelet`) pointing at the node's file, not the agent's.
pub fn resolve_in_root(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = components_rev(path);
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join_all(root, &resolved).join(&part);
        let meta = std::fs::symlink_metadata(&candidate)?;
        if !meta.file_type().is_symlink() {
            resolved.push(part);
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(std::io::Error::other("too many levels of symbolic links"));
        }
        let target = std::fs::read_link(&candidate)?;
        if target.is_absolute() {
            resolved.clear();
        }
        pending.extend(components_rev(&target));
    }
    Ok(join_all(root, &resolved))
}

/// Path components in reverse (a stack), keeping `..` and dropping `/` and `.`.
fn components_rev(path: &Path) -> Vec<std::ffi::OsString> {
    let mut parts: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    parts.reverse();
    parts
}

fn join_all(root: &Path, parts: &[std::ffi::OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

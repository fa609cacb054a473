//! Volume resolution on a directory layout: a tempdir plays the node's root (`/host`), the
//! PVC/PV/Pod/Node objects are the JSON the API server would return.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dr_syncer_agent::resolve::resolve_in_root;
use dr_syncer_agent::{ClusterView, NodeContext, ResolveError, VolumeName, resolve};
use dr_syncer_rsync::VolumeResolver;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use serde_json::{Value, json};

const NODE: &str = "node-a";
const PVC_UID: &str = "11111111-2222-3333-4444-555555555555";
const POD_UID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// A node's view: objects by name plus a host root on disk.
struct Bed {
    root: tempfile::TempDir,
    pvcs: BTreeMap<(String, String), Arc<PersistentVolumeClaim>>,
    pvs: BTreeMap<String, Arc<PersistentVolume>>,
    pods: Vec<Arc<Pod>>,
    node: Option<Arc<Node>>,
    attached: BTreeMap<String, String>,
    /// Directories that are mount points (host paths): the bed's stand-in for the
    /// kernel's mount table, which a test cannot change without privileges.
    mounts: Mutex<BTreeSet<PathBuf>>,
}

impl ClusterView for Bed {
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.get(name).cloned()
    }
    fn pods_on_node(&self) -> Vec<Arc<Pod>> {
        self.pods.clone()
    }
    fn node(&self) -> Option<Arc<Node>> {
        self.node.clone()
    }
    fn attached_node(&self, pv: &str) -> Option<String> {
        self.attached.get(pv).cloned()
    }
    fn is_mount_point(&self, dir: &Path) -> bool {
        self.mounts.lock().unwrap().contains(dir)
    }
}

impl Bed {
    fn new() -> Self {
        let bed = Self {
            root: tempfile::tempdir().unwrap(),
            pvcs: BTreeMap::new(),
            pvs: BTreeMap::new(),
            pods: Vec::new(),
            node: None,
            attached: BTreeMap::new(),
            mounts: Mutex::new(BTreeSet::new()),
        };
        bed.with_node(json!({"kubernetes.io/hostname": NODE}))
    }
    fn with_node(mut self, labels: Value) -> Self {
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "labels": labels}});
        self.node = Some(Arc::new(serde_json::from_value(node).unwrap()));
        self
    }
    fn ctx(&self) -> NodeContext {
        NodeContext {
            node_name: NODE.to_string(),
            host_root: self.root.path().to_path_buf(),
            kubelet_dir: PathBuf::from("/var/lib/kubelet"),
        }
    }
    fn resolve(&self, volume: &str) -> Result<PathBuf, ResolveError> {
        resolve(self, &self.ctx(), volume)
    }
    /// Creates `path` (as seen on the node) under the host root, as a mounted volume
    /// (a mount point).
    fn mkdir(&self, node_path: &str) -> PathBuf {
        let p = self.mkdir_unmounted(node_path);
        self.mounts.lock().unwrap().insert(p.clone());
        p
    }
    /// Creates `path` under the host root as a plain directory (no mount on it).
    fn mkdir_unmounted(&self, node_path: &str) -> PathBuf {
        let p = self.host(node_path);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
    /// Creates `node_path` under the host root and checks that `ns/data` resolves to it.
    fn assert_resolves_to(&self, node_path: &str) {
        let dir = self.mkdir(node_path);
        assert_eq!(self.resolve("ns/data").unwrap(), dir);
    }
    fn host(&self, node_path: &str) -> PathBuf {
        self.root.path().join(node_path.trim_start_matches('/'))
    }
    /// A Bound PVC `ns/data` on PV `pv-data`.
    fn pvc(mut self, extra_spec: Value) -> Self {
        let mut spec = json!({"volumeName": "pv-data", "accessModes": ["ReadWriteOnce"]});
        merge(&mut spec, extra_spec);
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "ns", "uid": PVC_UID},
            "spec": spec, "status": {"phase": "Bound"}});
        self.pvcs.insert(
            ("ns".into(), "data".into()),
            Arc::new(serde_json::from_value(pvc).unwrap()),
        );
        self
    }
    /// PV `pv-data` bound to `ns/data`, with the given source (and affinity) fields.
    fn pv(mut self, source: Value) -> Self {
        let mut spec = json!({"capacity": {"storage": "1Gi"},
            "claimRef": {"namespace": "ns", "name": "data", "uid": PVC_UID}});
        merge(&mut spec, source);
        let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv-data"}, "spec": spec});
        self.pvs.insert(
            "pv-data".into(),
            Arc::new(serde_json::from_value(pv).unwrap()),
        );
        self
    }
    /// A pod on this node (phase given) using claim `data` in `ns`.
    fn pod(mut self, phase: &str) -> Self {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app-0", "namespace": "ns", "uid": POD_UID},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "x"}],
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
            "status": {"phase": phase}});
        self.pods
            .push(Arc::new(serde_json::from_value(pod).unwrap()));
        self
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

fn hostname_affinity(node: &str) -> Value {
    json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}})
}

fn with(mut a: Value, b: Value) -> Value {
    merge(&mut a, b);
    a
}

const HOSTPATH: &str = "/var/lib/testbed-storage/pvc-1";

fn hostpath_pv(affinity_node: &str) -> Value {
    with(
        json!({"hostPath": {"path": HOSTPATH}}),
        hostname_affinity(affinity_node),
    )
}

const CSI_MOUNT: &str = "/var/lib/kubelet/pods/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/volumes/kubernetes.io~csi/pv-data/mount";

fn csi_pv() -> Value {
    json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}})
}

// ---- each plugin kind resolves ----

#[test]
fn hostpath_pv_pinned_to_this_node_resolves_under_the_host_root() {
    let bed = Bed::new().pvc(json!({})).pv(hostpath_pv(NODE));
    bed.assert_resolves_to(HOSTPATH);
}

#[test]
fn hostpath_pv_without_affinity_resolves_only_with_a_pod_on_this_node() {
    let bed = Bed::new()
        .pvc(json!({}))
        .pv(json!({"hostPath": {"path": HOSTPATH}}));
    let dir = bed.mkdir(HOSTPATH);
    assert_eq!(
        bed.resolve("ns/data").unwrap_err(),
        ResolveError::NotOnNode {
            volume: "ns/data".into(),
            node: NODE.into(),
            on: None
        }
    );
    let bed = bed.pod("Running");
    assert_eq!(bed.resolve("ns/data").unwrap(), dir);
}

#[test]
fn local_pv_matches_the_nodes_hostname_label_even_when_it_differs_from_the_node_name() {
    let bed = Bed::new()
        .with_node(json!({"kubernetes.io/hostname": "ip-10-0-0-7", "zone": "z1"}))
        .pvc(json!({}))
        .pv(with(
            json!({"local": {"path": "/mnt/disks/ssd1"}}),
            hostname_affinity("ip-10-0-0-7"),
        ));
    bed.assert_resolves_to("/mnt/disks/ssd1");
}

#[test]
fn local_pv_pinned_by_match_fields_on_the_node_name_resolves() {
    let affinity = json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z9"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [NODE]}]}]}}});
    let bed = Bed::new().pvc(json!({})).pv(with(
        json!({"local": {"path": "/mnt/disks/ssd1"}}),
        affinity,
    ));
    bed.assert_resolves_to("/mnt/disks/ssd1");
}

#[test]
fn csi_volume_resolves_to_the_mount_of_a_running_pod_on_this_node() {
    let bed = Bed::new().pvc(json!({})).pv(csi_pv()).pod("Running");
    bed.assert_resolves_to(CSI_MOUNT);
}

fn assert_unsafe(err: ResolveError, words: &str) {
    match &err {
        ResolveError::SourceUnsafe { volume, reason } => {
            assert_eq!(volume, "ns/data");
            assert!(reason.contains(words), "{reason}");
        }
        other => panic!("expected SourceUnsafe ({words}), got {other:?}"),
    }
}

#[test]
fn csi_volume_of_a_pending_pod_is_refused_even_when_its_directory_exists() {
    let bed = Bed::new().pvc(json!({})).pv(csi_pv()).pod("Pending");
    bed.mkdir(CSI_MOUNT);
    assert_unsafe(bed.resolve("ns/data").unwrap_err(), "pod app-0 is Pending");
}

#[test]
fn csi_volume_of_a_terminating_pod_is_refused() {
    let mut bed = Bed::new().pvc(json!({})).pv(csi_pv()).pod("Running");
    bed.mkdir(CSI_MOUNT);
    let mut pod = (*bed.pods[0]).clone();
    pod.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap());
    bed.pods[0] = Arc::new(pod);
    assert_unsafe(
        bed.resolve("ns/data").unwrap_err(),
        "pod app-0 is terminating",
    );
}

#[test]
fn csi_directory_that_is_not_a_mount_point_is_refused() {
    let bed = Bed::new().pvc(json!({})).pv(csi_pv()).pod("Running");
    let dir = bed.mkdir_unmounted(CSI_MOUNT);
    assert_unsafe(bed.resolve("ns/data").unwrap_err(), "is not a mount point");
    bed.mounts.lock().unwrap().insert(dir.clone());
    assert_eq!(bed.resolve("ns/data").unwrap(), dir);
}

#[test]
fn local_pv_must_be_a_mount_point_and_host_path_need_not() {
    let bed = Bed::new().pvc(json!({})).pv(with(
        json!({"local": {"path": "/mnt/disks/ssd1"}}),
        hostname_affinity(NODE),
    ));
    bed.mkdir_unmounted("/mnt/disks/ssd1");
    assert_unsafe(bed.resolve("ns/data").unwrap_err(), "is not a mount point");
    let bed = bed.pv(hostpath_pv(NODE));
    let dir = bed.mkdir_unmounted(HOSTPATH);
    assert_eq!(
        bed.resolve("ns/data").unwrap(),
        dir,
        "hostPath is a plain directory"
    );
}

#[test]
fn an_unsafe_refusal_reaches_the_worker_as_one() {
    // what the agent's resolver hands the protocol, as the worker will read it
    let err = dr_syncer_rsync::VolumeError::Unsafe {
        volume: "ns/data".into(),
        reason: "volume ns/data: directory /x is not a mount point".into(),
    };
    let on_the_wire = dr_syncer_rsync::ProtocolError::Volume(err.to_string()).to_string();
    assert!(
        dr_syncer_rsync::is_unsafe_volume_refusal(&on_the_wire),
        "{on_the_wire}"
    );
    let other = dr_syncer_rsync::VolumeError::Unavailable {
        volume: "ns/data".into(),
        reason: "PVC ns/data not found".into(),
    };
    assert!(!dr_syncer_rsync::is_unsafe_volume_refusal(
        &other.to_string()
    ));
}

#[test]
fn nfs_volume_resolves_to_the_in_tree_plugin_dir_without_mount_suffix() {
    let bed = Bed::new()
        .pvc(json!({}))
        .pv(json!({"nfs": {"server": "10.0.0.1", "path": "/exports/a"}}))
        .pod("Running");
    bed.assert_resolves_to(&format!(
        "/var/lib/kubelet/pods/{POD_UID}/volumes/kubernetes.io~nfs/pv-data"
    ));
}

#[test]
fn rbd_and_flex_volumes_use_their_kubelet_plugin_dirs() {
    let bed = Bed::new()
        .pvc(json!({}))
        .pv(json!({"rbd": {"monitors": ["m"], "image": "i"}}))
        .pod("Running");
    let dir = bed.mkdir(&format!(
        "/var/lib/kubelet/pods/{POD_UID}/volumes/kubernetes.io~rbd/pv-data"
    ));
    assert_eq!(bed.resolve("ns/data").unwrap(), dir);
    let bed = bed.pv(json!({"flexVolume": {"driver": "acme/fancy"}}));
    bed.assert_resolves_to(&format!(
        "/var/lib/kubelet/pods/{POD_UID}/volumes/acme~fancy/pv-data"
    ));
}

#[test]
fn generic_ephemeral_volume_claim_is_found_through_its_pod() {
    let mut bed = Bed::new().pv(with(
        csi_pv(),
        json!({"claimRef": {"namespace": "ns", "name": "app-0-scratch", "uid": PVC_UID}}),
    ));
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "app-0-scratch", "namespace": "ns", "uid": PVC_UID},
        "spec": {"volumeName": "pv-data"}, "status": {"phase": "Bound"}});
    bed.pvcs.insert(
        ("ns".into(), "app-0-scratch".into()),
        Arc::new(serde_json::from_value(pvc).unwrap()),
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app-0", "namespace": "ns", "uid": POD_UID},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "x"}],
            "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                "spec": {"accessModes": ["ReadWriteOnce"]}}}}]},
        "status": {"phase": "Running"}});
    bed.pods
        .push(Arc::new(serde_json::from_value(pod).unwrap()));
    let dir = bed.mkdir(CSI_MOUNT);
    assert_eq!(bed.resolve("ns/app-0-scratch").unwrap(), dir);
}

#[test]
fn symlinks_on_the_node_resolve_inside_the_host_root() {
    // /var/lib/kubelet -> /data/kubelet on the node (absolute link): must land in the
    // node's /data, not the agent's.
    let bed = Bed::new().pvc(json!({})).pv(csi_pv()).pod("Running");
    bed.mkdir("/var/lib");
    let real = bed.mkdir(&format!(
        "/data/kubelet/pods/{POD_UID}/volumes/kubernetes.io~csi/pv-data/mount"
    ));
    std::os::unix::fs::symlink("/data/kubelet", bed.host("/var/lib/kubelet")).unwrap();
    assert_eq!(bed.resolve("ns/data").unwrap(), real);
}

#[test]
fn resolve_in_root_never_climbs_above_the_root() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("a/b")).unwrap();
    std::os::unix::fs::symlink("../../../../..", r.join("a/b/up")).unwrap();
    std::os::unix::fs::symlink("/", r.join("a/abs")).unwrap();
    assert_eq!(resolve_in_root(r, Path::new("/a/b/up")).unwrap(), r);
    assert_eq!(
        resolve_in_root(r, Path::new("/a/abs/a/b")).unwrap(),
        r.join("a/b")
    );
    assert_eq!(
        resolve_in_root(r, Path::new("/../../a")).unwrap(),
        r.join("a")
    );
    std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
    assert!(resolve_in_root(r, Path::new("/loop")).is_err());
}

// ---- every refusal ----

#[test]
fn invalid_names_are_refused_before_any_lookup() {
    let bed = Bed::new().pvc(json!({})).pv(hostpath_pv(NODE));
    bed.mkdir(HOSTPATH);
    for bad in [
        "",
        "data",
        "ns/",
        "/data",
        "ns/data/x",
        "../data",
        "ns/..",
        "NS/data",
        "ns/Data",
        "-ns/data",
        "ns/data-",
        "ns/da_ta",
        "ns/da ta",
        "ns/data\0",
    ] {
        assert_eq!(
            bed.resolve(bad).unwrap_err(),
            ResolveError::InvalidName(bad.to_string()),
            "{bad:?}"
        );
    }
    let long_ns = "n".repeat(64);
    assert!(VolumeName::parse(&format!("{long_ns}/data")).is_err());
    assert!(VolumeName::parse(&format!("ns/{}", "p".repeat(254))).is_err());
    assert_eq!(
        VolumeName::parse("ns/db.data-0").unwrap(),
        VolumeName {
            namespace: "ns".into(),
            pvc: "db.data-0".into()
        }
    );
}

#[test]
fn missing_pvc_is_refused() {
    let bed = Bed::new();
    let e = bed.resolve("ns/data").unwrap_err();
    assert_eq!(e, ResolveError::PvcNotFound("ns/data".into()));
    assert_eq!(e.to_string(), "PVC ns/data not found");
}

#[test]
fn unbound_pvc_is_refused_with_its_phase() {
    let mut bed = Bed::new();
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "ns", "uid": PVC_UID},
        "spec": {}, "status": {"phase": "Pending"}});
    bed.pvcs.insert(
        ("ns".into(), "data".into()),
        Arc::new(serde_json::from_value(pvc).unwrap()),
    );
    let e = bed.resolve("ns/data").unwrap_err();
    assert_eq!(e.to_string(), "PVC ns/data is not bound (phase Pending)");
}

#[test]
fn missing_pv_is_refused() {
    let bed = Bed::new().pvc(json!({}));
    assert_eq!(
        bed.resolve("ns/data").unwrap_err().to_string(),
        "PV pv-data of PVC ns/data not found"
    );
}

#[test]
fn pv_bound_to_another_incarnation_of_the_claim_is_refused() {
    let bed = Bed::new().pvc(json!({})).pv(with(
        hostpath_pv(NODE),
        json!({"claimRef": {"namespace": "ns", "name": "data", "uid": "other-uid"}}),
    ));
    bed.mkdir(HOSTPATH);
    assert_eq!(
        bed.resolve("ns/data").unwrap_err(),
        ResolveError::ClaimMismatch {
            volume: "ns/data".into(),
            pv: "pv-data".into()
        }
    );
}

#[test]
fn hostpath_pv_on_another_node_is_refused_naming_that_node() {
    let bed = Bed::new().pvc(json!({})).pv(hostpath_pv("node-b"));
    bed.mkdir(HOSTPATH); // even if the same path exists here
    let e = bed.resolve("ns/data").unwrap_err();
    assert_eq!(
        e.to_string(),
        "volume ns/data is not on node node-a (it is on node node-b)"
    );
}

#[test]
fn node_affinity_operators_follow_the_scheduler() {
    let affinity = |exprs: Value| {
        json!({"local": {"path": "/mnt/d"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": exprs}]}}})
    };
    let bed = Bed::new()
        .with_node(json!({"kubernetes.io/hostname": NODE, "disk": "ssd", "gen": "5"}))
        .pvc(json!({}));
    bed.mkdir("/mnt/d");
    let cases = [
        (json!([{"key": "disk", "operator": "Exists"}]), true),
        (json!([{"key": "gpu", "operator": "Exists"}]), false),
        (json!([{"key": "gpu", "operator": "DoesNotExist"}]), true),
        (
            json!([{"key": "disk", "operator": "NotIn", "values": ["hdd"]}]),
            true,
        ),
        (
            json!([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]),
            false,
        ),
        (
            json!([{"key": "gen", "operator": "Gt", "values": ["4"]}]),
            true,
        ),
        (
            json!([{"key": "gen", "operator": "Lt", "values": ["4"]}]),
            false,
        ),
        (
            json!([{"key": "disk", "operator": "In", "values": ["ssd"]},
                   {"key": "gen", "operator": "In", "values": ["4"]}]),
            false,
        ),
        (json!([]), false),
    ];
    for (exprs, ok) in cases {
        let b = bed_clone(&bed).pv(affinity(exprs.clone()));
        assert_eq!(b.resolve("ns/data").is_ok(), ok, "{exprs}");
    }
}

fn bed_clone(bed: &Bed) -> Bed {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("mnt/d")).unwrap();
    let mounts = Mutex::new(BTreeSet::from([root.path().join("mnt/d")]));
    Bed {
        root,
        pvcs: bed.pvcs.clone(),
        pvs: bed.pvs.clone(),
        pods: bed.pods.clone(),
        node: bed.node.clone(),
        attached: bed.attached.clone(),
        mounts,
    }
}

#[test]
fn csi_volume_without_a_pod_on_this_node_is_not_mounted_here() {
    let bed = Bed::new().pvc(json!({})).pv(csi_pv());
    bed.mkdir(CSI_MOUNT);
    let e = bed.resolve("ns/data").unwrap_err();
    assert_eq!(
        e.to_string(),
        "volume ns/data not mounted on this node (node-a): no running pod on this node uses the claim"
    );
}

#[test]
fn csi_volume_attached_elsewhere_is_refused_naming_that_node() {
    let mut bed = Bed::new().pvc(json!({})).pv(csi_pv());
    bed.attached.insert("pv-data".into(), "node-b".into());
    assert_eq!(
        bed.resolve("ns/data").unwrap_err().to_string(),
        "volume ns/data not mounted on this node (node-a): no running pod on this node uses \
         the claim (it is attached to node node-b)"
    );
}

#[test]
fn finished_pods_do_not_count_as_using_the_claim() {
    let bed = Bed::new().pvc(json!({})).pv(csi_pv()).pod("Succeeded");
    bed.mkdir(CSI_MOUNT);
    assert!(matches!(
        bed.resolve("ns/data").unwrap_err(),
        ResolveError::NotMounted { .. }
    ));
}

#[test]
fn pods_of_other_namespaces_or_nodes_do_not_count() {
    let mut bed = Bed::new().pvc(json!({})).pv(csi_pv());
    bed.mkdir(CSI_MOUNT);
    for (ns, node) in [("other", NODE), ("ns", "node-b")] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "x", "namespace": ns, "uid": POD_UID},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}],
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
            "status": {"phase": "Running"}});
        bed.pods = vec![Arc::new(serde_json::from_value(pod).unwrap())];
        assert!(matches!(
            bed.resolve("ns/data").unwrap_err(),
            ResolveError::NotMounted { .. }
        ));
    }
}

#[test]
fn missing_or_non_directory_paths_are_refused() {
    let bed = Bed::new().pvc(json!({})).pv(hostpath_pv(NODE));
    let e = bed.resolve("ns/data").unwrap_err();
    let expected = format!(
        "volume ns/data: directory {} is missing or not a directory",
        bed.host(HOSTPATH).display()
    );
    assert_eq!(e.to_string(), expected);
    bed.mkdir("/var/lib/testbed-storage");
    std::fs::write(bed.host(HOSTPATH), b"a file").unwrap();
    assert_eq!(bed.resolve("ns/data").unwrap_err().to_string(), expected);
}

#[test]
fn block_volumes_are_refused() {
    let bed = Bed::new()
        .pvc(json!({"volumeMode": "Block"}))
        .pv(hostpath_pv(NODE));
    bed.mkdir(HOSTPATH);
    assert_eq!(
        bed.resolve("ns/data").unwrap_err(),
        ResolveError::BlockVolume("ns/data".into())
    );
}

#[test]
fn pv_without_a_known_source_is_refused() {
    let bed = Bed::new().pvc(json!({})).pv(json!({})).pod("Running");
    assert_eq!(
        bed.resolve("ns/data").unwrap_err(),
        ResolveError::UnsupportedSource {
            volume: "ns/data".into(),
            pv: "pv-data".into()
        }
    );
}

#[test]
fn static_volumes_still_resolve_through_the_wire_resolver_trait() {
    let fixed: dr_syncer_rsync::StaticVolumes = "v=/srv/v".parse().unwrap();
    let layered = dr_syncer_agent::LayeredResolver {
        fixed,
        cluster: None,
    };
    assert_eq!(layered.resolve("v").unwrap(), PathBuf::from("/srv/v"));
    assert!(layered.resolve("ns/data").is_err());
}

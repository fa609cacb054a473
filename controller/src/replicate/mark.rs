//! Ownership marks: what every object DR-Syncer writes carries, so that pruning and cleanup
//! only ever touch objects this mapping created.
//!
//! The annotations are the authority (full mapping name, source cluster, namespace and uid);
//! the label exists so the runtime can list a mapping's objects with a label selector
//! instead of reading the whole namespace.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;

/// Annotation: the NamespaceMapping that wrote the object, as `namespace/name`.
pub const MAPPING_ANNOTATION: &str = "dr-syncer.io/mapping";
/// Annotation: the uid of the NamespaceMapping that wrote the object. A mapping deleted and
/// created again under the same name is another mapping: it does not own (overwrite,
/// prune) its predecessor's copies unless it adopts them.
pub const MAPPING_UID_ANNOTATION: &str = "dr-syncer.io/mapping-uid";
/// Annotation: the RemoteCluster the object was read from.
pub const SOURCE_CLUSTER_ANNOTATION: &str = "dr-syncer.io/source-cluster";
/// Annotation: the namespace the object was read from.
pub const SOURCE_NAMESPACE_ANNOTATION: &str = "dr-syncer.io/source-namespace";
/// Annotation: the uid of the source object.
pub const SOURCE_UID_ANNOTATION: &str = "dr-syncer.io/source-uid";
/// Label: [`MappingId::label_value`] of the mapping that wrote the object.
pub const MANAGED_BY_MAPPING_LABEL: &str = "dr-syncer.io/managed-by-mapping";

/// The label values of this length or shorter are kept readable; longer ones are hashed.
const MAX_LABEL_VALUE: usize = 63;

/// Identity of a NamespaceMapping (its namespace and name in the controller cluster), and
/// which incarnation of it writes (its uid).
///
/// Equality, ordering and hashing are by namespace and name only: the uid decides
/// ownership of target objects ([`is_managed_by`]), not which mapping is meant.
#[derive(Debug, Clone)]
pub struct MappingId {
    /// Namespace of the NamespaceMapping.
    pub namespace: String,
    /// Name of the NamespaceMapping.
    pub name: String,
    /// The mapping's uid (`None`: unknown, ownership is checked by name alone).
    pub uid: Option<String>,
    /// Objects marked by name but without a mapping uid (written before marks carried
    /// it) count as this mapping's. Only for a mapping that has synced before: a recreated
    /// mapping (empty status) never inherits them.
    pub accept_unversioned_marks: bool,
}

impl PartialEq for MappingId {
    fn eq(&self, other: &Self) -> bool {
        (&self.namespace, &self.name) == (&other.namespace, &other.name)
    }
}

impl Eq for MappingId {}

impl std::hash::Hash for MappingId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.namespace, &self.name).hash(state);
    }
}

impl PartialOrd for MappingId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MappingId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.namespace, &self.name).cmp(&(&other.namespace, &other.name))
    }
}

impl MappingId {
    /// A mapping identity from its namespace and name (uid unknown).
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: None,
            accept_unversioned_marks: false,
        }
    }

    /// The identity of a live NamespaceMapping, with its uid; marks without a uid are
    /// accepted only when the mapping has synced before (`status.lastSyncTime`).
    pub fn of(nm: &dr_syncer_crds::namespace_mapping::NamespaceMapping) -> Self {
        Self {
            namespace: nm.metadata.namespace.clone().unwrap_or_default(),
            name: nm.metadata.name.clone().unwrap_or_default(),
            uid: nm.metadata.uid.clone(),
            accept_unversioned_marks: nm
                .status
                .as_ref()
                .is_some_and(|s| s.last_sync_time.is_some()),
        }
    }

    /// Value of [`MANAGED_BY_MAPPING_LABEL`]: `namespace.name` when that is a valid label
    /// value (namespaces have no dots, so it reads back unambiguously), otherwise `h-` and
    /// a 40-hex-digit BLAKE3 hash of `namespace/name` (label values are at most 63 chars).
    pub fn label_value(&self) -> String {
        let readable = format!("{}.{}", self.namespace, self.name);
        if readable.len() <= MAX_LABEL_VALUE {
            return readable;
        }
        let hash = blake3::hash(self.to_string().as_bytes()).to_hex();
        format!("h-{}", &hash.as_str()[..40])
    }

    /// `key=value` label selector listing this mapping's objects.
    pub fn label_selector(&self) -> String {
        format!("{MANAGED_BY_MAPPING_LABEL}={}", self.label_value())
    }
}

impl std::fmt::Display for MappingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a written object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The mapping writing it.
    pub mapping: &'a MappingId,
    /// The source RemoteCluster's name.
    pub source_cluster: &'a str,
    /// The source namespace.
    pub source_namespace: &'a str,
    /// The source object's uid, if known.
    pub source_uid: Option<&'a str>,
}

/// Writes the ownership annotations and label onto an object about to be written.
pub fn mark(obj: &mut DynamicObject, origin: &Origin<'_>) {
    mark_meta(&mut obj.metadata, origin);
}

/// [`mark`] on bare metadata (for typed objects such as the destination Namespace).
pub fn mark_meta(meta: &mut ObjectMeta, origin: &Origin<'_>) {
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(MAPPING_ANNOTATION.to_owned(), origin.mapping.to_string());
    match &origin.mapping.uid {
        Some(uid) => annotations.insert(MAPPING_UID_ANNOTATION.to_owned(), uid.clone()),
        None => annotations.remove(MAPPING_UID_ANNOTATION),
    };
    annotations.insert(
        SOURCE_CLUSTER_ANNOTATION.to_owned(),
        origin.source_cluster.to_owned(),
    );
    annotations.insert(
        SOURCE_NAMESPACE_ANNOTATION.to_owned(),
        origin.source_namespace.to_owned(),
    );
    match origin.source_uid {
        Some(uid) => annotations.insert(SOURCE_UID_ANNOTATION.to_owned(), uid.to_owned()),
        None => annotations.remove(SOURCE_UID_ANNOTATION),
    };
    meta.labels.get_or_insert_with(BTreeMap::new).insert(
        MANAGED_BY_MAPPING_LABEL.to_owned(),
        origin.mapping.label_value(),
    );
}

/// Removes every ownership mark (a source object that is itself a DR copy must not carry
/// its writer's marks into our target).
pub fn unmark(obj: &mut DynamicObject) {
    if let Some(a) = obj.metadata.annotations.as_mut() {
        for key in [
            MAPPING_ANNOTATION,
            MAPPING_UID_ANNOTATION,
            SOURCE_CLUSTER_ANNOTATION,
            SOURCE_NAMESPACE_ANNOTATION,
            SOURCE_UID_ANNOTATION,
        ] {
            a.remove(key);
        }
    }
    if let Some(l) = obj.metadata.labels.as_mut() {
        l.remove(MANAGED_BY_MAPPING_LABEL);
    }
}

/// Whether `obj` (a target object) was written by `mapping`: see [`is_meta_managed_by`].
pub fn is_managed_by(obj: &DynamicObject, mapping: &MappingId) -> bool {
    is_meta_managed_by(&obj.metadata, mapping)
}

/// Whether an object with this metadata was written by this incarnation of `mapping`: the
/// label and the mapping annotation must name it, and the mapping-uid annotation must be
/// its uid (a mark without a uid counts only under
/// [`MappingId::accept_unversioned_marks`]). A look-alike label alone is not enough to
/// overwrite or delete.
pub fn is_meta_managed_by(meta: &ObjectMeta, mapping: &MappingId) -> bool {
    let label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_MAPPING_LABEL));
    let annotations = meta.annotations.as_ref();
    let annotation = annotations.and_then(|a| a.get(MAPPING_ANNOTATION));
    let marked_uid = annotations.and_then(|a| a.get(MAPPING_UID_ANNOTATION));
    let incarnation = match (marked_uid, &mapping.uid) {
        (Some(marked), Some(uid)) => marked == uid,
        (None, Some(_)) => mapping.accept_unversioned_marks,
        (_, None) => true,
    };
    label.is_some_and(|v| *v == mapping.label_value())
        && annotation.is_some_and(|v| *v == mapping.to_string())
        && incarnation
}

/// Whether `mapping` may write over an existing destination object with this metadata:
/// one it wrote ([`is_meta_managed_by`]), or any when it adopts existing objects
/// (`spec.safety.adoptExistingObjects`). Deleting stays limited to [`is_managed_by`]: an
/// adopted object is pruned only once the mapping's own write has marked it.
pub fn may_overwrite(meta: &ObjectMeta, mapping: &MappingId, adopt: bool) -> bool {
    adopt || is_meta_managed_by(meta, mapping)
}

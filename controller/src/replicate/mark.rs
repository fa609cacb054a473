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

/// Identity of a NamespaceMapping (its namespace and name in the controller cluster).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappingId {
    /// Namespace of the NamespaceMapping.
    pub namespace: String,
    /// Name of the NamespaceMapping.
    pub name: String,
}

impl MappingId {
    /// A mapping identity from its namespace and name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
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

/// Whether `obj` (a target object) was written by `mapping`: both the label and the
/// mapping annotation must say so. A look-alike label alone is not enough to delete.
pub fn is_managed_by(obj: &DynamicObject, mapping: &MappingId) -> bool {
    let label = obj
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_MAPPING_LABEL));
    let annotation = obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MAPPING_ANNOTATION));
    label.is_some_and(|v| *v == mapping.label_value())
        && annotation.is_some_and(|v| *v == mapping.to_string())
}

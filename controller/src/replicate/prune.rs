//! Prune planning: which target objects may be deleted because their source is gone.
//!
//! Deleting is the one irreversible thing DR-Syncer does at the DR site, so the plan is
//! conservative: only objects this mapping marked, only when the source listing is present
//! in the plan's input, never on an empty listing while the target holds managed objects,
//! never more than half of the mapping's objects at once, and never when the source
//! namespace is missing or terminating. A refused plan deletes nothing and says why, for a
//! condition on the mapping.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::DynamicObject;

use super::MappingId;
use super::mark::{SOURCE_UID_ANNOTATION, is_managed_by};

/// A target object to delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// Target namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The target object's uid, to delete with a uid precondition (never a newer object of
    /// the same name).
    pub uid: Option<String>,
}

impl ObjectRef {
    /// The reference to a listed object.
    pub fn of(obj: &DynamicObject) -> Self {
        Self {
            api_version: obj
                .types
                .as_ref()
                .map(|t| t.api_version.clone())
                .unwrap_or_default(),
            kind: obj
                .types
                .as_ref()
                .map(|t| t.kind.clone())
                .unwrap_or_default(),
            namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            uid: obj.metadata.uid.clone(),
        }
    }
}

/// Why nothing is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneRefusal {
    /// The source listing is empty while the target holds managed objects: an empty source
    /// is far more often a broken source (wrong cluster, wiped namespace) than a real
    /// deletion of everything.
    EmptySource {
        /// Managed objects at the target.
        managed: usize,
    },
    /// The plan would delete more than half of the mapping's objects.
    TooMany {
        /// Objects the plan would delete.
        would_delete: usize,
        /// Managed objects at the target.
        managed: usize,
    },
    /// The source namespace does not exist.
    SourceNamespaceMissing,
    /// A listed object carries no apiVersion/kind (list items of built-in kinds come
    /// without them; the caller must fill them in), so objects cannot be matched safely.
    UntypedListing {
        /// Name of the first such object.
        name: String,
    },
    /// The source namespace is being deleted.
    SourceNamespaceTerminating,
}

impl std::fmt::Display for PruneRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptySource { managed } => write!(
                f,
                "the source listing is empty but {managed} replicated objects exist at the target; nothing was deleted"
            ),
            Self::TooMany {
                would_delete,
                managed,
            } => write!(
                f,
                "pruning would delete {would_delete} of {managed} replicated objects (more than half); nothing was deleted"
            ),
            Self::UntypedListing { name } => write!(
                f,
                "listed object {name:?} has no apiVersion/kind, so source and target cannot be matched; nothing was deleted"
            ),
            Self::SourceNamespaceMissing => {
                write!(
                    f,
                    "the source namespace does not exist; nothing was deleted"
                )
            }
            Self::SourceNamespaceTerminating => write!(
                f,
                "the source namespace is being deleted; nothing was deleted"
            ),
        }
    }
}

/// What a prune pass will do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrunePlan {
    /// Target objects managed by the mapping (the base of the "half" rule).
    pub managed: usize,
    /// Objects to delete; always empty when `refused` is set.
    pub delete: Vec<ObjectRef>,
    /// Why the plan deletes nothing, if it was refused.
    pub refused: Option<PruneRefusal>,
}

/// Identity of an object across clusters: API group, kind, name (versions may differ).
fn key(obj: &DynamicObject) -> (String, String, String) {
    let (group, kind) = obj
        .types
        .as_ref()
        .map_or((String::new(), String::new()), |t| {
            let group = t
                .api_version
                .rsplit_once('/')
                .map(|(g, _)| g.to_owned())
                .unwrap_or_default();
            (group, t.kind.clone())
        });
    (group, kind, obj.metadata.name.clone().unwrap_or_default())
}

/// Plans the deletion of target objects whose source is gone.
///
/// `source` is the complete listing of the source namespace for the kinds being pruned
/// (the objects that would be replicated: an object deselected at the source, e.g. by the
/// ignore label, is pruned at the target if it is left out of `source`), `target` the
/// listing of the target namespace for the same kinds. Both must carry `apiVersion`/`kind`.
/// The "more than half" rule counts the managed objects in `target`, so call it with all
/// kinds of a full resync at once, not kind by kind.
pub fn plan_prune(
    source: &[DynamicObject],
    target: &[DynamicObject],
    mapping: &MappingId,
) -> PrunePlan {
    if let Some(untyped) = source.iter().chain(target).find(|o| !is_typed(o)) {
        return PrunePlan {
            managed: 0,
            delete: Vec::new(),
            refused: Some(PruneRefusal::UntypedListing {
                name: untyped.metadata.name.clone().unwrap_or_default(),
            }),
        };
    }
    let managed: Vec<&DynamicObject> = target
        .iter()
        .filter(|o| is_managed_by(o, mapping))
        .collect();
    let present: BTreeSet<_> = source.iter().map(key).collect();
    let mut delete: Vec<ObjectRef> = managed
        .iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| !present.contains(&key(o)))
        .map(|o| ObjectRef::of(o))
        .collect();
    delete.sort();
    let refused = refusal(source.len(), managed.len(), delete.len());
    PrunePlan {
        managed: managed.len(),
        delete: if refused.is_some() {
            Vec::new()
        } else {
            delete
        },
        refused,
    }
}

fn is_typed(obj: &DynamicObject) -> bool {
    obj.types
        .as_ref()
        .is_some_and(|t| !t.api_version.is_empty() && !t.kind.is_empty())
}

/// The safety rules on the counts.
fn refusal(source: usize, managed: usize, would_delete: usize) -> Option<PruneRefusal> {
    if source == 0 && managed > 0 {
        Some(PruneRefusal::EmptySource { managed })
    } else if would_delete * 2 > managed {
        Some(PruneRefusal::TooMany {
            would_delete,
            managed,
        })
    } else {
        None
    }
}

/// The namespace rule: pruning needs the source namespace to exist and not be terminating.
/// `ns` is the source Namespace as read (`None`: not found).
pub fn check_source_namespace(ns: Option<&Namespace>) -> Result<(), PruneRefusal> {
    let Some(ns) = ns else {
        return Err(PruneRefusal::SourceNamespaceMissing);
    };
    let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
    if ns.metadata.deletion_timestamp.is_some() || phase == Some("Terminating") {
        return Err(PruneRefusal::SourceNamespaceTerminating);
    }
    Ok(())
}

/// Continuous mode: whether the target copy may be deleted when the watch reports the
/// deletion of the source object with `source_uid`. Only a managed, not already terminating
/// copy, and only the copy of that very source object (a copy already re-marked with the
/// uid of a newer source object of the same name stays).
pub fn may_delete_for_source_delete(
    target: &DynamicObject,
    mapping: &MappingId,
    source_uid: Option<&str>,
) -> bool {
    let copied_uid = target
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SOURCE_UID_ANNOTATION))
        .map(String::as_str);
    is_managed_by(target, mapping)
        && target.metadata.deletion_timestamp.is_none()
        && match (copied_uid, source_uid) {
            (Some(copied), Some(deleted)) => copied == deleted,
            _ => true,
        }
}

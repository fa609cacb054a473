//! The destination Namespace object, per `namespaceConfig`: whether DR-Syncer creates it,
//! and which of the source namespace's labels and annotations it carries.

use std::collections::BTreeMap;

use dr_syncer_crds::namespace_mapping::NamespaceConfig;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::mark::{Origin, mark_meta};
use super::strip::STRIPPED_ANNOTATIONS;

/// Label the API server sets on every namespace to its own name; copied to a namespace of
/// another name it would be wrong (and the API server overwrites it anyway).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The namespace rules of a mapping, from `spec.namespaceConfig` (all true by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceRules {
    /// Create the destination namespace when it does not exist.
    pub create: bool,
    /// Copy the source namespace's labels.
    pub preserve_labels: bool,
    /// Copy the source namespace's annotations.
    pub preserve_annotations: bool,
}

impl Default for NamespaceRules {
    fn default() -> Self {
        Self {
            create: true,
            preserve_labels: true,
            preserve_annotations: true,
        }
    }
}

impl NamespaceRules {
    /// The rules of `spec.namespaceConfig` (defaults when absent).
    pub fn from_config(cfg: Option<&NamespaceConfig>) -> Self {
        cfg.map_or_else(Self::default, |c| Self {
            create: c.create_namespace,
            preserve_labels: c.preserve_labels,
            preserve_annotations: c.preserve_annotations,
        })
    }
}

/// The destination Namespace to apply (when `rules.create`, or to keep labels and
/// annotations in step on an existing one): named `dest_name`, with the source namespace's
/// labels and annotations as the rules say, and DR-Syncer's marks. `source` is the source
/// Namespace as read (`None` when it could not be read: a bare namespace).
pub fn target_namespace(
    source: Option<&Namespace>,
    dest_name: &str,
    rules: NamespaceRules,
    origin: &Origin<'_>,
) -> Namespace {
    let meta = source.map(|ns| &ns.metadata);
    let labels = meta
        .and_then(|m| m.labels.clone())
        .filter(|_| rules.preserve_labels)
        .map(|mut l| {
            l.remove(NAMESPACE_NAME_LABEL);
            l
        });
    let annotations = meta
        .and_then(|m| m.annotations.clone())
        .filter(|_| rules.preserve_annotations)
        .map(|mut a| {
            for key in STRIPPED_ANNOTATIONS {
                a.remove(*key);
            }
            a
        });
    let mut metadata = ObjectMeta {
        name: Some(dest_name.to_owned()),
        labels: labels.filter(|l: &BTreeMap<_, _>| !l.is_empty()),
        annotations: annotations.filter(|a: &BTreeMap<_, _>| !a.is_empty()),
        ..ObjectMeta::default()
    };
    mark_meta(&mut metadata, origin);
    Namespace {
        metadata,
        ..Namespace::default()
    }
}

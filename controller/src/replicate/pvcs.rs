//! PersistentVolumeClaims at the DR site: storage class and access modes mapped for the
//! target's storage, and the source's binding to a PersistentVolume removed, so the target
//! provisions a fresh volume, unless PersistentVolumes are replicated too.

use std::collections::BTreeMap;

use dr_syncer_crds::annotations::STORAGE_CLASS;
use dr_syncer_crds::namespace_mapping::{AccessMode, PvcConfig};
use kube::core::DynamicObject;
use serde_json::{Map, Value};

use super::{ResourceKind, first_value};

/// Annotations that tie a claim to the source cluster's nodes or provisioner; always
/// removed (the target schedules and provisions on its own).
pub const PLACEMENT_ANNOTATIONS: &[&str] = &[
    "volume.kubernetes.io/selected-node",
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
];

/// Prefix of the binding annotations the PV controller writes (`pv.kubernetes.io/bind-completed`,
/// `pv.kubernetes.io/bound-by-controller`); removed unless PVs are replicated.
pub const BINDING_ANNOTATION_PREFIX: &str = "pv.kubernetes.io/";

/// The PVC rules of a mapping, from `spec.pvcConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PvcRules {
    /// Keep `volumeName` and the binding annotations (the PV is replicated too).
    pub sync_persistent_volumes: bool,
    /// Source storage class -> target storage class.
    pub storage_classes: BTreeMap<String, String>,
    /// Source access mode -> target access mode (the API names, e.g. `ReadWriteOnce`).
    pub access_modes: BTreeMap<String, String>,
}

impl PvcRules {
    /// The rules of `spec.pvcConfig` (defaults when it is absent). For a storage class or
    /// access mode mapped twice, the last mapping wins.
    pub fn from_config(cfg: Option<&PvcConfig>) -> Self {
        let Some(cfg) = cfg else {
            return Self::default();
        };
        Self {
            sync_persistent_volumes: cfg.sync_persistent_volumes,
            storage_classes: cfg
                .storage_class_mappings
                .iter()
                .map(|m| (m.from.clone(), m.to.clone()))
                .collect(),
            access_modes: cfg
                .access_mode_mappings
                .iter()
                .map(|m| (access_mode_name(m.from), access_mode_name(m.to)))
                .collect(),
        }
    }
}

/// The API spelling of an access mode.
pub fn access_mode_name(mode: AccessMode) -> String {
    match mode {
        AccessMode::ReadWriteOnce => "ReadWriteOnce",
        AccessMode::ReadOnlyMany => "ReadOnlyMany",
        AccessMode::ReadWriteMany => "ReadWriteMany",
        AccessMode::ReadWriteOncePod => "ReadWriteOncePod",
    }
    .to_owned()
}

/// The target storage class: the per-PVC `dr-syncer.io/storage-class` (label, then
/// annotation) wins, then the mapping of the source class, then the source class itself.
/// A claim without a class (cluster default) stays without one unless the per-PVC
/// override names one.
pub fn target_storage_class(
    source_class: Option<&str>,
    per_pvc: Option<&str>,
    mappings: &BTreeMap<String, String>,
) -> Option<String> {
    if let Some(class) = per_pvc.map(str::trim).filter(|c| !c.is_empty()) {
        return Some(class.to_owned());
    }
    let source = source_class?;
    Some(
        mappings
            .get(source)
            .cloned()
            .unwrap_or_else(|| source.to_owned()),
    )
}

/// The target access modes: each mapped, duplicates removed, order kept.
pub fn target_access_modes(source: &[String], mappings: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for mode in source {
        let mapped = mappings.get(mode).unwrap_or(mode);
        if !out.contains(mapped) {
            out.push(mapped.clone());
        }
    }
    out
}

/// Applies the PVC rules to a (stripped) claim; other kinds are left alone.
///
/// `dataSource`/`dataSourceRef` are removed too: they name snapshots or claims of the
/// source cluster, and the data comes through the PVC data sync instead.
pub fn transform_pvc(obj: &mut DynamicObject, kind: &ResourceKind, rules: &PvcRules) {
    if !kind.is("", "PersistentVolumeClaim") {
        return;
    }
    let per_pvc = per_pvc_storage_class(obj);
    strip_pvc_annotations(obj, rules.sync_persistent_volumes);
    let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    map_storage_class(spec, per_pvc.as_deref(), &rules.storage_classes);
    map_access_modes(spec, &rules.access_modes);
    if !rules.sync_persistent_volumes {
        spec.remove("volumeName");
    }
    spec.remove("dataSource");
    spec.remove("dataSourceRef");
}

/// Applies the storage class and access mode maps to a StatefulSet's
/// `volumeClaimTemplates` (other kinds are left alone): the claims the target's StatefulSet
/// creates at failover must ask for storage the target has. A template's own
/// `dr-syncer.io/storage-class` label or annotation wins, as on a claim.
pub fn transform_claim_templates(obj: &mut DynamicObject, kind: &ResourceKind, rules: &PvcRules) {
    if !kind.is("apps", "StatefulSet") {
        return;
    }
    let Some(templates) = obj
        .data
        .pointer_mut("/spec/volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for template in templates.iter_mut() {
        let per_template = template_storage_class(template);
        if let Some(spec) = template.get_mut("spec").and_then(Value::as_object_mut) {
            map_storage_class(spec, per_template.as_deref(), &rules.storage_classes);
            map_access_modes(spec, &rules.access_modes);
        }
    }
}

fn template_storage_class(template: &Value) -> Option<String> {
    ["labels", "annotations"].iter().find_map(|map| {
        template
            .get("metadata")?
            .get(*map)?
            .get(STORAGE_CLASS)?
            .as_str()
            .map(str::to_owned)
    })
}

fn per_pvc_storage_class(obj: &DynamicObject) -> Option<String> {
    let meta = &obj.metadata;
    first_value(
        [meta.labels.as_ref(), meta.annotations.as_ref()],
        STORAGE_CLASS,
    )
    .cloned()
}

fn strip_pvc_annotations(obj: &mut DynamicObject, keep_binding: bool) {
    if let Some(a) = obj.metadata.annotations.as_mut() {
        a.retain(|key, _| {
            !PLACEMENT_ANNOTATIONS.contains(&key.as_str())
                && (keep_binding || !key.starts_with(BINDING_ANNOTATION_PREFIX))
        });
    }
}

fn map_storage_class(
    spec: &mut Map<String, Value>,
    per_pvc: Option<&str>,
    mappings: &BTreeMap<String, String>,
) {
    let source = spec.get("storageClassName").and_then(Value::as_str);
    if let Some(class) = target_storage_class(source, per_pvc, mappings) {
        spec.insert("storageClassName".to_owned(), Value::String(class));
    }
}

fn map_access_modes(spec: &mut Map<String, Value>, mappings: &BTreeMap<String, String>) {
    let Some(modes) = spec.get("accessModes").and_then(Value::as_array) else {
        return;
    };
    let source: Vec<String> = modes
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let mapped = target_access_modes(&source, mappings);
    spec.insert(
        "accessModes".to_owned(),
        Value::Array(mapped.into_iter().map(Value::String).collect()),
    );
}

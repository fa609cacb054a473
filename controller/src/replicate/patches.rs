//! The user's JSON-Patch (RFC 6902) transformations, applied per resource kind to the
//! object as it will be written.
//!
//! Patches are compiled once per sync (the resource names resolved, the operations parsed
//! by the `json-patch` crate). Each transformation is atomic: it applies entirely or not at
//! all. A failing `test` operation means "not this object" and skips that transformation;
//! any other failure is an error naming the mapping, kind, object and operation. A patch may
//! not change what identifies the object (apiVersion, kind, name, namespace).

use dr_syncer_crds::namespace_mapping::Transformation;
use json_patch::{Patch, PatchErrorKind, PatchOperation};
use kube::core::DynamicObject;
use serde_json::Value;

use super::error::PatchFailure;
use super::{MappingId, ResourceKind, RulesError, kinds::resolve_name, object_key};

/// One transformation, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledPatch {
    /// Index in `spec.transformations` (for messages).
    pub index: usize,
    /// API group of the kind it applies to.
    pub group: String,
    /// Kind it applies to.
    pub kind: String,
    /// The operations.
    pub patch: Patch,
}

/// Resolves and parses `spec.transformations` against the discovered kinds.
pub fn compile_patches(
    transformations: &[Transformation],
    discovered: &[ResourceKind],
) -> Result<Vec<CompiledPatch>, RulesError> {
    transformations
        .iter()
        .enumerate()
        .map(|(index, t)| compile_one(index, t, discovered))
        .collect()
}

fn compile_one(
    index: usize,
    t: &Transformation,
    discovered: &[ResourceKind],
) -> Result<CompiledPatch, RulesError> {
    let kind = resolve_name(&t.resource, discovered)?;
    let invalid = |reason: String| RulesError::InvalidPatch {
        index,
        resource: t.resource.clone(),
        reason,
    };
    let ops = serde_json::to_value(&t.patch).map_err(|e| invalid(e.to_string()))?;
    let patch: Patch = serde_json::from_value(ops).map_err(|e| invalid(e.to_string()))?;
    Ok(CompiledPatch {
        index,
        group: kind.group.clone(),
        kind: kind.kind.clone(),
        patch,
    })
}

/// Applies, in order, the patches meant for `kind` to `obj`. Returns the indices of the
/// transformations applied (those skipped by a failing `test` are left out).
pub fn apply_patches(
    obj: &mut DynamicObject,
    kind: &ResourceKind,
    patches: &[CompiledPatch],
    mapping: &MappingId,
) -> Result<Vec<usize>, RulesError> {
    let mine: Vec<&CompiledPatch> = patches
        .iter()
        .filter(|p| kind.is(&p.group, &p.kind))
        .collect();
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let before = Identity::of(obj);
    let mut doc = to_value(obj, kind)?;
    let mut applied = Vec::new();
    for p in mine {
        match json_patch::patch(&mut doc, &p.patch) {
            Ok(()) => applied.push(p.index),
            Err(e) if matches!(e.kind, PatchErrorKind::TestFailed) => {}
            Err(e) => return Err(patch_failed(obj, kind, mapping, &p.patch, &e)),
        }
    }
    let patched: DynamicObject =
        serde_json::from_value(doc).map_err(|e| RulesError::MalformedObject {
            kind: kind.kind.clone(),
            object: object_key(obj),
            reason: format!("after transformations the object is not valid: {e}"),
        })?;
    before.check(&patched, kind, mapping)?;
    *obj = patched;
    Ok(applied)
}

fn to_value(obj: &DynamicObject, kind: &ResourceKind) -> Result<Value, RulesError> {
    serde_json::to_value(obj).map_err(|e| RulesError::MalformedObject {
        kind: kind.kind.clone(),
        object: object_key(obj),
        reason: e.to_string(),
    })
}

fn patch_failed(
    obj: &DynamicObject,
    kind: &ResourceKind,
    mapping: &MappingId,
    patch: &Patch,
    e: &json_patch::PatchError,
) -> RulesError {
    RulesError::PatchFailed(Box::new(PatchFailure {
        mapping: mapping.to_string(),
        kind: kind.kind.clone(),
        object: object_key(obj),
        operation: e.operation,
        op: patch
            .0
            .get(e.operation)
            .map(op_name)
            .unwrap_or("?")
            .to_owned(),
        path: e.path.to_string(),
        reason: e.kind.to_string(),
    }))
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// What a patch may not change.
struct Identity {
    api_version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
}

impl Identity {
    fn of(obj: &DynamicObject) -> Self {
        Self {
            api_version: obj.types.as_ref().map(|t| t.api_version.clone()),
            kind: obj.types.as_ref().map(|t| t.kind.clone()),
            name: obj.metadata.name.clone(),
            namespace: obj.metadata.namespace.clone(),
        }
    }

    fn check(
        &self,
        patched: &DynamicObject,
        kind: &ResourceKind,
        mapping: &MappingId,
    ) -> Result<(), RulesError> {
        let after = Self::of(patched);
        let field = if after.api_version != self.api_version {
            "apiVersion"
        } else if after.kind != self.kind {
            "kind"
        } else if after.name != self.name {
            "metadata.name"
        } else if after.namespace != self.namespace {
            "metadata.namespace"
        } else {
            return Ok(());
        };
        Err(RulesError::IdentityChanged {
            mapping: mapping.to_string(),
            kind: kind.kind.clone(),
            object: format!(
                "{}/{}",
                self.namespace.as_deref().unwrap_or_default(),
                self.name.as_deref().unwrap_or_default()
            ),
            field,
        })
    }
}

//! Namespace references inside objects, remapped along with the objects themselves.
//!
//! When the destination namespace differs from the source, an object that names the
//! source namespace explicitly would point back at a namespace that does not exist at the
//! target (or, worse, at an unrelated one of the same name). RoleBinding subjects are the
//! structured case: a ServiceAccount of the source namespace is, at the target, the copy in
//! the destination namespace. Free-form text (DNS names in env vars or ConfigMaps) is left
//! alone: rewriting it is a guess, and `transformations` can do it explicitly.

use kube::core::DynamicObject;
use serde_json::Value;

use super::ResourceKind;

/// Points RoleBinding subjects that are ServiceAccounts of `source_ns` at `dest_ns`
/// (other kinds are left alone). Returns how many subjects were remapped.
pub fn remap_namespace_references(
    obj: &mut DynamicObject,
    kind: &ResourceKind,
    source_ns: &str,
    dest_ns: &str,
) -> usize {
    if source_ns == dest_ns || !kind.is("rbac.authorization.k8s.io", "RoleBinding") {
        return 0;
    }
    let Some(subjects) = obj.data.get_mut("subjects").and_then(Value::as_array_mut) else {
        return 0;
    };
    let mut remapped = 0;
    for subject in subjects.iter_mut().filter_map(Value::as_object_mut) {
        let is_sa = subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount");
        let in_source = subject.get("namespace").and_then(Value::as_str) == Some(source_ns);
        if is_sa && in_source {
            subject.insert("namespace".to_owned(), Value::String(dest_ns.to_owned()));
            remapped += 1;
        }
    }
    remapped
}

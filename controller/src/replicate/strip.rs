//! Metadata stripping: what of a source object is the source cluster's bookkeeping rather
//! than the user's intent, and so must not be written to the target.
//!
//! Server-side apply rejects or misreads most of these (uid, resourceVersion, managedFields),
//! and copying others would be wrong (ownerReferences point at source uids, finalizers would
//! block deletion at the target for controllers that are not there).

use kube::core::DynamicObject;

/// Annotations that are bookkeeping of a client or controller at the source.
pub const STRIPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    // Maintained by the Deployment controller from its ReplicaSets; a copied value would
    // make the target's controller and our apply fight over it.
    "deployment.kubernetes.io/revision",
];

/// Clears the cluster-owned metadata and the status, and points the object at
/// `dest_namespace`. The object keeps its name, labels, annotations (minus
/// [`STRIPPED_ANNOTATIONS`]) and spec/data.
pub fn strip(obj: &mut DynamicObject, dest_namespace: &str) {
    let m = &mut obj.metadata;
    m.uid = None;
    m.resource_version = None;
    m.self_link = None;
    m.creation_timestamp = None;
    m.generation = None;
    m.managed_fields = None;
    m.owner_references = None;
    m.finalizers = None;
    m.deletion_timestamp = None;
    m.deletion_grace_period_seconds = None;
    m.generate_name = None;
    m.namespace = Some(dest_namespace.to_owned());
    if let Some(a) = m.annotations.as_mut() {
        for key in STRIPPED_ANNOTATIONS {
            a.remove(*key);
        }
    }
    drop_empty_maps(obj);
    if let Some(data) = obj.data.as_object_mut() {
        data.remove("status");
    }
}

/// Empty label/annotation maps become absent, so applies do not claim empty maps.
fn drop_empty_maps(obj: &mut DynamicObject) {
    let m = &mut obj.metadata;
    if m.labels.as_ref().is_some_and(|l| l.is_empty()) {
        m.labels = None;
    }
    if m.annotations.as_ref().is_some_and(|a| a.is_empty()) {
        m.annotations = None;
    }
}

//! Spec fields that are accepted (so DR-Syncer manifests apply unchanged) but whose
//! behaviour is not built yet, or is deliberately different here: the runtime turns the
//! list into a condition on the mapping, so nothing is ever a silent no-op.
//!
//! Each item names the field by its path, so when the runtime builds one of these behaviours
//! it can drop the item (`retain`) until the entry is removed here.

use dr_syncer_crds::NamespaceMappingSpec;
use dr_syncer_crds::namespace_mapping::{FailureHandlingConfig, FailureHandlingMode};

/// One accepted-but-not-acted-on field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// Path of the field in the spec, e.g. `spec.pvcConfig.syncData`.
    pub field: &'static str,
    /// What happens instead, in words a user can act on.
    pub message: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The fields of `spec` that are set to something this controller does not do (yet).
/// Empty for a spec that only uses what is built.
pub fn unsupported_fields(spec: &NamespaceMappingSpec) -> Vec<Unsupported> {
    let checks: [fn(&NamespaceMappingSpec) -> Option<Unsupported>; 5] = [
        temp_pod_key,
        failure_handling,
        sync_persistent_volumes,
        preserve_volume_attributes,
        preserve_backends,
    ];
    checks.iter().filter_map(|check| check(spec)).collect()
}

/// A condition message listing all items, `None` when there are none.
pub fn condition_message(items: &[Unsupported]) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
    Some(format!("accepted but not acted on: {}", parts.join("; ")))
}

/// The item for `field` when it is `set` to something not acted on.
fn item(set: bool, field: &'static str, message: &str) -> Option<Unsupported> {
    set.then(|| Unsupported {
        field,
        message: message.to_owned(),
    })
}

fn temp_pod_key(spec: &NamespaceMappingSpec) -> Option<Unsupported> {
    item(
        spec.temp_pod_key_secret_ref.is_some(),
        "spec.tempPodKeySecretRef",
        "not used: data-sync workers are keyed through the ClusterMapping/RemoteCluster sshKeySecretRef",
    )
}

/// DR-Syncer's defaults of `failureHandling`; anything else asks for a policy we lack.
fn is_default_failure_handling(f: &FailureHandlingConfig) -> bool {
    f.default_mode == FailureHandlingMode::RetryAndWait
        && f.storage_class_not_found == FailureHandlingMode::WaitForNextSync
        && f.resource_not_found == FailureHandlingMode::FailFast
        && f.validation_failure == FailureHandlingMode::FailFast
        && f.network_error == FailureHandlingMode::RetryAndWait
}

fn failure_handling(spec: &NamespaceMappingSpec) -> Option<Unsupported> {
    let f = spec.failure_handling.as_ref()?;
    item(
        !is_default_failure_handling(f),
        "spec.failureHandling",
        "per-failure-class policies are not implemented; every failure is retried per spec.retryConfig",
    )
}

fn sync_persistent_volumes(spec: &NamespaceMappingSpec) -> Option<Unsupported> {
    item(
        spec.pvc_config.as_ref()?.sync_persistent_volumes,
        "spec.pvcConfig.syncPersistentVolumes",
        "PersistentVolumes are not replicated yet; claims keep volumeName and bind only to a PV that already exists at the target",
    )
}

fn preserve_volume_attributes(spec: &NamespaceMappingSpec) -> Option<Unsupported> {
    item(
        spec.pvc_config.as_ref()?.preserve_volume_attributes,
        "spec.pvcConfig.preserveVolumeAttributes",
        "volume attributes are not copied: new volumes get the target storage class defaults",
    )
}

fn preserve_backends(spec: &NamespaceMappingSpec) -> Option<Unsupported> {
    item(
        !spec.ingress_config.as_ref()?.preserve_backends,
        "spec.ingressConfig.preserveBackends",
        "backends are always kept as at the source (rewrite them with spec.transformations)",
    )
}

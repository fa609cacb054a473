//! The whole source-to-target transform, as one call for the sync engine: strip, remap the
//! namespace, the per-kind rules (workload scaling, CronJob/Job suspension, Service, PVC,
//! Ingress and Job fields), the user's patches, then the ownership marks (last, so
//! that no patch can remove them and make an object unprunable or prunable by accident).

use dr_syncer_crds::NamespaceMappingSpec;
use kube::core::{DynamicObject, TypeMeta};

use super::ingress::{IngressRules, transform_ingress};
use super::mark::{Origin, mark, unmark};
use super::patches::{CompiledPatch, apply_patches, compile_patches};
use super::pvcs::{PvcRules, transform_claim_templates, transform_pvc};
use super::references::remap_namespace_references;
use super::services::strip_service;
use super::strip::strip;
use super::workloads::{scale_override, scale_workload, strip_job, suspend_batch};
use super::{MappingId, ResourceKind, RulesError};

/// Everything the transform needs to know about a mapping, built once per sync.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformConfig {
    /// The NamespaceMapping doing the writing.
    pub mapping: MappingId,
    /// Name of the source RemoteCluster (written into the marks).
    pub source_cluster: String,
    /// Namespace objects are read from.
    pub source_namespace: String,
    /// Namespace objects are written to.
    pub dest_namespace: String,
    /// `spec.scaleToZero`.
    pub scale_to_zero: bool,
    /// `spec.pvcConfig` rules.
    pub pvc: PvcRules,
    /// `spec.ingressConfig` rules.
    pub ingress: IngressRules,
    /// `spec.transformations`, compiled.
    pub patches: Vec<CompiledPatch>,
}

impl TransformConfig {
    /// Builds the config of a mapping. `source_cluster` is the RemoteCluster name the
    /// runtime resolved (directly, or through the ClusterMapping); `discovered` resolves the
    /// resource names of `transformations`.
    pub fn from_spec(
        mapping: MappingId,
        source_cluster: &str,
        spec: &NamespaceMappingSpec,
        discovered: &[ResourceKind],
    ) -> Result<Self, RulesError> {
        Ok(Self {
            mapping,
            source_cluster: source_cluster.to_owned(),
            source_namespace: spec.source_namespace.clone(),
            dest_namespace: spec.effective_destination_namespace().to_owned(),
            scale_to_zero: spec.scale_to_zero,
            pvc: PvcRules::from_config(spec.pvc_config.as_ref()),
            ingress: IngressRules::from_config(spec.ingress_config.as_ref()),
            patches: compile_patches(&spec.transformations, discovered)?,
        })
    }

    /// The marks' origin for a source object with `uid`.
    fn origin<'a>(&'a self, uid: Option<&'a str>) -> Origin<'a> {
        Origin {
            mapping: &self.mapping,
            source_cluster: &self.source_cluster,
            source_namespace: &self.source_namespace,
            source_uid: uid,
        }
    }
}

/// A target object ready for server-side apply, and what the status needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct Transformed {
    /// The object to apply (apiVersion and kind set, namespace remapped, marked).
    pub object: DynamicObject,
    /// For a Deployment/StatefulSet whose replicas were changed: the source count
    /// (an entry of `status.deploymentScales`).
    pub original_replicas: Option<i32>,
    /// Indices of the `transformations` that were applied.
    pub patches_applied: Vec<usize>,
}

/// Source object -> target object.
pub fn transform(
    obj: &DynamicObject,
    kind: &ResourceKind,
    cfg: &TransformConfig,
) -> Result<Transformed, RulesError> {
    let override_replicas = scale_override(obj, kind)?;
    let uid = obj.metadata.uid.clone();
    let mut out = obj.clone();
    out.types = Some(TypeMeta {
        api_version: kind.api_version(),
        kind: kind.kind.clone(),
    });
    unmark(&mut out);
    strip(&mut out, &cfg.dest_namespace);
    remap_namespace_references(&mut out, kind, &cfg.source_namespace, &cfg.dest_namespace);
    let original_replicas = scale_workload(&mut out, kind, override_replicas, cfg.scale_to_zero)?;
    suspend_batch(&mut out, kind, override_replicas, cfg.scale_to_zero);
    strip_service(&mut out, kind);
    transform_pvc(&mut out, kind, &cfg.pvc);
    transform_claim_templates(&mut out, kind, &cfg.pvc);
    transform_ingress(&mut out, kind, cfg.ingress);
    strip_job(&mut out, kind);
    let patches_applied = apply_patches(&mut out, kind, &cfg.patches, &cfg.mapping)?;
    mark(&mut out, &cfg.origin(uid.as_deref()));
    Ok(Transformed {
        object: out,
        original_replicas,
        patches_applied,
    })
}

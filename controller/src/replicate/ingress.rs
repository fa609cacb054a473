//! Ingresses at the DR site, per `ingressConfig`.
//!
//! - `preserveAnnotations: false` drops the annotations (controller tuning such as
//!   `nginx.ingress.kubernetes.io/*`, cert-manager issuers) except the legacy class
//!   annotation `kubernetes.io/ingress.class`, which decides which controller serves it.
//! - `preserveTLS: false` drops `spec.tls` (certificates of the source site's hosts).
//! - `preserveBackends`: backends are always kept; `false` has no documented behaviour in
//!   DR-Syncer (Go), so it is reported by [`super::unsupported`] rather than guessed at.
//!
//! `status.loadBalancer` goes with the rest of the status in [`super::strip`].

use dr_syncer_crds::namespace_mapping::IngressConfig;
use kube::core::DynamicObject;
use serde_json::Value;

use super::ResourceKind;

/// The annotation kept even when annotations are not preserved.
pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The Ingress rules of a mapping, from `spec.ingressConfig` (all true by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngressRules {
    /// Keep the annotations.
    pub preserve_annotations: bool,
    /// Keep `spec.tls`.
    pub preserve_tls: bool,
}

impl Default for IngressRules {
    fn default() -> Self {
        Self {
            preserve_annotations: true,
            preserve_tls: true,
        }
    }
}

impl IngressRules {
    /// The rules of `spec.ingressConfig` (defaults when absent).
    pub fn from_config(cfg: Option<&IngressConfig>) -> Self {
        cfg.map_or_else(Self::default, |c| Self {
            preserve_annotations: c.preserve_annotations,
            preserve_tls: c.preserve_tls,
        })
    }
}

/// Applies the Ingress rules to a (stripped, not yet marked) Ingress; other kinds are left
/// alone.
pub fn transform_ingress(obj: &mut DynamicObject, kind: &ResourceKind, rules: IngressRules) {
    if !kind.is("networking.k8s.io", "Ingress") {
        return;
    }
    if !rules.preserve_annotations
        && let Some(a) = obj.metadata.annotations.as_mut()
    {
        a.retain(|key, _| key == INGRESS_CLASS_ANNOTATION);
        if a.is_empty() {
            obj.metadata.annotations = None;
        }
    }
    if !rules.preserve_tls
        && let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.remove("tls");
    }
}

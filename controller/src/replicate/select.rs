//! Which source objects are replicated, beyond their kind.
//!
//! One small predicate per rule, checked in a fixed order so the skip reason a user sees is
//! the most specific one: objects DR-Syncer never copies first, then the user's selection.

use std::collections::BTreeMap;

use dr_syncer_crds::NamespaceMappingSpec;
use dr_syncer_crds::annotations::IGNORE;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{DynamicObject, Selector, SelectorExt};
use regex::Regex;

use super::{ResourceKind, RulesError};

/// ConfigMaps every namespace gets from the cluster itself (its CA bundles: Kubernetes'
/// `kube-root-ca.crt`, OpenShift's service CA); the target cluster has its own.
pub const CLUSTER_CA_CONFIGMAPS: &[&str] = &["kube-root-ca.crt", "openshift-service-ca.crt"];

/// Secret type of legacy service-account tokens: minted by the source cluster for its own
/// service accounts, meaningless (and rejected or rewritten) at the target.
pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";

/// The user's object selection (`objectSelector`), compiled once per sync.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    /// Labels an object must match; `None`: all.
    pub label_selector: Option<Selector>,
    /// Whole-name patterns of which one must match; empty: all names.
    pub include_names: Vec<Regex>,
    /// Whole-name patterns none of which may match.
    pub exclude_names: Vec<Regex>,
}

impl ObjectFilter {
    /// Compiles `spec.objectSelector`; a bad regex or label selector is an error naming it.
    pub fn from_spec(spec: &NamespaceMappingSpec) -> Result<Self, RulesError> {
        let Some(sel) = &spec.object_selector else {
            return Ok(Self::default());
        };
        let label_selector = match &sel.label_selector {
            Some(ls) => Some(compile_label_selector(ls)?),
            None => None,
        };
        Ok(Self {
            label_selector,
            include_names: compile_all("includeNames", &sel.include_names)?,
            exclude_names: compile_all("excludeNames", &sel.exclude_names)?,
        })
    }
}

/// Checks a label selector as the API server would (kube's parser is lenient: it accepts
/// `In` with no values, which would match nothing, and `Exists` with values), then
/// compiles it.
fn compile_label_selector(ls: &LabelSelector) -> Result<Selector, RulesError> {
    for req in ls.match_expressions.iter().flatten() {
        let has_values = req.values.as_ref().is_some_and(|v| !v.is_empty());
        let problem = match req.operator.as_str() {
            "In" | "NotIn" if !has_values => "needs at least one value",
            "Exists" | "DoesNotExist" if has_values => "takes no values",
            "In" | "NotIn" | "Exists" | "DoesNotExist" => continue,
            _ => "is not one of In, NotIn, Exists, DoesNotExist",
        };
        return Err(RulesError::InvalidLabelSelector {
            reason: format!("operator {:?} on key {:?} {problem}", req.operator, req.key),
        });
    }
    Selector::try_from(ls.clone()).map_err(|e| RulesError::InvalidLabelSelector {
        reason: e.to_string(),
    })
}

/// Compiles patterns anchored to the whole name (`^(?:p)$`), as the API documents.
fn compile_all(field: &'static str, patterns: &[String]) -> Result<Vec<Regex>, RulesError> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(&format!("^(?:{p})$")).map_err(|e| RulesError::InvalidNamePattern {
                field,
                pattern: p.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The verdict on one source object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Replicate it.
    Keep,
    /// Leave it out, and why (for logs and `resourceStatus`).
    Skip(SkipReason),
}

/// Why a source object is not replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Labelled or annotated `dr-syncer.io/ignore: "true"`.
    Ignored,
    /// A cluster CA ConfigMap (`kube-root-ca.crt`, see [`CLUSTER_CA_CONFIGMAPS`]).
    RootCaConfigMap,
    /// A service-account token Secret.
    ServiceAccountToken,
    /// Managed by a controller at the source (`ownerReferences[].controller: true`), which
    /// recreates it at the target from its owner: a ReplicaSet of a Deployment, a Job of a
    /// CronJob. PersistentVolumeClaims are never skipped for this: they hold the data (a
    /// StatefulSet's claims, owned under a retention policy, must exist at the target for
    /// the data copy and for the StatefulSet to adopt at failover).
    ControllerOwned {
        /// Kind of the owner.
        owner_kind: String,
        /// Name of the owner.
        owner_name: String,
    },
    /// Being deleted at the source.
    Terminating,
    /// Its labels do not match `objectSelector.labelSelector`.
    LabelSelector,
    /// Its name matches none of `objectSelector.includeNames`.
    NotIncluded,
    /// Its name matches one of `objectSelector.excludeNames`.
    Excluded,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ignored => write!(f, "marked {IGNORE}=true"),
            Self::RootCaConfigMap => write!(f, "the cluster CA ConfigMap is per cluster"),
            Self::ServiceAccountToken => write!(f, "service-account tokens are per cluster"),
            Self::ControllerOwned {
                owner_kind,
                owner_name,
            } => write!(f, "managed by {owner_kind} {owner_name}"),
            Self::Terminating => write!(f, "being deleted at the source"),
            Self::LabelSelector => write!(f, "labels do not match objectSelector.labelSelector"),
            Self::NotIncluded => write!(f, "name matches no objectSelector.includeNames"),
            Self::Excluded => write!(f, "name matches objectSelector.excludeNames"),
        }
    }
}

/// Whether a source object is replicated: the built-in exclusions first, then the user's
/// `objectSelector`.
pub fn select(obj: &DynamicObject, kind: &ResourceKind, filter: &ObjectFilter) -> Selection {
    match builtin_skip(obj, kind).or_else(|| filter_skip(obj, filter)) {
        Some(reason) => Selection::Skip(reason),
        None => Selection::Keep,
    }
}

/// The exclusions no configuration can turn off.
fn builtin_skip(obj: &DynamicObject, kind: &ResourceKind) -> Option<SkipReason> {
    if is_ignored(obj) {
        return Some(SkipReason::Ignored);
    }
    if is_root_ca(obj, kind) {
        return Some(SkipReason::RootCaConfigMap);
    }
    if is_service_account_token(obj, kind) {
        return Some(SkipReason::ServiceAccountToken);
    }
    if !kind.is("", "PersistentVolumeClaim")
        && let Some(reason) = controller_owner(obj)
    {
        return Some(reason);
    }
    obj.metadata
        .deletion_timestamp
        .as_ref()
        .map(|_| SkipReason::Terminating)
}

/// `dr-syncer.io/ignore: "true"` as a label (DR-Syncer) or an annotation (also accepted).
pub fn is_ignored(obj: &DynamicObject) -> bool {
    let truthy = |m: &Option<BTreeMap<String, String>>| {
        m.as_ref()
            .and_then(|m| m.get(IGNORE))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    truthy(&obj.metadata.labels) || truthy(&obj.metadata.annotations)
}

fn is_root_ca(obj: &DynamicObject, kind: &ResourceKind) -> bool {
    kind.is("", "ConfigMap")
        && obj
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| CLUSTER_CA_CONFIGMAPS.contains(&n))
}

fn is_service_account_token(obj: &DynamicObject, kind: &ResourceKind) -> bool {
    kind.is("", "Secret")
        && obj.data.get("type").and_then(|t| t.as_str()) == Some(SERVICE_ACCOUNT_TOKEN_TYPE)
}

fn controller_owner(obj: &DynamicObject) -> Option<SkipReason> {
    obj.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| SkipReason::ControllerOwned {
            owner_kind: o.kind.clone(),
            owner_name: o.name.clone(),
        })
}

/// The user's `objectSelector`: label selector, then include, then exclude.
fn filter_skip(obj: &DynamicObject, filter: &ObjectFilter) -> Option<SkipReason> {
    if let Some(sel) = &filter.label_selector {
        let empty = BTreeMap::new();
        if !sel.matches(obj.metadata.labels.as_ref().unwrap_or(&empty)) {
            return Some(SkipReason::LabelSelector);
        }
    }
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    if !filter.include_names.is_empty() && !filter.include_names.iter().any(|r| r.is_match(name)) {
        return Some(SkipReason::NotIncluded);
    }
    if filter.exclude_names.iter().any(|r| r.is_match(name)) {
        return Some(SkipReason::Excluded);
    }
    None
}

//! Resource types: what discovery found, and how the names users write in `resourceTypes`,
//! `namespaceScopedResources` and `transformations[].resource` resolve to kinds.
//!
//! DR-Syncer manifests name types loosely (`deployments`, `deploy`, `Deployment`,
//! `deployments.apps`); resolution accepts every spelling `kubectl` accepts for a namespaced
//! kind, so existing manifests keep working, and refuses the kinds that make no sense in a
//! DR copy (pods, events, ...) instead of copying them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList};
use kube::core::{ApiResource, GroupVersionKind};

use super::RulesError;

/// The types replicated when `resourceTypes` is empty or `*` (DR-Syncer's defaults).
pub const DEFAULT_RESOURCE_TYPES: [&str; 6] = [
    "configmaps",
    "secrets",
    "deployments",
    "services",
    "ingresses",
    "persistentvolumeclaims",
];

/// Kinds never copied, as `(resource.group, reason)`: they are created by controllers or the
/// API server from other objects, describe the source cluster's runtime, or are requests
/// rather than state. Copying them would start workloads at the DR site or fight controllers.
pub const NEVER_COPIED: &[(&str, &str)] = &[
    (
        "pods",
        "pods are created by their workloads; copy the workloads instead",
    ),
    ("events", "events describe the source cluster's history"),
    (
        "events.events.k8s.io",
        "events describe the source cluster's history",
    ),
    (
        "endpoints",
        "endpoints are maintained from Services by the target cluster",
    ),
    (
        "endpointslices.discovery.k8s.io",
        "endpoint slices are maintained from Services by the target cluster",
    ),
    (
        "leases.coordination.k8s.io",
        "leases are runtime locks of the source cluster",
    ),
    (
        "controllerrevisions.apps",
        "controller revisions are history kept by workload controllers",
    ),
    ("bindings", "bindings are scheduling requests, not state"),
    (
        "localsubjectaccessreviews.authorization.k8s.io",
        "access reviews are requests, not state",
    ),
    (
        "tokenreviews.authentication.k8s.io",
        "token reviews are requests, not state",
    ),
    (
        "csistoragecapacities.storage.k8s.io",
        "storage capacities describe the source cluster's nodes",
    ),
];

/// API groups never copied, whole: metrics are runtime data, and DR-Syncer's own objects
/// configure the source side (copying a NamespaceMapping would make the DR site replicate).
pub const NEVER_COPIED_GROUPS: &[(&str, &str)] = &[
    (
        "metrics.k8s.io",
        "metrics describe the source cluster's runtime",
    ),
    (
        "dr-syncer.io",
        "DR-Syncer's own configuration is not replicated by itself",
    ),
];

/// A kind the source cluster serves, as discovery reported it.
///
/// Carries every name a user may use for it, so resolution needs no further lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceKind {
    /// API group, `""` for the core group.
    pub group: String,
    /// Served version (the preferred one).
    pub version: String,
    /// `Deployment`.
    pub kind: String,
    /// `deployments`: the URL path segment.
    pub plural: String,
    /// `deployment`.
    pub singular: String,
    /// `deploy`.
    pub short_names: Vec<String>,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs the API server allows (`list`, `watch`, `create`, ...).
    pub verbs: Vec<String>,
}

impl ResourceKind {
    /// Builds a kind from one entry of a discovery `APIResourceList`.
    ///
    /// Returns `None` for subresources (`deployments/scale`), which are not kinds of their own.
    pub fn from_discovery(group_version: &str, resource: &APIResource) -> Option<Self> {
        if resource.name.contains('/') {
            return None;
        }
        let (list_group, list_version) = split_group_version(group_version);
        let group = resource.group.clone().unwrap_or(list_group);
        let version = resource.version.clone().unwrap_or(list_version);
        let singular = if resource.singular_name.is_empty() {
            resource.kind.to_lowercase()
        } else {
            resource.singular_name.clone()
        };
        Some(Self {
            group,
            version,
            kind: resource.kind.clone(),
            plural: resource.name.clone(),
            singular,
            short_names: resource.short_names.clone().unwrap_or_default(),
            namespaced: resource.namespaced,
            verbs: resource.verbs.clone(),
        })
    }

    /// All kinds of one discovery `APIResourceList` (subresources left out).
    pub fn from_discovery_list(list: &APIResourceList) -> Vec<Self> {
        list.resources
            .iter()
            .filter_map(|r| Self::from_discovery(&list.group_version, r))
            .collect()
    }

    /// `apps/v1`, or `v1` for the core group: the `apiVersion` of objects of this kind.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `configmaps` for the core group: the stable key of a kind
    /// (also the key of `immutableResourceConfig.resourceOverrides`).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kube `ApiResource` to build a dynamic `Api` with.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.group, &self.version, &self.kind),
            &self.plural,
        )
    }

    /// Whether the API server allows `verb` on this kind.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// Whether this is `kind` of `group` (e.g. `("apps", "Deployment")`).
    pub fn is(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }

    /// Why this kind is never copied, if it is not.
    pub fn never_copied_reason(&self) -> Option<&'static str> {
        let key = self.group_resource();
        NEVER_COPIED
            .iter()
            .find(|(name, _)| *name == key)
            .or_else(|| NEVER_COPIED_GROUPS.iter().find(|(g, _)| *g == self.group))
            .map(|(_, reason)| *reason)
    }

    /// Whether a user-written name (`deploy`, `Deployment`, `deployments.apps`) names this
    /// kind, with the same spelling rules as [`resolve_name`] but without looking at other
    /// kinds (for keyed settings such as `immutableResourceConfig.resourceOverrides`).
    pub fn matches_name(&self, name: &str) -> bool {
        let name = name.trim();
        match name.split_once('.') {
            Some((resource, group)) => self.answers_to(resource) && self.in_group(group),
            None => self.answers_to(name),
        }
    }

    /// Whether `name` (without group) is one of this kind's names, case-insensitively, as
    /// kubectl accepts them: plural, singular, short name or Kind.
    fn answers_to(&self, name: &str) -> bool {
        self.plural.eq_ignore_ascii_case(name)
            || self.singular.eq_ignore_ascii_case(name)
            || self.kind.eq_ignore_ascii_case(name)
            || self
                .short_names
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
    }

    /// Whether the part after the resource name designates this kind's group, as kubectl
    /// reads it: the group (`deploy.apps`), its leading segments (`ing.networking`), or a
    /// version and then the group (`deployments.v1.apps`, `configmaps.v1`).
    fn in_group(&self, spec: &str) -> bool {
        if self.group_is(spec) {
            return true;
        }
        match spec.split_once('.') {
            Some((version, group)) => {
                version.eq_ignore_ascii_case(&self.version) && self.group_is(group)
            }
            None => self.group.is_empty() && spec.eq_ignore_ascii_case(&self.version),
        }
    }

    /// Whether the group is `group` or starts with it followed by a dot.
    fn group_is(&self, group: &str) -> bool {
        self.group.eq_ignore_ascii_case(group)
            || (self
                .group
                .get(..group.len())
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case(group))
                && self.group.as_bytes().get(group.len()) == Some(&b'.'))
    }
}

fn split_group_version(group_version: &str) -> (String, String) {
    match group_version.split_once('/') {
        Some((group, version)) => (group.to_owned(), version.to_owned()),
        None => (String::new(), group_version.to_owned()),
    }
}

/// Resolves one user-written name to the single discovered kind it means.
///
/// `name` may carry a group after the first dot (`deployments.apps`, `widgets.example.com`).
/// Without a group and with several matches, the core group wins, then the built-in groups
/// (no dot, or ending in `.k8s.io`), as kubectl does; a tie left after that is an error
/// listing the candidates, never a guess.
pub fn resolve_name<'a>(
    name: &str,
    discovered: &'a [ResourceKind],
) -> Result<&'a ResourceKind, RulesError> {
    let name = name.trim();
    let (resource, group) = match name.split_once('.') {
        Some((resource, group)) => (resource, Some(group)),
        None => (name, None),
    };
    let mut matches: Vec<&ResourceKind> = discovered
        .iter()
        .filter(|k| k.answers_to(resource))
        .filter(|k| group.is_none_or(|g| k.in_group(g)))
        .collect();
    dedup_group_kind(&mut matches);
    if matches.len() > 1 {
        narrow_by_group_priority(&mut matches);
    }
    match matches.as_slice() {
        [] => Err(RulesError::UnknownResourceType {
            name: name.to_owned(),
        }),
        [one] => Ok(*one),
        many => Err(RulesError::AmbiguousResourceType {
            name: name.to_owned(),
            candidates: many
                .iter()
                .map(|k| k.group_resource())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Keeps the first entry of each (group, kind): discovery lists the preferred version first.
fn dedup_group_kind(matches: &mut Vec<&ResourceKind>) {
    let mut seen = Vec::new();
    matches.retain(|k| {
        let key = (k.group.clone(), k.kind.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
}

/// Priority of a group when a bare name matches several: core, then built-in, then others.
fn group_priority(group: &str) -> u8 {
    if group.is_empty() {
        0
    } else if !group.contains('.') || group.ends_with(".k8s.io") {
        1
    } else {
        2
    }
}

fn narrow_by_group_priority(matches: &mut Vec<&ResourceKind>) {
    if let Some(best) = matches.iter().map(|k| group_priority(&k.group)).min() {
        matches.retain(|k| group_priority(&k.group) == best);
    }
}

/// Resolves one name and checks the kind can be replicated: namespaced, listable, not on
/// the never-copy list.
pub fn resolve_replicable<'a>(
    name: &str,
    discovered: &'a [ResourceKind],
) -> Result<&'a ResourceKind, RulesError> {
    let kind = resolve_name(name, discovered)?;
    if !kind.namespaced {
        return Err(RulesError::ClusterScoped {
            name: name.to_owned(),
            resource: kind.group_resource(),
        });
    }
    if let Some(reason) = kind.never_copied_reason() {
        return Err(RulesError::NeverCopied {
            name: name.to_owned(),
            resource: kind.group_resource(),
            reason,
        });
    }
    if !kind.supports("list") {
        return Err(RulesError::NotListable {
            name: name.to_owned(),
            resource: kind.group_resource(),
        });
    }
    Ok(kind)
}

/// The kinds a mapping replicates: `resourceTypes` (DR-Syncer defaults when empty or `*`)
/// plus `namespaceScopedResources` (`*`: every listable namespaced kind that is not on the
/// never-copy list), each once, in a stable order.
pub fn resolve_kinds(
    spec: &dr_syncer_crds::NamespaceMappingSpec,
    discovered: &[ResourceKind],
) -> Result<Vec<ResourceKind>, RulesError> {
    resolve_kinds_with_defaults(spec, &[], discovered)
}

/// [`resolve_kinds`], with the source RemoteCluster's `defaultResourceTypes` standing in
/// for the built-in defaults when they are not empty.
pub fn resolve_kinds_with_defaults(
    spec: &dr_syncer_crds::NamespaceMappingSpec,
    cluster_defaults: &[String],
    discovered: &[ResourceKind],
) -> Result<Vec<ResourceKind>, RulesError> {
    let mut out: Vec<ResourceKind> = Vec::new();
    for name in requested_types(&spec.resource_types, cluster_defaults) {
        push_unique(&mut out, resolve_replicable(&name, discovered)?);
    }
    for name in &spec.namespace_scoped_resources {
        if name.trim() == "*" {
            for kind in discovered.iter().filter(|k| is_wildcard_candidate(k)) {
                push_unique(&mut out, kind);
            }
        } else {
            push_unique(&mut out, resolve_replicable(name, discovered)?);
        }
    }
    Ok(out)
}

/// The names to resolve for `resourceTypes`: the list itself, or the defaults when it is
/// empty or only `*` (a `*` among other names also stands for the defaults).
fn requested_types(resource_types: &[String], cluster_defaults: &[String]) -> Vec<String> {
    let defaults: Vec<String> = if cluster_defaults.is_empty() {
        DEFAULT_RESOURCE_TYPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        cluster_defaults.to_vec()
    };
    if resource_types.is_empty() {
        return defaults;
    }
    let mut out = Vec::new();
    for name in resource_types {
        if name.trim() == "*" {
            out.extend(defaults.iter().cloned());
        } else {
            out.push(name.clone());
        }
    }
    out
}

/// Whether `*` in `namespaceScopedResources` includes this kind.
fn is_wildcard_candidate(kind: &ResourceKind) -> bool {
    kind.namespaced && kind.supports("list") && kind.never_copied_reason().is_none()
}

fn push_unique(out: &mut Vec<ResourceKind>, kind: &ResourceKind) {
    if !out
        .iter()
        .any(|k| k.group == kind.group && k.kind == kind.kind)
    {
        out.push(kind.clone());
    }
}

/// Names (`plural.group`) of the CustomResourceDefinitions that may define the given
/// kinds, for `syncCRDs`: every kind whose group has a dot (built-in groups such as `apps`
/// have none). Some dotted groups are built in or aggregated (`networking.k8s.io`): the
/// runtime gets each CRD by name and skips the ones that do not exist.
pub fn crd_names(kinds: &[ResourceKind]) -> Vec<String> {
    kinds
        .iter()
        .filter(|k| k.group.contains('.'))
        .map(ResourceKind::group_resource)
        .collect()
}

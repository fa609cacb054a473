//! The one error type of the replication rules.
//!
//! Every variant names what the user wrote (a resource type, a regex, a patch operation) so
//! that the runtime can put the message as-is into a condition or an event.

/// Why a replication rule could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A name in `resourceTypes`, `namespaceScopedResources` or `transformations[].resource`
    /// matches no kind the source cluster serves.
    #[error("unknown resource type {name:?}: the source cluster serves no such namespaced kind")]
    UnknownResourceType {
        /// The name as written in the spec.
        name: String,
    },
    /// A name matches kinds of several API groups; the user must add the group.
    #[error("ambiguous resource type {name:?}: matches {candidates}; write it as resource.group")]
    AmbiguousResourceType {
        /// The name as written in the spec.
        name: String,
        /// The matching kinds, as `resource.group`, comma separated.
        candidates: String,
    },
    /// A name resolves to a kind that is cluster-scoped, so it has no place in a namespace.
    #[error(
        "resource type {name:?} ({resource}) is cluster-scoped; only namespaced kinds are replicated"
    )]
    ClusterScoped {
        /// The name as written in the spec.
        name: String,
        /// The resolved `resource.group`.
        resource: String,
    },
    /// A name resolves to a kind that must never be copied (pods, events, ...).
    #[error("resource type {name:?} ({resource}) is never replicated: {reason}")]
    NeverCopied {
        /// The name as written in the spec.
        name: String,
        /// The resolved `resource.group`.
        resource: String,
        /// Why copying it makes no sense.
        reason: &'static str,
    },
    /// A name resolves to a kind that cannot be listed, so it cannot be read at the source.
    #[error("resource type {name:?} ({resource}) cannot be listed, so it cannot be replicated")]
    NotListable {
        /// The name as written in the spec.
        name: String,
        /// The resolved `resource.group`.
        resource: String,
    },
    /// An `objectSelector` name pattern is not a valid regular expression.
    #[error(
        "objectSelector.{field} pattern {pattern:?} is not a valid regular expression: {reason}"
    )]
    InvalidNamePattern {
        /// `includeNames` or `excludeNames`.
        field: &'static str,
        /// The pattern as written.
        pattern: String,
        /// What the regex parser said.
        reason: String,
    },
    /// The `objectSelector.labelSelector` cannot be turned into a selector.
    #[error("objectSelector.labelSelector is invalid: {reason}")]
    InvalidLabelSelector {
        /// What the selector parser said.
        reason: String,
    },
    /// A JSON-Patch of `transformations` failed on an object.
    #[error("{0}")]
    PatchFailed(Box<PatchFailure>),
    /// A transformation's patch operations cannot be parsed as RFC 6902.
    #[error("transformations[{index}] ({resource}) is not a valid JSON-Patch: {reason}")]
    InvalidPatch {
        /// Index in `transformations`.
        index: usize,
        /// The transformation's `resource`.
        resource: String,
        /// What the parser said.
        reason: String,
    },
    /// A transformation changed what identifies the object (name, namespace, kind,
    /// apiVersion); writing it would touch an object the mapping does not own.
    #[error(
        "transformation of NamespaceMapping {mapping} changed the identity of {kind} {object}: {field} may not be patched"
    )]
    IdentityChanged {
        /// The mapping, as `namespace/name`.
        mapping: String,
        /// Kind of the object.
        kind: String,
        /// `namespace/name` of the object before the patch.
        object: String,
        /// The field that changed.
        field: &'static str,
    },
    /// The `dr-syncer.io/scale-override` value is not a non-negative integer.
    #[error(
        "{kind} {object}: annotation dr-syncer.io/scale-override={value:?} is not a non-negative integer"
    )]
    InvalidScaleOverride {
        /// Kind of the workload.
        kind: String,
        /// `namespace/name` of the source object.
        object: String,
        /// The value found.
        value: String,
    },
    /// A source object cannot be read as the kind it claims to be.
    #[error("{kind} {object}: {reason}")]
    MalformedObject {
        /// Kind of the object.
        kind: String,
        /// `namespace/name` of the object.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// A duration field of the spec is not a valid Go duration.
    #[error("{field}: {reason}")]
    InvalidDuration {
        /// The field, e.g. `immutableResourceConfig.drainTimeout`.
        field: &'static str,
        /// What the parser said.
        reason: String,
    },
}

/// Details of a failed JSON-Patch (boxed in [`RulesError::PatchFailed`] to keep the error
/// small).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "transformation of NamespaceMapping {mapping} failed on {kind} {object}: operation #{operation} ({op} {path}): {reason}"
)]
pub struct PatchFailure {
    /// The mapping, as `namespace/name`.
    pub mapping: String,
    /// Kind of the object.
    pub kind: String,
    /// `namespace/name` of the object as it would be written.
    pub object: String,
    /// Index of the failing operation in the transformation's `patch` list.
    pub operation: usize,
    /// The operation name (`add`, `replace`, ...).
    pub op: String,
    /// The operation's `path`.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

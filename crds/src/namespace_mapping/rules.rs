//! The rules applied to each replicated object: immutable-field handling, failure handling,
//! object selection and transformations.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::common::{DURATION_PATTERN, LabelSelector};

/// Handling of changes to immutable fields at the destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImmutableResourceConfig {
    /// Handling for all resource types without an override. Default: NoChange.
    #[serde(default)]
    pub default_handling: ImmutableResourceHandling,
    /// Handling per resource type, keyed by `resource.group` (`statefulsets.apps`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_overrides: BTreeMap<String, ImmutableResourceHandling>,
    /// How long to wait for pods to drain with RecreateWithPodDrain (Go duration).
    /// Default: 5m.
    #[serde(default = "default_drain_timeout")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub drain_timeout: String,
    /// How long to wait for a forced deletion with ForceUpdate (Go duration). Default: 2m.
    #[serde(default = "default_force_delete_timeout")]
    #[schemars(length(max = 64), regex(pattern = DURATION_PATTERN))]
    pub force_delete_timeout: String,
}

fn default_drain_timeout() -> String {
    "5m".to_owned()
}

fn default_force_delete_timeout() -> String {
    "2m".to_owned()
}

/// What to do when a change touches an immutable field.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ImmutableResourceHandling {
    /// Leave the destination object as it is and report it.
    #[default]
    NoChange,
    /// Delete and recreate the destination object.
    Recreate,
    /// Scale workloads using it to zero, wait for their pods to go, then recreate.
    RecreateWithPodDrain,
    /// Apply only the mutable fields.
    PartialUpdate,
    /// Delete with cascading, force if needed, then recreate.
    ForceUpdate,
}

/// DR-Syncer (Go) failure policy per failure class.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureHandlingConfig {
    /// Policy for failures without a more specific entry. Default: RetryAndWait.
    #[serde(default = "default_retry_and_wait")]
    pub default_mode: FailureHandlingMode,
    /// Policy when a mapped storage class is missing. Default: WaitForNextSync.
    #[serde(default = "default_wait_for_next_sync")]
    pub storage_class_not_found: FailureHandlingMode,
    /// Policy when a resource type does not exist. Default: FailFast.
    #[serde(default = "default_fail_fast")]
    pub resource_not_found: FailureHandlingMode,
    /// Policy when the destination rejects an object. Default: FailFast.
    #[serde(default = "default_fail_fast")]
    pub validation_failure: FailureHandlingMode,
    /// Policy on network errors. Default: RetryAndWait.
    #[serde(default = "default_retry_and_wait")]
    pub network_error: FailureHandlingMode,
}

fn default_retry_and_wait() -> FailureHandlingMode {
    FailureHandlingMode::RetryAndWait
}

fn default_wait_for_next_sync() -> FailureHandlingMode {
    FailureHandlingMode::WaitForNextSync
}

fn default_fail_fast() -> FailureHandlingMode {
    FailureHandlingMode::FailFast
}

/// A DR-Syncer (Go) failure policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FailureHandlingMode {
    /// Retry with backoff, then wait for the next trigger.
    RetryAndWait,
    /// Retry with backoff until success or `maxRetries`.
    RetryOnly,
    /// Do not retry; wait for the next trigger.
    WaitForNextSync,
    /// Fail at once.
    FailFast,
}

/// Extension: which source objects are replicated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSelector {
    /// Only objects whose labels match. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Only objects whose name matches at least one of these regular expressions (Rust
    /// `regex` syntax, matched against the whole name). Default: all names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub include_names: Vec<String>,
    /// Skip objects whose name matches any of these regular expressions (Rust `regex` syntax,
    /// whole name). Applied after `includeNames`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub exclude_names: Vec<String>,
}

/// Extension: a JSON-Patch applied to every replicated object of one resource type.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transformation {
    /// Resource type the patch applies to, in `resourceTypes` syntax (`deployments`,
    /// `Deployment`, `widgets.example.com`).
    #[schemars(length(min = 1, max = 253))]
    pub resource: String,
    /// RFC 6902 operations, applied in order to the object as it will be written (namespace
    /// already remapped). A failing `test` skips the patch for that object.
    #[schemars(length(min = 1, max = 64))]
    pub patch: Vec<JsonPatchOperation>,
}

/// One RFC 6902 JSON-Patch operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
// No CEL rule for "add/replace/test need a value": `value` is free-form
// (x-kubernetes-preserve-unknown-fields without a type), and such fields are invisible to
// CEL, so the API server would refuse the CRD. `Transformation::json_patch` checks it.
#[x_kube(validation = Rule::new("!(self.op in ['move', 'copy']) || has(self.from)")
    .message("transformations[].patch[].from is required for move and copy operations")
    .field_path(".from"))]
pub struct JsonPatchOperation {
    /// Operation: add, remove, replace, move, copy or test.
    pub op: JsonPatchOp,
    /// JSON Pointer (RFC 6901) to the target location, e.g. `/spec/replicas` or
    /// `/metadata/labels/tier`.
    #[schemars(length(max = 1024), regex(pattern = JSON_POINTER_PATTERN))]
    pub path: String,
    /// Source location of move and copy (JSON Pointer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = JSON_POINTER_PATTERN))]
    pub from: Option<String>,
    /// Value of add, replace and test: any JSON value. Required for those operations; the
    /// controller reports a patch without one in the mapping's conditions (the API server
    /// cannot check inside free-form values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub value: Option<serde_json::Value>,
}

impl Transformation {
    /// The operations as an RFC 6902 patch, ready to apply. Fails when an operation lacks
    /// what its kind needs (`value` for add/replace/test, `from` for move/copy).
    pub fn json_patch(&self) -> Result<json_patch::Patch, TransformationError> {
        let operations =
            serde_json::to_value(&self.patch).map_err(|source| TransformationError {
                resource: self.resource.clone(),
                source,
            })?;
        serde_json::from_value(operations).map_err(|source| TransformationError {
            resource: self.resource.clone(),
            source,
        })
    }
}

/// A transformation whose operations do not form a valid RFC 6902 patch.
#[derive(Debug, thiserror::Error)]
#[error("transformations for {resource}: invalid JSON-Patch: {source}")]
pub struct TransformationError {
    /// The transformation's `resource`.
    pub resource: String,
    /// What is wrong with the operations.
    pub source: serde_json::Error,
}

/// An RFC 6902 operation name.
// maxLength bounds the cost of the CEL rules testing it, which run once per list item.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(extend("maxLength" = 8))]
pub enum JsonPatchOp {
    /// Insert a value.
    Add,
    /// Delete the value at `path`.
    Remove,
    /// Replace the value at `path`.
    Replace,
    /// Move the value at `from` to `path`.
    Move,
    /// Copy the value at `from` to `path`.
    Copy,
    /// Require the value at `path` to equal `value`.
    Test,
}

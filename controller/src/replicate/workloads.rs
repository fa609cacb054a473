//! Workloads at the DR site: Deployments and StatefulSets are written scaled down (to 0, or
//! to the `dr-syncer.io/scale-override` count), with the source count kept in
//! `dr-syncer.io/original-replicas` so a failover can scale them back up.
//!
//! CronJobs and Jobs are the same risk in another shape (they would start work at the DR
//! site on their own), so with `scaleToZero` they are written suspended, the source value
//! kept in `dr-syncer.io/original-suspend`; a `dr-syncer.io/scale-override` of 1 or more
//! keeps them active.
//!
//! Jobs lose the selector and labels their controller generated from the source uid, which
//! the target API server would reject.

use std::collections::BTreeMap;

use dr_syncer_crds::annotations::{ORIGINAL_REPLICAS, SCALE_OVERRIDE};
use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::{ResourceKind, RulesError, first_value, object_key};

/// Replicas Kubernetes assumes when `spec.replicas` is absent.
const DEFAULT_REPLICAS: i64 = 1;

/// Whether the kind is one whose replicas DR-Syncer scales at the target.
pub fn is_scaled_workload(kind: &ResourceKind) -> bool {
    kind.is("apps", "Deployment") || kind.is("apps", "StatefulSet")
}

/// The replicas to write at the target: the override when the source object carries one,
/// else 0 with `scaleToZero`, else the source count.
pub fn target_replicas(
    source_replicas: i64,
    scale_override: Option<i64>,
    scale_to_zero: bool,
) -> i64 {
    match scale_override {
        Some(n) => n,
        None if scale_to_zero => 0,
        None => source_replicas,
    }
}

/// Reads `dr-syncer.io/scale-override` (annotation, or label as a fallback) from a source
/// object; a value that is not a non-negative integer is an error, not a silent 0.
pub fn scale_override(obj: &DynamicObject, kind: &ResourceKind) -> Result<Option<i64>, RulesError> {
    let meta = &obj.metadata;
    let value = first_value(
        [meta.annotations.as_ref(), meta.labels.as_ref()],
        SCALE_OVERRIDE,
    );
    let Some(value) = value else {
        return Ok(None);
    };
    match value.trim().parse::<i64>() {
        Ok(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n)),
        _ => Err(RulesError::InvalidScaleOverride {
            kind: kind.kind.clone(),
            object: object_key(obj),
            value: value.clone(),
        }),
    }
}

/// Scales a Deployment/StatefulSet (already stripped) and records the source count.
///
/// Returns the source replica count when the target count differs from it (what
/// `status.deploymentScales` lists), `None` when nothing was scaled or the kind is not a
/// scaled workload.
pub fn scale_workload(
    obj: &mut DynamicObject,
    kind: &ResourceKind,
    override_replicas: Option<i64>,
    scale_to_zero: bool,
) -> Result<Option<i32>, RulesError> {
    if !is_scaled_workload(kind) {
        return Ok(None);
    }
    let source = source_replicas(obj, kind)?;
    let target = target_replicas(source, override_replicas, scale_to_zero);
    obj.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ORIGINAL_REPLICAS.to_owned(), source.to_string());
    set_spec_field(obj, "replicas", json!(target));
    if target == source {
        return Ok(None);
    }
    Ok(i32::try_from(source).ok())
}

fn source_replicas(obj: &DynamicObject, kind: &ResourceKind) -> Result<i64, RulesError> {
    match obj.data.pointer("/spec/replicas") {
        None | Some(Value::Null) => Ok(DEFAULT_REPLICAS),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| RulesError::MalformedObject {
                kind: kind.kind.clone(),
                object: object_key(obj),
                reason: format!("spec.replicas is {v}, not a non-negative integer"),
            }),
    }
}

fn set_spec_field(obj: &mut DynamicObject, field: &str, value: Value) {
    if !obj.data.is_object() {
        obj.data = json!({});
    }
    if let Some(root) = obj.data.as_object_mut() {
        let spec = root.entry("spec").or_insert_with(|| json!({}));
        if let Some(spec) = spec.as_object_mut() {
            spec.insert(field.to_owned(), value);
        }
    }
}

/// Written on destination CronJobs/Jobs: the source's `spec.suspend` (`"true"`/`"false"`).
pub const ORIGINAL_SUSPEND: &str = "dr-syncer.io/original-suspend";

/// Whether the kind is one DR-Syncer suspends at the target.
pub fn is_suspended_batch(kind: &ResourceKind) -> bool {
    kind.is("batch", "CronJob") || kind.is("batch", "Job")
}

/// Suspends a CronJob/Job at the target when `scaleToZero` is on and no scale override of
/// 1 or more keeps it active; records the source value. Returns whether it was suspended
/// by this rule (the source was not suspended already).
pub fn suspend_batch(
    obj: &mut DynamicObject,
    kind: &ResourceKind,
    override_replicas: Option<i64>,
    scale_to_zero: bool,
) -> bool {
    if !is_suspended_batch(kind) {
        return false;
    }
    let source = obj.data.pointer("/spec/suspend") == Some(&Value::Bool(true));
    obj.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ORIGINAL_SUSPEND.to_owned(), source.to_string());
    let keep_active = override_replicas.is_some_and(|n| n > 0);
    if !scale_to_zero || keep_active || source {
        return false;
    }
    set_spec_field(obj, "suspend", Value::Bool(true));
    true
}

/// Labels the Job controller derives from the Job's uid; copied, they would point the
/// target Job at pods of a uid that does not exist there, which the API server rejects.
pub const JOB_GENERATED_LABELS: &[&str] = &[
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
];

/// Removes a Job's generated selector and template labels (unless the user set
/// `manualSelector`, in which case the selector is theirs).
pub fn strip_job(obj: &mut DynamicObject, kind: &ResourceKind) {
    if !kind.is("batch", "Job") {
        return;
    }
    let manual = obj.data.pointer("/spec/manualSelector") == Some(&Value::Bool(true));
    if manual {
        return;
    }
    if let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("selector");
    }
    if let Some(labels) = obj
        .data
        .pointer_mut("/spec/template/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        for key in JOB_GENERATED_LABELS {
            labels.remove(*key);
        }
    }
    if let Some(labels) = obj.metadata.labels.as_mut() {
        for key in JOB_GENERATED_LABELS {
            labels.remove(*key);
        }
    }
}

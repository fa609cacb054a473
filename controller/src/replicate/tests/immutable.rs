use std::time::Duration;

use kube::core::Status;
use serde_json::{Value, json};

use super::fixtures::{kind, obj, spec};
use crate::replicate::immutable::{ImmutableAction, decide, drop_fields, immutable_conflict};

fn status(v: Value) -> Status {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("bad status: {e}"))
}

#[test]
fn immutable_conflicts_are_recognised_from_real_api_errors() {
    let deployment_selector = status(
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid",
        "message": "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}}: field is immutable",
        "details": {"name": "web", "group": "apps", "kind": "Deployment", "causes": [
            {"reason": "FieldValueInvalid", "message": "Invalid value: v1.LabelSelector{...}: field is immutable", "field": "spec.selector"}]}}),
    );
    let sts = status(
        json!({"status": "Failure", "code": 422, "reason": "Invalid",
        "message": "StatefulSet.apps \"db\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        "details": {"name": "db", "group": "apps", "kind": "StatefulSet", "causes": [
            {"reason": "FieldValueForbidden", "message": "Forbidden: updates to statefulset spec for fields other than 'replicas', ... are forbidden", "field": "spec"}]}}),
    );
    let pvc = status(
        json!({"status": "Failure", "code": 422, "reason": "Invalid",
        "message": "PersistentVolumeClaim \"data\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"}),
    );
    let other_invalid = status(
        json!({"status": "Failure", "code": 422, "reason": "Invalid",
        "message": "ConfigMap \"x\" is invalid: metadata.name: Invalid value: \"X\": a lowercase RFC 1123 subdomain must consist of...",
        "details": {"causes": [{"reason": "FieldValueInvalid", "message": "Invalid value", "field": "metadata.name"}]}}),
    );
    let conflict = status(
        json!({"status": "Failure", "code": 409, "reason": "Conflict", "message": "field is immutable"}),
    );

    let got = immutable_conflict(&deployment_selector).map(|c| c.fields);
    assert_eq!(got, Some(vec!["spec.selector".to_string()]));
    assert_eq!(
        immutable_conflict(&sts).map(|c| c.fields),
        Some(vec!["spec".to_string()])
    );
    assert_eq!(immutable_conflict(&pvc).map(|c| c.fields), Some(vec![]));
    assert_eq!(immutable_conflict(&other_invalid), None);
    assert_eq!(immutable_conflict(&conflict), None, "only 422 Invalid");
}

#[test]
fn handling_per_kind_with_overrides_and_durations() {
    let cfg_spec = spec(
        json!({"sourceNamespace": "shop", "immutableResourceConfig": {
        "defaultHandling": "Recreate",
        "resourceOverrides": {"statefulsets.apps": "RecreateWithPodDrain", "persistentvolumeclaims": "NoChange",
            "Service": "PartialUpdate", "jobs.batch": "ForceUpdate", "cj": "PartialUpdate", "deploy": "NoChange",
            "deployments.apps": "Recreate"},
        "drainTimeout": "90s", "forceDeleteTimeout": "1m"}}),
    );
    let cfg = cfg_spec.immutable_resource_config.as_ref();
    let table = [
        // The exact resource.group key wins over the short name "deploy".
        ("deployments.apps", ImmutableAction::Recreate),
        ("cronjobs.batch", ImmutableAction::PartialUpdate),
        ("configmaps", ImmutableAction::Recreate),
        (
            "statefulsets.apps",
            ImmutableAction::RecreateWithPodDrain {
                drain_timeout: Duration::from_secs(90),
            },
        ),
        ("persistentvolumeclaims", ImmutableAction::Report),
        ("services", ImmutableAction::PartialUpdate),
        (
            "jobs.batch",
            ImmutableAction::ForceUpdate {
                force_delete_timeout: Duration::from_secs(60),
            },
        ),
    ];
    for (k, want) in table {
        assert_eq!(decide(&kind(k), cfg), Ok(want), "{k}");
    }
    assert_eq!(
        decide(&kind("deployments.apps"), None),
        Ok(ImmutableAction::Report),
        "NoChange by default"
    );
    let defaults = spec(
        json!({"sourceNamespace": "shop", "immutableResourceConfig": {"defaultHandling": "RecreateWithPodDrain"}}),
    );
    assert_eq!(
        decide(
            &kind("deployments.apps"),
            defaults.immutable_resource_config.as_ref()
        ),
        Ok(ImmutableAction::RecreateWithPodDrain {
            drain_timeout: Duration::from_secs(300)
        })
    );
}

#[test]
fn partial_update_drops_the_conflicting_fields() {
    let mut o = obj(
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 0, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "2Gi"}}}}]}}),
    );
    let removed = drop_fields(
        &mut o,
        &[
            "spec.selector".into(),
            "spec.volumeClaimTemplates[0].spec.resources".into(),
            "spec.nothing.here".into(),
        ],
    );
    assert!(removed);
    assert_eq!(
        o.data.get("spec"),
        Some(&json!({"replicas": 0, "serviceName": "db"}))
    );
    assert!(
        !drop_fields(&mut o, &["spec.selector".into()]),
        "nothing left to drop"
    );
}

#[test]
fn partial_update_of_a_whole_spec_keeps_the_mutable_fields() {
    let mut sts = obj(
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 0, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "podManagementPolicy": "Parallel",
            "template": {"metadata": {"labels": {"app": "db"}}}, "updateStrategy": {"type": "RollingUpdate"},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}}),
    );
    assert!(drop_fields(&mut sts, &["spec".into()]));
    assert_eq!(
        sts.data.get("spec"),
        Some(
            &json!({"replicas": 0, "template": {"metadata": {"labels": {"app": "db"}}}, "updateStrategy": {"type": "RollingUpdate"}})
        )
    );
    let mut pvc = obj(
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "2Gi"}}}}),
    );
    assert!(drop_fields(&mut pvc, &["spec".into()]));
    assert_eq!(
        pvc.data.get("spec"),
        Some(&json!({"resources": {"requests": {"storage": "2Gi"}}}))
    );
    // Kinds without a known list lose the whole named field.
    let mut svc = obj(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": []}}),
    );
    assert!(drop_fields(&mut svc, &["spec".into()]));
    assert_eq!(svc.data.get("spec"), None);
}

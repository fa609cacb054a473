use serde_json::{Value, json};

use super::fixtures::{discovered, kind, obj, spec};
use kube::core::DynamicObject;

use crate::replicate::patches::{CompiledPatch, apply_patches, compile_patches};
use crate::replicate::{MappingId, RulesError};

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop-dr", "labels": {"app": "web"}},
        "spec": {"replicas": 0, "template": {"spec": {"containers": [{"name": "web", "image": "registry.prod/web:1.4"}]}}}})
}

fn compiled(transformations: Value) -> Vec<CompiledPatch> {
    let s = spec(json!({"sourceNamespace": "shop", "transformations": transformations}));
    compile_patches(&s.transformations, &discovered()).unwrap_or_else(|e| panic!("{e}"))
}

/// Applies `patches` to a Deployment of the mapping `dr/shop`.
fn patch_deployment(
    o: &mut DynamicObject,
    patches: &[CompiledPatch],
) -> Result<Vec<usize>, RulesError> {
    apply_patches(
        o,
        &kind("deployments.apps"),
        patches,
        &MappingId::new("dr", "shop"),
    )
}

#[test]
fn patches_apply_in_order_to_their_kind_only() {
    let patches = compiled(json!([
        {"resource": "deployments", "patch": [
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.dr/web:1.4"},
            {"op": "add", "path": "/metadata/labels/site", "value": "dr"}]},
        {"resource": "Deployment", "patch": [
            {"op": "copy", "from": "/metadata/labels/site", "path": "/metadata/labels/copied"}]},
        {"resource": "cm", "patch": [{"op": "add", "path": "/data/x", "value": "1"}]},
    ]));
    let mapping = MappingId::new("dr", "shop");
    let mut o = obj(deployment());
    let applied = apply_patches(&mut o, &kind("deployments.apps"), &patches, &mapping);
    assert_eq!(applied, Ok(vec![0, 1]));
    assert_eq!(
        o.data.pointer("/spec/template/spec/containers/0/image"),
        Some(&json!("registry.dr/web:1.4"))
    );
    let labels = o.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        (
            labels.get("site").map(String::as_str),
            labels.get("copied").map(String::as_str)
        ),
        (Some("dr"), Some("dr"))
    );
    assert_eq!(
        o.data.pointer("/data"),
        None,
        "the ConfigMap patch is not for Deployments"
    );
}

#[test]
fn a_failing_test_skips_that_transformation_atomically() {
    let patches = compiled(json!([
        {"resource": "deployments.apps", "patch": [
            {"op": "add", "path": "/metadata/labels/canary", "value": "yes"},
            {"op": "test", "path": "/metadata/name", "value": "api"},
            {"op": "replace", "path": "/spec/replicas", "value": 1}]},
        {"resource": "deployments.apps", "patch": [
            {"op": "test", "path": "/metadata/name", "value": "web"},
            {"op": "replace", "path": "/spec/replicas", "value": 2}]},
    ]));
    let mut o = obj(deployment());
    let applied = patch_deployment(&mut o, &patches);
    assert_eq!(applied, Ok(vec![1]));
    assert_eq!(o.data.pointer("/spec/replicas"), Some(&json!(2)));
    assert_eq!(
        o.metadata.labels.unwrap_or_default().get("canary"),
        None,
        "the skipped patch left nothing behind"
    );
}

#[test]
fn a_failing_operation_names_mapping_kind_object_and_op() {
    let patches = compiled(json!([{"resource": "deploy", "patch": [
        {"op": "add", "path": "/metadata/labels/a", "value": "1"},
        {"op": "remove", "path": "/spec/strategy"}]}]));
    let mut o = obj(deployment());
    let before = o.clone();
    let err = patch_deployment(&mut o, &patches).err();
    let msg = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(matches!(err, Some(RulesError::PatchFailed(_))), "{err:?}");
    for part in [
        "dr/shop",
        "Deployment",
        "shop-dr/web",
        "#1",
        "remove /spec/strategy",
    ] {
        assert!(msg.contains(part), "{part:?} missing in {msg}");
    }
    assert_eq!(o, before, "a failed transform leaves the object as it was");
}

#[test]
fn a_patch_may_not_change_the_identity() {
    let table = [
        ("/metadata/name", "metadata.name"),
        ("/metadata/namespace", "metadata.namespace"),
        ("/kind", "kind"),
        ("/apiVersion", "apiVersion"),
    ];
    for (path, field) in table {
        let patches = compiled(
            json!([{"resource": "deployments", "patch": [{"op": "replace", "path": path, "value": "x"}]}]),
        );
        let mut o = obj(deployment());
        let got = patch_deployment(&mut o, &patches);
        assert_eq!(
            got,
            Err(RulesError::IdentityChanged {
                mapping: "dr/shop".into(),
                kind: "Deployment".into(),
                object: "shop-dr/web".into(),
                field
            }),
            "{path}"
        );
    }
}

#[test]
fn transformations_for_unknown_types_are_refused_up_front() {
    let s = spec(
        json!({"sourceNamespace": "shop", "transformations": [{"resource": "frobs", "patch": [{"op": "remove", "path": "/x"}]}]}),
    );
    assert_eq!(
        compile_patches(&s.transformations, &discovered()),
        Err(RulesError::UnknownResourceType {
            name: "frobs".into()
        })
    );
}

#[test]
fn an_operation_missing_its_value_is_refused_up_front() {
    let s = spec(json!({"sourceNamespace": "shop", "transformations": [
        {"resource": "cm", "patch": [{"op": "remove", "path": "/data/a"}]},
        {"resource": "deploy", "patch": [{"op": "add", "path": "/metadata/labels/x"}]}]}));
    match compile_patches(&s.transformations, &discovered()) {
        Err(RulesError::InvalidPatch {
            index, resource, ..
        }) => assert_eq!((index, resource.as_str()), (1, "deploy")),
        other => panic!("expected InvalidPatch, got {other:?}"),
    }
}

use serde_json::{Value, json};

use super::fixtures::{discovered, json_of, kind, obj, server_metadata, spec};
use crate::replicate::{MappingId, RulesError, TransformConfig, is_managed_by, transform};

fn config(extra: Value) -> TransformConfig {
    let mut s = json!({"sourceNamespace": "shop", "destinationNamespace": "shop-dr", "sourceCluster": "prod", "destinationCluster": "dr"});
    if let (Some(m), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    TransformConfig::from_spec(
        MappingId::new("dr-system", "shop"),
        "prod",
        &spec(s),
        &discovered(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn marks(uid: &str) -> Value {
    json!({"dr-syncer.io/mapping": "dr-system/shop", "dr-syncer.io/source-cluster": "prod",
        "dr-syncer.io/source-namespace": "shop", "dr-syncer.io/source-uid": uid})
}

const UID: &str = "0b7c1f0e-2a3d-4c55-9e1f-6d2f0a1b2c3d";

#[test]
fn a_deployment_end_to_end() {
    let source = obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": server_metadata("web", json!({"labels": {"app": "web"},
            "annotations": {"deployment.kubernetes.io/revision": "4", "dr-syncer.io/scale-override": "1"}})),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "registry.prod/web:1.4"}]}}},
        "status": {"replicas": 3, "availableReplicas": 3}}));
    let cfg = config(
        json!({"transformations": [{"resource": "deployments", "patch": [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.dr/web:1.4"}]}]}),
    );
    let out = transform(&source, &kind("deployments.apps"), &cfg).unwrap_or_else(|e| panic!("{e}"));
    let mut annotations = marks(UID);
    annotations["dr-syncer.io/scale-override"] = json!("1");
    annotations["dr-syncer.io/original-replicas"] = json!("3");
    assert_eq!(
        json_of(&out.object),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop-dr",
                "labels": {"app": "web", "dr-syncer.io/managed-by-mapping": "dr-system.shop"},
                "annotations": annotations},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "registry.dr/web:1.4"}]}}}})
    );
    assert_eq!(out.original_replicas, Some(3));
    assert_eq!(out.patches_applied, vec![0]);
    assert!(is_managed_by(
        &out.object,
        &MappingId::new("dr-system", "shop")
    ));
}

#[test]
fn a_service_and_a_claim_end_to_end() {
    let cfg =
        config(json!({"pvcConfig": {"storageClassMappings": [{"from": "gp2", "to": "standard"}]}}));
    let svc = obj(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": server_metadata("web", json!({})),
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]},
        "status": {"loadBalancer": {}}}),
    );
    let out = transform(&svc, &kind("services"), &cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.object.data,
        json!({"spec": {"type": "NodePort", "selector": {"app": "web"},
        "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
    );
    assert_eq!(out.original_replicas, None);

    let pvc = obj(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": server_metadata("data", json!({"annotations": {"pv.kubernetes.io/bind-completed": "yes"}, "finalizers": ["kubernetes.io/pvc-protection"]})),
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp2", "volumeName": "pvc-1",
            "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"}}));
    let out =
        transform(&pvc, &kind("persistentvolumeclaims"), &cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json_of(&out.object),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "shop-dr",
                "labels": {"dr-syncer.io/managed-by-mapping": "dr-system.shop"}, "annotations": marks(UID)},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}})
    );
}

#[test]
fn marks_survive_patches_and_replace_foreign_marks() {
    // The source object is itself a DR copy written by another mapping.
    let source = obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": server_metadata("cfg", json!({"labels": {"app": "shop", "dr-syncer.io/managed-by-mapping": "other.mapping"},
            "annotations": {"team": "payments", "dr-syncer.io/mapping": "other/mapping", "dr-syncer.io/source-cluster": "far"}})),
        "data": {"a": "1"}}));
    let cfg = config(
        json!({"transformations": [{"resource": "configmaps", "patch": [
        {"op": "remove", "path": "/metadata/annotations"}, {"op": "remove", "path": "/metadata/labels"}]}]}),
    );
    let out = transform(&source, &kind("configmaps"), &cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json_of(&out.object)["metadata"]["annotations"], marks(UID));
    assert!(is_managed_by(
        &out.object,
        &MappingId::new("dr-system", "shop")
    ));
    assert!(!is_managed_by(
        &out.object,
        &MappingId::new("other", "mapping")
    ));
}

#[test]
fn scale_to_zero_false_and_same_namespace() {
    let mut s = json!({"sourceNamespace": "shop", "sourceCluster": "prod", "destinationCluster": "dr", "scaleToZero": false});
    s["resourceTypes"] = json!(["sts"]);
    let cfg =
        TransformConfig::from_spec(MappingId::new("dr", "m"), "prod", &spec(s), &discovered())
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.dest_namespace, "shop");
    let sts = obj(
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": server_metadata("db", json!({})),
        "spec": {"replicas": 2, "serviceName": "db"}}),
    );
    let out = transform(&sts, &kind("statefulsets.apps"), &cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.object.data.pointer("/spec/replicas"), Some(&json!(2)));
    assert_eq!(out.original_replicas, None);
    assert_eq!(out.object.metadata.namespace.as_deref(), Some("shop"));
}

#[test]
fn errors_name_the_object() {
    let cfg = config(json!({}));
    let bad = obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": server_metadata("web", json!({"annotations": {"dr-syncer.io/scale-override": "lots"}})), "spec": {"replicas": 3}}));
    let err = transform(&bad, &kind("deployments.apps"), &cfg).err();
    assert_eq!(
        err,
        Some(RulesError::InvalidScaleOverride {
            kind: "Deployment".into(),
            object: "shop/web".into(),
            value: "lots".into()
        })
    );
    let s = spec(
        json!({"sourceNamespace": "shop", "sourceCluster": "a", "destinationCluster": "b",
        "transformations": [{"resource": "widgets", "patch": [{"op": "remove", "path": "/spec"}]}]}),
    );
    assert!(matches!(
        TransformConfig::from_spec(MappingId::new("dr", "m"), "a", &s, &discovered()),
        Err(RulesError::AmbiguousResourceType { .. })
    ));
}

//! The rules chained as the sync engine chains them, on one realistic source namespace.

use kube::core::{DynamicObject, TypeMeta};
use serde_json::{Value, json};

use super::fixtures::{discovered, obj, server_metadata, spec};
use crate::replicate::{
    MappingId, ObjectFilter, PruneRefusal, Selection, TransformConfig, is_managed_by, plan_prune,
    resolve_kinds, select, transform,
};

fn typed(mut o: DynamicObject, api_version: &str, kind: &str) -> DynamicObject {
    o.types = Some(TypeMeta {
        api_version: api_version.into(),
        kind: kind.into(),
    });
    o
}

/// The source namespace as listed per kind: (plural, object).
fn source_namespace() -> Vec<(&'static str, Value)> {
    vec![
        (
            "configmaps",
            json!({"metadata": server_metadata("app-config", json!({})), "data": {"env": "prod"}}),
        ),
        (
            "configmaps",
            json!({"metadata": server_metadata("kube-root-ca.crt", json!({})), "data": {"ca.crt": "..."}}),
        ),
        (
            "configmaps",
            json!({"metadata": server_metadata("scratch-tmp", json!({})), "data": {}}),
        ),
        (
            "secrets",
            json!({"type": "Opaque", "metadata": server_metadata("db", json!({})), "data": {"password": "cw=="}}),
        ),
        (
            "secrets",
            json!({"type": "kubernetes.io/service-account-token", "metadata": server_metadata("builder-token", json!({}))}),
        ),
        (
            "deployments",
            json!({"metadata": server_metadata("web", json!({})), "spec": {"replicas": 4,
            "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "registry.prod/web:2"}]}}}, "status": {"replicas": 4}}),
        ),
        (
            "services",
            json!({"metadata": server_metadata("web", json!({})), "spec": {"clusterIP": "10.96.1.1",
            "clusterIPs": ["10.96.1.1"], "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        ),
        (
            "persistentvolumeclaims",
            json!({"metadata": server_metadata("uploads", json!({"annotations": {"volume.kubernetes.io/selected-node": "n1"}})),
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp2", "volumeName": "pvc-9",
            "resources": {"requests": {"storage": "5Gi"}}}, "status": {"phase": "Bound"}}),
        ),
        (
            "ingresses",
            json!({"metadata": server_metadata("web", json!({})), "spec": {"tls": [{"hosts": ["shop.example.com"]}],
            "rules": [{"host": "shop.example.com"}]}}),
        ),
    ]
}

#[test]
fn a_namespace_through_every_rule() {
    let s = spec(json!({
        "sourceNamespace": "shop", "destinationNamespace": "shop-dr", "sourceCluster": "prod", "destinationCluster": "dr",
        "objectSelector": {"excludeNames": [".*-tmp"]},
        "pvcConfig": {"storageClassMappings": [{"from": "gp2", "to": "standard"}]},
        "ingressConfig": {"preserveTLS": false},
        "transformations": [{"resource": "deployments", "patch": [
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.dr/web:2"}]}],
        "prune": true,
    }));
    let all = discovered();
    let kinds = resolve_kinds(&s, &all).unwrap_or_else(|e| panic!("{e}"));
    let filter = ObjectFilter::from_spec(&s).unwrap_or_else(|e| panic!("{e}"));
    let mapping = MappingId::new("dr-system", "shop");
    let cfg = TransformConfig::from_spec(mapping.clone(), "prod", &s, &all)
        .unwrap_or_else(|e| panic!("{e}"));

    let mut kept_sources = Vec::new();
    let mut written = Vec::new();
    let mut scales = Vec::new();
    for (plural, manifest) in source_namespace() {
        let Some(kind) = kinds.iter().find(|k| k.plural == plural) else {
            panic!("{plural} not resolved");
        };
        let source = typed(obj(manifest), &kind.api_version(), &kind.kind);
        if select(&source, kind, &filter) != Selection::Keep {
            continue;
        }
        let out = transform(&source, kind, &cfg).unwrap_or_else(|e| panic!("{e}"));
        if let Some(n) = out.original_replicas {
            scales.push((source.metadata.name.clone().unwrap_or_default(), n));
        }
        kept_sources.push(source);
        written.push(out.object);
    }
    let names: Vec<String> = written
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o.types.as_ref().map_or("", |t| t.kind.as_str()),
                o.metadata.name.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "ConfigMap/app-config",
            "Secret/db",
            "Deployment/web",
            "Service/web",
            "PersistentVolumeClaim/uploads",
            "Ingress/web"
        ]
    );
    assert_eq!(scales, vec![("web".to_string(), 4)]);
    for o in &written {
        assert_eq!(o.metadata.namespace.as_deref(), Some("shop-dr"));
        assert!(is_managed_by(o, &mapping));
        assert!(
            o.data.get("status").is_none()
                && o.metadata.uid.is_none()
                && o.metadata.managed_fields.is_none()
        );
    }
    let deploy = &written[2];
    assert_eq!(deploy.data.pointer("/spec/replicas"), Some(&json!(0)));
    assert_eq!(
        deploy
            .data
            .pointer("/spec/template/spec/containers/0/image"),
        Some(&json!("registry.dr/web:2"))
    );
    assert_eq!(written[3].data.pointer("/spec/clusterIP"), None);
    assert_eq!(
        written[4].data.pointer("/spec/storageClassName"),
        Some(&json!("standard"))
    );
    assert_eq!(written[4].data.pointer("/spec/volumeName"), None);
    assert_eq!(written[5].data.pointer("/spec/tls"), None);

    // The target: what was written (as the API server returns it: with uids), a copy of an
    // object since deleted at the source, and an object someone else created.
    let mut target: Vec<DynamicObject> = written
        .iter()
        .cloned()
        .map(|mut o| {
            o.metadata.uid = Some(format!("t-{}", o.metadata.name.as_deref().unwrap_or("")));
            o
        })
        .collect();
    let mut stale = written[0].clone();
    stale.metadata.name = Some("old-config".into());
    target.push(stale);
    target.push(typed(
        obj(json!({"metadata": {"name": "dr-only", "namespace": "shop-dr"}})),
        "v1",
        "ConfigMap",
    ));

    let plan = plan_prune(&kept_sources, &target, &mapping);
    assert_eq!(plan.refused, None);
    assert_eq!(plan.managed, 7);
    assert_eq!(
        plan.delete
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["old-config"]
    );

    // The source namespace listed empty (a broken source): nothing is deleted.
    let plan = plan_prune(&[], &target, &mapping);
    assert_eq!(plan.refused, Some(PruneRefusal::EmptySource { managed: 7 }));
    assert!(plan.delete.is_empty());
}

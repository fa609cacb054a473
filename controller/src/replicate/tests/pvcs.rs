use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::fixtures::{kind, obj, spec};
use crate::replicate::pvcs::{PvcRules, target_access_modes, target_storage_class, transform_pvc};

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn storage_class_precedence() {
    let m = map(&[("gp2", "premium-rwo"), ("standard", "csi-standard")]);
    let table = [
        (Some("gp2"), None, Some("premium-rwo")),
        (Some("io1"), None, Some("io1")),
        (Some("gp2"), Some("fast"), Some("fast")),
        (None, None, None),
        (None, Some("fast"), Some("fast")),
        (Some(""), None, Some("")),
        (Some("gp2"), Some("  "), Some("premium-rwo")),
    ];
    for (source, per_pvc, want) in table {
        assert_eq!(
            target_storage_class(source, per_pvc, &m).as_deref(),
            want,
            "{source:?} {per_pvc:?}"
        );
    }
}

#[test]
fn access_modes_are_mapped_and_deduplicated() {
    let m = map(&[("ReadWriteMany", "ReadWriteOnce")]);
    let modes = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        target_access_modes(&modes(&["ReadWriteMany"]), &m),
        modes(&["ReadWriteOnce"])
    );
    assert_eq!(
        target_access_modes(&modes(&["ReadWriteMany", "ReadWriteOnce"]), &m),
        modes(&["ReadWriteOnce"])
    );
    assert_eq!(
        target_access_modes(&modes(&["ReadOnlyMany"]), &m),
        modes(&["ReadOnlyMany"])
    );
}

fn bound_pvc(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-db-0", "namespace": "shop", "labels": labels, "annotations": {
            "pv.kubernetes.io/bind-completed": "yes",
            "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.beta.kubernetes.io/storage-provisioner": "ebs.csi.aws.com",
            "volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com",
            "volume.kubernetes.io/selected-node": "ip-10-0-1-17",
            "backup": "daily"}},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "gp2", "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": "10Gi"}},
            "volumeName": "pvc-5b1c0c1e-8f7a-4d3b-9a51-0f3e2d1c4b5a",
            "dataSource": {"kind": "VolumeSnapshot", "name": "snap-1", "apiGroup": "snapshot.storage.k8s.io"},
            "dataSourceRef": {"kind": "VolumeSnapshot", "name": "snap-1", "apiGroup": "snapshot.storage.k8s.io"}}})
}

fn rules(sync_pv: bool) -> PvcRules {
    let s = spec(json!({"sourceNamespace": "shop", "pvcConfig": {
        "syncPersistentVolumes": sync_pv,
        "storageClassMappings": [{"from": "gp2", "to": "premium-rwo"}],
        "accessModeMappings": [{"from": "ReadWriteMany", "to": "ReadWriteOnce"}]}}));
    PvcRules::from_config(s.pvc_config.as_ref())
}

#[test]
fn a_bound_claim_becomes_a_fresh_claim_for_the_target() {
    let mut o = obj(bound_pvc(json!({"app": "db"})));
    transform_pvc(&mut o, &kind("persistentvolumeclaims"), &rules(false));
    assert_eq!(
        o.data.get("spec"),
        Some(
            &json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "premium-rwo", "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": "10Gi"}}})
        )
    );
    assert_eq!(o.metadata.annotations, Some(map(&[("backup", "daily")])));
}

#[test]
fn with_synced_volumes_the_binding_stays() {
    let mut o = obj(bound_pvc(json!({})));
    transform_pvc(&mut o, &kind("persistentvolumeclaims"), &rules(true));
    assert_eq!(
        o.data.pointer("/spec/volumeName"),
        Some(&json!("pvc-5b1c0c1e-8f7a-4d3b-9a51-0f3e2d1c4b5a"))
    );
    assert_eq!(
        o.metadata.annotations,
        Some(map(&[
            ("backup", "daily"),
            ("pv.kubernetes.io/bind-completed", "yes"),
            ("pv.kubernetes.io/bound-by-controller", "yes")
        ])),
        "node and provisioner annotations always go"
    );
}

#[test]
fn per_pvc_storage_class_label_wins() {
    let mut o = obj(bound_pvc(
        json!({"dr-syncer.io/storage-class": "local-path"}),
    ));
    transform_pvc(&mut o, &kind("persistentvolumeclaims"), &rules(false));
    assert_eq!(
        o.data.pointer("/spec/storageClassName"),
        Some(&json!("local-path"))
    );
    let mut with_annotation = bound_pvc(json!({}));
    with_annotation["metadata"]["annotations"]["dr-syncer.io/storage-class"] = json!("nfs");
    let mut o = obj(with_annotation);
    transform_pvc(&mut o, &kind("persistentvolumeclaims"), &rules(false));
    assert_eq!(
        o.data.pointer("/spec/storageClassName"),
        Some(&json!("nfs"))
    );
}

#[test]
fn defaults_without_pvc_config_only_unbind() {
    let r = PvcRules::from_config(None);
    let mut o = obj(bound_pvc(json!({})));
    transform_pvc(&mut o, &kind("persistentvolumeclaims"), &r);
    assert_eq!(
        o.data.pointer("/spec/storageClassName"),
        Some(&json!("gp2"))
    );
    assert_eq!(
        o.data.pointer("/spec/accessModes"),
        Some(&json!(["ReadWriteMany"]))
    );
    assert_eq!(o.data.pointer("/spec/volumeName"), None);
}

#[test]
fn statefulset_claim_templates_get_the_same_maps() {
    let mut sts = obj(
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"replicas": 0, "serviceName": "db", "volumeClaimTemplates": [
            {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "gp2", "resources": {"requests": {"storage": "10Gi"}}}},
            {"metadata": {"name": "logs", "labels": {"dr-syncer.io/storage-class": "cheap"}}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp2"}},
            {"metadata": {"name": "cache"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
    );
    crate::replicate::pvcs::transform_claim_templates(
        &mut sts,
        &kind("statefulsets.apps"),
        &rules(false),
    );
    assert_eq!(
        sts.data.pointer("/spec/volumeClaimTemplates"),
        Some(&json!([
            {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "premium-rwo", "resources": {"requests": {"storage": "10Gi"}}}},
            {"metadata": {"name": "logs", "labels": {"dr-syncer.io/storage-class": "cheap"}}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "cheap"}},
            {"metadata": {"name": "cache"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]))
    );
    let mut deploy = obj(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"volumeClaimTemplates": [{"spec": {"storageClassName": "gp2"}}]}}),
    );
    let before = deploy.clone();
    crate::replicate::pvcs::transform_claim_templates(
        &mut deploy,
        &kind("deployments.apps"),
        &rules(false),
    );
    assert_eq!(deploy, before);
}

#[test]
fn statefulset_owned_claims_are_still_replicated() {
    use crate::replicate::{ObjectFilter, Selection, select};
    let mut pvc = bound_pvc(json!({}));
    pvc["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "s1", "controller": true}]);
    assert_eq!(
        select(
            &obj(pvc),
            &kind("persistentvolumeclaims"),
            &ObjectFilter::default()
        ),
        Selection::Keep
    );
}

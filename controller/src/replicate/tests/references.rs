use serde_json::json;

use super::fixtures::{kind, obj};
use crate::replicate::ResourceKind;
use crate::replicate::references::remap_namespace_references;

fn rbac_kind() -> ResourceKind {
    ResourceKind {
        group: "rbac.authorization.k8s.io".into(),
        version: "v1".into(),
        kind: "RoleBinding".into(),
        plural: "rolebindings".into(),
        singular: "rolebinding".into(),
        short_names: vec![],
        namespaced: true,
        verbs: vec!["list".into()],
    }
}

#[test]
fn rolebinding_service_accounts_follow_the_namespace() {
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "app-reader", "namespace": "shop-dr"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "app", "namespace": "shop"},
            {"kind": "ServiceAccount", "name": "monitor", "namespace": "monitoring"},
            {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
            {"kind": "Group", "name": "shop", "apiGroup": "rbac.authorization.k8s.io"}]});
    let mut o = obj(binding.clone());
    assert_eq!(
        remap_namespace_references(&mut o, &rbac_kind(), "shop", "shop-dr"),
        1
    );
    assert_eq!(
        o.data.get("subjects"),
        Some(&json!([
            {"kind": "ServiceAccount", "name": "app", "namespace": "shop-dr"},
            {"kind": "ServiceAccount", "name": "monitor", "namespace": "monitoring"},
            {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
            {"kind": "Group", "name": "shop", "apiGroup": "rbac.authorization.k8s.io"}]))
    );
    assert_eq!(o.data.get("roleRef"), binding.get("roleRef"));
    // Same namespace, or another kind: nothing to do.
    let mut same = obj(binding.clone());
    assert_eq!(
        remap_namespace_references(&mut same, &rbac_kind(), "shop", "shop"),
        0
    );
    assert_eq!(same, obj(binding.clone()));
    let mut cm = obj(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "shop"}]}),
    );
    assert_eq!(
        remap_namespace_references(&mut cm, &kind("configmaps"), "shop", "shop-dr"),
        0
    );
}

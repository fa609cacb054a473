use k8s_openapi::api::core::v1::Namespace;
use serde_json::json;

use super::fixtures::{origin, spec};
use crate::replicate::MappingId;
use crate::replicate::namespace::{NamespaceRules, target_namespace};

fn source_ns() -> Namespace {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "uid": "ns-uid", "resourceVersion": "12",
            "labels": {"kubernetes.io/metadata.name": "shop", "team": "payments", "pod-security.kubernetes.io/enforce": "baseline"},
            "annotations": {"owner": "alice", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}))
    .unwrap_or_default()
}

#[test]
fn namespace_config_table() {
    let mapping = MappingId::new("dr", "shop");
    let origin = origin(&mapping, "shop", None);
    // (namespaceConfig, create, team label kept, owner annotation kept)
    let table = [
        (None, true, true, true),
        (Some(json!({})), true, true, true),
        (Some(json!({"createNamespace": false})), false, true, true),
        (Some(json!({"preserveLabels": false})), true, false, true),
        (
            Some(json!({"preserveAnnotations": false})),
            true,
            true,
            false,
        ),
    ];
    for (cfg, create, labels, annotations) in table {
        let mut s = json!({"sourceNamespace": "shop"});
        if let Some(c) = &cfg {
            s["namespaceConfig"] = c.clone();
        }
        let rules = NamespaceRules::from_config(spec(s).namespace_config.as_ref());
        assert_eq!(rules.create, create, "{cfg:?}");
        let src = source_ns();
        let ns = target_namespace(Some(&src), "shop-dr", rules, &origin);
        let l = ns.metadata.labels.clone().unwrap_or_default();
        let a = ns.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ns.metadata.name.as_deref(), Some("shop-dr"));
        assert_eq!(l.contains_key("team"), labels, "{cfg:?}");
        assert_eq!(a.contains_key("owner"), annotations, "{cfg:?}");
        assert!(
            !l.contains_key("kubernetes.io/metadata.name"),
            "the name label belongs to the source name"
        );
        assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        assert_eq!(
            l.get("dr-syncer.io/managed-by-mapping").map(String::as_str),
            Some("dr.shop")
        );
        assert_eq!(
            a.get("dr-syncer.io/mapping").map(String::as_str),
            Some("dr/shop")
        );
        assert_eq!(
            (
                ns.metadata.uid.as_ref(),
                ns.spec.as_ref(),
                ns.status.as_ref()
            ),
            (None, None, None)
        );
    }
}

#[test]
fn unreadable_source_gives_a_bare_marked_namespace() {
    let mapping = MappingId::new("dr", "shop");
    let origin = origin(&mapping, "shop", None);
    let ns = target_namespace(None, "shop", NamespaceRules::default(), &origin);
    assert_eq!(ns.metadata.labels.map(|l| l.len()), Some(1));
    assert_eq!(ns.metadata.annotations.map(|a| a.len()), Some(3));
}

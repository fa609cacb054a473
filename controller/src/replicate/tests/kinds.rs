use serde_json::json;

use super::fixtures::{RW, discovered, discovery_lists, kind, spec};
use crate::replicate::kinds::{crd_names, resolve_name, resolve_replicable};
use crate::replicate::{ResourceKind, RulesError, resolve_kinds, resolve_kinds_with_defaults};

fn names(kinds: &[ResourceKind]) -> Vec<String> {
    kinds.iter().map(ResourceKind::group_resource).collect()
}

#[test]
fn discovery_entries_become_kinds_without_subresources() {
    let all = discovered();
    assert!(all.iter().all(|k| !k.plural.contains('/')));
    let deploy = kind("deployments.apps");
    assert_eq!(
        deploy,
        ResourceKind {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            singular: "deployment".into(),
            short_names: vec!["deploy".into()],
            namespaced: true,
            verbs: RW.iter().map(|v| v.to_string()).collect(),
        }
    );
    assert_eq!(deploy.api_version(), "apps/v1");
    assert_eq!(kind("configmaps").api_version(), "v1");
    let ar = deploy.api_resource();
    assert_eq!(
        (
            ar.group.as_str(),
            ar.plural.as_str(),
            ar.api_version.as_str()
        ),
        ("apps", "deployments", "apps/v1")
    );
    // The list holds 3 subresources that must not appear as kinds.
    let entries: usize = discovery_lists().iter().map(|l| l.resources.len()).sum();
    assert_eq!(all.len(), entries - 3);
}

#[test]
fn every_spelling_resolves_like_kubectl() {
    let all = discovered();
    let table = [
        ("deployments", "deployments.apps"),
        ("deployment", "deployments.apps"),
        ("Deployment", "deployments.apps"),
        ("deploy", "deployments.apps"),
        ("DEPLOY", "deployments.apps"),
        ("deployments.apps", "deployments.apps"),
        ("deploy.apps", "deployments.apps"),
        ("cm", "configmaps"),
        ("ConfigMap", "configmaps"),
        ("configmaps", "configmaps"),
        ("pvc", "persistentvolumeclaims"),
        ("svc", "services"),
        ("ing", "ingresses.networking.k8s.io"),
        ("ingresses.networking.k8s.io", "ingresses.networking.k8s.io"),
        ("ingresses.networking", "ingresses.networking.k8s.io"),
        ("hpa", "horizontalpodautoscalers.autoscaling"),
        ("cronjobs", "cronjobs.batch"),
        ("sts", "statefulsets.apps"),
        // Several groups serve "events" and "pods": the core group wins, as in kubectl.
        ("events", "events"),
        ("pods", "pods"),
        ("events.events.k8s.io", "events.events.k8s.io"),
        ("widgets.example.com", "widgets.example.com"),
        ("wd", "widgets.example.com"),
        ("widgets.stable.example.org", "widgets.stable.example.org"),
        (" secrets ", "secrets"),
        ("deployments.v1.apps", "deployments.apps"),
        ("configmaps.v1", "configmaps"),
        ("hpa.v2.autoscaling", "horizontalpodautoscalers.autoscaling"),
    ];
    for (name, want) in table {
        let got = resolve_name(name, &all).map(ResourceKind::group_resource);
        assert_eq!(got.as_deref(), Ok(want), "resolving {name:?}");
    }
}

#[test]
fn unknown_and_ambiguous_names_are_errors_naming_them() {
    let all = discovered();
    assert_eq!(
        resolve_name("frobnicators", &all),
        Err(RulesError::UnknownResourceType {
            name: "frobnicators".into()
        })
    );
    for wrong in [
        "deployments.v2.apps",
        "configmaps.v2",
        "deployments.ps",
        "deployments.éé",
    ] {
        assert_eq!(
            resolve_name(wrong, &all),
            Err(RulesError::UnknownResourceType { name: wrong.into() }),
            "{wrong}"
        );
    }
    assert_eq!(
        resolve_name("deployments.batch", &all),
        Err(RulesError::UnknownResourceType {
            name: "deployments.batch".into()
        })
    );
    // Two CRD groups serve "widgets" and neither is built in: no guessing.
    let err = resolve_name("widgets", &all).err();
    assert_eq!(
        err,
        Some(RulesError::AmbiguousResourceType {
            name: "widgets".into(),
            candidates: "widgets.example.com, widgets.stable.example.org".into(),
        })
    );
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("\"widgets\"") && msg.contains("resource.group"),
        "{msg}"
    );
}

#[test]
fn replicable_rejects_cluster_scoped_never_copied_and_unlistable_kinds() {
    let all = discovered();
    type Check = fn(&RulesError) -> bool;
    let table: [(&str, Check); 8] = [
        (
            "nodes",
            |e| matches!(e, RulesError::ClusterScoped { resource, .. } if resource == "nodes"),
        ),
        ("ingressclasses", |e| {
            matches!(e, RulesError::ClusterScoped { .. })
        }),
        (
            "pods",
            |e| matches!(e, RulesError::NeverCopied { resource, .. } if resource == "pods"),
        ),
        (
            "ev",
            |e| matches!(e, RulesError::NeverCopied { resource, .. } if resource == "events"),
        ),
        (
            "leases",
            |e| matches!(e, RulesError::NeverCopied { resource, .. } if resource == "leases.coordination.k8s.io"),
        ),
        (
            "nm",
            |e| matches!(e, RulesError::NeverCopied { resource, .. } if resource == "namespacemappings.dr-syncer.io"),
        ),
        ("pods.metrics.k8s.io", |e| {
            matches!(e, RulesError::NeverCopied { .. })
        }),
        ("gadgets.stable.example.org", |e| {
            matches!(e, RulesError::NotListable { .. })
        }),
    ];
    for (name, check) in table {
        match resolve_replicable(name, &all) {
            Err(e) => assert!(check(&e), "{name}: unexpected error {e}"),
            Ok(k) => panic!(
                "{name} resolved to {} but must be refused",
                k.group_resource()
            ),
        }
    }
    assert!(resolve_replicable("statefulsets", &all).is_ok());
}

#[test]
fn resource_types_defaults_and_explicit_lists() {
    let all = discovered();
    let defaults = vec![
        "configmaps",
        "secrets",
        "deployments.apps",
        "services",
        "ingresses.networking.k8s.io",
        "persistentvolumeclaims",
    ];
    let table: Vec<(serde_json::Value, Vec<&str>)> = vec![
        (json!({"sourceNamespace": "shop"}), defaults.clone()),
        (
            json!({"sourceNamespace": "shop", "resourceTypes": ["*"]}),
            defaults.clone(),
        ),
        (
            json!({"sourceNamespace": "shop", "resourceTypes": ["ConfigMap", "deploy", "configmaps", "sts"]}),
            vec!["configmaps", "deployments.apps", "statefulsets.apps"],
        ),
        (
            json!({"sourceNamespace": "shop", "resourceTypes": ["secrets", "*"]}),
            vec![
                "secrets",
                "configmaps",
                "deployments.apps",
                "services",
                "ingresses.networking.k8s.io",
                "persistentvolumeclaims",
            ],
        ),
        (
            json!({"sourceNamespace": "shop", "resourceTypes": ["cm"], "namespaceScopedResources": ["widgets.example.com", "cronjobs.batch"]}),
            vec!["configmaps", "widgets.example.com", "cronjobs.batch"],
        ),
    ];
    for (s, want) in table {
        let got = resolve_kinds(&spec(s.clone()), &all).map(|k| names(&k));
        assert_eq!(
            got,
            Ok(want.iter().map(|s| s.to_string()).collect()),
            "spec {s}"
        );
    }
}

#[test]
fn cluster_default_resource_types_replace_the_builtin_defaults() {
    let all = discovered();
    let s = spec(json!({"sourceNamespace": "shop"}));
    let got =
        resolve_kinds_with_defaults(&s, &["cm".into(), "sts".into()], &all).map(|k| names(&k));
    assert_eq!(
        got,
        Ok(vec![
            "configmaps".to_string(),
            "statefulsets.apps".to_string()
        ])
    );
}

#[test]
fn wildcard_namespace_scoped_resources_leave_out_the_never_copy_list() {
    let all = discovered();
    let s = spec(
        json!({"sourceNamespace": "shop", "resourceTypes": ["cm"], "namespaceScopedResources": ["*"]}),
    );
    let got = names(&resolve_kinds(&s, &all).unwrap_or_default());
    for want in [
        "configmaps",
        "secrets",
        "serviceaccounts",
        "services",
        "persistentvolumeclaims",
        "deployments.apps",
        "statefulsets.apps",
        "daemonsets.apps",
        "replicasets.apps",
        "cronjobs.batch",
        "jobs.batch",
        "ingresses.networking.k8s.io",
        "networkpolicies.networking.k8s.io",
        "horizontalpodautoscalers.autoscaling",
        "widgets.example.com",
        "widgets.stable.example.org",
    ] {
        assert!(
            got.contains(&want.to_string()),
            "{want} missing from {got:?}"
        );
    }
    for never in [
        "pods",
        "events",
        "events.events.k8s.io",
        "endpoints",
        "bindings",
        "leases.coordination.k8s.io",
        "controllerrevisions.apps",
        "localsubjectaccessreviews.authorization.k8s.io",
        "pods.metrics.k8s.io",
        "namespacemappings.dr-syncer.io",
        "gadgets.stable.example.org",
        "nodes",
        "namespaces",
        "ingressclasses.networking.k8s.io",
    ] {
        assert!(
            !got.contains(&never.to_string()),
            "{never} must not be in {got:?}"
        );
    }
    assert_eq!(got.first().map(String::as_str), Some("configmaps"));
    let unique: std::collections::BTreeSet<_> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "no duplicates: {got:?}");
}

#[test]
fn an_unknown_type_fails_the_whole_resolution() {
    let all = discovered();
    let s = spec(json!({"sourceNamespace": "shop", "resourceTypes": ["cm", "frobs"]}));
    assert_eq!(
        resolve_kinds(&s, &all),
        Err(RulesError::UnknownResourceType {
            name: "frobs".into()
        })
    );
}

#[test]
fn crd_names_cover_dotted_groups_only() {
    let kinds = [
        kind("configmaps"),
        kind("deployments.apps"),
        kind("widgets.example.com"),
        kind("ingresses.networking.k8s.io"),
    ];
    assert_eq!(
        crd_names(&kinds),
        vec![
            "widgets.example.com".to_string(),
            "ingresses.networking.k8s.io".to_string()
        ]
    );
}

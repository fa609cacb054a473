use serde_json::{Value, json};

use super::fixtures::{kind, obj, server_metadata, spec};
use crate::replicate::{ObjectFilter, RulesError, Selection, SkipReason, select};

fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": server_metadata(name, json!({"labels": labels})), "data": {"k": "v"}})
}

fn filter(selector: Value) -> ObjectFilter {
    let s = spec(json!({"sourceNamespace": "shop", "objectSelector": selector}));
    ObjectFilter::from_spec(&s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn builtin_exclusions() {
    let no_filter = ObjectFilter::default();
    let rs_owned = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": server_metadata("web-7d4b9c", json!({
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u1", "controller": true, "blockOwnerDeletion": true}]
    })), "spec": {"replicas": 2}});
    let job_of_cron = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": server_metadata("report-29000", json!({
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "report", "uid": "u2", "controller": true}]
    }))});
    // A non-controller owner reference (e.g. a garbage-collection link) does not exclude.
    let cm_with_plain_owner = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": server_metadata("cfg", json!({
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": "u3"}]
    }))});
    let table: Vec<(&str, Value, &str, Selection)> = vec![
        (
            "plain configmap",
            configmap("app-config", json!({"app": "shop"})),
            "configmaps",
            Selection::Keep,
        ),
        (
            "ignore label",
            configmap("tmp", json!({"dr-syncer.io/ignore": "true"})),
            "configmaps",
            Selection::Skip(SkipReason::Ignored),
        ),
        (
            "ignore label, other case",
            configmap("tmp", json!({"dr-syncer.io/ignore": "True"})),
            "configmaps",
            Selection::Skip(SkipReason::Ignored),
        ),
        (
            "ignore label false",
            configmap("tmp", json!({"dr-syncer.io/ignore": "false"})),
            "configmaps",
            Selection::Keep,
        ),
        (
            "ignore annotation",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": server_metadata("s", json!({"annotations": {"dr-syncer.io/ignore": "true"}}))}),
            "secrets",
            Selection::Skip(SkipReason::Ignored),
        ),
        (
            "root CA",
            configmap("kube-root-ca.crt", json!({})),
            "configmaps",
            Selection::Skip(SkipReason::RootCaConfigMap),
        ),
        (
            "OpenShift service CA",
            configmap("openshift-service-ca.crt", json!({})),
            "configmaps",
            Selection::Skip(SkipReason::RootCaConfigMap),
        ),
        (
            "a secret named like the CA",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": server_metadata("kube-root-ca.crt", json!({}))}),
            "secrets",
            Selection::Keep,
        ),
        (
            "SA token",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": server_metadata("default-token-x", json!({"annotations": {"kubernetes.io/service-account.name": "default"}}))}),
            "secrets",
            Selection::Skip(SkipReason::ServiceAccountToken),
        ),
        (
            "opaque secret",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": server_metadata("db", json!({})), "data": {"password": "cw=="}}),
            "secrets",
            Selection::Keep,
        ),
        (
            "helm release secret kept (lets helm manage the release at the DR site)",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1", "metadata": server_metadata("sh.helm.release.v1.shop.v3", json!({}))}),
            "secrets",
            Selection::Keep,
        ),
        (
            "replicaset of a deployment",
            rs_owned,
            "replicasets.apps",
            Selection::Skip(SkipReason::ControllerOwned {
                owner_kind: "Deployment".into(),
                owner_name: "web".into(),
            }),
        ),
        (
            "job of a cronjob",
            job_of_cron,
            "jobs.batch",
            Selection::Skip(SkipReason::ControllerOwned {
                owner_kind: "CronJob".into(),
                owner_name: "report".into(),
            }),
        ),
        (
            "non-controller owner",
            cm_with_plain_owner,
            "configmaps",
            Selection::Keep,
        ),
        (
            "terminating",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": server_metadata("old", json!({"deletionTimestamp": "2026-11-21T10:00:00Z", "finalizers": ["x/y"]}))}),
            "configmaps",
            Selection::Skip(SkipReason::Terminating),
        ),
    ];
    for (what, manifest, k, want) in table {
        assert_eq!(select(&obj(manifest), &kind(k), &no_filter), want, "{what}");
    }
}

#[test]
fn object_selector_label_selector_and_name_patterns() {
    let f = filter(json!({
        "labelSelector": {"matchLabels": {"app": "shop"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
        "includeNames": ["web-.*", "api"],
        "excludeNames": [".*-canary"],
    }));
    let cm = kind("configmaps");
    let table = [
        (
            "web-config",
            json!({"app": "shop", "tier": "web"}),
            Selection::Keep,
        ),
        (
            "api",
            json!({"app": "shop", "tier": "api"}),
            Selection::Keep,
        ),
        // Anchored: "api" does not match "api-extra", "web-.*" does not match "my-web-x".
        (
            "api-extra",
            json!({"app": "shop", "tier": "api"}),
            Selection::Skip(SkipReason::NotIncluded),
        ),
        (
            "my-web-x",
            json!({"app": "shop", "tier": "web"}),
            Selection::Skip(SkipReason::NotIncluded),
        ),
        (
            "web-canary",
            json!({"app": "shop", "tier": "web"}),
            Selection::Skip(SkipReason::Excluded),
        ),
        (
            "web-config",
            json!({"app": "blog", "tier": "web"}),
            Selection::Skip(SkipReason::LabelSelector),
        ),
        (
            "web-config",
            json!({"app": "shop", "tier": "db"}),
            Selection::Skip(SkipReason::LabelSelector),
        ),
        (
            "web-config",
            json!({"app": "shop"}),
            Selection::Skip(SkipReason::LabelSelector),
        ),
        // The built-in rules come first: an ignored object reports Ignored.
        (
            "web-config",
            json!({"app": "shop", "tier": "web", "dr-syncer.io/ignore": "true"}),
            Selection::Skip(SkipReason::Ignored),
        ),
    ];
    for (name, labels, want) in table {
        assert_eq!(
            select(&obj(configmap(name, labels.clone())), &cm, &f),
            want,
            "{name} {labels}"
        );
    }
}

#[test]
fn exclude_only_and_empty_selector_keep_everything_else() {
    let f = filter(json!({"excludeNames": ["tmp-.*"]}));
    let cm = kind("configmaps");
    assert_eq!(
        select(&obj(configmap("app", json!({}))), &cm, &f),
        Selection::Keep
    );
    assert_eq!(
        select(&obj(configmap("tmp-1", json!({}))), &cm, &f),
        Selection::Skip(SkipReason::Excluded)
    );
    let none =
        ObjectFilter::from_spec(&spec(json!({"sourceNamespace": "shop"}))).unwrap_or_default();
    assert_eq!(
        select(&obj(configmap("tmp-1", json!({}))), &cm, &none),
        Selection::Keep
    );
}

#[test]
fn bad_patterns_and_selectors_are_errors_naming_them() {
    let s = spec(
        json!({"sourceNamespace": "shop", "objectSelector": {"includeNames": ["ok", "web-(["]}}),
    );
    match ObjectFilter::from_spec(&s) {
        Err(RulesError::InvalidNamePattern { field, pattern, .. }) => {
            assert_eq!((field, pattern.as_str()), ("includeNames", "web-(["));
        }
        other => panic!("expected InvalidNamePattern, got {other:?}"),
    }
    let s = spec(
        json!({"sourceNamespace": "shop", "objectSelector": {"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}}),
    );
    assert!(
        matches!(
            ObjectFilter::from_spec(&s),
            Err(RulesError::InvalidLabelSelector { .. })
        ),
        "Exists with values is invalid"
    );
    for bad in [
        json!({"key": "a", "operator": "In", "values": []}),
        json!({"key": "a", "operator": "Matches", "values": ["x"]}),
    ] {
        let s = spec(
            json!({"sourceNamespace": "shop", "objectSelector": {"labelSelector": {"matchExpressions": [bad]}}}),
        );
        match ObjectFilter::from_spec(&s) {
            Err(RulesError::InvalidLabelSelector { reason }) => {
                assert!(reason.contains("\"a\""), "{reason}")
            }
            other => panic!("expected InvalidLabelSelector, got {other:?}"),
        }
    }
}

#[test]
fn skip_reasons_read_well() {
    assert_eq!(
        SkipReason::Ignored.to_string(),
        "marked dr-syncer.io/ignore=true"
    );
    assert_eq!(
        SkipReason::ControllerOwned {
            owner_kind: "Deployment".into(),
            owner_name: "web".into()
        }
        .to_string(),
        "managed by Deployment web"
    );
}

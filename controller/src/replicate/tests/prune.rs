use k8s_openapi::api::core::v1::Namespace;
use kube::core::DynamicObject;
use serde_json::json;

use super::fixtures::{obj, origin};
use crate::replicate::mark::mark;
use crate::replicate::prune::{check_source_namespace, may_delete_for_source_delete};
use crate::replicate::{MappingId, PruneRefusal, plan_prune};

fn mapping() -> MappingId {
    MappingId::new("dr", "shop")
}

fn source(kind: &str, name: &str) -> DynamicObject {
    let api_version = if kind == "Deployment" {
        "apps/v1"
    } else {
        "v1"
    };
    obj(
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "shop", "uid": format!("src-{name}")}}),
    )
}

fn managed(kind: &str, name: &str) -> DynamicObject {
    let mut o = source(kind, name);
    o.metadata.namespace = Some("shop-dr".into());
    o.metadata.uid = Some(format!("tgt-{name}"));
    let m = mapping();
    mark(&mut o, &origin(&m, "shop", Some(&format!("src-{name}"))));
    o
}

fn names(plan: &crate::replicate::PrunePlan) -> Vec<String> {
    plan.delete
        .iter()
        .map(|r| format!("{}/{}", r.kind, r.name))
        .collect()
}

#[test]
fn only_managed_objects_missing_at_the_source_are_deleted() {
    let src = vec![
        source("ConfigMap", "a"),
        source("ConfigMap", "b"),
        source("Deployment", "web"),
    ];
    let mut unmanaged = source("ConfigMap", "local-only");
    unmanaged.metadata.namespace = Some("shop-dr".into());
    let other_mapping = {
        let mut o = source("ConfigMap", "other");
        let m = MappingId::new("dr", "blog");
        mark(&mut o, &origin(&m, "blog", None));
        o
    };
    let tgt = vec![
        managed("ConfigMap", "a"),
        managed("ConfigMap", "b"),
        managed("Deployment", "web"),
        managed("ConfigMap", "gone"),
        unmanaged,
        other_mapping,
    ];
    let plan = plan_prune(&src, &tgt, &mapping());
    assert_eq!(plan.refused, None);
    assert_eq!(plan.managed, 4);
    assert_eq!(names(&plan), vec!["ConfigMap/gone"]);
    let r = &plan.delete[0];
    assert_eq!(
        (
            r.api_version.as_str(),
            r.namespace.as_str(),
            r.uid.as_deref()
        ),
        ("v1", "shop-dr", Some("tgt-gone"))
    );
}

#[test]
fn same_name_in_another_kind_does_not_keep_an_object() {
    // The source has a Deployment "web" but no ConfigMap "web": the ConfigMap copy goes.
    let src = vec![
        source("Deployment", "web"),
        source("ConfigMap", "a"),
        source("ConfigMap", "b"),
    ];
    let tgt = vec![
        managed("ConfigMap", "web"),
        managed("Deployment", "web"),
        managed("ConfigMap", "a"),
        managed("ConfigMap", "b"),
    ];
    assert_eq!(
        names(&plan_prune(&src, &tgt, &mapping())),
        vec!["ConfigMap/web"]
    );
}

#[test]
fn safety_rules_refuse_and_delete_nothing() {
    // (source names, target managed names) -> refusal
    type Case = (
        Vec<&'static str>,
        Vec<&'static str>,
        Option<PruneRefusal>,
        usize,
    );
    let table: Vec<Case> = vec![
        (
            vec![],
            vec!["a", "b"],
            Some(PruneRefusal::EmptySource { managed: 2 }),
            0,
        ),
        (vec![], vec![], None, 0),
        (
            vec!["a"],
            vec!["a", "b", "c"],
            Some(PruneRefusal::TooMany {
                would_delete: 2,
                managed: 3,
            }),
            0,
        ),
        // Exactly half is allowed.
        (vec!["a", "b"], vec!["a", "b", "c", "d"], None, 2),
        (vec!["a"], vec!["a", "b"], None, 1),
        // Deleting the only managed object is more than half.
        (
            vec!["x"],
            vec!["a"],
            Some(PruneRefusal::TooMany {
                would_delete: 1,
                managed: 1,
            }),
            0,
        ),
        (vec!["a", "b", "c"], vec!["a", "b", "c"], None, 0),
    ];
    for (s, t, refusal, deletes) in table {
        let src: Vec<_> = s.iter().map(|n| source("ConfigMap", n)).collect();
        let tgt: Vec<_> = t.iter().map(|n| managed("ConfigMap", n)).collect();
        let plan = plan_prune(&src, &tgt, &mapping());
        assert_eq!(
            (plan.refused.clone(), plan.delete.len()),
            (refusal, deletes),
            "source {s:?} target {t:?}"
        );
    }
    let msg = PruneRefusal::TooMany {
        would_delete: 2,
        managed: 3,
    }
    .to_string();
    assert!(
        msg.contains("2 of 3") && msg.contains("nothing was deleted"),
        "{msg}"
    );
}

#[test]
fn terminating_target_objects_are_not_deleted_again() {
    let mut t = managed("ConfigMap", "gone");
    t.metadata.deletion_timestamp = serde_json::from_value(json!("2026-11-21T10:00:00Z")).ok();
    let plan = plan_prune(
        &[source("ConfigMap", "a")],
        &[managed("ConfigMap", "a"), t],
        &mapping(),
    );
    assert_eq!(
        (plan.managed, plan.delete.len(), plan.refused),
        (2, 0, None)
    );
}

#[test]
fn source_namespace_must_exist_and_be_active() {
    let ns = |v: serde_json::Value| serde_json::from_value::<Namespace>(v).unwrap_or_default();
    let active = ns(json!({"metadata": {"name": "shop"}, "status": {"phase": "Active"}}));
    let terminating = ns(
        json!({"metadata": {"name": "shop", "deletionTimestamp": "2026-11-21T10:00:00Z"}, "status": {"phase": "Terminating"}}),
    );
    let phase_only = ns(json!({"metadata": {"name": "shop"}, "status": {"phase": "Terminating"}}));
    assert_eq!(check_source_namespace(Some(&active)), Ok(()));
    assert_eq!(
        check_source_namespace(None),
        Err(PruneRefusal::SourceNamespaceMissing)
    );
    assert_eq!(
        check_source_namespace(Some(&terminating)),
        Err(PruneRefusal::SourceNamespaceTerminating)
    );
    assert_eq!(
        check_source_namespace(Some(&phase_only)),
        Err(PruneRefusal::SourceNamespaceTerminating)
    );
}

#[test]
fn watch_deletes_touch_only_the_copy_of_that_source_object() {
    let copy = managed("ConfigMap", "a");
    assert!(may_delete_for_source_delete(
        &copy,
        &mapping(),
        Some("src-a")
    ));
    assert!(may_delete_for_source_delete(&copy, &mapping(), None));
    assert!(
        !may_delete_for_source_delete(&copy, &mapping(), Some("src-a-recreated")),
        "copy of a newer object"
    );
    assert!(!may_delete_for_source_delete(
        &copy,
        &MappingId::new("dr", "blog"),
        Some("src-a")
    ));
    let mut unmanaged = source("ConfigMap", "a");
    unmanaged.metadata.namespace = Some("shop-dr".into());
    assert!(!may_delete_for_source_delete(
        &unmanaged,
        &mapping(),
        Some("src-a")
    ));
}

#[test]
fn untyped_listings_are_refused() {
    let mut untyped = managed("ConfigMap", "a");
    untyped.types = None;
    let plan = plan_prune(
        &[source("ConfigMap", "b")],
        &[untyped, managed("ConfigMap", "b")],
        &mapping(),
    );
    assert_eq!(
        plan.refused,
        Some(PruneRefusal::UntypedListing { name: "a".into() })
    );
    assert!(plan.delete.is_empty());
    let mut untyped_source = source("ConfigMap", "b");
    untyped_source.types = None;
    let plan = plan_prune(&[untyped_source], &[managed("ConfigMap", "b")], &mapping());
    assert_eq!(
        plan.refused,
        Some(PruneRefusal::UntypedListing { name: "b".into() })
    );
}

use serde_json::json;

use super::fixtures::{annotation, obj, origin};
use crate::replicate::mark::{
    MANAGED_BY_MAPPING_LABEL, MAPPING_ANNOTATION, MAPPING_UID_ANNOTATION, mark, unmark,
};
use crate::replicate::{MappingId, is_managed_by};

#[test]
fn label_values_are_readable_or_hashed_and_always_valid() {
    let long_name = "a".repeat(200);
    let table = [
        (MappingId::new("dr", "shop"), "dr.shop".to_string()),
        (
            MappingId::new("dr-system", "shop.v2"),
            "dr-system.shop.v2".to_string(),
        ),
    ];
    for (id, want) in table {
        assert_eq!(id.label_value(), want);
    }
    let long = MappingId::new("dr", long_name.clone());
    let v = long.label_value();
    assert_eq!(v.len(), 42);
    assert!(
        v.starts_with("h-") && v[2..].chars().all(|c| c.is_ascii_hexdigit()),
        "{v}"
    );
    assert_eq!(v, MappingId::new("dr", long_name).label_value(), "stable");
    assert_ne!(v, MappingId::new("dr", "b".repeat(200)).label_value());
    let label_value = regex::Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").ok();
    for id in [MappingId::new("dr", "shop"), long] {
        let v = id.label_value();
        assert!(
            v.len() <= 63 && label_value.as_ref().is_some_and(|r| r.is_match(&v)),
            "{v}"
        );
    }
    assert_eq!(
        MappingId::new("dr", "shop").label_selector(),
        "dr-syncer.io/managed-by-mapping=dr.shop"
    );
}

#[test]
fn marked_objects_are_managed_only_by_their_mapping() {
    let mine = MappingId::new("dr", "shop");
    let other = MappingId::new("dr", "blog");
    let mut o = obj(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}}),
    );
    assert!(!is_managed_by(&o, &mine));
    mark(&mut o, &origin(&mine, "shop", Some("u-1")));
    assert!(is_managed_by(&o, &mine));
    assert!(!is_managed_by(&o, &other));
    for (key, want) in [
        ("dr-syncer.io/source-cluster", "prod"),
        ("dr-syncer.io/source-namespace", "shop"),
        ("dr-syncer.io/source-uid", "u-1"),
    ] {
        assert_eq!(annotation(&o, key), Some(want), "{key}");
    }

    // A look-alike label without the annotation (or with another mapping's) is not ours.
    let mut label_only = o.clone();
    if let Some(a) = label_only.metadata.annotations.as_mut() {
        a.remove(MAPPING_ANNOTATION);
    }
    assert!(!is_managed_by(&label_only, &mine));
    let mut annotation_only = o.clone();
    if let Some(l) = annotation_only.metadata.labels.as_mut() {
        l.remove(MANAGED_BY_MAPPING_LABEL);
    }
    assert!(!is_managed_by(&annotation_only, &mine));

    unmark(&mut o);
    assert!(!is_managed_by(&o, &mine));
    assert!(o.metadata.annotations.unwrap_or_default().is_empty());
}

/// A mapping identity of one incarnation (uid), accepting uid-less marks or not.
fn incarnation(uid: &str, accept_unversioned: bool) -> MappingId {
    MappingId {
        uid: Some(uid.to_owned()),
        accept_unversioned_marks: accept_unversioned,
        ..MappingId::new("dr", "shop")
    }
}

#[test]
fn marks_carry_the_mapping_uid_so_a_recreated_mapping_owns_nothing_of_its_predecessor() {
    let first = incarnation("uid-1", false);
    let mut o = obj(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}}),
    );
    mark(&mut o, &origin(&first, "shop", None));
    assert_eq!(annotation(&o, MAPPING_UID_ANNOTATION), Some("uid-1"));
    let mut unversioned = o.clone();
    if let Some(a) = unversioned.metadata.annotations.as_mut() {
        a.remove(MAPPING_UID_ANNOTATION);
    }
    // (object, mapping, owned): same name, the uid decides.
    let table = [
        (&o, incarnation("uid-1", false), true),
        (&o, incarnation("uid-2", false), false),
        (&o, incarnation("uid-2", true), false),
        // Marks from before marks carried the uid: only a mapping that has synced.
        (&unversioned, incarnation("uid-2", true), true),
        (&unversioned, incarnation("uid-2", false), false),
        // No uid known (tools, tests): by name alone.
        (&o, MappingId::new("dr", "shop"), true),
    ];
    for (i, (object, mapping, owned)) in table.into_iter().enumerate() {
        assert_eq!(is_managed_by(object, &mapping), owned, "row {i}");
    }
    // Equality is by name: the uid is not part of which mapping is meant.
    assert_eq!(incarnation("uid-1", false), incarnation("uid-2", true));
    unmark(&mut o);
    assert_eq!(annotation(&o, MAPPING_UID_ANNOTATION), None);
}

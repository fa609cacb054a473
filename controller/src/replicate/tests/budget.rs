use crate::replicate::budget::{DeletionBudget, Verdict};

/// Asks `n` times, carrying out every allowed deletion; returns how many were allowed.
fn delete_up_to(budget: &mut DeletionBudget, n: usize) -> usize {
    let mut allowed = 0;
    for i in 0..n {
        if budget.ask(&format!("ConfigMap/cm-{i}")) == Verdict::Allow {
            budget.deleted();
            allowed += 1;
        }
    }
    allowed
}

#[test]
fn deletions_stop_at_half_of_the_managed_objects() {
    let cases = [
        // (managed at the last full sync, deletions asked, allowed)
        (20, 20, 10),
        (20, 5, 5),
        (21, 21, 10),
        (2, 2, 1),
        (1, 1, 0),
        (0, 1, 0),
    ];
    for (managed, asked, allowed) in cases {
        let mut budget = DeletionBudget::default();
        budget.reset(managed);
        assert_eq!(
            delete_up_to(&mut budget, asked),
            allowed,
            "managed {managed}, asked {asked}"
        );
        assert_eq!(
            budget.refusal().is_some(),
            asked > allowed,
            "managed {managed}"
        );
    }
}

#[test]
fn before_the_first_full_sync_deletions_are_deferred_not_refused() {
    let mut budget = DeletionBudget::default();
    assert_eq!(budget.ask("ConfigMap/a"), Verdict::Defer);
    assert_eq!(budget.refusal(), None);
}

#[test]
fn a_refusal_names_the_object_and_lasts_until_the_next_full_sync() {
    let mut budget = DeletionBudget::default();
    budget.reset(2);
    assert_eq!(delete_up_to(&mut budget, 1), 1);
    let Verdict::Refuse(why) = budget.ask("ConfigMap/last") else {
        panic!("the last object must not go");
    };
    assert!(
        why.contains("ConfigMap/last") && why.contains("1 of the mapping's 2"),
        "{why}"
    );
    assert_eq!(budget.refusal(), Some(why.as_str()));
    budget.reset(1);
    assert_eq!(budget.refusal(), None);
}

#[test]
fn objects_created_by_the_watchers_count_towards_the_budget() {
    let mut budget = DeletionBudget::default();
    budget.reset(2);
    budget.created();
    budget.created();
    assert_eq!(delete_up_to(&mut budget, 4), 2);
}

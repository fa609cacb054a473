//! What one sync did: counts per kind, per-object outcomes and failures, and what pruning
//! did; the reconciler turns a [`SyncReport`] into status and events.

use std::collections::BTreeMap;
use std::time::Duration;

/// Counts of one kind in one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Did not exist at the target.
    pub created: u32,
    /// Existed and changed.
    pub updated: u32,
    /// Existed and the apply changed nothing.
    pub unchanged: u32,
    /// Pruned.
    pub deleted: u32,
    /// Could not be written.
    pub failed: u32,
    /// Left out by the selection rules.
    pub skipped: u32,
}

impl KindCounts {
    pub(super) fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Unchanged => self.unchanged += 1,
        }
    }
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Created at the target.
    Created,
    /// Changed at the target.
    Updated,
    /// Already up to date.
    Unchanged,
}

impl Outcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// One object that could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFailure {
    /// Kind.
    pub kind: String,
    /// Name (source).
    pub name: String,
    /// Why.
    pub message: String,
}

/// What pruning did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PruneOutcome {
    /// `prune` is off.
    #[default]
    Disabled,
    /// Pruning ran and deleted this many objects.
    Done(u32),
    /// Pruning was refused for safety; nothing was deleted.
    Refused(String),
}

/// The result of a full sync.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Counts by kind.
    pub kinds: BTreeMap<String, KindCounts>,
    /// Objects that failed.
    pub failures: Vec<ObjectFailure>,
    /// Workloads scaled to zero: (name, source replicas).
    pub scales: Vec<(String, i32)>,
    /// Destination objects (`Kind/name`) named like selected source objects but not
    /// written by this mapping: left alone (see `spec.safety.adoptExistingObjects`).
    pub foreign: Vec<String>,
    /// Pruning result.
    pub prune: PruneOutcome,
    /// Destination objects written by this mapping after the sync (0 when `prune` is
    /// off): the base of Continuous mode's deletion budget.
    pub managed: usize,
    /// Wall time.
    pub duration: Duration,
}

impl SyncReport {
    /// Objects considered (selected at the source).
    pub fn total(&self) -> u32 {
        self.kinds
            .values()
            .map(|c| c.created + c.updated + c.unchanged + c.failed)
            .sum()
    }

    /// Objects written successfully (or already up to date).
    pub fn succeeded(&self) -> u32 {
        self.kinds
            .values()
            .map(|c| c.created + c.updated + c.unchanged)
            .sum()
    }

    /// Objects that failed.
    pub fn failed(&self) -> u32 {
        self.kinds.values().map(|c| c.failed).sum()
    }

    /// `ConfigMap: 2 created, 1 unchanged; Secret: 1 failed`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .kinds
            .iter()
            .map(|(kind, c)| {
                let mut fields = Vec::new();
                for (n, label) in [
                    (c.created, "created"),
                    (c.updated, "updated"),
                    (c.unchanged, "unchanged"),
                    (c.deleted, "deleted"),
                    (c.failed, "failed"),
                ] {
                    if n > 0 {
                        fields.push(format!("{n} {label}"));
                    }
                }
                if fields.is_empty() {
                    fields.push("none".to_owned());
                }
                format!("{kind}: {}", fields.join(", "))
            })
            .collect();
        if parts.is_empty() {
            "no objects".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_non_zero_counts() {
        let mut report = SyncReport::default();
        report.kinds.insert(
            "ConfigMap".into(),
            KindCounts {
                created: 2,
                unchanged: 1,
                ..KindCounts::default()
            },
        );
        report.kinds.insert(
            "Secret".into(),
            KindCounts {
                failed: 1,
                ..KindCounts::default()
            },
        );
        assert_eq!(
            report.summary(),
            "ConfigMap: 2 created, 1 unchanged; Secret: 1 failed"
        );
        assert_eq!(report.total(), 4);
        assert_eq!(report.succeeded(), 3);
        assert_eq!(report.failed(), 1);
    }
}

//! Continuous mode's prune guard: how many deletions the watchers may propagate before
//! the next full sync looks at the whole picture again.
//!
//! A full sync refuses to prune more than half of the mapping's objects, or anything when
//! the source listing is empty ([`plan_prune`](super::plan_prune)). Watch events arrive one
//! at a time, so the same rule is applied to a running total: the managed objects counted
//! by the last full sync (plus those the watchers created since) against the deletions
//! propagated since. A deletion the budget refuses is not lost: the next full sync sees the
//! object gone at the source and prunes it under the full sync's guards.

/// The deletion budget of one Continuous mapping, reset by every full sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletionBudget {
    /// Objects at the destination written by the mapping, as of the last full sync plus
    /// those created since (`None` until a full sync has counted them).
    managed: Option<usize>,
    /// Deletions propagated since the last full sync.
    deleted: usize,
    /// Why the last deletion was refused, until the next full sync.
    refused: Option<String>,
}

/// What the budget says about one more deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delete it.
    Allow,
    /// No full sync has counted the objects yet (the one that follows the start of the
    /// watchers is running): leave it to that sync's prune.
    Defer,
    /// Refused; the text says why.
    Refuse(String),
}

impl DeletionBudget {
    /// A full sync counted `managed` objects of the mapping at the destination.
    pub fn reset(&mut self, managed: usize) {
        *self = Self {
            managed: Some(managed),
            ..Self::default()
        };
    }

    /// The watchers created one object at the destination.
    pub fn created(&mut self) {
        if let Some(managed) = self.managed.as_mut() {
            *managed += 1;
        }
    }

    /// Whether the deletion of `what` (`Kind/name`) may be propagated now. A refusal is
    /// remembered (see [`DeletionBudget::refusal`]); call [`DeletionBudget::deleted`] after
    /// an allowed deletion happened.
    pub fn ask(&mut self, what: &str) -> Verdict {
        let Some(managed) = self.managed else {
            return Verdict::Defer;
        };
        if (self.deleted + 1) * 2 <= managed {
            return Verdict::Allow;
        }
        let why = format!(
            "continuous mode did not delete {what}: {} of the mapping's {managed} objects were \
             already deleted since the last full sync, and deleting more than half (or every \
             one) is refused; the next full sync applies the prune guards to what is left",
            self.deleted
        );
        self.refused = Some(why.clone());
        Verdict::Refuse(why)
    }

    /// An allowed deletion was carried out.
    pub fn deleted(&mut self) {
        self.deleted += 1;
    }

    /// Why the last deletion since the last full sync was refused, if one was.
    pub fn refusal(&self) -> Option<&str> {
        self.refused.as_deref()
    }
}

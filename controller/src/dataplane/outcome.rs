//! What a data sync run reports: per PVC the outcome (summary or failure), or a failure
//! before any PVC could be tried. The mapping's status and events are made from it.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::status::{go_duration, reasons};
use dr_syncer_worker_wire::SyncSummary;

/// Why a PVC was not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvcFailure {
    /// Condition reason (`AgentUnreachable`, `TargetPvcMissing`, ...).
    pub reason: &'static str,
    /// What happened and what to do.
    pub message: String,
}

/// The result of one PVC.
#[derive(Debug, Clone)]
pub struct PvcOutcome {
    /// PVC name.
    pub pvc: String,
    /// Source node that served it, when located.
    pub node: Option<String>,
    /// Attempts (1 + retries).
    pub attempts: u32,
    /// Wall time including retries.
    pub duration: Duration,
    /// When it ended.
    pub finished: Time,
    /// Summary or failure.
    pub result: Result<SyncSummary, PvcFailure>,
}

/// The result of a data sync run.
#[derive(Debug, Clone, Default)]
pub struct DataSyncReport {
    /// One entry per PVC, sorted by name.
    pub pvcs: Vec<PvcOutcome>,
    /// A failure before any PVC could be tried (disabled, keys, agents, listing).
    pub setup: Option<PvcFailure>,
    /// Wall time.
    pub duration: Duration,
}

impl DataSyncReport {
    /// The failed PVCs.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &PvcFailure)> {
        self.pvcs
            .iter()
            .filter_map(|o| o.result.as_ref().err().map(|f| (o.pvc.as_str(), f)))
    }

    /// The PVCs whose copy ran but whose deletions the worker's prune guard refused (an
    /// empty or shrunken source listing), with its explanation.
    pub fn prune_refusals(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pvcs.iter().filter_map(|o| {
            let s = o.result.as_ref().ok()?;
            Some((o.pvc.as_str(), s.prune_refused.as_deref()?))
        })
    }

    /// Whether everything was copied and every deletion due was made.
    pub fn ok(&self) -> bool {
        self.setup.is_none()
            && self.failures().next().is_none()
            && self.prune_refusals().next().is_none()
    }

    /// Reason of the `DataSynced` condition.
    pub fn reason(&self) -> &'static str {
        if let Some(f) = &self.setup {
            return f.reason;
        }
        if let Some((_, f)) = self.failures().next() {
            return f.reason;
        }
        if self.prune_refusals().next().is_some() {
            return reasons::DATA_PRUNE_REFUSED;
        }
        reasons::DATA_SYNC_SUCCEEDED
    }

    /// Message of the `DataSynced` condition: totals, or each failed PVC with its error,
    /// or each PVC whose deletions were refused with the way out.
    pub fn message(&self) -> String {
        if let Some(f) = &self.setup {
            return f.message.clone();
        }
        let failed: Vec<String> = self
            .failures()
            .map(|(pvc, f)| format!("PVC {pvc}: {} ({})", f.message, f.reason))
            .collect();
        if !failed.is_empty() {
            return format!(
                "{} of {} PVCs failed: {}",
                failed.len(),
                self.pvcs.len(),
                failed.join("; ")
            );
        }
        let refused: Vec<String> = self
            .prune_refusals()
            .map(|(pvc, why)| format!("PVC {pvc}: {why}"))
            .collect();
        if !refused.is_empty() {
            return format!(
                "deletions refused for {} of {} PVCs (the copy kept every target file; if the \
                 source really lost them, set spec.safety.allowMassDataDeletion): {}",
                refused.len(),
                self.pvcs.len(),
                refused.join("; ")
            );
        }
        let sum = |f: fn(&SyncSummary) -> u64| {
            self.pvcs
                .iter()
                .filter_map(|o| o.result.as_ref().ok())
                .map(f)
                .sum::<u64>()
        };
        format!(
            "{} PVCs copied in {}: {} files transferred, {} bytes literal, {} bytes matched, {} bytes on the wire",
            self.pvcs.len(),
            go_duration(self.duration),
            sum(|s| s.files_transferred),
            sum(|s| s.literal_bytes),
            sum(|s| s.matched_bytes),
            sum(|s| s.wire_bytes),
        )
    }
}

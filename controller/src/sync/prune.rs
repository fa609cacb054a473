//! Pruning: deleting destination objects DR-Syncer created whose source is gone, only after
//! every source listing succeeded, each delete carrying a uid precondition.

use kube::api::{DeleteParams, Preconditions};
use kube::core::DynamicObject;

use super::backoff::is_connection_error;
use super::error::SyncError;
use super::plan::SyncPlan;
use super::report::{ObjectFailure, PruneOutcome, SyncReport};
use crate::replicate::{self};

impl SyncPlan {
    /// Pruning over all kinds at once (the "more than half" rule needs the whole picture).
    pub(super) async fn prune(
        &self,
        sources: &[DynamicObject],
        targets: &[DynamicObject],
        report: &mut SyncReport,
    ) -> Result<PruneOutcome, SyncError> {
        let plan = replicate::plan_prune(sources, targets, &self.mapping);
        report.managed = plan.managed;
        if let Some(refusal) = plan.refused {
            tracing::warn!(%refusal, "prune refused");
            return Ok(PruneOutcome::Refused(refusal.to_string()));
        }
        let mut deleted = 0;
        for object in plan.delete {
            let Some(kind) = self
                .kinds
                .iter()
                .find(|k| k.kind == object.kind && k.api_version() == object.api_version)
            else {
                continue;
            };
            let params = DeleteParams {
                preconditions: object.uid.clone().map(|uid| Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match self.dest_api(kind).delete(&object.name, &params).await {
                Ok(_) => {
                    deleted += 1;
                    report.kinds.entry(kind.kind.clone()).or_default().deleted += 1;
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) if is_connection_error(&e) => return Err(self.dest_error(e)),
                Err(e) => report.failures.push(ObjectFailure {
                    kind: kind.kind.clone(),
                    name: object.name.clone(),
                    message: format!("prune: {e}"),
                }),
            }
        }
        Ok(PruneOutcome::Done(deleted))
    }
}

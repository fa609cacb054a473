//! Writing one object to the destination: server-side apply with retries, the immutable-field
//! rules (recreate or report), the ownership check before a delete, and the Continuous-mode
//! per-object entry points the watchers call.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::{DynamicObject, TypeMeta};

use super::backoff::{is_connection_error, is_transient};
use super::error::SyncError;
use super::plan::SyncPlan;
use super::report::Outcome;
use crate::k8s::FIELD_MANAGER;
use crate::replicate::budget::{DeletionBudget, Verdict};
use crate::replicate::immutable::{self, ImmutableAction, ImmutableConflict};
use crate::replicate::{self, ResourceKind, Selection};

/// Outcome of one object, and the source replica count of a scaled workload.
pub(super) type ApplyResult = Result<(Outcome, Option<i32>), ApplyError>;

/// The error of one object, with whether the whole sync must stop.
pub(super) enum ApplyError {
    Object(String),
    Destination(String),
}

impl SyncPlan {
    /// Transforms and applies one selected source object, with retries and the immutable
    /// field policy. `previous` is the target's resourceVersion, if the object exists there.
    pub(super) async fn apply_object(
        &self,
        kind: &ResourceKind,
        obj: &DynamicObject,
        previous: Option<&str>,
    ) -> ApplyResult {
        let transformed = replicate::transform(obj, kind, &self.transform)
            .map_err(|e| ApplyError::Object(e.to_string()))?;
        let name = transformed.object.name_any();
        let api = self.dest_api(kind);
        let mut attempt = 0;
        loop {
            match self.apply_once(&api, &name, &transformed.object).await {
                Ok(applied) => {
                    let outcome = match previous {
                        None => Outcome::Created,
                        Some(rv) if applied.resource_version().as_deref() == Some(rv) => {
                            Outcome::Unchanged
                        }
                        Some(_) => Outcome::Updated,
                    };
                    let replicas = transformed
                        .original_replicas
                        .filter(|_| kind.group == "apps");
                    return Ok((outcome, replicas));
                }
                Err(kube::Error::Api(status))
                    if immutable::immutable_conflict(&status).is_some() =>
                {
                    let conflict =
                        immutable::immutable_conflict(&status).unwrap_or(ImmutableConflict {
                            fields: Vec::new(),
                            message: status.message.clone(),
                        });
                    return self
                        .handle_immutable(kind, &api, &name, &transformed.object, conflict)
                        .await
                        .map(|outcome| (outcome, transformed.original_replicas));
                }
                Err(error) if is_connection_error(&error) => {
                    return Err(ApplyError::Destination(error.to_string()));
                }
                Err(error) if is_transient(&error) && attempt < self.backoff.max_retries => {
                    tokio::time::sleep(self.backoff.delay(attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(ApplyError::Object(error.to_string())),
            }
        }
    }

    pub(super) async fn apply_once(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        obj: &DynamicObject,
    ) -> Result<DynamicObject, kube::Error> {
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
    }

    /// Executes `immutableResourceConfig` for an apply refused on immutable fields.
    pub(super) async fn handle_immutable(
        &self,
        kind: &ResourceKind,
        api: &Api<DynamicObject>,
        name: &str,
        obj: &DynamicObject,
        conflict: ImmutableConflict,
    ) -> Result<Outcome, ApplyError> {
        let action = immutable::decide(kind, self.spec.immutable_resource_config.as_ref())
            .map_err(|e| ApplyError::Object(e.to_string()))?;
        tracing::info!(%name, ?action, fields = ?conflict.fields, "immutable fields differ");
        let (propagation, timeout, force) = match action {
            ImmutableAction::Report => {
                return Err(ApplyError::Object(format!(
                    "immutable fields differ at the destination; left unchanged \
                     (immutableResourceConfig NoChange): {}",
                    conflict.message
                )));
            }
            ImmutableAction::PartialUpdate => {
                let mut partial = obj.clone();
                if !immutable::drop_fields(&mut partial, &conflict.fields) {
                    return Err(ApplyError::Object(format!(
                        "PartialUpdate: the API server did not name the immutable fields: {}",
                        conflict.message
                    )));
                }
                return self
                    .apply_once(api, name, &partial)
                    .await
                    .map(|_| Outcome::Updated)
                    .map_err(|e| ApplyError::Object(format!("PartialUpdate: {e}")));
            }
            ImmutableAction::Recreate => (PropagationPolicy::Background, RECREATE_WAIT, false),
            // Foreground deletion only completes once dependents (ReplicaSets, pods) are gone.
            ImmutableAction::RecreateWithPodDrain { drain_timeout } => {
                (PropagationPolicy::Foreground, drain_timeout, false)
            }
            ImmutableAction::ForceUpdate {
                force_delete_timeout,
            } => (PropagationPolicy::Foreground, force_delete_timeout, true),
        };
        self.ensure_ours(api, name).await?;
        self.delete_and_wait(api, name, propagation, timeout, force)
            .await
            .map_err(ApplyError::Object)?;
        self.apply_once(api, name, obj)
            .await
            .map(|_| Outcome::Updated)
            .map_err(|e| ApplyError::Object(format!("recreate: {e}")))
    }

    /// Refuses to delete a destination object this mapping did not write: recreating it
    /// would destroy something a user (or another mapping) owns.
    pub(super) async fn ensure_ours(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
    ) -> Result<(), ApplyError> {
        let live = api
            .get_opt(name)
            .await
            .map_err(|e| ApplyError::Object(format!("reading {name} before recreate: {e}")))?;
        match live {
            Some(live) if !replicate::is_managed_by(&live, &self.mapping) => {
                Err(ApplyError::Object(format!(
                    "immutable fields differ and {name} at the destination was not created by \
                     this mapping; left unchanged (delete it by hand to let the mapping recreate it)"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Deletes and waits for the object to be gone; with `force`, deletes again with a
    /// zero grace period once `timeout` has passed.
    pub(super) async fn delete_and_wait(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        propagation: PropagationPolicy,
        timeout: Duration,
        force: bool,
    ) -> Result<(), String> {
        let params = DeleteParams {
            propagation_policy: Some(propagation),
            ..DeleteParams::default()
        };
        delete_ignoring_absent(api, name, &params).await?;
        match wait_gone(api, name, timeout).await {
            Ok(()) => Ok(()),
            Err(_) if force => {
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                };
                delete_ignoring_absent(api, name, &params).await?;
                wait_gone(api, name, RECREATE_WAIT).await
            }
            Err(e) => Err(e),
        }
    }
}

impl SyncPlan {
    /// Continuous mode: applies one changed source object (if selected).
    /// `Ok(None)`: the object is not replicated (selection rules).
    pub async fn apply_source_object(
        &self,
        kind: &ResourceKind,
        obj: &DynamicObject,
    ) -> Result<Option<Outcome>, String> {
        let mut obj = obj.clone();
        obj.types = Some(TypeMeta {
            api_version: kind.api_version(),
            kind: kind.kind.clone(),
        });
        if let Selection::Skip(_) = replicate::select(&obj, kind, &self.filter) {
            return Ok(None);
        }
        let name = obj.name_any();
        let live = self
            .dest_api(kind)
            .get_metadata_opt(&name)
            .await
            .map_err(|e| self.dest_error(e).to_string())?;
        if live
            .as_ref()
            .is_some_and(|l| !self.may_overwrite(&l.metadata))
        {
            tracing::debug!(kind = %kind.kind, %name, "not ours at the destination; left alone");
            return Ok(None);
        }
        let previous = live.map(|l| l.metadata.resource_version.unwrap_or_default());
        match self.apply_object(kind, &obj, previous.as_deref()).await {
            Ok((outcome, _)) => Ok(Some(outcome)),
            Err(ApplyError::Destination(message)) => Err(self.dest_error(message).to_string()),
            Err(ApplyError::Object(message)) => {
                Err(format!("{} {}: {message}", kind.kind, obj.name_any()))
            }
        }
    }

    /// Continuous mode: the source object was deleted; deletes our copy if pruning is on,
    /// the copy is ours and of that very object, the source namespace still exists (a
    /// namespace deletion must never wipe the DR copy) and `budget` allows one more
    /// deletion since the last full sync.
    pub async fn delete_for_source(
        &self,
        kind: &ResourceKind,
        source_obj: &DynamicObject,
        budget: &Mutex<DeletionBudget>,
    ) -> Result<Deletion, SyncError> {
        if !self.spec.prune {
            return Ok(Deletion::Kept);
        }
        self.source_namespace_object().await?;
        let api = self.dest_api(kind);
        let name = source_obj.name_any();
        let Some(mut target) = api.get_opt(&name).await.map_err(|e| self.dest_error(e))? else {
            return Ok(Deletion::Kept);
        };
        target.types = Some(TypeMeta {
            api_version: kind.api_version(),
            kind: kind.kind.clone(),
        });
        if !replicate::prune::may_delete_for_source_delete(
            &target,
            &self.mapping,
            source_obj.metadata.uid.as_deref(),
        ) {
            return Ok(Deletion::Kept);
        }
        let verdict = match budget.lock() {
            Ok(mut b) => b.ask(&format!("{}/{name}", kind.kind)),
            Err(_) => Verdict::Defer,
        };
        match verdict {
            Verdict::Allow => {}
            Verdict::Defer => return Ok(Deletion::Kept),
            Verdict::Refuse(why) => return Ok(Deletion::Refused(why)),
        }
        let params = DeleteParams {
            preconditions: target.metadata.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                if let Ok(mut b) = budget.lock() {
                    b.deleted();
                }
                Ok(Deletion::Deleted)
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Deletion::Kept),
            Err(e) => Err(self.dest_error(e)),
        }
    }
}

/// What Continuous mode did about a source deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// The copy was deleted.
    Deleted,
    /// Nothing to delete, or not ours to delete (pruning off, no copy, a copy of another
    /// object or mapping), or left to the running full sync.
    Kept,
    /// The deletion budget refused it (the text says why).
    Refused(String),
}

/// Wait for a plain Recreate's deletion.
pub(super) const RECREATE_WAIT: Duration = Duration::from_secs(60);

pub(super) async fn delete_ignoring_absent(
    api: &Api<DynamicObject>,
    name: &str,
    params: &DeleteParams,
) -> Result<(), String> {
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(format!("deleting {name} to recreate it: {e}")),
    }
}

/// Polls until the object is gone, or `timeout` passes.
pub(super) async fn wait_gone(
    api: &Api<DynamicObject>,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match api.get_opt(name).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => {}
            Err(e) => return Err(format!("waiting for {name} to be deleted: {e}")),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} was not deleted within {}s; left for the next sync",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

//! The full sync of one mapping: the source namespace must exist, the destination namespace
//! is made to match, then every kind in turn is listed, selected, transformed, applied and
//! pruned, the custom kinds' CRDs first.

use std::collections::HashMap;
use std::time::Instant;

use futures::StreamExt;
use kube::ResourceExt;
use kube::core::DynamicObject;

use super::apply::{ApplyError, ApplyResult};
use super::error::SyncError;
use super::plan::{APPLY_CONCURRENCY, SyncPlan, metadata_only};
use super::report::{ObjectFailure, SyncReport};
use crate::replicate::{self, ResourceKind, Selection};

impl SyncPlan {
    /// Runs one complete sync: namespace, CRDs (syncCRDs), every kind, then pruning.
    pub async fn full_sync(&self) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let source_ns = self.source_namespace_object().await?;
        let foreign_namespace = self.ensure_dest_namespace(&source_ns).await?;
        if self.spec.sync_crds {
            self.sync_crds().await?;
        }
        let mut report = SyncReport::default();
        report.foreign.extend(foreign_namespace);
        let mut listed_sources = Vec::new();
        let mut targets = Vec::new();
        for kind in &self.kinds {
            let (listed, existing) = self.sync_kind(kind, &mut report).await?;
            if self.spec.prune {
                listed_sources.extend(listed);
                targets.extend(existing);
            }
        }
        if self.spec.prune {
            report.prune = self.prune(&listed_sources, &targets, &mut report).await?;
            // Prune counted the listing taken before the applies: add what this sync
            // created and take away what it pruned, for the count after the sync.
            let created: u32 = report.kinds.values().map(|c| c.created).sum();
            let deleted: u32 = report.kinds.values().map(|c| c.deleted).sum();
            report.managed = (report.managed + created as usize).saturating_sub(deleted as usize);
        }
        report.duration = started.elapsed();
        Ok(report)
    }

    /// Syncs one kind; returns the whole source listing (metadata only; empty unless
    /// pruning) and the target
    /// listing, for prune. Pruning compares against every source object, selected or not:
    /// it removes copies of objects deleted at the source, never the copy of an object that
    /// still exists but is now filtered out (e.g. newly labelled `dr-syncer.io/ignore`).
    pub(super) async fn sync_kind(
        &self,
        kind: &ResourceKind,
        report: &mut SyncReport,
    ) -> Result<(Vec<DynamicObject>, Vec<DynamicObject>), SyncError> {
        let sources = Self::list_all(&self.source_api(kind), kind)
            .await
            .map_err(|e| self.source_error(format!("listing {}: {e}", kind.group_resource())))?;
        let targets = Self::list_metadata(&self.dest_api(kind), kind)
            .await
            .map_err(|e| self.dest_error(format!("listing {}: {e}", kind.group_resource())))?;
        let existing: HashMap<String, Existing> = targets
            .iter()
            .map(|o| {
                let existing = Existing {
                    version: o.resource_version().unwrap_or_default(),
                    ours: self.may_overwrite(&o.metadata),
                };
                (o.name_any(), existing)
            })
            .collect();
        let counts = report.kinds.entry(kind.kind.clone()).or_default();
        // Prune inputs are kept only when pruning (metadata only: identities and marks).
        let listed: Vec<DynamicObject> = if self.spec.prune {
            sources
                .iter()
                .map(|o| metadata_only(kind, o.metadata.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let mut kept = Vec::new();
        for obj in sources {
            match replicate::select(&obj, kind, &self.filter) {
                Selection::Keep if existing.get(&obj.name_any()).is_some_and(|e| !e.ours) => {
                    counts.skipped += 1;
                    report
                        .foreign
                        .push(format!("{}/{}", kind.kind, obj.name_any()));
                }
                Selection::Keep => kept.push(obj),
                Selection::Skip(reason) => {
                    counts.skipped += 1;
                    tracing::trace!(name = %obj.name_any(), %reason, "skipped");
                }
            }
        }
        let results: Vec<(String, ApplyResult)> = futures::stream::iter(0..kept.len())
            .map(|i| {
                let obj = &kept[i];
                let existing = &existing;
                async move {
                    let name = obj.name_any();
                    let previous = existing.get(&name).map(|e| e.version.as_str());
                    (name, self.apply_object(kind, obj, previous).await)
                }
            })
            .buffer_unordered(APPLY_CONCURRENCY)
            .collect()
            .await;
        for (name, result) in results {
            match result {
                Ok((outcome, replicas)) => {
                    counts.add(outcome);
                    if let Some(replicas) = replicas {
                        report.scales.push((name, replicas));
                    }
                }
                Err(ApplyError::Object(message)) => {
                    counts.failed += 1;
                    report.failures.push(ObjectFailure {
                        kind: kind.kind.clone(),
                        name,
                        message,
                    });
                }
                Err(ApplyError::Destination(message)) => return Err(self.dest_error(message)),
            }
        }
        Ok((listed, targets))
    }
}

/// A destination object as the sync sees it before writing.
struct Existing {
    /// Its resourceVersion (tells Created / Updated / Unchanged apart).
    version: String,
    /// Whether this mapping may overwrite it: written by this mapping, or adopted.
    ours: bool,
}

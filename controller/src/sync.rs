//! The sync engine: one NamespaceMapping's objects from the source namespace to the target.
//!
//! A [`SyncPlan`] is built once per spec (clients, kinds, compiled filters and transforms) and
//! shared: the reconciler runs [`SyncPlan::full_sync`] (list every kind, select, transform,
//! server-side apply, then prune), the Continuous-mode watchers call
//! [`SyncPlan::apply_source_object`] and [`SyncPlan::delete_for_source`] per event.
//!
//! Safety rules kept here: nothing is pruned unless every source listing succeeded and the
//! source namespace exists and is not terminating; deletions carry a uid precondition; a
//! destination that cannot be reached aborts the sync rather than failing object by object.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_syncer_crds::namespace_mapping::{NamespaceMappingSpec, RetryConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::{DynamicObject, TypeMeta};
use kube::{Client, ResourceExt};

use crate::context::FIELD_MANAGER;
use crate::replicate::immutable::{self, ImmutableAction, ImmutableConflict};
use crate::replicate::mark::Origin;
use crate::replicate::namespace::{NamespaceRules, target_namespace};
use crate::replicate::{
    self, MappingId, ObjectFilter, ResourceKind, RulesError, Selection, TransformConfig,
};

/// Objects applied at the same time within one kind.
pub const APPLY_CONCURRENCY: usize = 16;

/// How long a copied CRD may take to be served at the destination.
const CRD_ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Page size of source and target listings.
const LIST_PAGE: u32 = 500;

/// Why a sync as a whole failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The source cluster could not be read (discovery, listing).
    #[error("source cluster {cluster} unavailable: {message}")]
    SourceUnavailable {
        /// RemoteCluster name.
        cluster: String,
        /// What failed.
        message: String,
    },
    /// The destination cluster could not be reached.
    #[error("destination cluster {cluster} unavailable: {message}")]
    DestinationUnavailable {
        /// RemoteCluster name.
        cluster: String,
        /// What failed.
        message: String,
    },
    /// The source namespace does not exist or is terminating.
    #[error("source namespace {namespace} {state}; nothing was written or deleted")]
    SourceNamespaceMissing {
        /// The namespace.
        namespace: String,
        /// "does not exist" or "is terminating".
        state: &'static str,
    },
    /// The destination namespace does not exist and creating it is disabled.
    #[error(
        "destination namespace {0} does not exist and namespaceConfig.createNamespace is false"
    )]
    DestinationNamespaceMissing(String),
    /// The spec cannot be acted on (unknown resource type, bad regex, bad patch...).
    #[error("{0}")]
    InvalidSpec(#[from] RulesError),
}

impl SyncError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        use crate::status::reasons;
        match self {
            SyncError::SourceUnavailable { .. } => reasons::SOURCE_UNAVAILABLE,
            SyncError::DestinationUnavailable { .. } => reasons::DESTINATION_UNAVAILABLE,
            SyncError::SourceNamespaceMissing { .. } => reasons::SOURCE_NAMESPACE_MISSING,
            SyncError::DestinationNamespaceMissing(_) => reasons::DESTINATION_NAMESPACE_MISSING,
            SyncError::InvalidSpec(_) => reasons::INVALID_SPEC,
        }
    }

    /// Whether only a spec change can fix it (no point retrying on a timer).
    pub fn is_permanent(&self) -> bool {
        matches!(self, SyncError::InvalidSpec(_))
    }
}

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
    fn add(&mut self, outcome: Outcome) {
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
    /// Pruning result.
    pub prune: PruneOutcome,
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

/// Per-object retry policy from `retryConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Retries after the first failure.
    pub max_retries: u32,
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Growth factor per retry.
    pub multiplier: f64,
}

impl Backoff {
    /// From the spec (defaults as documented: 5 retries, 5s, 5m, x2).
    pub fn from_spec(config: Option<&RetryConfig>) -> Self {
        let parse = |s: &str, d: u64| {
            dr_syncer_crds::common::parse_duration(s).unwrap_or(Duration::from_secs(d))
        };
        match config {
            None => Backoff {
                max_retries: 5,
                initial: Duration::from_secs(5),
                max: Duration::from_secs(300),
                multiplier: 2.0,
            },
            Some(c) => Backoff {
                max_retries: u32::try_from(c.max_retries).unwrap_or(0),
                initial: parse(&c.initial_backoff, 5),
                max: parse(&c.max_backoff, 300),
                multiplier: f64::from(c.backoff_multiplier.max(100)) / 100.0,
            },
        }
    }

    /// Wait before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .powi(i32::try_from(attempt).unwrap_or(i32::MAX));
        let secs = self.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

/// Whether an API error is worth retrying for the same object.
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 409 | 429 | 500 | 502 | 503 | 504),
        _ => false,
    }
}

/// Whether the error means the cluster could not be reached at all.
fn is_connection_error(error: &kube::Error) -> bool {
    !matches!(error, kube::Error::Api(_))
}

/// Everything needed to sync one mapping, built once per spec.
pub struct SyncPlan {
    /// The mapping.
    pub mapping: MappingId,
    /// Source RemoteCluster name.
    pub source_cluster: String,
    /// Destination RemoteCluster name.
    pub dest_cluster: String,
    /// Source client (requests).
    pub source: Client,
    /// Source client for watches.
    pub source_watch: Client,
    /// Destination client.
    pub dest: Client,
    /// Source namespace.
    pub source_namespace: String,
    /// Destination namespace.
    pub dest_namespace: String,
    /// Kinds to replicate.
    pub kinds: Vec<ResourceKind>,
    filter: ObjectFilter,
    transform: TransformConfig,
    spec: NamespaceMappingSpec,
    backoff: Backoff,
}

/// Outcome of one object, and the source replica count of a scaled workload.
type ApplyResult = Result<(Outcome, Option<i32>), ApplyError>;

/// The error of one object, with whether the whole sync must stop.
enum ApplyError {
    Object(String),
    Destination(String),
}

impl SyncPlan {
    /// Compiles the spec against the source's discovered kinds.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        mapping: MappingId,
        spec: &NamespaceMappingSpec,
        source_cluster: &str,
        dest_cluster: &str,
        source: Client,
        source_watch: Client,
        dest: Client,
        discovered: &[ResourceKind],
        cluster_default_types: &[String],
    ) -> Result<Self, SyncError> {
        let kinds =
            replicate::resolve_kinds_with_defaults(spec, cluster_default_types, discovered)?;
        let filter = ObjectFilter::from_spec(spec)?;
        let transform =
            TransformConfig::from_spec(mapping.clone(), source_cluster, spec, discovered)?;
        Ok(SyncPlan {
            mapping,
            source_cluster: source_cluster.to_owned(),
            dest_cluster: dest_cluster.to_owned(),
            source,
            source_watch,
            dest,
            source_namespace: spec.source_namespace.clone(),
            dest_namespace: spec.effective_destination_namespace().to_owned(),
            kinds,
            filter,
            transform,
            spec: spec.clone(),
            backoff: Backoff::from_spec(spec.retry_config.as_ref()),
        })
    }

    fn source_error(&self, e: impl std::fmt::Display) -> SyncError {
        SyncError::SourceUnavailable {
            cluster: self.source_cluster.clone(),
            message: e.to_string(),
        }
    }

    fn dest_error(&self, e: impl std::fmt::Display) -> SyncError {
        SyncError::DestinationUnavailable {
            cluster: self.dest_cluster.clone(),
            message: e.to_string(),
        }
    }

    /// The source namespace, checked to exist and not be terminating.
    async fn source_namespace_object(&self) -> Result<Namespace, SyncError> {
        let api: Api<Namespace> = Api::all(self.source.clone());
        let ns = api
            .get_opt(&self.source_namespace)
            .await
            .map_err(|e| self.source_error(e))?;
        match replicate::prune::check_source_namespace(ns.as_ref()) {
            Ok(()) => Ok(ns.unwrap_or_default()),
            Err(refusal) => Err(SyncError::SourceNamespaceMissing {
                namespace: self.source_namespace.clone(),
                state: match refusal {
                    replicate::PruneRefusal::SourceNamespaceTerminating => "is terminating",
                    _ => "does not exist",
                },
            }),
        }
    }

    /// Creates or updates the destination namespace per `namespaceConfig`.
    async fn ensure_dest_namespace(&self, source_ns: &Namespace) -> Result<(), SyncError> {
        let rules = NamespaceRules::from_config(self.spec.namespace_config.as_ref());
        let api: Api<Namespace> = Api::all(self.dest.clone());
        if !rules.create {
            let exists = api
                .get_opt(&self.dest_namespace)
                .await
                .map_err(|e| self.dest_error(e))?
                .is_some();
            return if exists {
                Ok(())
            } else {
                Err(SyncError::DestinationNamespaceMissing(
                    self.dest_namespace.clone(),
                ))
            };
        }
        let origin = Origin {
            mapping: &self.mapping,
            source_cluster: &self.source_cluster,
            source_namespace: &self.source_namespace,
            source_uid: source_ns.metadata.uid.as_deref(),
        };
        let mut target = target_namespace(Some(source_ns), &self.dest_namespace, rules, &origin);
        target.metadata.managed_fields = None;
        let mut body = serde_json::to_value(&target).map_err(|e| self.dest_error(e))?;
        body["apiVersion"] = "v1".into();
        body["kind"] = "Namespace".into();
        api.patch(
            &self.dest_namespace,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| self.dest_error(e))?;
        Ok(())
    }

    fn source_api(&self, kind: &ResourceKind) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.source.clone(),
            &self.source_namespace,
            &kind.api_resource(),
        )
    }

    fn dest_api(&self, kind: &ResourceKind) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.dest.clone(),
            &self.dest_namespace,
            &kind.api_resource(),
        )
    }

    /// Lists every object of a kind, paginated, with apiVersion/kind filled in.
    async fn list_all(
        api: &Api<DynamicObject>,
        kind: &ResourceKind,
    ) -> Result<Vec<DynamicObject>, kube::Error> {
        let mut out = Vec::new();
        let mut params = ListParams::default().limit(LIST_PAGE);
        loop {
            let page = api.list(&params).await?;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            out.extend(page.items.into_iter().map(|mut obj| {
                obj.types = Some(type_meta(kind));
                obj
            }));
            match next {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(out),
            }
        }
    }

    /// Lists only the metadata of every object of a kind (the target side needs names,
    /// versions and marks, not contents: far less memory for big namespaces).
    async fn list_metadata(
        api: &Api<DynamicObject>,
        kind: &ResourceKind,
    ) -> Result<Vec<DynamicObject>, kube::Error> {
        let mut out = Vec::new();
        let mut params = ListParams::default().limit(LIST_PAGE);
        loop {
            let page = api.list_metadata(&params).await?;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            out.extend(
                page.items
                    .into_iter()
                    .map(|m| metadata_only(kind, m.metadata)),
            );
            match next {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(out),
            }
        }
    }

    /// Runs one complete sync: namespace, CRDs (syncCRDs), every kind, then pruning.
    pub async fn full_sync(&self) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let source_ns = self.source_namespace_object().await?;
        self.ensure_dest_namespace(&source_ns).await?;
        if self.spec.sync_crds {
            self.sync_crds().await?;
        }
        let mut report = SyncReport::default();
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
        }
        report.duration = started.elapsed();
        Ok(report)
    }

    /// Syncs one kind; returns the whole source listing (metadata only; empty unless
    /// pruning) and the target
    /// listing, for prune. Pruning compares against every source object, selected or not:
    /// it removes copies of objects deleted at the source, never the copy of an object that
    /// still exists but is now filtered out (e.g. newly labelled `dr-syncer.io/ignore`).
    async fn sync_kind(
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
        let existing: HashMap<String, String> = targets
            .iter()
            .map(|o| (o.name_any(), o.resource_version().unwrap_or_default()))
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
                    let previous = existing.get(&name).map(String::as_str);
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

    /// Transforms and applies one selected source object, with retries and the immutable
    /// field policy. `previous` is the target's resourceVersion, if the object exists there.
    async fn apply_object(
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

    async fn apply_once(
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
    async fn handle_immutable(
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
    async fn ensure_ours(&self, api: &Api<DynamicObject>, name: &str) -> Result<(), ApplyError> {
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
    async fn delete_and_wait(
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

    /// Pruning over all kinds at once (the "more than half" rule needs the whole picture).
    async fn prune(
        &self,
        sources: &[DynamicObject],
        targets: &[DynamicObject],
        report: &mut SyncReport,
    ) -> Result<PruneOutcome, SyncError> {
        let plan = replicate::plan_prune(sources, targets, &self.mapping);
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

    /// Copies the CRDs of the custom resources being replicated (syncCRDs).
    async fn sync_crds(&self) -> Result<(), SyncError> {
        let names = replicate::kinds::crd_names(&self.kinds);
        let source: Api<CustomResourceDefinition> = Api::all(self.source.clone());
        let dest: Api<CustomResourceDefinition> = Api::all(self.dest.clone());
        for name in names {
            let Some(crd) = source
                .get_opt(&name)
                .await
                .map_err(|e| self.source_error(e))?
            else {
                continue;
            };
            let mut body = serde_json::json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": name,
                    "labels": crd.metadata.labels.clone().unwrap_or_default(),
                },
                "spec": crd.spec,
            });
            if let Some(annotations) = crd.metadata.annotations.as_ref() {
                let kept: BTreeMap<&String, &String> = annotations
                    .iter()
                    .filter(|(k, _)| !k.starts_with("kubectl.kubernetes.io/"))
                    .collect();
                body["metadata"]["annotations"] = serde_json::json!(kept);
            }
            dest.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| self.dest_error(format!("applying CRD {name}: {e}")))?;
            self.wait_crd_established(&dest, &name).await?;
        }
        Ok(())
    }

    /// Waits (poll with a deadline) until a CRD at the destination serves its objects, so
    /// the custom resources applied next are not refused.
    async fn wait_crd_established(
        &self,
        api: &Api<CustomResourceDefinition>,
        name: &str,
    ) -> Result<(), SyncError> {
        let deadline = Instant::now() + CRD_ESTABLISH_TIMEOUT;
        loop {
            let crd = api.get_opt(name).await.map_err(|e| self.dest_error(e))?;
            let established = crd
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.dest_error(format!(
                    "CRD {name} not established within {}s",
                    CRD_ESTABLISH_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

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
        match self.apply_object(kind, &obj, Some("")).await {
            Ok((outcome, _)) => Ok(Some(outcome)),
            Err(ApplyError::Destination(message)) => Err(self.dest_error(message).to_string()),
            Err(ApplyError::Object(message)) => {
                Err(format!("{} {}: {message}", kind.kind, obj.name_any()))
            }
        }
    }

    /// Continuous mode: the source object was deleted; deletes our copy if pruning is on,
    /// the copy is ours and of that very object, and the source namespace still exists
    /// (a namespace deletion must never wipe the DR copy). Returns whether it deleted.
    pub async fn delete_for_source(
        &self,
        kind: &ResourceKind,
        source_obj: &DynamicObject,
    ) -> Result<bool, SyncError> {
        if !self.spec.prune {
            return Ok(false);
        }
        self.source_namespace_object().await?;
        let api = self.dest_api(kind);
        let name = source_obj.name_any();
        let Some(mut target) = api.get_opt(&name).await.map_err(|e| self.dest_error(e))? else {
            return Ok(false);
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
            return Ok(false);
        }
        let params = DeleteParams {
            preconditions: target.metadata.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
            Err(e) => Err(self.dest_error(e)),
        }
    }

    /// The spec this plan was built from.
    pub fn spec(&self) -> &NamespaceMappingSpec {
        &self.spec
    }
}

fn type_meta(kind: &ResourceKind) -> TypeMeta {
    TypeMeta {
        api_version: kind.api_version(),
        kind: kind.kind.clone(),
    }
}

/// A listed object reduced to what pruning looks at.
fn metadata_only(kind: &ResourceKind, metadata: kube::api::ObjectMeta) -> DynamicObject {
    DynamicObject {
        types: Some(type_meta(kind)),
        metadata,
        data: serde_json::Value::Null,
    }
}

/// Wait for a plain Recreate's deletion.
const RECREATE_WAIT: Duration = Duration::from_secs(60);

async fn delete_ignoring_absent(
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
async fn wait_gone(api: &Api<DynamicObject>, name: &str, timeout: Duration) -> Result<(), String> {
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

/// Shared plan handle for the watchers.
pub type SharedPlan = Arc<SyncPlan>;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            max_retries: 3,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
            multiplier: 2.0,
        };
        assert_eq!(b.delay(0), Duration::from_secs(1));
        assert_eq!(b.delay(1), Duration::from_secs(2));
        assert_eq!(b.delay(2), Duration::from_secs(4));
        assert_eq!(b.delay(3), Duration::from_secs(5));
        assert_eq!(b.delay(100), Duration::from_secs(5));
    }

    #[test]
    fn backoff_from_spec_uses_percent_multiplier() {
        let config: RetryConfig = serde_json::from_value(serde_json::json!({
            "maxRetries": 2, "initialBackoff": "100ms", "maxBackoff": "1s", "backoffMultiplier": 300
        }))
        .unwrap();
        let b = Backoff::from_spec(Some(&config));
        assert_eq!(b.max_retries, 2);
        assert_eq!(b.delay(1), Duration::from_millis(300));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(Backoff::from_spec(None).initial, Duration::from_secs(5));
    }

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.to_owned(),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn error_classes() {
        assert!(is_transient(&api_error(503, "unavailable")));
        assert!(is_transient(&api_error(429, "slow down")));
        assert!(!is_transient(&api_error(400, "bad")));
        assert!(!is_connection_error(&api_error(500, "x")));
    }

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

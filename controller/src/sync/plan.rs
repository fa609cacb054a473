//! A [`SyncPlan`]: one mapping's clients, kinds, compiled filters and transforms, built once
//! per spec and shared by the full sync and the watchers; and the full sync itself (source
//! namespace, destination namespace, each kind in turn).

use std::sync::Arc;

use dr_syncer_crds::namespace_mapping::NamespaceMappingSpec;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{DynamicObject, ObjectList, TypeMeta};

use super::backoff::Backoff;
use super::error::SyncError;
use crate::k8s::FIELD_MANAGER;
use crate::replicate::mark::Origin;
use crate::replicate::namespace::{NamespaceRules, target_namespace};
use crate::replicate::{self, MappingId, ObjectFilter, ResourceKind, TransformConfig};

/// Objects applied at the same time within one kind.
pub const APPLY_CONCURRENCY: usize = 16;

/// Page size of source and target listings.
pub(super) const LIST_PAGE: u32 = 500;

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
    pub(super) filter: ObjectFilter,
    pub(super) transform: TransformConfig,
    pub(super) spec: NamespaceMappingSpec,
    pub(super) backoff: Backoff,
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

    pub(super) fn source_error(&self, e: impl std::fmt::Display) -> SyncError {
        SyncError::SourceUnavailable {
            cluster: self.source_cluster.clone(),
            message: e.to_string(),
        }
    }

    pub(super) fn dest_error(&self, e: impl std::fmt::Display) -> SyncError {
        SyncError::DestinationUnavailable {
            cluster: self.dest_cluster.clone(),
            message: e.to_string(),
        }
    }

    /// The source namespace, checked to exist and not be terminating.
    pub(super) async fn source_namespace_object(&self) -> Result<Namespace, SyncError> {
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

    /// Creates or updates the destination namespace per `namespaceConfig`. An existing
    /// namespace this mapping did not create keeps its own labels and annotations (they
    /// may carry the destination's Pod Security level), unless the mapping adopts existing
    /// objects; such a namespace is left untouched and `Ok(Some("Namespace/<name>"))`
    /// names it as foreign.
    pub(super) async fn ensure_dest_namespace(
        &self,
        source_ns: &Namespace,
    ) -> Result<Option<String>, SyncError> {
        let rules = NamespaceRules::from_config(self.spec.namespace_config.as_ref());
        let api: Api<Namespace> = Api::all(self.dest.clone());
        if !rules.create {
            let exists = api
                .get_opt(&self.dest_namespace)
                .await
                .map_err(|e| self.dest_error(e))?
                .is_some();
            return if exists {
                Ok(None)
            } else {
                Err(SyncError::DestinationNamespaceMissing(
                    self.dest_namespace.clone(),
                ))
            };
        }
        if !self.spec.safety().adopt_existing_objects {
            let live = api
                .get_metadata_opt(&self.dest_namespace)
                .await
                .map_err(|e| self.dest_error(e))?;
            if live.is_some_and(|ns| !self.may_overwrite(&ns.metadata)) {
                return Ok(Some(format!("Namespace/{}", self.dest_namespace)));
            }
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
        Ok(None)
    }

    pub(super) fn source_api(&self, kind: &ResourceKind) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.source.clone(),
            &self.source_namespace,
            &kind.api_resource(),
        )
    }

    pub(super) fn dest_api(&self, kind: &ResourceKind) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.dest.clone(),
            &self.dest_namespace,
            &kind.api_resource(),
        )
    }

    /// Lists every object of a kind, paginated, with apiVersion/kind filled in.
    pub(super) async fn list_all(
        api: &Api<DynamicObject>,
        kind: &ResourceKind,
    ) -> Result<Vec<DynamicObject>, kube::Error> {
        list_pages(
            |params| async move { api.list(&params).await },
            |mut obj| {
                obj.types = Some(type_meta(kind));
                obj
            },
        )
        .await
    }

    /// Lists only the metadata of every object of a kind (the target side needs names,
    /// versions and marks, not contents: far less memory for big namespaces).
    pub(super) async fn list_metadata(
        api: &Api<DynamicObject>,
        kind: &ResourceKind,
    ) -> Result<Vec<DynamicObject>, kube::Error> {
        list_pages(
            |params| async move { api.list_metadata(&params).await },
            |m| metadata_only(kind, m.metadata),
        )
        .await
    }

    /// Whether this mapping may write over the destination object with this metadata
    /// ([`replicate::may_overwrite`] with the mapping's `adoptExistingObjects`).
    pub(super) fn may_overwrite(&self, meta: &kube::api::ObjectMeta) -> bool {
        replicate::may_overwrite(
            meta,
            &self.mapping,
            self.spec.safety().adopt_existing_objects,
        )
    }

    /// The spec this plan was built from.
    pub fn spec(&self) -> &NamespaceMappingSpec {
        &self.spec
    }
}

/// Shared plan handle for the watchers.
pub type SharedPlan = Arc<SyncPlan>;

/// The `apiVersion`/`kind` of an object of `kind`.
/// Lists page by page (`LIST_PAGE` items each) through `list` until the server's
/// continue token runs out, mapping every item through `each`.
async fn list_pages<T, U, Page>(
    mut list: impl FnMut(ListParams) -> Page,
    each: impl FnMut(T) -> U,
) -> Result<Vec<U>, kube::Error>
where
    T: Clone,
    Page: std::future::Future<Output = Result<ObjectList<T>, kube::Error>>,
{
    let mut out = Vec::new();
    let mut each = each;
    let mut params = ListParams::default().limit(LIST_PAGE);
    loop {
        let page = list(params.clone()).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(page.items.into_iter().map(&mut each));
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

pub(super) fn type_meta(kind: &ResourceKind) -> TypeMeta {
    TypeMeta {
        api_version: kind.api_version(),
        kind: kind.kind.clone(),
    }
}

/// A listed object reduced to what pruning looks at.
pub(super) fn metadata_only(kind: &ResourceKind, metadata: kube::api::ObjectMeta) -> DynamicObject {
    DynamicObject {
        types: Some(type_meta(kind)),
        metadata,
        data: serde_json::Value::Null,
    }
}

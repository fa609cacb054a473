//! The DR-Syncer API: `RemoteCluster`, `ClusterMapping` and `NamespaceMapping` in
//! `dr-syncer.io/v1alpha1`, and the CRD manifests generated from them.
//!
//! Field names, defaults and enums follow the DR-Syncer (Go) API so that its manifests apply
//! unchanged; our extensions are marked "Extension" in their descriptions. The schema
//! carries the validation the API server can enforce (enums, ranges, patterns and CEL rules),
//! and `make crds` writes it to `deploy/crds/` and `docs/api.md`.

pub mod annotations;
pub mod common;

pub mod cluster_mapping;
pub mod namespace_mapping;
pub mod remote_cluster;

pub mod manifests;
pub mod reference;
pub mod schema_walk;

pub use cluster_mapping::{ClusterMapping, ClusterMappingSpec, ClusterMappingStatus};
pub use namespace_mapping::{NamespaceMapping, NamespaceMappingSpec, NamespaceMappingStatus};
pub use remote_cluster::{RemoteCluster, RemoteClusterSpec, RemoteClusterStatus};

/// API group of every DR-Syncer kind.
pub const GROUP: &str = "dr-syncer.io";

/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

//! The replication rules: pure functions from a source object and a mapping's spec to the
//! object written at the target, and the decisions around it (which kinds, which objects,
//! what may be pruned, what to do on an immutable-field conflict).
//!
//! No I/O here: the runtime lists, watches, applies and deletes; these functions decide.
//! Each rule is its own small function with table tests, so a behaviour can be checked
//! without clusters.
//!
//! In the order a sync uses them:
//! - [`kinds`]: resource type names and defaults -> discovered kinds ([`resolve_kinds`]).
//! - [`select`](mod@select): which source objects are replicated ([`select()`]).
//! - [`transform`](mod@transform): the whole source -> target transform ([`transform()`]),
//!   built from [`strip`], [`references`], [`workloads`], [`services`], [`pvcs`],
//!   [`ingress`], [`patches`] and [`mark`].
//! - [`namespace`]: the destination Namespace object.
//! - [`prune`]: which target objects may be deleted ([`plan_prune`]).
//! - [`budget`]: the same guard for Continuous mode's one-at-a-time deletions.
//! - [`immutable`]: immutable-field conflicts and their handling.
//! - [`unsupported`]: spec fields accepted but not acted on, for a condition.

pub mod budget;
pub mod error;
pub mod immutable;
pub mod ingress;
pub mod kinds;
pub mod mark;
pub mod namespace;
pub mod patches;
pub mod prune;
pub mod pvcs;
pub mod references;
pub mod select;
pub mod services;
pub mod strip;
pub mod transform;
pub mod unsupported;
pub mod workloads;

pub use error::RulesError;
pub use kinds::{ResourceKind, resolve_kinds, resolve_kinds_with_defaults};
pub use mark::{MappingId, is_managed_by, is_meta_managed_by, may_overwrite};
pub use prune::{ObjectRef, PrunePlan, PruneRefusal, plan_prune};
pub use select::{ObjectFilter, Selection, SkipReason, select};
pub use transform::{TransformConfig, Transformed, transform};
pub use unsupported::{Unsupported, unsupported_fields};

use std::collections::BTreeMap;

use kube::core::DynamicObject;

/// `namespace/name` of an object, for messages.
pub fn object_key(obj: &DynamicObject) -> String {
    format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The value of `key` in the first of `maps` (an object's labels or annotations, in the
/// order a rule reads them) that has it: some rules accept either place.
pub fn first_value<'a>(
    maps: [Option<&'a BTreeMap<String, String>>; 2],
    key: &str,
) -> Option<&'a String> {
    maps.into_iter().flatten().find_map(|map| map.get(key))
}

#[cfg(test)]
mod tests;

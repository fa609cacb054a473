//! Immutable-field conflicts: recognising the API server's answer when an apply touches a
//! field that cannot change, and deciding what to do per `immutableResourceConfig`.
//!
//! Pure decisions; the runtime executes them (deleting, draining, re-applying).

use std::time::Duration;

use dr_syncer_crds::common::parse_duration;
use dr_syncer_crds::namespace_mapping::{ImmutableResourceConfig, ImmutableResourceHandling};
use kube::core::{DynamicObject, Status};
use serde_json::Value;

use super::{ResourceKind, RulesError};

/// Phrases the API server uses for changes to immutable fields (validation of core kinds,
/// StatefulSet and PVC spec rules, Service cluster IPs, immutable ConfigMaps/Secrets).
const IMMUTABLE_PHRASES: &[&str] = &[
    "field is immutable",
    "is immutable",
    "may not change once set",
    "updates to statefulset spec for fields other than",
    "spec is immutable after creation",
];

/// An apply refused because it changes immutable fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableConflict {
    /// The offending fields as the API server names them (`spec.selector`), when it does.
    pub fields: Vec<String>,
    /// The API server's message.
    pub message: String,
}

/// Recognises an immutable-field conflict in an API error (HTTP 422 Invalid whose message
/// or causes say a field cannot change). Other errors are `None`.
pub fn immutable_conflict(status: &Status) -> Option<ImmutableConflict> {
    if status.code != 422 {
        return None;
    }
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    let mut fields: Vec<String> = causes
        .iter()
        .filter(|c| says_immutable(&c.message))
        .map(|c| c.field.clone())
        .filter(|f| !f.is_empty())
        .collect();
    fields.dedup();
    let immutable = !fields.is_empty()
        || says_immutable(&status.message)
        || causes.iter().any(|c| says_immutable(&c.message));
    immutable.then(|| ImmutableConflict {
        fields,
        message: status.message.clone(),
    })
}

fn says_immutable(message: &str) -> bool {
    IMMUTABLE_PHRASES.iter().any(|p| message.contains(p))
}

/// What the runtime does about a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImmutableAction {
    /// Leave the target object as it is and report the conflict (`NoChange`).
    Report,
    /// Delete the target object and apply it again (`Recreate`).
    Recreate,
    /// Scale the workloads using it to zero, wait up to `drain_timeout` for their pods to
    /// go, then recreate (`RecreateWithPodDrain`).
    RecreateWithPodDrain {
        /// `immutableResourceConfig.drainTimeout`.
        drain_timeout: Duration,
    },
    /// Apply again without the conflicting fields ([`drop_fields`]) (`PartialUpdate`).
    PartialUpdate,
    /// Delete with foreground propagation, force (grace period 0) after
    /// `force_delete_timeout`, then recreate (`ForceUpdate`).
    ForceUpdate {
        /// `immutableResourceConfig.forceDeleteTimeout`.
        force_delete_timeout: Duration,
    },
}

/// The handling for `kind`: its `resourceOverrides` entry (keyed by `resource.group` as
/// documented; any spelling `resourceTypes` accepts works too, e.g. `StatefulSet` or
/// `sts`; the exact `resource.group` key wins over looser ones), else `defaultHandling`;
/// `NoChange` when the config is absent.
pub fn handling_for(
    kind: &ResourceKind,
    cfg: Option<&ImmutableResourceConfig>,
) -> ImmutableResourceHandling {
    let Some(cfg) = cfg else {
        return ImmutableResourceHandling::default();
    };
    let key = kind.group_resource();
    let exact = cfg
        .resource_overrides
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&key));
    exact
        .or_else(|| {
            cfg.resource_overrides
                .iter()
                .find(|(k, _)| kind.matches_name(k))
        })
        .map(|(_, h)| *h)
        .unwrap_or(cfg.default_handling)
}

/// The action for a conflict on `kind`, with the durations of the config parsed.
pub fn decide(
    kind: &ResourceKind,
    cfg: Option<&ImmutableResourceConfig>,
) -> Result<ImmutableAction, RulesError> {
    Ok(match handling_for(kind, cfg) {
        ImmutableResourceHandling::NoChange => ImmutableAction::Report,
        ImmutableResourceHandling::Recreate => ImmutableAction::Recreate,
        ImmutableResourceHandling::PartialUpdate => ImmutableAction::PartialUpdate,
        ImmutableResourceHandling::RecreateWithPodDrain => ImmutableAction::RecreateWithPodDrain {
            drain_timeout: duration(
                "immutableResourceConfig.drainTimeout",
                cfg.map_or("5m", |c| c.drain_timeout.as_str()),
            )?,
        },
        ImmutableResourceHandling::ForceUpdate => ImmutableAction::ForceUpdate {
            force_delete_timeout: duration(
                "immutableResourceConfig.forceDeleteTimeout",
                cfg.map_or("2m", |c| c.force_delete_timeout.as_str()),
            )?,
        },
    })
}

fn duration(field: &'static str, text: &str) -> Result<Duration, RulesError> {
    parse_duration(text).map_err(|e| RulesError::InvalidDuration {
        field,
        reason: e.to_string(),
    })
}

/// The fields of a whole `spec` the API server lets change after creation, for kinds
/// whose validation names all of `spec` as immutable instead of the field that differs:
/// `(apiVersion group, kind, mutable spec fields)`.
pub const MUTABLE_SPEC_FIELDS: &[(&str, &str, &[&str])] = &[
    (
        "apps",
        "StatefulSet",
        &[
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        ],
    ),
    (
        "",
        "PersistentVolumeClaim",
        &["resources", "volumeAttributesClassName"],
    ),
];

/// For `PartialUpdate`: removes the named fields (`spec.selector`,
/// `spec.volumeClaimTemplates[0].spec`, ...) from the object to apply, so the apply leaves
/// them as they are at the target. A path into a list removes the whole list (server-side
/// apply would otherwise claim the other items). When the whole `spec` is named and the
/// kind is in [`MUTABLE_SPEC_FIELDS`], only its immutable fields are removed. Returns
/// whether anything was removed.
pub fn drop_fields(obj: &mut DynamicObject, fields: &[String]) -> bool {
    let mut removed = false;
    for field in fields {
        if field == "spec"
            && let Some(mutable) = mutable_spec_fields(obj)
        {
            removed |= keep_only(&mut obj.data, "spec", mutable);
            continue;
        }
        let segments: Vec<&str> = field
            .split('.')
            .map(|s| s.split('[').next().unwrap_or(s))
            .take_while(|s| !s.is_empty())
            .collect();
        let cut = field
            .split('.')
            .position(|s| s.contains('['))
            .map_or(segments.len(), |i| i + 1);
        removed |= remove_path(&mut obj.data, &segments[..cut.min(segments.len())]);
    }
    removed
}

fn mutable_spec_fields(obj: &DynamicObject) -> Option<&'static [&'static str]> {
    let types = obj.types.as_ref()?;
    let group = types
        .api_version
        .rsplit_once('/')
        .map_or("", |(group, _)| group);
    MUTABLE_SPEC_FIELDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == types.kind)
        .map(|(_, _, fields)| *fields)
}

fn keep_only(root: &mut Value, key: &str, keep: &[&str]) -> bool {
    let Some(map) = root.get_mut(key).and_then(Value::as_object_mut) else {
        return false;
    };
    let before = map.len();
    map.retain(|k, _| keep.contains(&k.as_str()));
    map.len() != before
}

fn remove_path(root: &mut Value, segments: &[&str]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = root;
    for seg in parents {
        match node.get_mut(*seg) {
            Some(child) => node = child,
            None => return false,
        }
    }
    node.as_object_mut()
        .is_some_and(|m| m.remove(*last).is_some())
}

//! Types and validation patterns shared by more than one kind.
//!
//! Kept in one place so that a rule (what a duration looks like, which verification modes
//! exist) is written once and the three CRDs cannot drift apart.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};

/// Go `time.ParseDuration` syntax ("30s", "1h30m", "1.5h", "300ms"), which is what existing
/// DR-Syncer manifests use. `0` alone is also a valid Go duration.
pub const DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$";

/// A DNS-1123 label: namespace names and the names of most objects we reference.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A DNS-1123 subdomain: Secret, RemoteCluster and ClusterMapping names.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Schedule syntax accepted by the API server: a `@hourly`-style macro, or 5 (CronJob) or 6
/// (with seconds) whitespace-separated cron fields. The controller's schedule parser does the
/// full check and reports a condition naming the bad field.
pub const SCHEDULE_PATTERN: &str = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9A-Za-z*?,/#-]+(\s+[0-9A-Za-z*?,/#-]+){4,5})$";

/// A resource type as users name it: plural, singular, kind or short name, optionally with a
/// group (`deployments`, `Deployment`, `deploy`, `deployments.apps`), or `*` for the defaults.
pub const RESOURCE_TYPE_PATTERN: &str = r"^(\*|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?)$";

/// A key inside a Secret's `data` map.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// Parses a Go-style duration string ("1h30m") as found in these specs.
///
/// The schema already restricts the syntax with [`DURATION_PATTERN`]; this is what the
/// controller calls to turn the checked string into a [`std::time::Duration`].
pub fn parse_duration(text: &str) -> Result<std::time::Duration, DurationError> {
    let parsed: kube::core::Duration = text.parse().map_err(|source| DurationError {
        text: text.to_owned(),
        reason: format!("{source}"),
    })?;
    if parsed.is_negative() {
        return Err(DurationError {
            text: text.to_owned(),
            reason: "negative durations are not allowed".to_owned(),
        });
    }
    Ok(parsed.into())
}

/// A duration string that is not valid Go duration syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason}")]
pub struct DurationError {
    /// The text that failed to parse.
    pub text: String,
    /// Why it failed.
    pub reason: String,
}

/// How the integrity of synced PVC data is checked after a transfer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerificationMode {
    /// Quick check only: files whose size and modification time match are skipped, nothing
    /// is re-read after the transfer. Fastest; the DR-Syncer default.
    #[default]
    None,
    /// After the transfer, a random `samplePercent` of the files is re-hashed on both sides.
    Sample,
    /// Every file is compared by checksum instead of size and modification time.
    Full,
}

/// A Secret in a given namespace, referenced by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
}

/// Serde default helper: `true`.
pub(crate) fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(
            parse_duration("1h30m").ok(),
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("300ms").ok(),
            Some(std::time::Duration::from_millis(300))
        );
        assert!(parse_duration("soon").is_err());
    }
}

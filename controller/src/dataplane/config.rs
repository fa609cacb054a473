//! Images and limits of the data plane, from the controller's flags (the Helm chart sets
//! them from `values.yaml` through environment variables).

use k8s_openapi::api::core::v1::LocalObjectReference;

/// Default agent image when neither `RemoteCluster.spec.pvcSync.image` nor the controller's
/// `--agent-image` says otherwise: the one built from the same commit as this controller.
pub const DEFAULT_AGENT_IMAGE: &str = concat!(
    "ghcr.io/dr-syncer/dr-syncer-agent:",
    env!("CARGO_PKG_VERSION")
);

/// Default rsync-worker image, from the same release as this controller.
pub const DEFAULT_WORKER_IMAGE: &str = concat!(
    "ghcr.io/dr-syncer/dr-syncer-rsync-worker:",
    env!("CARGO_PKG_VERSION")
);

/// The pull policies Kubernetes accepts, for validating the controller's flags.
pub const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];

/// One of the data plane's images and how the remote clusters pull it: every pod the
/// controller creates there (agent DaemonSet, rsync-worker and check pods) needs all three,
/// or a private registry refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodImage {
    /// `repository:tag` or `repository@sha256:...`.
    pub reference: String,
    /// `imagePullPolicy`; `None` leaves Kubernetes' default (Always for `:latest`, else
    /// IfNotPresent).
    pub pull_policy: Option<String>,
    /// Names of `kubernetes.io/dockerconfigjson` Secrets in the namespace of each pod. The
    /// controller does not copy registry credentials between clusters: the user creates them
    /// in the remote clusters (docs/install.md).
    pub pull_secrets: Vec<String>,
}

impl PodImage {
    /// An image with Kubernetes' default pull policy and no pull secrets.
    pub fn new(reference: impl Into<String>) -> Self {
        PodImage {
            reference: reference.into(),
            pull_policy: None,
            pull_secrets: Vec::new(),
        }
    }

    /// `spec.imagePullSecrets` for a pod, `None` when there are none (the field stays unset,
    /// so server-side apply does not take ownership of an empty list).
    pub fn pull_secret_refs(&self) -> Option<Vec<LocalObjectReference>> {
        (!self.pull_secrets.is_empty()).then(|| {
            self.pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        })
    }
}

/// Parses a registry Secret name from the controller's flags: a DNS-1123 subdomain, so a
/// typo fails at startup instead of as an image pull error in another cluster.
pub fn pull_secret_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not a Secret name (lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit)"
        ))
    }
}

/// The `imagePullSecrets` names of a rendered pod spec, in order (tests of the renderers).
#[cfg(test)]
pub(crate) fn pull_secret_names(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<String> {
    spec.image_pull_secrets
        .iter()
        .flatten()
        .map(|s| s.name.clone())
        .collect()
}

/// What the data plane needs to know about how the controller was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneConfig {
    /// Agent image used when the RemoteCluster does not name one (its pull policy applies
    /// unless the RemoteCluster sets one; its pull secrets always apply).
    pub agent: PodImage,
    /// Image of the rsync-worker pods in target clusters (data syncs and connectivity checks).
    pub worker: PodImage,
    /// Most PVC copies this controller runs at once, over all mappings (a per-cluster
    /// `pvcSync.globalConcurrencyLimit` can only lower it).
    pub global_concurrency: usize,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            agent: PodImage::new(DEFAULT_AGENT_IMAGE),
            worker: PodImage::new(DEFAULT_WORKER_IMAGE),
            global_concurrency: 4,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn default_images_are_the_controllers_own_release() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            DEFAULT_AGENT_IMAGE,
            format!("ghcr.io/dr-syncer/dr-syncer-agent:{version}")
        );
        assert_eq!(
            DEFAULT_WORKER_IMAGE,
            format!("ghcr.io/dr-syncer/dr-syncer-rsync-worker:{version}")
        );
    }

    #[test]
    fn pull_secret_names_are_checked_at_startup() {
        assert_eq!(pull_secret_name(" regcred ").unwrap(), "regcred");
        assert_eq!(pull_secret_name("ghcr.io-creds").unwrap(), "ghcr.io-creds");
        for bad in ["", "RegCred", "-x", "x-", "a_b", "a/b"] {
            assert!(pull_secret_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pull_secret_refs_are_unset_when_empty_and_kept_in_order() {
        let mut image = PodImage::new("r/x:1");
        assert_eq!(image.pull_secret_refs(), None);
        image.pull_secrets = vec!["b".into(), "a".into()];
        let names: Vec<String> = image
            .pull_secret_refs()
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["b", "a"]);
    }
}

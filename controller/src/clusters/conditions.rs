//! RemoteCluster conditions: what the kubeconfig and health checks found, in words a user can
//! act on (which Secret or key is missing, why the kubeconfig does not load, whether the API
//! server answers). Pure: no I/O.

use std::time::Duration;

use dr_syncer_crds::remote_cluster::{ClusterHealth, RemoteCluster, RemoteClusterStatus};

use super::connect::KubeconfigProblem;
use crate::status::{condition, reasons, set_condition, types};

/// Health-check interval: `pvcSync.healthCheck.interval`, default 1m.
pub fn health_interval(rc: &RemoteCluster) -> Duration {
    rc.spec
        .pvc_sync
        .as_ref()
        .and_then(|p| p.health_check.as_ref())
        .and_then(|h| dr_syncer_crds::common::parse_duration(&h.interval).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(60))
}

/// Conditions (KubeconfigAvailable, KubeconfigValid, ClusterAvailable) for a kubeconfig
/// problem: the failing step says why, later steps say they were not checked.
pub fn conditions_for(
    status: &mut RemoteClusterStatus,
    problem: &KubeconfigProblem,
    rc: &RemoteCluster,
    generation: Option<i64>,
) {
    let key = &rc.spec.kubeconfig_secret_ref.key;
    let (available, valid) = match problem {
        KubeconfigProblem::SecretNotFound(secret) => (
            Some(condition(
                types::KUBECONFIG_AVAILABLE,
                false,
                reasons::SECRET_NOT_FOUND,
                format!(
                    "Secret {secret} not found in the controller cluster; create it with the \
                     kubeconfig of the remote cluster under key {key:?}"
                ),
                generation,
            )),
            None,
        ),
        KubeconfigProblem::KeyMissing {
            secret,
            key,
            present,
        } => (
            Some(condition(
                types::KUBECONFIG_AVAILABLE,
                false,
                reasons::SECRET_KEY_MISSING,
                format!(
                    "Secret {secret} has no key {key:?} (keys present: {}); set \
                     spec.kubeconfigSecretRef.key or add the key",
                    if present.is_empty() {
                        "none".to_owned()
                    } else {
                        present.join(", ")
                    }
                ),
                generation,
            )),
            None,
        ),
        KubeconfigProblem::SecretUnreadable(message) => (
            Some(condition(
                types::KUBECONFIG_AVAILABLE,
                false,
                reasons::SECRET_NOT_FOUND,
                format!("{message}; check the controller's RBAC for Secrets"),
                generation,
            )),
            None,
        ),
        KubeconfigProblem::Invalid(message) => (
            Some(condition(
                types::KUBECONFIG_AVAILABLE,
                true,
                reasons::SECRET_FOUND,
                "kubeconfig Secret found",
                generation,
            )),
            Some(condition(
                types::KUBECONFIG_VALID,
                false,
                reasons::KUBECONFIG_INVALID,
                format!("the kubeconfig in the Secret does not load: {message}"),
                generation,
            )),
        ),
    };
    if let Some(c) = available {
        set_condition(&mut status.conditions, c);
    }
    let valid = valid.unwrap_or_else(|| {
        condition(
            types::KUBECONFIG_VALID,
            false,
            reasons::NOT_CHECKED,
            "not checked: the kubeconfig is not available",
            generation,
        )
    });
    set_condition(&mut status.conditions, valid);
    set_condition(
        &mut status.conditions,
        condition(
            types::CLUSTER_AVAILABLE,
            false,
            reasons::NOT_CHECKED,
            "not checked: no usable kubeconfig",
            generation,
        ),
    );
    status.health = Some(ClusterHealth::Unhealthy);
}

/// Spec fields this controller accepts but does not act on (reported, never silently ignored).
pub fn unsupported_fields(rc: &RemoteCluster) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if rc
        .spec
        .pvc_sync
        .as_ref()
        .is_some_and(|p| p.enabled && p.health_check.is_some())
    {
        fields.push(
            "spec.pvcSync.healthCheck.sshTimeout/retryAttempts/retryInterval (agents are \
             checked through their pods' readiness probes; only healthCheck.interval is used)",
        );
    }
    fields
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rc() -> RemoteCluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dr-syncer.io/v1alpha1",
            "kind": "RemoteCluster",
            "metadata": {"name": "prod", "namespace": "dr"},
            "spec": {"kubeconfigSecretRef": {"name": "prod-kc", "namespace": "dr"}}
        }))
        .unwrap()
    }

    #[test]
    fn missing_secret_names_the_secret_and_key() {
        let mut status = RemoteClusterStatus::default();
        conditions_for(
            &mut status,
            &KubeconfigProblem::SecretNotFound("dr/prod-kc".into()),
            &rc(),
            Some(1),
        );
        let available =
            crate::status::find_condition(&status.conditions, types::KUBECONFIG_AVAILABLE).unwrap();
        assert_eq!(available.status, "False");
        assert_eq!(available.reason, reasons::SECRET_NOT_FOUND);
        assert!(available.message.contains("dr/prod-kc"));
        assert!(available.message.contains("\"kubeconfig\""));
        let cluster =
            crate::status::find_condition(&status.conditions, types::CLUSTER_AVAILABLE).unwrap();
        assert_eq!(cluster.reason, reasons::NOT_CHECKED);
        assert_eq!(status.health, Some(ClusterHealth::Unhealthy));
    }

    #[test]
    fn missing_key_lists_present_keys() {
        let mut status = RemoteClusterStatus::default();
        conditions_for(
            &mut status,
            &KubeconfigProblem::KeyMissing {
                secret: "dr/prod-kc".into(),
                key: "kubeconfig".into(),
                present: vec!["config".into()],
            },
            &rc(),
            None,
        );
        let c =
            crate::status::find_condition(&status.conditions, types::KUBECONFIG_AVAILABLE).unwrap();
        assert_eq!(c.reason, reasons::SECRET_KEY_MISSING);
        assert!(c.message.contains("keys present: config"), "{}", c.message);
    }

    #[test]
    fn health_interval_defaults_and_parses() {
        assert_eq!(health_interval(&rc()), Duration::from_secs(60));
        let mut r = rc();
        r.spec.pvc_sync =
            serde_json::from_value(serde_json::json!({"healthCheck": {"interval": "15s"}}))
                .unwrap();
        assert_eq!(health_interval(&r), Duration::from_secs(15));
    }
}

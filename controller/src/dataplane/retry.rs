//! The retry policy of PVC copies: how often and how long apart a failed copy is tried
//! again (per source RemoteCluster, `pvcSync.retryConfig`).

use std::time::Duration;

use dr_syncer_crds::remote_cluster::{PvcSyncRetryConfig, RemoteCluster};

/// Retry policy of PVC copies (`pvcSync.retryConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first failure.
    pub max_retries: u32,
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl RetryPolicy {
    /// From the source RemoteCluster (defaults 3 retries, 30s, 5m).
    pub fn from_rc(rc: &RemoteCluster) -> Self {
        let cfg = rc
            .spec
            .pvc_sync
            .as_ref()
            .and_then(|p| p.retry_config.clone());
        let cfg = cfg.unwrap_or_else(|| PvcSyncRetryConfig {
            max_retries: 3,
            initial_delay: "30s".into(),
            max_delay: "5m".into(),
        });
        let parse = |text: &str, default: u64| {
            dr_syncer_crds::common::parse_duration(text).unwrap_or(Duration::from_secs(default))
        };
        RetryPolicy {
            max_retries: u32::try_from(cfg.max_retries).unwrap_or(0),
            initial: parse(&cfg.initial_delay, 30),
            max: parse(&cfg.max_delay, 300),
        }
    }

    /// Wait before retry `n` (1-based): `initial`, doubling, capped at `max`.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dataplane::fixtures::remote_cluster;
    use serde_json::json;

    fn rc(pvc_sync: serde_json::Value) -> RemoteCluster {
        remote_cluster("a", pvc_sync)
    }

    #[test]
    fn retry_policy_doubles_to_the_cap() {
        let p = RetryPolicy::from_rc(&rc(json!({"enabled": true,
            "retryConfig": {"maxRetries": 2, "initialDelay": "1s", "maxDelay": "3s"}})));
        assert_eq!(p.max_retries, 2);
        assert_eq!(p.delay(1), Duration::from_secs(1));
        assert_eq!(p.delay(2), Duration::from_secs(2));
        assert_eq!(p.delay(3), Duration::from_secs(3));
        let d = RetryPolicy::from_rc(&rc(json!({"enabled": true})));
        assert_eq!(
            (d.max_retries, d.initial, d.max),
            (3, Duration::from_secs(30), Duration::from_secs(300))
        );
    }
}

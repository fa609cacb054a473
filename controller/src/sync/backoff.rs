//! Retrying one object's write: exponential backoff from the spec's retry settings, and which
//! API errors are worth a retry (transient) or mean the destination is unreachable.

use std::time::Duration;

use dr_syncer_crds::namespace_mapping::RetryConfig;

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
pub(super) fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 409 | 429 | 500 | 502 | 503 | 504),
        _ => false,
    }
}

/// Whether the error means the cluster could not be reached at all.
pub(super) fn is_connection_error(error: &kube::Error) -> bool {
    !matches!(error, kube::Error::Api(_))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use dr_syncer_crds::namespace_mapping::RetryConfig;

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
}

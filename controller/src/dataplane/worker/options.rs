//! The copy settings of one PVC: `dataSyncConfig`, the source RemoteCluster's defaults and
//! the PVC's `dr-syncer.io/verification-mode` annotation, resolved once into
//! [`DataOptions`], which [`super::render`] turns into worker flags.

use std::collections::BTreeMap;
use std::time::Duration;

use dr_syncer_crds::annotations::VERIFICATION_MODE;
use dr_syncer_crds::common::{VerificationMode, parse_duration};
use dr_syncer_crds::namespace_mapping::PvcDataSyncConfig;
use dr_syncer_crds::remote_cluster::PvcSyncSpec;
use serde_json::json;

/// The copy settings of one PVC, from `dataSyncConfig`, the source RemoteCluster's
/// defaults and the PVC's `dr-syncer.io/verification-mode` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOptions {
    /// `excludePaths`.
    pub excludes: Vec<String>,
    /// `bandwidthLimit` converted from KiB/s to bytes/s; `None`: unlimited.
    pub bwlimit_bytes: Option<u64>,
    /// `rsyncOptions`, passed through (the worker refuses ones it cannot honour).
    pub rsync_options: Vec<String>,
    /// `timeout` of one copy.
    pub timeout: Duration,
    /// Verification in effect.
    pub verification: VerificationMode,
    /// Sample percentage (for `sample`).
    pub sample_percent: i32,
    /// `spec.safety.allowMassDataDeletion`: the worker may delete even when the source
    /// listing is empty or lost more than half of the target's files.
    pub allow_mass_deletion: bool,
}

/// Why the options could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// `dataSyncConfig.timeout` is not a duration.
    #[error("spec.pvcConfig.dataSyncConfig.timeout: {0}")]
    Timeout(String),
    /// The PVC's verification-mode annotation is not none, sample or full.
    #[error("annotation {VERIFICATION_MODE}={0:?} on the source PVC: use none, sample or full")]
    Verification(String),
}

impl DataOptions {
    /// Resolves the options for one PVC (the mapping-wide safety opt-in is set by the
    /// caller, which has the mapping).
    pub fn resolve(
        cfg: Option<&PvcDataSyncConfig>,
        source: Option<&PvcSyncSpec>,
        pvc_annotations: &BTreeMap<String, String>,
    ) -> Result<Self, OptionsError> {
        let timeout_text = cfg.map_or("30m", |c| c.timeout.as_str());
        let timeout =
            parse_duration(timeout_text).map_err(|e| OptionsError::Timeout(e.to_string()))?;
        let verification = match pvc_annotations.get(VERIFICATION_MODE) {
            Some(v) => parse_verification(v)?,
            None => cfg
                .and_then(|c| c.verification_mode)
                .or(source.map(|s| s.default_verification_mode))
                .unwrap_or_default(),
        };
        Ok(DataOptions {
            excludes: cfg.map(|c| c.exclude_paths.clone()).unwrap_or_default(),
            bwlimit_bytes: cfg
                .and_then(|c| c.bandwidth_limit)
                .filter(|k| *k > 0)
                .map(|k| u64::from(k.unsigned_abs()) * 1024),
            rsync_options: cfg.map(|c| c.rsync_options.clone()).unwrap_or_default(),
            timeout: if timeout.is_zero() {
                Duration::from_secs(30 * 60)
            } else {
                timeout
            },
            verification,
            sample_percent: cfg
                .and_then(|c| c.sample_percent)
                .or(source.map(|s| s.default_sample_percent))
                .unwrap_or(10),
            allow_mass_deletion: false,
        })
    }

    /// Whole seconds of the timeout, at least 1.
    pub fn timeout_secs(&self) -> u64 {
        self.timeout.as_secs().max(1)
    }
}

fn parse_verification(text: &str) -> Result<VerificationMode, OptionsError> {
    serde_json::from_value(json!(text.trim().to_ascii_lowercase()))
        .map_err(|_| OptionsError::Verification(text.to_owned()))
}

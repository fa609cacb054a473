//! Which directory a volume name means: the agent decides ([`VolumeResolver`]), the client
//! only ever names a volume. [`StaticVolumes`] is the fixed map from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

/// The words every refusal of an unsafe source volume carries ([`VolumeError::Unsafe`]),
/// through the protocol's error message to the worker, which reports such a refusal with
/// its own failure kind ([`is_unsafe_volume_refusal`]).
pub const UNSAFE_VOLUME: &str = "source volume unsafe";

/// Whether a peer's error message is an agent's refusal of an unsafe source volume.
pub fn is_unsafe_volume_refusal(message: &str) -> bool {
    message.contains(UNSAFE_VOLUME)
}

/// Why a volume name could not be resolved to a root directory.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The agent does not serve a volume by that name.
    #[error("unknown volume {0:?}")]
    UnknownVolume(String),
    /// The volume is known but its directory is unusable.
    #[error("volume {volume:?} unavailable: {reason}")]
    Unavailable {
        /// The volume name.
        volume: String,
        /// Why.
        reason: String,
    },
    /// The volume is known, but serving it could make its copy look empty (its pod is not
    /// Running, its directory is not a mount point): the worker must not prune from it.
    #[error("{UNSAFE_VOLUME}: {reason}")]
    Unsafe {
        /// The volume name.
        volume: String,
        /// Why (naming the volume).
        reason: String,
    },
}

/// Maps the volume name a client asks for to a directory the agent chose. The agent owns
/// this decision; the client only ever names a volume.
pub trait VolumeResolver: Send + Sync {
    /// Returns the root directory of `volume`.
    fn resolve(&self, volume: &str) -> Result<PathBuf, VolumeError>;
}

/// A fixed map of volume names to directories (configured on the agent's command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticVolumes(pub BTreeMap<String, PathBuf>);

/// Why a `name=/dir` volume spec could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid volume spec {0:?}: expected name=/absolute/dir")]
pub struct VolumeSpecError(pub String);

impl StaticVolumes {
    /// Adds one `name=/dir` spec.
    pub fn insert_spec(&mut self, spec: &str) -> Result<(), VolumeSpecError> {
        let (name, dir) = spec
            .split_once('=')
            .filter(|(n, d)| !n.is_empty() && d.starts_with('/'))
            .ok_or_else(|| VolumeSpecError(spec.to_string()))?;
        self.0.insert(name.to_string(), PathBuf::from(dir));
        Ok(())
    }
}

impl FromStr for StaticVolumes {
    type Err = VolumeSpecError;
    /// Parses one or more comma-separated `name=/dir` specs.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut v = StaticVolumes::default();
        for spec in s.split(',').filter(|p| !p.is_empty()) {
            v.insert_spec(spec)?;
        }
        Ok(v)
    }
}

impl VolumeResolver for StaticVolumes {
    fn resolve(&self, volume: &str) -> Result<PathBuf, VolumeError> {
        self.0
            .get(volume)
            .cloned()
            .ok_or_else(|| VolumeError::UnknownVolume(volume.to_string()))
    }
}

//! The sending side (agent): [`serve`] answers one stream's requests from a volume root
//! that it resolved itself through a [`VolumeResolver`]; no client path is trusted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::protocol::ProtocolError;

/// Why a volume name could not be resolved to a root directory.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
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
}

/// Maps the volume name a client asks for to a directory the agent chose. The agent owns
/// this decision; the client only ever names a volume.
pub trait VolumeResolver: Send + Sync {
    /// Returns the root directory of `volume`.
    fn resolve(&self, volume: &str) -> Result<PathBuf, ResolveError>;
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
    fn resolve(&self, volume: &str) -> Result<PathBuf, ResolveError> {
        self.0
            .get(volume)
            .cloned()
            .ok_or_else(|| ResolveError::UnknownVolume(volume.to_string()))
    }
}

/// Bounds a sender enforces on a client, so that a hostile client cannot exhaust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted or produced, in bytes.
    pub max_frame: usize,
    /// Longest accepted path, in bytes.
    pub max_path: usize,
    /// Most requests (list + fetch) served on one stream.
    pub max_requests: u64,
    /// Most exclude patterns accepted in a list request.
    pub max_excludes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: crate::protocol::MAX_FRAME,
            max_path: crate::paths::MAX_PATH,
            max_requests: 10_000_000,
            max_excludes: 1024,
        }
    }
}

/// What one [`serve`] call did, for the agent's logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServeStats {
    /// Volume served.
    pub volume: String,
    /// Entries sent in file lists.
    pub entries_listed: u64,
    /// Files whose data was sent.
    pub files_sent: u64,
    /// File bytes sent literally.
    pub literal_bytes: u64,
    /// File bytes the client already had (copied from its basis).
    pub matched_bytes: u64,
    /// Bytes written to the stream (after compression).
    pub wire_bytes_out: u64,
    /// Bytes read from the stream.
    pub wire_bytes_in: u64,
}

/// Serves one stream (one SSH channel running [`crate::SUBSYSTEM_NAME`]) until the client
/// says goodbye or closes it. Any protocol violation ends the stream with an error.
pub async fn serve<S>(
    stream: S,
    resolver: &dyn VolumeResolver,
    limits: &Limits,
) -> Result<ServeStats, ProtocolError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let _ = (stream, resolver, limits);
    Err(ProtocolError::Malformed(
        "serve: not implemented yet".into(),
    ))
}

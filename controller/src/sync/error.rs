//! Why a sync as a whole failed, and the condition reason each failure reports.

use crate::replicate::RulesError;

/// Why a sync as a whole failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The source cluster could not be read (discovery, listing).
    #[error("source cluster {cluster} unavailable: {message}")]
    SourceUnavailable {
        /// RemoteCluster name.
        cluster: String,
        /// What failed.
        message: String,
    },
    /// The destination cluster could not be reached.
    #[error("destination cluster {cluster} unavailable: {message}")]
    DestinationUnavailable {
        /// RemoteCluster name.
        cluster: String,
        /// What failed.
        message: String,
    },
    /// The source namespace does not exist or is terminating.
    #[error("source namespace {namespace} {state}; nothing was written or deleted")]
    SourceNamespaceMissing {
        /// The namespace.
        namespace: String,
        /// "does not exist" or "is terminating".
        state: &'static str,
    },
    /// The destination namespace does not exist and creating it is disabled.
    #[error(
        "destination namespace {0} does not exist and namespaceConfig.createNamespace is false"
    )]
    DestinationNamespaceMissing(String),
    /// The spec cannot be acted on (unknown resource type, bad regex, bad patch...).
    #[error("{0}")]
    InvalidSpec(#[from] RulesError),
}

impl SyncError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        use crate::status::reasons;
        match self {
            SyncError::SourceUnavailable { .. } => reasons::SOURCE_UNAVAILABLE,
            SyncError::DestinationUnavailable { .. } => reasons::DESTINATION_UNAVAILABLE,
            SyncError::SourceNamespaceMissing { .. } => reasons::SOURCE_NAMESPACE_MISSING,
            SyncError::DestinationNamespaceMissing(_) => reasons::DESTINATION_NAMESPACE_MISSING,
            SyncError::InvalidSpec(_) => reasons::INVALID_SPEC,
        }
    }

    /// Whether only a spec change can fix it (no point retrying on a timer).
    pub fn is_permanent(&self) -> bool {
        matches!(self, SyncError::InvalidSpec(_))
    }
}

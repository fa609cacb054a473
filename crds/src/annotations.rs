//! Labels and annotations users of DR-Syncer already put on their objects.
//!
//! Named once here so the controller and the tests use the same spelling.

/// On a NamespaceMapping: a new value triggers one sync (Manual mode, or an extra sync in the
/// other modes).
pub const SYNC_NOW: &str = "dr-syncer.io/sync-now";

/// Older spelling of [`SYNC_NOW`], still honoured.
pub const TRIGGER_SYNC: &str = "dr-syncer.io/trigger-sync";

/// On a source object: `"true"` keeps it out of replication.
pub const IGNORE: &str = "dr-syncer.io/ignore";

/// On a source Deployment/StatefulSet: replicas to keep at the destination instead of 0.
pub const SCALE_OVERRIDE: &str = "dr-syncer.io/scale-override";

/// Written on destination workloads: the replica count at the source.
pub const ORIGINAL_REPLICAS: &str = "dr-syncer.io/original-replicas";

/// On a source PVC: storage class to use at the destination, overriding the mappings.
pub const STORAGE_CLASS: &str = "dr-syncer.io/storage-class";

/// On a source PVC: verification mode (none, sample, full) of its data copy.
pub const VERIFICATION_MODE: &str = "dr-syncer.io/verification-mode";

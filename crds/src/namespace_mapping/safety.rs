//! The guards a mapping opts out of: writing into protected namespaces, adopting objects
//! DR-Syncer did not create, and letting a shrunken source listing delete PVC files.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Safety guards of a mapping. Every guard is on by default; each field here turns one off
/// for this mapping only, and says so in its name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SafetyConfig {
    /// Allow a destination namespace that is protected: `kube-system`, `kube-public`,
    /// `kube-node-lease`, the controller's namespace and the agents' namespace. Without it
    /// such a mapping is refused (reason `ProtectedNamespace`). Default: false.
    #[serde(default)]
    pub allow_protected_namespace: bool,

    /// Adopt destination objects this mapping did not create (no marks, or another
    /// mapping's marks): overwrite them with the source copy, mark them as this mapping's,
    /// and from then on prune them like any copy. Without it such objects are left
    /// untouched and listed in the `ForeignObjects` condition. Also lets a recreated mapping
    /// take over the copies its deleted predecessor wrote. Default: false.
    #[serde(default)]
    pub adopt_existing_objects: bool,

    /// Let a PVC data sync delete destination files when the source listing is empty or has
    /// lost more than half of the files the destination holds (an unmounted disk, a wiped
    /// volume). Without it such a sync copies what the source has, deletes nothing and
    /// reports `DataPruneRefused`. Default: false.
    #[serde(default)]
    pub allow_mass_data_deletion: bool,
}

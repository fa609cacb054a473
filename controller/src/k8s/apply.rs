//! Server-side apply under one field manager, so the controller owns exactly the fields it
//! sets and a user's edits to other fields survive every sync.

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Field manager of every write (server-side apply) the controller makes.
pub const FIELD_MANAGER: &str = "dr-syncer";

/// Writes `status` of the object with server-side apply (field manager `dr-syncer`), so the
/// controller owns exactly the status fields it sets.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

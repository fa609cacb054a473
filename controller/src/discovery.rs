//! API discovery on a source cluster: which kinds exist, with every name users may call them.
//!
//! The raw discovery documents are used (not kube's `Discovery`) because resolution needs the
//! short names and verbs, which kube's summary drops. Results are cached per cluster for a
//! short time so that frequent syncs (Continuous mode, many mappings) do not repeat
//! discovery on every run; a failed group (an aggregated API that is down) is skipped, not
//! fatal, since most mappings never use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;

use crate::replicate::ResourceKind;

/// How long a discovery result is reused.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(30);

/// Discovers every kind served by the cluster, at each group's preferred version.
pub async fn discover(client: &Client) -> Result<Vec<ResourceKind>, kube::Error> {
    let mut kinds = Vec::new();
    let core = client.list_core_api_resources("v1").await?;
    kinds.extend(ResourceKind::from_discovery_list(&core));
    let groups = client.list_api_groups().await?;
    for group in groups.groups {
        let Some(version) = group
            .preferred_version
            .as_ref()
            .map(|v| v.group_version.clone())
            .or_else(|| group.versions.first().map(|v| v.group_version.clone()))
        else {
            continue;
        };
        match client.list_api_group_resources(&version).await {
            Ok(list) => kinds.extend(ResourceKind::from_discovery_list(&list)),
            Err(error) => {
                tracing::debug!(%error, group = %version, "skipping an API group discovery failed for");
            }
        }
    }
    Ok(kinds)
}

/// When a cluster's kinds were discovered, and the kinds.
type CachedKinds = (Instant, Arc<Vec<ResourceKind>>);

/// Discovery results per cluster (keyed by API server URL + kubeconfig hash).
#[derive(Default)]
pub struct DiscoveryCache {
    entries: Mutex<HashMap<String, CachedKinds>>,
}

impl DiscoveryCache {
    /// Cached kinds of the cluster, discovering again when older than [`DISCOVERY_TTL`].
    pub async fn kinds(
        &self,
        key: &str,
        client: &Client,
    ) -> Result<Arc<Vec<ResourceKind>>, kube::Error> {
        if let Ok(entries) = self.entries.lock()
            && let Some((at, kinds)) = entries.get(key)
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(kinds.clone());
        }
        let kinds = Arc::new(discover(client).await?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key.to_owned(), (Instant::now(), kinds.clone()));
        }
        Ok(kinds)
    }

    /// Drops the cached kinds of a cluster (after "unknown resource type", a CRD may have
    /// just been installed).
    pub fn invalidate(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }
}

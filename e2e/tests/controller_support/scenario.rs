//! What every controller test starts from, in one call: the serial lock, the clusters, a
//! fresh controller-cluster namespace holding the bed's RemoteClusters, a fresh source
//! namespace, and the API of the namespace's mappings.

use dr_syncer_crds::NamespaceMapping;
use kube::api::Api;
use tokio::sync::MutexGuard;

use super::{Clusters, SERIAL, clusters, namespace, remote_clusters};

/// A controller test's starting point. Keep the guard bound (`_serial`, not `_`): the lock
/// is held for as long as it lives.
pub struct Scenario {
    /// The serial lock (one controller at a time).
    pub serial: MutexGuard<'static, ()>,
    /// Clients of the three clusters.
    pub c: Clusters,
    /// The test's namespace in the controller cluster, with RemoteClusters `source` and
    /// `target`.
    pub ns: String,
    /// The test's source namespace, `<prefix>-xxxxx`.
    pub src: String,
    /// NamespaceMappings of `ns`.
    pub mappings: Api<NamespaceMapping>,
}

/// Takes the lock and sets up a [`Scenario`] whose source namespace starts with `prefix`.
pub async fn scenario(prefix: &str) -> Scenario {
    scenario_named("dr", prefix).await
}

/// [`scenario`] with the controller-cluster namespace starting with `ns_prefix`.
pub async fn scenario_named(ns_prefix: &str, prefix: &str) -> Scenario {
    let serial = SERIAL.lock().await;
    let c = clusters().await;
    let ns = namespace(&c.controller, ns_prefix).await;
    let src = namespace(&c.source, prefix).await;
    remote_clusters(&c, &ns).await;
    let mappings = Api::namespaced(c.controller.clone(), &ns);
    Scenario {
        serial,
        c,
        ns,
        src,
        mappings,
    }
}

impl Scenario {
    /// The fields as a tuple (guard, clusters, namespace, source namespace, mappings), for
    /// a test to bind in one line.
    pub fn into_parts(
        self,
    ) -> (
        MutexGuard<'static, ()>,
        Clusters,
        String,
        String,
        Api<NamespaceMapping>,
    ) {
        (self.serial, self.c, self.ns, self.src, self.mappings)
    }
}

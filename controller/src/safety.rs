//! The guards that keep a mapping from harming the source or the wrong namespace, as pure
//! rules: which destination namespaces are protected, when two RemoteClusters are one
//! cluster, and which of two mappings writing one destination namespace keeps it.
//!
//! The runtime reads the facts (cluster identities, the other mappings) and refuses the
//! mapping with the reason these rules give, before any client writes
//! ([`crate::mapping::resolve`] is the one place a destination client is handed out).

use dr_syncer_crds::remote_cluster::ClusterIdentity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::status::reasons;

/// Namespaces of every cluster that hold the cluster's own machinery: a mapping into one of
/// them is refused unless `safety.allowProtectedNamespace` says so.
pub const PROTECTED_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// Why a mapping may not write to its destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Source and destination are one cluster and one namespace.
    #[error(
        "source and destination are the same: namespace {namespace} of one cluster \
         (RemoteClusters {source_cluster} and {dest_cluster} reach the cluster whose kube-system \
         uid is {uid}); syncing would overwrite and scale down the source. Set \
         destinationNamespace to another namespace, or point destinationCluster at the DR cluster"
    )]
    SourceIsDestination {
        /// The namespace both sides name.
        namespace: String,
        /// Source RemoteCluster (`namespace/name`).
        source_cluster: String,
        /// Destination RemoteCluster (`namespace/name`).
        dest_cluster: String,
        /// What identifies the cluster.
        uid: String,
    },
    /// The destination namespace is protected.
    #[error(
        "destination namespace {0} is protected (cluster components, the controller or its \
         agents live there); set spec.safety.allowProtectedNamespace: true if this is really meant"
    )]
    ProtectedNamespace(String),
    /// An older mapping writes the same destination namespace of the same cluster.
    #[error(
        "NamespaceMapping {other} already writes namespace {namespace} of this destination \
         cluster; two mappings into one namespace would overwrite and prune each other's \
         objects. Pick another destinationNamespace, or delete one of the mappings"
    )]
    Overlapping {
        /// The mapping that keeps the namespace (`namespace/name`).
        other: String,
        /// The destination namespace.
        namespace: String,
    },
}

impl Refusal {
    /// The condition reason the mapping reports it with.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::SourceIsDestination { .. } => reasons::SOURCE_IS_DESTINATION,
            Refusal::ProtectedNamespace(_) => reasons::PROTECTED_NAMESPACE,
            Refusal::Overlapping { .. } => reasons::OVERLAPPING_MAPPING,
        }
    }
}

/// What identifies a cluster for comparison: the `kube-system` uid, or (when that could
/// not be read) the API server URL and CA together.
pub fn identity_key(identity: &ClusterIdentity) -> String {
    if identity.kube_system_uid.is_empty() {
        format!(
            "server={} ca={}",
            identity.server.as_deref().unwrap_or_default(),
            identity.ca_fingerprint.as_deref().unwrap_or_default()
        )
    } else {
        identity.kube_system_uid.clone()
    }
}

/// Whether two identities are one cluster.
pub fn same_cluster(a: &ClusterIdentity, b: &ClusterIdentity) -> bool {
    identity_key(a) == identity_key(b)
}

/// Whether `namespace` is protected: the cluster's own namespaces, the controller's
/// namespace and the agents' namespace.
pub fn is_protected(
    namespace: &str,
    controller_namespace: Option<&str>,
    agent_namespace: &str,
) -> bool {
    PROTECTED_NAMESPACES.contains(&namespace)
        || controller_namespace == Some(namespace)
        || namespace == agent_namespace
}

/// The two ends of a mapping, as the guards see them.
#[derive(Debug, Clone)]
pub struct Ends<'a> {
    /// Source RemoteCluster (`namespace/name`), for messages.
    pub source_cluster: &'a str,
    /// Destination RemoteCluster (`namespace/name`), for messages.
    pub dest_cluster: &'a str,
    /// Identity of the source cluster.
    pub source: &'a ClusterIdentity,
    /// Identity of the destination cluster.
    pub dest: &'a ClusterIdentity,
    /// Source namespace.
    pub source_namespace: &'a str,
    /// Destination namespace.
    pub dest_namespace: &'a str,
}

/// The guards on the ends alone: never into the source itself, never into a protected
/// namespace (unless `allow_protected`).
pub fn check_ends(
    ends: &Ends<'_>,
    allow_protected: bool,
    controller_namespace: Option<&str>,
    agent_namespace: &str,
) -> Result<(), Refusal> {
    if same_cluster(ends.source, ends.dest) && ends.source_namespace == ends.dest_namespace {
        return Err(Refusal::SourceIsDestination {
            namespace: ends.dest_namespace.to_owned(),
            source_cluster: ends.source_cluster.to_owned(),
            dest_cluster: ends.dest_cluster.to_owned(),
            uid: identity_key(ends.dest),
        });
    }
    if !allow_protected && is_protected(ends.dest_namespace, controller_namespace, agent_namespace)
    {
        return Err(Refusal::ProtectedNamespace(ends.dest_namespace.to_owned()));
    }
    Ok(())
}

/// One mapping's claim on a destination namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The mapping (`namespace/name`).
    pub mapping: String,
    /// When it was created (older claims win).
    pub created: Option<Time>,
    /// [`identity_key`] of its destination cluster.
    pub cluster: String,
    /// Its destination namespace.
    pub namespace: String,
}

/// The claim that keeps the destination namespace `mine` asks for, when it is another's:
/// the oldest claim on the same cluster and namespace (ties broken by name) wins.
pub fn overlapping<'a>(mine: &Claim, others: &'a [Claim]) -> Option<&'a Claim> {
    let order = |c: &Claim| (c.created.as_ref().map(|t| t.0), c.mapping.clone());
    others
        .iter()
        .filter(|o| o.mapping != mine.mapping)
        .filter(|o| o.cluster == mine.cluster && o.namespace == mine.namespace)
        .filter(|o| order(o) < order(mine))
        .min_by_key(|o| order(o))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn id(uid: &str, server: &str) -> ClusterIdentity {
        ClusterIdentity {
            kube_system_uid: uid.to_owned(),
            server: Some(server.to_owned()),
            ca_fingerprint: Some("ca".to_owned()),
        }
    }

    #[test]
    fn one_cluster_is_recognised_by_its_kube_system_uid_whatever_the_address() {
        let table = [
            (id("u1", "https://a"), id("u1", "https://b"), true),
            (id("u1", "https://a"), id("u2", "https://a"), false),
            // kube-system unreadable: the address and CA decide.
            (id("", "https://a"), id("", "https://a"), true),
            (id("", "https://a"), id("", "https://b"), false),
        ];
        for (i, (a, b, same)) in table.iter().enumerate() {
            assert_eq!(same_cluster(a, b), *same, "row {i}");
        }
    }

    #[test]
    fn ends_into_the_source_or_a_protected_namespace_are_refused() {
        let prod = id("u1", "https://prod");
        let alias = id("u1", "https://prod-alias");
        let dr = id("u2", "https://dr");
        // (dest identity, dest namespace, allow protected, expected reason or None)
        let table: [(&ClusterIdentity, &str, bool, Option<&str>); 9] = [
            (&prod, "shop", false, Some(reasons::SOURCE_IS_DESTINATION)),
            (&alias, "shop", false, Some(reasons::SOURCE_IS_DESTINATION)),
            // Same cluster, other namespace: allowed.
            (&prod, "shop-dr", false, None),
            (&dr, "shop", false, None),
            (
                &dr,
                "kube-system",
                false,
                Some(reasons::PROTECTED_NAMESPACE),
            ),
            (
                &dr,
                "kube-node-lease",
                false,
                Some(reasons::PROTECTED_NAMESPACE),
            ),
            (&dr, "dr-syncer", false, Some(reasons::PROTECTED_NAMESPACE)),
            (
                &dr,
                "dr-syncer-agent",
                false,
                Some(reasons::PROTECTED_NAMESPACE),
            ),
            (&dr, "kube-system", true, None),
        ];
        for (i, (dest, ns, allow, want)) in table.into_iter().enumerate() {
            let got = check_ends(
                &Ends {
                    source_cluster: "dr/prod",
                    dest_cluster: "dr/other",
                    source: &prod,
                    dest,
                    source_namespace: "shop",
                    dest_namespace: ns,
                },
                allow,
                Some("dr-syncer"),
                "dr-syncer-agent",
            );
            assert_eq!(
                got.as_ref().err().map(Refusal::reason),
                want,
                "row {i}: {got:?}"
            );
        }
        // Even allowed protected namespaces never allow writing into the source itself.
        let into_source = Ends {
            source_cluster: "dr/prod",
            dest_cluster: "dr/prod",
            source: &prod,
            dest: &prod,
            source_namespace: "kube-system",
            dest_namespace: "kube-system",
        };
        assert_eq!(
            check_ends(&into_source, true, None, "dr-syncer-agent").map_err(|e| e.reason()),
            Err(reasons::SOURCE_IS_DESTINATION)
        );
    }

    fn claim(mapping: &str, secs: i64, cluster: &str, ns: &str) -> Claim {
        Claim {
            mapping: mapping.to_owned(),
            created: Some(Time(Timestamp::from_second(secs).unwrap())),
            cluster: cluster.to_owned(),
            namespace: ns.to_owned(),
        }
    }

    #[test]
    fn the_older_of_two_mappings_into_one_namespace_keeps_it() {
        let older = claim("dr/a", 10, "u2", "shop");
        let younger = claim("dr/b", 20, "u2", "shop");
        let tie = claim("dr/c", 10, "u2", "shop");
        let elsewhere = claim("dr/d", 1, "u2", "blog");
        let other_cluster = claim("dr/e", 1, "u3", "shop");
        let all = vec![
            older.clone(),
            younger.clone(),
            tie.clone(),
            elsewhere,
            other_cluster,
        ];
        assert_eq!(overlapping(&older, &all), None);
        assert_eq!(overlapping(&younger, &all), Some(&older));
        // Same age: the name decides, the same way for both.
        assert_eq!(overlapping(&tie, &all), Some(&older));
        assert_eq!(overlapping(&claim("dr/z", 1, "u9", "x"), &all), None);
    }
}

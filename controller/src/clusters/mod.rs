//! `RemoteCluster`: a client per remote cluster, built from its kubeconfig Secret, kept in a
//! shared registry, rebuilt when the Secret changes, and health-checked on an interval.
//!
//! - [`registry`]: the shared clients ([`ClusterRegistry`]), keyed by [`ClusterKey`].
//! - [`connect`]: a client from a kubeconfig Secret, and the API server health check.
//! - [`conditions`]: what was found, as conditions (pure).
//! - [`reconcile`]: the RemoteCluster reconciler (client, health, agents, status).

pub mod conditions;
pub mod connect;
pub mod reconcile;
pub mod registry;

pub use conditions::{conditions_for, health_interval};
pub use connect::{KubeconfigProblem, check_health, config_from_kubeconfig};
pub use reconcile::{ClusterError, error_policy, reconcile, references_secret};
pub use registry::{ClusterKey, ClusterRegistry, REQUEST_TIMEOUT, RemoteClient};

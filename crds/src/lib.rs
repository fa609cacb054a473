//! The DR-Syncer API: `RemoteCluster`, `ClusterMapping` and `NamespaceMapping` in
//! `dr-syncer.io/v1alpha1`, and the CRD manifests generated from them.

//! `dr-syncer-agent` library: everything the agent binary does besides reading flags.
//!
//! - [`resolve`]: pure rules from a PVC name to the directory holding its data on this
//!   node (hostPath, local, CSI and other kubelet plugins), with precise refusals;
//! - [`mounts`]: whether a directory is a mount point (an unmounted volume must never be
//!   served as if it were empty);
//! - [`cluster`]: reflector caches of PVCs, PVs, this node's pods and Node, and the
//!   [`VolumeResolver`](dr_syncer_rsync::VolumeResolver) the SSH service uses.
//!
//! The SSH server and the data-plane protocol live in `dr_syncer_rsync`.

pub mod cluster;
pub mod mounts;
pub mod resolve;

pub use cluster::{ClusterResolver, ClusterStores, LayeredResolver};
pub use resolve::{ClusterView, NodeContext, ResolveError, VolumeName, resolve};

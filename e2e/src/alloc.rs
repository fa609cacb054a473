//! Address allocation, so several clusters and several test beds on one machine never collide.
//!
//! Each test bed claims a "slot" `S` (10..=250) by holding an exclusive lock on a file for its
//! whole life. Everything it binds derives from the slot, so two test beds can never race
//! for an address:
//! - Node IPs: node `n` of cluster `c` gets `127.S.(c+1).(n+1)`. Linux routes all of 127/8
//!   to `lo`, so these need no setup.
//! - Control-plane ports on 127.0.0.1: [`PORTS_PER_CLUSTER`] consecutive ports per cluster in
//!   a per-slot block starting at 20000, below the kernel's ephemeral range (32768+) so no
//!   outgoing connection can be holding one.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;

/// Why an address could not be allocated.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// The slot lock directory could not be used.
    #[error("slot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A derived port is held by some other process.
    #[error("port 127.0.0.1:{port} is in use by another process")]
    PortBusy {
        /// The port.
        port: u16,
    },
    /// More clusters than a slot's port block holds.
    #[error("at most {max} clusters per test bed, asked for cluster #{index}")]
    TooManyClusters {
        /// The 0-based cluster index asked for.
        index: usize,
        /// The limit.
        max: usize,
    },
    /// Every slot is held by another live test bed.
    #[error("all {0} test bed IP slots are in use")]
    Exhausted(usize),
}

/// Lowest and highest second octet used for node IPs (127.0/16 is left to everyone else).
const SLOTS: std::ops::RangeInclusive<u8> = 10..=250;
/// Ports each cluster gets (etcd client and peer, API server, KCM, scheduler).
pub const PORTS_PER_CLUSTER: usize = 5;
/// Clusters per test bed that a slot's port block holds.
pub const MAX_CLUSTERS: usize = 8;
/// First port of slot 10's block.
const PORT_BASE: usize = 20000;

/// A claimed IP slot; the claim lasts as long as this value (the lock is released on drop or
/// when the process dies, whichever comes first).
#[derive(Debug)]
pub struct IpSlot {
    octet: u8,
    _lock: File,
}

impl IpSlot {
    /// Claims the first free slot, starting the search at a pid-dependent offset so test beds
    /// starting at the same moment rarely contend for the same file.
    pub fn claim() -> Result<IpSlot, AllocError> {
        let dir = std::env::temp_dir().join("dr-syncer-testbed-slots");
        std::fs::create_dir_all(&dir).map_err(|source| AllocError::Lock {
            path: dir.clone(),
            source,
        })?;
        let slots: Vec<u8> = SLOTS.collect();
        let start = std::process::id() as usize % slots.len();
        for i in 0..slots.len() {
            let octet = slots[(start + i) % slots.len()];
            let path = dir.join(format!("{octet}.lock"));
            let file = File::create(&path).map_err(|source| AllocError::Lock {
                path: path.clone(),
                source,
            })?;
            if file.try_lock().is_ok() {
                return Ok(IpSlot { octet, _lock: file });
            }
        }
        Err(AllocError::Exhausted(slots.len()))
    }

    /// The claimed second octet.
    pub fn octet(&self) -> u8 {
        self.octet
    }

    /// The `PORTS_PER_CLUSTER` ports of cluster `cluster` (0-based), each checked to be free.
    pub fn cluster_ports(&self, cluster: usize) -> Result<[u16; PORTS_PER_CLUSTER], AllocError> {
        if cluster >= MAX_CLUSTERS {
            return Err(AllocError::TooManyClusters {
                index: cluster,
                max: MAX_CLUSTERS,
            });
        }
        let block = PORT_BASE
            + (usize::from(self.octet) - usize::from(*SLOTS.start()))
                * MAX_CLUSTERS
                * PORTS_PER_CLUSTER;
        let mut ports = [0u16; PORTS_PER_CLUSTER];
        for (k, port) in ports.iter_mut().enumerate() {
            // At most 20000 + 240 * 40 + 39 = 29639: fits in u16.
            *port = (block + cluster * PORTS_PER_CLUSTER + k) as u16;
            if TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_err() {
                return Err(AllocError::PortBusy { port: *port });
            }
        }
        Ok(ports)
    }

    /// The InternalIP of node `node` (0-based) of cluster `cluster` (0-based).
    pub fn node_ip(&self, cluster: usize, node: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, self.octet, (cluster + 1) as u8, (node + 1) as u8)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn two_claims_get_different_slots_and_ips() {
        let a = IpSlot::claim().unwrap();
        let b = IpSlot::claim().unwrap();
        assert_ne!(a.octet(), b.octet());
        assert_ne!(a.node_ip(0, 0), b.node_ip(0, 0));
        assert_ne!(a.node_ip(0, 1), a.node_ip(1, 0));
        assert!(a.node_ip(2, 1).is_loopback());
    }

    #[test]
    fn cluster_ports_are_distinct_across_clusters_and_slots_and_below_ephemeral() {
        let a = IpSlot::claim().unwrap();
        let b = IpSlot::claim().unwrap();
        let mut all = Vec::new();
        for slot in [&a, &b] {
            for c in 0..3 {
                all.extend(slot.cluster_ports(c).unwrap());
            }
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "duplicate ports");
        assert!(all.iter().all(|&p| (20000..32768).contains(&p)), "{all:?}");
        assert!(a.cluster_ports(MAX_CLUSTERS).is_err());
    }
}

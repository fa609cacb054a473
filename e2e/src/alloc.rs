//! Address allocation, so several clusters and several test beds on one machine never collide.
//!
//! - TCP ports for the control plane: the kernel picks a free one when we bind
//!   `127.0.0.1:0`; we release it and hand the number to the component a moment later.
//! - Node IPs: each test bed claims a "slot" `S` (second octet of 127/8) by holding an
//!   exclusive lock on a file for its whole life; node `n` of cluster `c` gets
//!   `127.S.(c+1).(n+1)`. Linux routes all of 127/8 to `lo`, so these need no setup.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;

/// Why an address could not be allocated.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// Binding a probe socket failed.
    #[error("finding a free port: {0}")]
    Port(#[source] std::io::Error),
    /// The slot lock directory could not be used.
    #[error("slot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Every slot is held by another live test bed.
    #[error("all {0} test bed IP slots are in use")]
    Exhausted(usize),
}

/// Lowest and highest second octet used for node IPs (127.0/16 is left to everyone else).
const SLOTS: std::ops::RangeInclusive<u8> = 10..=250;

/// Returns a TCP port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> Result<u16, AllocError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(AllocError::Port)?;
    Ok(listener.local_addr().map_err(AllocError::Port)?.port())
}

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
    fn free_port_is_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }
}

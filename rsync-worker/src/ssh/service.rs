//! The data-plane protocol as the agent's subsystem: each channel runs [`crate::serve`].

use std::sync::Arc;

use tracing::{info, warn};

use super::server::{ChannelPeer, ServeFuture, SubsystemService, SubsystemStream};
use crate::sender::{Limits, VolumeResolver, serve};

/// Serves every subsystem channel with the sending side of the protocol, resolving
/// volumes only through the agent's own resolver.
pub struct ProtocolService {
    resolver: Arc<dyn VolumeResolver>,
    limits: Limits,
}

impl ProtocolService {
    /// Wraps a resolver and the per-stream limits.
    pub fn new(resolver: Arc<dyn VolumeResolver>, limits: Limits) -> Self {
        Self { resolver, limits }
    }
}

impl SubsystemService for ProtocolService {
    fn serve<'a>(&'a self, stream: &'a mut SubsystemStream, peer: ChannelPeer) -> ServeFuture<'a> {
        Box::pin(async move {
            match serve(stream, self.resolver.as_ref(), &self.limits).await {
                Ok(stats) => {
                    info!(
                        peer = ?peer.addr, channel = peer.channel, client_key = %peer.key_fingerprint,
                        volume = %stats.volume, entries = stats.entries_listed, files = stats.files_sent,
                        literal_bytes = stats.literal_bytes, matched_bytes = stats.matched_bytes,
                        wire_bytes_out = stats.wire_bytes_out, "stream served"
                    );
                    0
                }
                Err(e) => {
                    warn!(peer = ?peer.addr, channel = peer.channel, client_key = %peer.key_fingerprint, error = %e, "stream failed");
                    1
                }
            }
        })
    }
}

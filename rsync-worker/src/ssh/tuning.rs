//! Transport tuning shared by both ends, in one place so the bench measures what ships.

use std::borrow::Cow;
use std::time::Duration;

use russh::{Preferred, cipher};

/// Flow-control window per channel. Large enough that one channel keeps a loopback or
/// LAN link busy while the receiver is writing to disk.
pub const WINDOW_SIZE: u32 = 16 * 1024 * 1024;

/// Largest SSH packet we accept; bigger packets mean fewer MAC/cipher calls per byte.
pub const MAX_PACKET_SIZE: u32 = 65535 - 1024;

/// Messages buffered per channel before backpressure reaches TCP.
pub const CHANNEL_BUFFER: usize = 256;

/// Bytes of incoming channel data buffered per channel before backpressure (see
/// [`super::pump`]); bounds the memory a peer can make us hold per stream.
pub const PUMP_BUFFER: usize = 8 * 1024 * 1024;

/// Read-ahead on the TCP socket under each SSH session before any channel is open:
/// handshake, auth, keepalives and other non-data packets.
///
/// russh 0.65 does not read the socket while its session loop writes, so two ends that
/// both have more output queued than the kernel buffers between them hold wait on each
/// other forever (the multi-channel echo stall). Both ends therefore read the socket
/// through a [`super::pump`] that keeps draining the kernel whatever the session loop is
/// doing; see the module docs there.
pub const READ_AHEAD_BASE: usize = 1024 * 1024;

/// Read-ahead added per open channel: what a compliant peer may send on it before our
/// session loop has parsed any of it, i.e. the window we grant ([`WINDOW_SIZE`]; russh
/// renews it only as the loop parses data), plus 1/8 for SSH packet framing (enough for
/// packets down to ~400 bytes of data; our protocol writes through 64-256 KiB buffers).
/// A peer that ignores flow control fills it and then meets plain TCP backpressure, so
/// what a connection can make us buffer stays bounded by
/// `READ_AHEAD_BASE + channels * READ_AHEAD_PER_CHANNEL`, next to each channel's
/// [`CHANNEL_BUFFER`] messages and [`PUMP_BUFFER`] bytes.
pub const READ_AHEAD_PER_CHANNEL: usize = WINDOW_SIZE as usize + WINDOW_SIZE as usize / 8;

/// Keepalives let both ends notice a dead peer (node gone, network partition).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Algorithm preferences: AES-GCM first (hardware accelerated through ring on every
/// node CPU we target), ChaCha20-Poly1305 as the fallback.
pub fn preferred() -> Preferred {
    Preferred {
        cipher: Cow::Borrowed(&[
            cipher::AES_256_GCM,
            cipher::AES_128_GCM,
            cipher::CHACHA20_POLY1305,
        ]),
        ..Preferred::DEFAULT
    }
}

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

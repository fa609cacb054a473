//! The sending side (agent): [`serve`] answers one stream's requests from a volume root
//! that it resolved itself through a [`VolumeResolver`]; no client path is trusted.
//!
//! Table of contents:
//! - `volumes`: [`VolumeResolver`], [`StaticVolumes`], [`VolumeError`].
//! - `limits`: [`Limits`] on a client, [`ServeStats`] of a stream.
//! - `serve`: [`serve`], the request loop of one stream.
//! - `list`: answering a list request (the walk, in batches).
//! - `produce`: answering fetches on one producer thread per stream.

mod limits;
mod list;
mod produce;
mod serve;
mod volumes;

pub use limits::{Limits, ServeStats};
pub use serve::serve;
pub use volumes::{
    StaticVolumes, UNSAFE_VOLUME, VolumeError, VolumeResolver, VolumeSpecError,
    is_unsafe_volume_refusal,
};

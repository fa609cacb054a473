//! Wire format: length-prefixed frames carrying one [`Message`] each.
//!
//! Framing is explicit and bounded so that a hostile peer cannot make us allocate more
//! than [`MAX_FRAME`] bytes or panic: `u32 BE length | u8 flags | payload`, where the
//! length counts flags + payload and flag bit 0 means the payload is zstd-compressed
//! (its decompressed size is bounded too). Payloads are a tag byte and fixed-order fields;
//! every decode checks lengths against what is left. See `docs/dataplane.md`.
//!
//! Table of contents:
//! - `message`: [`Message`], [`FetchRequest`] and the protocol [`VERSION`].
//! - `codec`: payload encoding and bounded decoding of each message.
//! - `frame`: frames on a byte stream ([`FrameReader`], [`FrameWriter`], [`MAX_FRAME`]).
//! - `error`: [`ProtocolError`].

mod codec;
mod error;
mod frame;
mod message;

pub use error::ProtocolError;
pub use frame::{FrameReader, FrameWriter, MAX_FRAME, decode_frame};
pub use message::{FetchRequest, Message, VERSION};

//! Framing: `u32 BE length | u8 flags | payload`, the length counting flags + payload and
//! flag bit 0 meaning a zstd-compressed payload (whose decompressed size is bounded too).
//! [`FrameReader`] and [`FrameWriter`] move each half of a stream, counting bytes.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{TAG_DELTA, TAG_SIGNATURE};
use super::error::ProtocolError;
use super::message::Message;

/// Largest frame payload (decompressed) either side accepts.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
const FLAG_ZSTD: u8 = 1;

/// Reads frames from one half of a stream, counting bytes.
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    /// Bytes read so far, headers included.
    pub bytes: u64,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`, accepting payloads up to `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            bytes: 0,
        }
    }

    /// Reads and decodes the next message. A clean end of stream is an `Io` error of kind
    /// `UnexpectedEof`: the protocol always ends with an explicit message.
    ///
    /// Uncompressed bulk frames (deltas, signatures: nearly every byte of a transfer) are
    /// read straight into the message's buffer; the result is the same as
    /// [`decode_frame`]'s, one copy of the data cheaper.
    pub async fn read(&mut self) -> Result<Message, ProtocolError> {
        let mut header = [0u8; 6];
        self.inner.read_exact(&mut header[..5]).await?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let flags = header[4];
        if len > self.max + 64 {
            return Err(ProtocolError::FrameTooLarge { len, max: self.max });
        }
        self.bytes += 5 + len as u64;
        if flags == 0 && len > 0 {
            self.inner.read_exact(&mut header[5..]).await?;
            let tag = header[5];
            if tag == TAG_DELTA || tag == TAG_SIGNATURE {
                let mut data = vec![0u8; len - 1];
                self.inner.read_exact(&mut data).await?;
                return Ok(if tag == TAG_DELTA {
                    Message::Delta(data)
                } else {
                    Message::Signature(data)
                });
            }
            let mut payload = vec![0u8; len];
            payload[0] = tag;
            self.inner.read_exact(&mut payload[1..]).await?;
            return Message::decode(&payload);
        }
        let mut payload = vec![0u8; len];
        self.inner.read_exact(&mut payload).await?;
        decode_frame(flags, &payload, self.max)
    }
}

/// Decodes one frame body given its flags: decompresses (bounded) and parses.
pub fn decode_frame(flags: u8, payload: &[u8], max: usize) -> Result<Message, ProtocolError> {
    match flags {
        0 => Message::decode(payload),
        FLAG_ZSTD => {
            // allocate what the zstd header announces (bounded), not the maximum
            let announced = match zstd::zstd_safe::get_frame_content_size(payload) {
                Ok(Some(n)) if n <= max as u64 => n as usize,
                _ => {
                    return Err(ProtocolError::malformed(
                        "zstd frame size missing or too large",
                    ));
                }
            };
            let raw = zstd::bulk::decompress(payload, announced)
                .map_err(|e| ProtocolError::malformed(format!("zstd: {e}")))?;
            Message::decode(&raw)
        }
        f => Err(ProtocolError::malformed(format!(
            "unknown frame flags {f:#x}"
        ))),
    }
}

/// zstd level for `Entries` frames when the client did not ask for compression.
const ENTRIES_LEVEL: i32 = 1;

/// Writes frames to one half of a stream, counting bytes, optionally compressing data.
pub struct FrameWriter<W> {
    inner: W,
    compress_level: i32,
    /// Bytes written so far, headers included.
    pub bytes: u64,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps `inner`; `compress_level > 0` compresses data-bearing frames with zstd.
    pub fn new(inner: W, compress_level: i32) -> Self {
        Self {
            inner,
            compress_level,
            bytes: 0,
        }
    }

    /// Gives the underlying writer back (tests use it to write raw frames).
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Sets the zstd level used for data frames (0 = off).
    pub fn set_compression(&mut self, level: i32) {
        self.compress_level = level;
    }

    /// Encodes and writes one message (not flushed). Uncompressed bulk messages are
    /// written from their own buffer, without encoding a copy first (same bytes).
    pub async fn send(&mut self, msg: &Message) -> Result<(), ProtocolError> {
        match msg {
            Message::Delta(data) if self.compress_level == 0 => {
                return self.write_bulk(TAG_DELTA, data).await;
            }
            Message::Signature(data) => return self.write_bulk(TAG_SIGNATURE, data).await,
            _ => {}
        }
        let payload = msg.encode();
        // file lists are always compressed (paths and metadata shrink ~4x for a few ms of
        // zstd -1): every reader accepts compressed frames, so no client has to ask
        let level = match msg {
            Message::Entries(_) => self.compress_level.max(ENTRIES_LEVEL),
            Message::Delta(_) => self.compress_level,
            _ => 0,
        };
        if level > 0 && payload.len() > 64 {
            let packed = zstd::bulk::compress(&payload, level)
                .map_err(|e| ProtocolError::malformed(format!("zstd: {e}")))?;
            if packed.len() < payload.len() {
                return self.write_frame(FLAG_ZSTD, &packed).await;
            }
        }
        self.write_frame(0, &payload).await
    }

    /// One uncompressed frame holding `tag` then `data`: what `encode` would produce.
    async fn write_bulk(&mut self, tag: u8, data: &[u8]) -> Result<(), ProtocolError> {
        let mut header = [0u8; 6];
        header[..4].copy_from_slice(&(data.len() as u32 + 1).to_be_bytes());
        header[5] = tag;
        self.inner.write_all(&header).await?;
        self.inner.write_all(data).await?;
        self.bytes += 6 + data.len() as u64;
        Ok(())
    }

    async fn write_frame(&mut self, flags: u8, payload: &[u8]) -> Result<(), ProtocolError> {
        let mut header = [0u8; 5];
        header[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        header[4] = flags;
        self.inner.write_all(&header).await?;
        self.inner.write_all(payload).await?;
        self.bytes += 5 + payload.len() as u64;
        Ok(())
    }

    /// Flushes buffered frames to the transport.
    pub async fn flush(&mut self) -> Result<(), ProtocolError> {
        self.inner.flush().await?;
        Ok(())
    }

    /// Flushes and shuts the write half down.
    pub async fn shutdown(&mut self) -> Result<(), ProtocolError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::entry;

    #[tokio::test]
    async fn frames_round_trip_and_bound_size() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = FrameWriter::new(a, 3);
        let data = Message::Delta(vec![0u8; 100_000]);
        w.send(&data).await.unwrap();
        w.send(&Message::Bye).await.unwrap();
        w.flush().await.unwrap();
        assert!(w.bytes < 10_000, "zeros compress");
        let mut r = FrameReader::new(b, MAX_FRAME);
        assert_eq!(r.read().await.unwrap(), data);
        assert_eq!(r.read().await.unwrap(), Message::Bye);

        // without compression: deltas go raw, file lists are compressed anyway
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = FrameWriter::new(a, 0);
        let list = Message::Entries(vec![entry(); 200]);
        let raw_list = list.encode().len() as u64;
        w.send(&data).await.unwrap();
        let raw_delta = w.bytes;
        assert!(raw_delta > 100_000, "deltas stay raw: {raw_delta}");
        w.send(&list).await.unwrap();
        w.flush().await.unwrap();
        let list_wire = w.bytes - raw_delta;
        assert!(list_wire * 4 < raw_list, "list {list_wire} of {raw_list}");
        let mut r = FrameReader::new(b, MAX_FRAME);
        assert_eq!(r.read().await.unwrap(), data);
        assert_eq!(r.read().await.unwrap(), list);

        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        a.write_all(&[0]).await.unwrap();
        let mut r = FrameReader::new(b, MAX_FRAME);
        assert!(matches!(
            r.read().await,
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }

    /// The copy-free paths for bulk messages put the same bytes on the wire as the generic
    /// encoder, and the reader's fast path decodes what the generic decoder does.
    #[tokio::test]
    async fn bulk_frames_match_the_generic_encoding() {
        let msgs = [
            Message::Delta((0..70_000u32).map(|i| i as u8).collect()),
            Message::Delta(Vec::new()),
            Message::Signature(vec![3; 1000]),
            Message::FileStart { id: 1, size: 2 },
        ];
        for m in msgs {
            let (a, mut b) = tokio::io::duplex(1 << 20);
            let mut w = FrameWriter::new(a, 0);
            w.send(&m).await.unwrap();
            w.flush().await.unwrap();
            let written = w.bytes;
            drop(w);
            let mut wire = Vec::new();
            b.read_to_end(&mut wire).await.unwrap();
            let payload = m.encode();
            let mut want = (payload.len() as u32).to_be_bytes().to_vec();
            want.push(0);
            want.extend_from_slice(&payload);
            assert_eq!(wire, want, "{}", m.name());
            assert_eq!(written, want.len() as u64);
            assert_eq!(decode_frame(0, &payload, MAX_FRAME).unwrap(), m);
            let mut r = FrameReader::new(&wire[..], MAX_FRAME);
            assert_eq!(r.read().await.unwrap(), m);
            assert_eq!(r.bytes, want.len() as u64);
        }
    }
}

//! Message payloads: a tag byte and fixed-order big-endian fields ([`Message::encode`]),
//! parsed by a bounds-checked cursor that never panics and never lets a count drive a huge
//! allocation ([`Message::decode`]).

use super::error::ProtocolError;
use super::message::{FetchRequest, Message};
use crate::delta::ChunkHashes;
use crate::filelist::{Entry, EntryKind};
use crate::paths::WirePath;

/// Message tags of the two bulk messages, which frame readers and writers move without
/// an extra copy (see [`FrameWriter::send`] and [`FrameReader::read`]).
pub(super) const TAG_SIGNATURE: u8 = 7;
pub(super) const TAG_DELTA: u8 = 9;

impl Message {
    /// Serializes the message payload (without frame header).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64);
        match self {
            Message::Hello {
                version,
                volume,
                compress_level,
            } => {
                w.push(1);
                put_u32(&mut w, *version);
                put_bytes(&mut w, volume.as_bytes());
                put_u32(&mut w, *compress_level as u32);
            }
            Message::HelloOk { version } => {
                w.push(2);
                put_u32(&mut w, *version);
            }
            Message::ListRequest {
                excludes,
                hash_percent,
                xattrs,
            } => {
                w.push(3);
                put_u32(&mut w, excludes.len() as u32);
                for e in excludes {
                    put_bytes(&mut w, e.as_bytes());
                }
                w.push(*hash_percent);
                w.push(u8::from(*xattrs));
            }
            Message::Entries(entries) => {
                w.push(4);
                put_u32(&mut w, entries.len() as u32);
                for e in entries {
                    encode_entry(&mut w, e);
                }
            }
            Message::ListEnd { count } => {
                w.push(5);
                put_u64(&mut w, *count);
            }
            Message::Fetch(f) => {
                w.push(6);
                put_u64(&mut w, f.id);
                put_bytes(&mut w, f.path.as_bytes());
                put_u64(&mut w, f.window);
                put_u32(&mut w, f.sig_count);
            }
            Message::Signature(data) => {
                w.push(7);
                w.extend_from_slice(data);
            }
            Message::FileStart { id, size } => {
                w.push(8);
                put_u64(&mut w, *id);
                put_u64(&mut w, *size);
            }
            Message::Delta(data) => {
                w.push(TAG_DELTA);
                w.extend_from_slice(data);
            }
            Message::FileEnd { id, hash } => {
                w.push(10);
                put_u64(&mut w, *id);
                w.extend_from_slice(hash);
            }
            Message::FileError { id, message } => {
                w.push(11);
                put_u64(&mut w, *id);
                put_bytes(&mut w, message.as_bytes());
            }
            Message::Error(message) => {
                w.push(12);
                put_bytes(&mut w, message.as_bytes());
            }
            Message::Bye => w.push(13),
            Message::Chunks(c) => {
                w.push(14);
                put_u64(&mut w, c.first);
                put_u64(&mut w, c.size);
                put_u64(&mut w, c.basis_first);
                put_u32(&mut w, c.hashes.len() as u32);
                for h in &c.hashes {
                    w.extend_from_slice(h);
                }
            }
        }
        w
    }

    /// Parses a payload. Never panics; every length is checked against the input.
    pub fn decode(buf: &[u8]) -> Result<Message, ProtocolError> {
        let mut r = Reader { buf, pos: 0 };
        let msg = match r.u8()? {
            1 => Message::Hello {
                version: r.u32()?,
                volume: r.string()?,
                compress_level: r.u32()? as i32,
            },
            2 => Message::HelloOk { version: r.u32()? },
            3 => {
                let n = r.count(4)?;
                let mut excludes = Vec::with_capacity(n);
                for _ in 0..n {
                    excludes.push(r.string()?);
                }
                let hash_percent = r.u8()?;
                if hash_percent > 100 {
                    return Err(ProtocolError::malformed("hash percentage above 100"));
                }
                Message::ListRequest {
                    excludes,
                    hash_percent,
                    xattrs: r.bool()?,
                }
            }
            4 => {
                let n = r.count(8)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(decode_entry(&mut r)?);
                }
                Message::Entries(entries)
            }
            5 => Message::ListEnd { count: r.u64()? },
            6 => Message::Fetch(FetchRequest {
                id: r.u64()?,
                path: r.path()?,
                window: r.u64()?,
                sig_count: r.u32()?,
            }),
            TAG_SIGNATURE => Message::Signature(r.rest().to_vec()),
            8 => Message::FileStart {
                id: r.u64()?,
                size: r.u64()?,
            },
            TAG_DELTA => Message::Delta(r.rest().to_vec()),
            10 => Message::FileEnd {
                id: r.u64()?,
                hash: r.array32()?,
            },
            11 => Message::FileError {
                id: r.u64()?,
                message: r.string()?,
            },
            12 => Message::Error(r.string()?),
            13 => Message::Bye,
            14 => {
                let (first, size, basis_first) = (r.u64()?, r.u64()?, r.u64()?);
                let n = r.count(32)?;
                let mut hashes = Vec::with_capacity(n);
                for _ in 0..n {
                    hashes.push(r.array32()?);
                }
                Message::Chunks(ChunkHashes {
                    first,
                    size,
                    basis_first,
                    hashes,
                })
            }
            t => return Err(ProtocolError::malformed(format!("unknown message tag {t}"))),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn encode_entry(w: &mut Vec<u8>, e: &Entry) {
    put_bytes(w, e.path.as_bytes());
    w.push(e.kind as u8);
    put_u32(w, e.mode);
    put_u32(w, e.uid);
    put_u32(w, e.gid);
    put_u64(w, e.size);
    put_u64(w, e.mtime_sec as u64);
    put_u32(w, e.mtime_nsec);
    put_bytes(w, &e.link_target);
    match e.hardlink_to {
        Some(i) => {
            w.push(1);
            put_u64(w, i);
        }
        None => w.push(0),
    }
    match &e.hash {
        Some(h) => {
            w.push(1);
            w.extend_from_slice(h);
        }
        None => w.push(0),
    }
    put_u32(w, e.xattrs.len() as u32);
    for (k, v) in &e.xattrs {
        put_bytes(w, k);
        put_bytes(w, v);
    }
}

fn decode_entry(r: &mut Reader<'_>) -> Result<Entry, ProtocolError> {
    let path = r.path()?;
    let kind = EntryKind::from_u8(r.u8()?)
        .ok_or_else(|| ProtocolError::malformed("unknown entry kind"))?;
    let mode = r.u32()?;
    let uid = r.u32()?;
    let gid = r.u32()?;
    let size = r.u64()?;
    let mtime_sec = r.u64()? as i64;
    let mtime_nsec = r.u32()?;
    if mtime_nsec >= 1_000_000_000 {
        return Err(ProtocolError::malformed("mtime nanoseconds out of range"));
    }
    let link_target = r.bytes()?.to_vec();
    let hardlink_to = if r.bool()? { Some(r.u64()?) } else { None };
    let hash = if r.bool()? { Some(r.array32()?) } else { None };
    let n = r.count(8)?;
    let mut xattrs = Vec::with_capacity(n);
    for _ in 0..n {
        xattrs.push((r.bytes()?.to_vec(), r.bytes()?.to_vec()));
    }
    Ok(Entry {
        path,
        kind,
        mode,
        uid,
        gid,
        size,
        mtime_sec,
        mtime_nsec,
        link_target,
        hardlink_to,
        hash,
        xattrs,
    })
}

fn put_u32(w: &mut Vec<u8>, v: u32) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    put_u32(w, b.len() as u32);
    w.extend_from_slice(b);
}

/// A bounds-checked cursor over a payload.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| ProtocolError::malformed("truncated message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, ProtocolError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ProtocolError::malformed("invalid boolean")),
        }
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn array32(&mut self) -> Result<[u8; 32], ProtocolError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(a)
    }
    fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, ProtocolError> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| ProtocolError::malformed("string is not UTF-8"))
    }
    fn path(&mut self) -> Result<WirePath, ProtocolError> {
        let raw = self.bytes()?;
        WirePath::new(raw.to_vec()).map_err(|e| ProtocolError::PathRefused {
            path: String::from_utf8_lossy(raw).into_owned(),
            reason: e.to_string(),
        })
    }
    /// A element count, refused if the remaining bytes cannot hold that many elements of
    /// at least `min_size` bytes (so a count never drives a huge allocation).
    fn count(&mut self, min_size: usize) -> Result<usize, ProtocolError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size) > self.buf.len() - self.pos {
            return Err(ProtocolError::malformed(
                "element count exceeds message size",
            ));
        }
        Ok(n)
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    fn finish(&self) -> Result<(), ProtocolError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(ProtocolError::malformed("trailing bytes after message"))
        }
    }
}

/// A file entry exercising every field (shared by the codec and frame tests).
#[cfg(test)]
pub(super) fn entry() -> Entry {
    Entry {
        path: WirePath::new(b"dir/a b\nc\xff".to_vec()).unwrap(),
        kind: EntryKind::File,
        mode: 0o100644,
        uid: 1000,
        gid: 1000,
        size: 42,
        mtime_sec: -5,
        mtime_nsec: 999_999_999,
        link_target: Vec::new(),
        hardlink_to: Some(3),
        hash: Some([7; 32]),
        xattrs: vec![(b"user.k".to_vec(), b"v".to_vec())],
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::VERSION;

    #[test]
    fn a_hash_percentage_above_100_is_malformed() {
        let mut bytes = Message::ListRequest {
            excludes: vec![],
            hash_percent: 100,
            xattrs: false,
        }
        .encode();
        let at = bytes.len() - 2;
        bytes[at] = 101;
        assert!(Message::decode(&bytes).is_err());
    }

    #[test]
    fn every_message_round_trips() {
        let msgs = vec![
            Message::Hello {
                version: VERSION,
                volume: "ns/pvc".into(),
                compress_level: 3,
            },
            Message::HelloOk { version: VERSION },
            Message::ListRequest {
                excludes: vec!["*.tmp".into()],
                hash_percent: 100,
                xattrs: false,
            },
            Message::ListRequest {
                excludes: vec![],
                hash_percent: 7,
                xattrs: true,
            },
            Message::Entries(vec![entry(), entry()]),
            Message::ListEnd { count: 2 },
            Message::Fetch(FetchRequest {
                id: 9,
                path: WirePath::new(b"x/y".to_vec()).unwrap(),
                window: 1 << 26,
                sig_count: 2,
            }),
            Message::Chunks(ChunkHashes {
                first: 8,
                size: 1 << 18,
                basis_first: 4 << 20,
                hashes: vec![[5; 32], [6; 32]],
            }),
            Message::Signature(vec![1, 2, 3]),
            Message::FileStart { id: 9, size: 5 },
            Message::Delta(vec![0; 100]),
            Message::FileEnd {
                id: 9,
                hash: [1; 32],
            },
            Message::FileError {
                id: 9,
                message: "gone".into(),
            },
            Message::Error("bad".into()),
            Message::Bye,
        ];
        for m in msgs {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        let good = Message::Entries(vec![entry()]).encode();
        for cut in 0..good.len() {
            assert!(Message::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = Message::Bye.encode();
        trailing.push(0);
        assert!(Message::decode(&trailing).is_err());
        // a count claiming 4 billion entries in a tiny message
        assert!(Message::decode(&[4, 0xff, 0xff, 0xff, 0xff]).is_err());
        // a path escaping the root
        let mut bad = vec![6];
        bad.extend_from_slice(&0u64.to_be_bytes());
        bad.extend_from_slice(&5u32.to_be_bytes());
        bad.extend_from_slice(b"../x1");
        assert!(matches!(
            Message::decode(&bad),
            Err(ProtocolError::PathRefused { .. })
        ));
    }
}

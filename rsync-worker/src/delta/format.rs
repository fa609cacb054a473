//! The librsync delta format both ends speak: the magic, the commands (encoded by
//! [`literal_delta`] and the matcher's COPY runs, decoded by the applier), and the size of
//! the pieces delta data travels in ([`DATA_CHUNK`]).

use std::io::{self, Write};

use super::error::DeltaError;

/// librsync delta magic.
pub const DELTA_MAGIC: u32 = 0x7273_0236;

/// Bytes of delta data a sender puts in one `Delta` frame (well under the frame limit, so
/// data flows in steady pieces), and the longest literal command of an all-literal delta.
pub const DATA_CHUNK: usize = 256 * 1024;

/// An all-literal delta (no basis), without the cost of hashing.
pub fn literal_delta(data: &[u8], out: &mut impl Write) -> io::Result<()> {
    out.write_all(&DELTA_MAGIC.to_be_bytes())?;
    for chunk in data.chunks(DATA_CHUNK) {
        out.write_all(&[0x43])?; // RS_OP_LITERAL_N4
        out.write_all(&(chunk.len() as u32).to_be_bytes())?;
        out.write_all(chunk)?;
    }
    out.write_all(&[0])
}

/// Writes a librsync COPY command (8-byte offset and length: `RS_OP_COPY_N8_N8`).
pub(super) fn write_copy(out: &mut impl Write, offset: u64, len: u64) -> io::Result<()> {
    let mut cmd = [0u8; 17];
    cmd[0] = 0x54;
    cmd[1..9].copy_from_slice(&offset.to_be_bytes());
    cmd[9..].copy_from_slice(&len.to_be_bytes());
    out.write_all(&cmd)
}

/// One parsed delta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmd {
    /// `n` literal bytes follow.
    Literal(u64),
    /// Copy `len` bytes from `offset` in the basis window.
    Copy { offset: u64, len: u64 },
    /// End of this window's delta.
    End,
}

/// Decodes a command byte and its arguments (exactly [`arg_len`]`(op)` bytes).
pub(super) fn decode_cmd(op: u8, args: &[u8]) -> Result<Cmd, DeltaError> {
    let be = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    match op {
        0 => Ok(Cmd::End),
        1..=0x40 => Ok(Cmd::Literal(u64::from(op))),
        0x41..=0x44 => Ok(Cmd::Literal(be(args))),
        0x45..=0x54 => {
            let (ol, _) = copy_arg_sizes(op);
            Ok(Cmd::Copy {
                offset: be(&args[..ol]),
                len: be(&args[ol..]),
            })
        }
        _ => Err(DeltaError::Invalid(format!("unknown command {op:#x}"))),
    }
}

fn copy_arg_sizes(op: u8) -> (usize, usize) {
    let i = op - 0x45;
    (1 << (i / 4), 1 << (i % 4))
}

/// Bytes of arguments following a command byte.
pub(super) fn arg_len(op: u8) -> usize {
    match op {
        0x41..=0x44 => 1 << (op - 0x41),
        0x45..=0x54 => {
            let (a, b) = copy_arg_sizes(op);
            a + b
        }
        _ => 0,
    }
}

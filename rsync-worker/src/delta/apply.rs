//! The applier: parses a delta stream incrementally ([`DeltaApplier`]), so the receiver
//! never holds a delta in memory; it accepts every librsync command (so `rdiff` deltas
//! apply too) and bounds-checks every copy. [`DeltaCounter`] reads the same stream for
//! the sender's statistics.

use std::io;

use super::error::DeltaError;
use super::format::{Cmd, DELTA_MAGIC, arg_len, decode_cmd};

/// Where the applier is in the delta stream.
#[derive(Debug)]
enum State {
    Magic,
    Command,
    Args { op: u8 },
    Literal { left: u64 },
    WindowDone,
}

/// Where applied bytes go.
pub trait DeltaSink {
    /// Appends bytes to the output.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
}

impl DeltaSink for Vec<u8> {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.extend_from_slice(data);
        Ok(())
    }
}

/// Incremental applier of one window's delta: feed it bytes as they arrive.
#[derive(Debug)]
pub struct DeltaApplier {
    state: State,
    pending: Vec<u8>,
    /// Bytes output from literal commands.
    pub literal_bytes: u64,
    /// Bytes output from copy commands.
    pub matched_bytes: u64,
    /// Bytes output in this window.
    pub output_bytes: u64,
    limit: u64,
    counting: bool,
}

/// Discards output (for counting).
struct NullSink;

impl DeltaSink for NullSink {
    fn append(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// Counts literal and matched bytes of a delta stream without applying it (sender stats).
#[derive(Debug)]
pub struct DeltaCounter(DeltaApplier);

impl Default for DeltaCounter {
    fn default() -> Self {
        let mut a = DeltaApplier::new(u64::MAX);
        a.counting = true;
        Self(a)
    }
}

impl DeltaCounter {
    /// Accounts for delta bytes (windows may follow each other).
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.0.feed(data, &[], &mut NullSink) {
                Ok(n) => data = &data[n..],
                Err(_) => return,
            }
            if self.0.is_done() {
                self.0.state = State::Magic;
            }
        }
    }

    /// (literal, matched) bytes seen so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.0.literal_bytes, self.0.matched_bytes)
    }
}

impl DeltaApplier {
    /// A new applier for one window that may output at most `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            state: State::Magic,
            pending: Vec::with_capacity(16),
            literal_bytes: 0,
            matched_bytes: 0,
            output_bytes: 0,
            limit,
            counting: false,
        }
    }

    /// Whether the window's end command has been seen.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::WindowDone)
    }

    /// Consumes bytes of the delta, writing output to `out` and copying from `basis`.
    /// Returns how many bytes were consumed: less than `input.len()` only once the window
    /// is complete (the rest belongs to the next window).
    pub fn feed(
        &mut self,
        mut input: &[u8],
        basis: &[u8],
        out: &mut impl DeltaSink,
    ) -> Result<usize, DeltaError> {
        let total = input.len();
        while !input.is_empty() {
            match self.state {
                State::WindowDone => break,
                State::Magic => {
                    let need = 4 - self.pending.len();
                    let take = need.min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.pending.len() == 4 {
                        let magic = u32::from_be_bytes([
                            self.pending[0],
                            self.pending[1],
                            self.pending[2],
                            self.pending[3],
                        ]);
                        if magic != DELTA_MAGIC {
                            return Err(DeltaError::Invalid(format!("bad magic {magic:#x}")));
                        }
                        self.pending.clear();
                        self.state = State::Command;
                    }
                }
                State::Command => {
                    let op = input[0];
                    input = &input[1..];
                    if op > 0x54 {
                        return Err(DeltaError::Invalid(format!("unknown command {op:#x}")));
                    }
                    if arg_len(op) == 0 {
                        self.run(decode_cmd(op, &[])?, basis, out)?;
                    } else {
                        self.state = State::Args { op };
                    }
                }
                State::Args { op } => {
                    let need = arg_len(op) - self.pending.len();
                    let take = need.min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.pending.len() == arg_len(op) {
                        let cmd = decode_cmd(op, &self.pending)?;
                        self.pending.clear();
                        self.state = State::Command;
                        self.run(cmd, basis, out)?;
                    }
                }
                State::Literal { left } => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    out.append(&input[..take])?;
                    self.literal_bytes += take as u64;
                    input = &input[take..];
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Command
                    } else {
                        State::Literal { left }
                    };
                }
            }
        }
        Ok(total - input.len())
    }

    fn grow(&mut self, n: u64) -> Result<(), DeltaError> {
        self.output_bytes = self
            .output_bytes
            .checked_add(n)
            .filter(|&t| t <= self.limit)
            .ok_or_else(|| DeltaError::Invalid("delta output exceeds the window size".into()))?;
        Ok(())
    }

    fn run(&mut self, cmd: Cmd, basis: &[u8], out: &mut impl DeltaSink) -> Result<(), DeltaError> {
        match cmd {
            Cmd::End => self.state = State::WindowDone,
            Cmd::Literal(0) => return Err(DeltaError::Invalid("empty literal".into())),
            Cmd::Literal(n) => {
                self.grow(n)?;
                self.state = State::Literal { left: n };
            }
            Cmd::Copy { len, .. } if self.counting => self.matched_bytes += len,
            Cmd::Copy { offset, len } => {
                let end = offset.checked_add(len).filter(|&e| e <= basis.len() as u64);
                let (Some(end), true) = (end, len > 0) else {
                    return Err(DeltaError::OutOfBounds {
                        offset,
                        len,
                        basis: basis.len() as u64,
                    });
                };
                self.grow(len)?;
                out.append(&basis[offset as usize..end as usize])?;
                self.matched_bytes += len;
            }
        }
        Ok(())
    }
}

/// Applies a whole delta fed in pieces of `step` bytes (tests of the matcher use it too).
#[cfg(test)]
pub(super) fn apply_all(
    basis: &[u8],
    delta: &[u8],
    limit: u64,
    step: usize,
) -> Result<Vec<u8>, DeltaError> {
    let mut a = DeltaApplier::new(limit);
    let mut out = Vec::new();
    for chunk in delta.chunks(step.max(1)) {
        a.feed(chunk, basis, &mut out)?;
    }
    if !a.is_done() {
        return Err(DeltaError::Invalid("truncated".into()));
    }
    Ok(out)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_deltas_are_errors() {
        let basis = vec![1u8; 100];
        let mut d = DELTA_MAGIC.to_be_bytes().to_vec();
        d.extend_from_slice(&[0x45, 90, 20, 0]); // copy 90+20 > 100
        assert!(matches!(
            apply_all(&basis, &d, 1000, 1),
            Err(DeltaError::OutOfBounds { .. })
        ));
        assert!(apply_all(&basis, &[0, 0, 0, 0], 1000, 1).is_err());
        let mut d = DELTA_MAGIC.to_be_bytes().to_vec();
        d.extend_from_slice(&[0x44, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(apply_all(&basis, &d, 1000, 7).is_err(), "output limit");
        let mut d = DELTA_MAGIC.to_be_bytes().to_vec();
        d.push(0x60);
        assert!(apply_all(&basis, &d, 1000, 1).is_err());
    }
}

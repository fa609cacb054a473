//! The window layout: large files are diffed in windows of [`WINDOW`] bytes, window `i`
//! of the new file against basis range [`basis_range`]`(i)` (the same range widened by
//! [`overlap`] on both sides, so data shifted by inserts or deletes still matches).
//! Sender and receiver compute the same layout from the window size and file lengths.

use std::ops::Range;

/// Bytes of the new file covered by one delta window.
pub const WINDOW: u64 = 64 * 1024 * 1024;

/// Overlap added on both sides of a basis window.
pub fn overlap(window: u64) -> u64 {
    window / 16
}

/// Number of windows covering `len` bytes.
pub fn window_count(len: u64, window: u64) -> u64 {
    len.div_ceil(window.max(1))
}

/// Source range of window `i`.
pub fn source_range(i: u64, window: u64, len: u64) -> Range<u64> {
    let start = (i * window).min(len);
    start..(start + window).min(len)
}

/// Offset in basis window `i` of the first byte of source window `i` (where unchanged data
/// sits), used to split a window on a block boundary of the signature.
pub fn basis_shift(i: u64, window: u64) -> u64 {
    (i * window).min(overlap(window))
}

/// Basis range whose signature window `i` is diffed against.
pub fn basis_range(i: u64, window: u64, basis_len: u64) -> Range<u64> {
    let ov = overlap(window);
    let start = (i * window).saturating_sub(ov).min(basis_len);
    start..(i * window + window + ov).min(basis_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::signature::block_size;

    #[test]
    fn windows_cover_the_file() {
        let w = 1000;
        assert_eq!(window_count(0, w), 0);
        assert_eq!(window_count(2500, w), 3);
        assert_eq!(source_range(2, w, 2500), 2000..2500);
        assert_eq!(basis_range(0, w, 2500), 0..1062);
        assert_eq!(basis_range(1, w, 2500), 938..2062);
        assert_eq!(basis_range(5, w, 2500), 2500..2500);
        assert_eq!(block_size(0), 696);
        assert_eq!(block_size(1 << 40), 128 * 1024);
    }
}

//! The matcher: the delta of one source window against the receiver's signature, split
//! over two threads for large windows, with unchanged chunks found by their BLAKE3 hashes
//! first ([`diff_window_hashed`]). The output is always one librsync-format delta per window.

use std::io::{self, Write};

use fast_rsync::Signature;

use super::format::{DELTA_MAGIC, literal_delta, write_copy};
use super::signature::{ChunkHashes, block_size_of};

/// Computes the delta of `data` against `sig` (or an all-literal delta without one),
/// writing it to `out`.
pub fn diff_window(sig: Option<&Signature>, data: &[u8], out: &mut impl Write) -> io::Result<()> {
    match sig {
        Some(sig) => diff_indexed(&sig.index(), data, out),
        None => literal_delta(data, out),
    }
}

/// Windows smaller than this are diffed on one thread (splitting costs more than it saves).
const PARALLEL_MIN: usize = 4 * 1024 * 1024;

/// Diffs one window against `sig` (like [`diff_window`]) and feeds it to `hasher`.
///
/// With the receiver's [`ChunkHashes`], unchanged chunks are found first (BLAKE3, while
/// another thread hashes the window) and become COPY commands; the rolling search covers
/// only the changed ones. A window that is mostly changed goes the general way instead:
/// the rolling search over everything, on two threads for large windows (it is CPU-bound:
/// MD4, CRC; the agent would otherwise keep one core busy while the other idles).
pub fn diff_window_hashed<W: Write + Send>(
    sig: Option<&Signature>,
    chunks: Option<&ChunkHashes>,
    data: &[u8],
    basis_shift: u64,
    hasher: &mut blake3::Hasher,
    out: &mut W,
) -> io::Result<()> {
    let (Some(sig), Some(chunks)) = (sig, chunks.filter(|c| c.fits(data.len()))) else {
        return diff_window_split(sig, data, basis_shift, Some(hasher), out);
    };
    let same: Vec<bool> = std::thread::scope(|s| {
        let whole = s.spawn(|| hasher.update(data));
        let same = chunks
            .hashes
            .iter()
            .enumerate()
            .map(|(j, want)| {
                let r = chunks.range(j, data.len());
                !r.is_empty() && blake3::hash(&data[r]).as_bytes() == want
            })
            .collect();
        let joined = whole.join();
        joined.map(|_| same)
    })
    .map_err(|_| io::Error::other("hashing thread panicked"))?;
    if same.iter().filter(|s| **s).count() * 2 >= same.len() {
        diff_chunked(sig, chunks, &same, data, out)
    } else {
        diff_window_split(Some(sig), data, basis_shift, None, out)
    }
}

/// The rolling search over a whole window, feeding `hasher` if given, using two threads
/// for large windows.
///
/// The window is split in two parts diffed independently against the same index; the
/// parts' deltas are joined into ONE delta (the first without its end command, the second
/// without its magic), so the wire format is unchanged. A block straddling the split is
/// split where unchanged data lines up with a signature block (`basis_shift`: offset in the
/// basis window of `data[0]`), so unchanged data loses no match. The first part streams to
/// `out`; only the second is buffered (at most 2/5 of the window). The helper thread also
/// hashes the whole window, so BLAKE3 overlaps the search.
fn diff_window_split<W: Write + Send>(
    sig: Option<&Signature>,
    data: &[u8],
    basis_shift: u64,
    hasher: Option<&mut blake3::Hasher>,
    out: &mut W,
) -> io::Result<()> {
    let Some(sig) = sig.filter(|_| data.len() >= PARALLEL_MIN) else {
        diff_window(sig, data, out)?;
        if let Some(h) = hasher {
            h.update(data);
        }
        return Ok(());
    };
    let index = sig.index();
    // the helper also hashes everything (~1/5 of the search's cost): give it less to diff
    let block = u64::from(block_size_of(sig).max(1));
    let target = (data.len() / 5 * 3) as u64;
    let split = (target - (target + basis_shift) % block).max(1) as usize;
    let (head, tail) = data.split_at(split);
    let (first, second) = std::thread::scope(|s| {
        let helper = s.spawn(|| {
            if let Some(h) = hasher {
                h.update(data);
            }
            let mut buf = Vec::new();
            diff_indexed(&index, tail, &mut buf).map(|()| buf)
        });
        let mut trimmed = HoldLast {
            inner: out,
            last: None,
        };
        let first = diff_indexed(&index, head, &mut trimmed).and_then(|()| trimmed.end_byte());
        let second = helper
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("delta helper thread panicked")));
        (first, second)
    });
    if first? != 0 {
        return Err(io::Error::other(
            "delta part did not end with an end command",
        ));
    }
    let second = second?;
    match second.get(..4) {
        Some(magic) if magic == DELTA_MAGIC.to_be_bytes() => out.write_all(&second[4..]),
        _ => Err(io::Error::other("delta part did not start with the magic")),
    }
}

/// Writes the commands of a delta of `part` (fast_rsync's output without its magic and its
/// end command), so that they can sit inside another delta.
fn write_part_commands(
    index: &fast_rsync::IndexedSignature<'_>,
    part: &[u8],
    out: &mut impl Write,
) -> io::Result<()> {
    let mut inner = HoldLast {
        inner: out,
        last: None,
    };
    let mut stripped = SkipMagic {
        inner: &mut inner,
        seen: Vec::with_capacity(4),
    };
    diff_indexed(index, part, &mut stripped)?;
    if stripped.seen != DELTA_MAGIC.to_be_bytes() || inner.end_byte()? != 0 {
        return Err(io::Error::other("delta part is not a complete delta"));
    }
    Ok(())
}

/// Drops the first four bytes written (a delta's magic), keeping them for a check.
struct SkipMagic<'a, W: Write> {
    inner: &'a mut W,
    seen: Vec<u8>,
}

impl<W: Write> Write for SkipMagic<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = (4 - self.seen.len()).min(data.len());
        self.seen.extend_from_slice(&data[..take]);
        self.inner.write_all(&data[take..])?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The delta of a window whose unchanged chunks (`same[j]`) become single COPY commands;
/// the rolling search runs only over the rest.
fn diff_chunked(
    sig: &Signature,
    chunks: &ChunkHashes,
    same: &[bool],
    data: &[u8],
    out: &mut impl Write,
) -> io::Result<()> {
    let index = sig.index();
    out.write_all(&DELTA_MAGIC.to_be_bytes())?;
    // `dirty` starts the data not yet covered; `copy` is the pending run of same chunks
    let mut dirty = 0usize;
    let mut copy: Option<(u64, u64)> = None;
    for (j, _) in same.iter().enumerate().filter(|(_, s)| **s) {
        let r = chunks.range(j, data.len());
        let basis_at = chunks.basis_first + j as u64 * chunks.size;
        let len = (r.end - r.start) as u64;
        if dirty < r.start {
            if let Some((o, l)) = copy.take() {
                write_copy(out, o, l)?;
            }
            write_part_commands(&index, &data[dirty..r.start], out)?;
        }
        copy = match copy {
            Some((o, l)) if o + l == basis_at => Some((o, l + len)),
            Some((o, l)) => {
                write_copy(out, o, l)?;
                Some((basis_at, len))
            }
            None => Some((basis_at, len)),
        };
        dirty = r.end;
    }
    if let Some((o, l)) = copy {
        write_copy(out, o, l)?;
    }
    if dirty < data.len() {
        write_part_commands(&index, &data[dirty..], out)?;
    }
    out.write_all(&[0])
}

/// fast_rsync's diff, its errors as I/O errors (the output is a writer).
fn diff_indexed(
    index: &fast_rsync::IndexedSignature<'_>,
    data: &[u8],
    out: &mut impl Write,
) -> io::Result<()> {
    fast_rsync::diff(index, data, out).map_err(|e| match e {
        fast_rsync::DiffError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    })
}

/// Passes writes through but holds back the very last byte (a delta's end command), so
/// that another delta's commands can follow.
struct HoldLast<'a, W: Write> {
    inner: &'a mut W,
    last: Option<u8>,
}

impl<W: Write> HoldLast<'_, W> {
    /// The byte held back (the end of the stream).
    fn end_byte(&self) -> io::Result<u8> {
        self.last
            .ok_or_else(|| io::Error::other("empty delta part"))
    }
}

impl<W: Write> Write for HoldLast<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some((&tail, body)) = data.split_last() else {
            return Ok(0);
        };
        if let Some(b) = self.last {
            self.inner.write_all(&[b])?;
        }
        self.inner.write_all(body)?;
        self.last = Some(tail);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::apply::{DeltaApplier, apply_all};
    use crate::delta::signature::{block_size, signature};
    use crate::testing::noise;

    #[test]
    fn streaming_apply_matches_fast_rsync() {
        let basis: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = basis.clone();
        new[50_000..50_100].fill(9);
        new.splice(120_000..120_000, vec![1u8; 3000]);
        let sig = signature(&basis, basis.len() as u64);
        let mut delta = Vec::new();
        diff_window(Some(&sig), &new, &mut delta).unwrap();
        let mut reference = Vec::new();
        fast_rsync::apply(&basis, &delta, &mut reference).unwrap();
        assert_eq!(reference, new);
        for step in [1, 3, 4096, delta.len()] {
            assert_eq!(
                apply_all(&basis, &delta, new.len() as u64, step).unwrap(),
                new
            );
        }
        let mut a = DeltaApplier::new(u64::MAX);
        a.feed(&delta, &basis, &mut Vec::new()).unwrap();
        assert!(a.matched_bytes > 150_000, "delta path used");
        assert_eq!(a.matched_bytes + a.literal_bytes, new.len() as u64);
    }

    #[test]
    fn parallel_window_is_one_valid_delta() {
        let basis = noise(6 << 20, 0x9e37_79b9_7f4a_7c15);
        let mut new = basis.clone();
        new[100_000..100_050].fill(3);
        let split = new.len() / 5 * 3;
        new[split - 10..split + 10].fill(5); // an edit near the split
        new.splice(5_000_000..5_000_000, vec![7u8; 777]);
        new.truncate(new.len() - 1234);
        let sig = signature(&basis, basis.len() as u64);
        let mut hasher = blake3::Hasher::new();
        let mut delta = Vec::new();
        diff_window_hashed(Some(&sig), None, &new, 0, &mut hasher, &mut delta).unwrap();
        assert_eq!(hasher.finalize(), blake3::hash(&new));
        let mut reference = Vec::new();
        fast_rsync::apply(&basis, &delta, &mut reference).unwrap();
        assert_eq!(reference, new, "fast_rsync applies the joined delta");
        for step in [7, 65_536] {
            assert_eq!(
                apply_all(&basis, &delta, new.len() as u64, step).unwrap(),
                new
            );
        }
        assert!(delta.len() < 200_000, "both parts matched: {}", delta.len());
        // unchanged data split on a block boundary of the basis loses nothing at the split
        for shift in [0u64, 12_345] {
            let part = &basis[shift as usize..];
            let mut d = Vec::new();
            let mut h = blake3::Hasher::new();
            diff_window_hashed(Some(&sig), None, part, shift, &mut h, &mut d).unwrap();
            let mut a = DeltaApplier::new(u64::MAX);
            let mut out = Vec::new();
            a.feed(&d, &basis, &mut out).unwrap();
            assert_eq!(out, part);
            let bs = u64::from(block_size(basis.len() as u64));
            // only the unaligned start (when shifted) and the short last block go literally
            let limit = if shift == 0 { bs } else { 2 * bs };
            assert!(
                a.literal_bytes < limit,
                "shift {shift}: {} literal",
                a.literal_bytes
            );
        }
        // without a basis: a literal delta, same hash
        let mut h2 = blake3::Hasher::new();
        let mut lit = Vec::new();
        diff_window_hashed(None, None, &new, 0, &mut h2, &mut lit).unwrap();
        assert_eq!(h2.finalize(), blake3::hash(&new));
        assert_eq!(apply_all(&[], &lit, new.len() as u64, 4096).unwrap(), new);
    }

    /// Diffs `new` against `basis` (one window, shifted by `shift` in the basis) with the
    /// receiver's chunk hashes and without; checks both apply to `new` and hash it.
    /// Returns (chunked delta, plain delta, literal bytes of the chunked one).
    fn chunked_and_plain(basis: &[u8], new: &[u8], shift: u64) -> (Vec<u8>, Vec<u8>, u64) {
        let len = basis.len() as u64;
        let sig = signature(basis, len);
        let chunks = ChunkHashes::of_basis(basis, len, shift, new.len() as u64).unwrap();
        assert_eq!((chunks.basis_first) % u64::from(block_size(len)), 0);
        let mut out = Vec::new();
        for with in [Some(&chunks), None] {
            let mut h = blake3::Hasher::new();
            let mut d = Vec::new();
            diff_window_hashed(Some(&sig), with, new, shift, &mut h, &mut d).unwrap();
            assert_eq!(h.finalize(), blake3::hash(new));
            let mut a = DeltaApplier::new(new.len() as u64);
            let mut applied = Vec::new();
            a.feed(&d, basis, &mut applied).unwrap();
            assert!(a.is_done());
            assert_eq!(applied, new, "chunks: {}", with.is_some());
            let mut reference = Vec::new();
            fast_rsync::apply(basis, &d, &mut reference).unwrap();
            assert_eq!(reference, new, "librsync-format delta");
            out.push((d, a.literal_bytes));
        }
        let (plain, _) = out.pop().unwrap();
        let (chunked, literal) = out.pop().unwrap();
        (chunked, plain, literal)
    }

    #[test]
    fn unchanged_chunks_become_copies_and_the_delta_stays_as_small() {
        let basis = noise(8 << 20, 0x5eed);
        let mut new = basis.clone();
        // 6 scattered 4 KiB edits, one insert that shifts the tail, a shorter end
        for k in 0..6usize {
            let at = 150_000 + k * 1_100_000;
            new[at..at + 4096].fill(k as u8);
        }
        new.splice(7_800_000..7_800_000, vec![9u8; 100]);
        new.truncate(new.len() - 3000);
        let (chunked, plain, literal) = chunked_and_plain(&basis, &new, 0);
        assert!(chunked != plain, "the chunked path was not taken");
        // changed chunks still match block by block: no more literal data than edits + a
        // few blocks, and about the same size on the wire as the full rolling search
        let bs = block_size(basis.len() as u64) as u64;
        assert!(literal < 6 * 4096 + 100 + 16 * bs, "literal {literal}");
        assert!(
            chunked.len() as f64 <= plain.len() as f64 * 1.02 + 4096.0,
            "chunked {} plain {}",
            chunked.len(),
            plain.len()
        );

        // a window of a later part of the file (data sits `shift` bytes into the basis)
        let shift = 12_345u64;
        let part = basis[shift as usize..].to_vec();
        let mut edited = part.clone();
        edited[1_000_000..1_004_096].fill(1);
        let (chunked, plain, literal) = chunked_and_plain(&basis, &edited, shift);
        assert!(chunked != plain, "the chunked path was not taken (shifted)");
        assert!(literal < 4096 + 3 * bs, "literal {literal}");

        // mostly changed: the general path, still correct
        let mut rewritten = noise(8 << 20, 0xbad);
        rewritten[..1 << 20].copy_from_slice(&basis[..1 << 20]);
        let (chunked, plain, _) = chunked_and_plain(&basis, &rewritten, 0);
        assert!(
            chunked == plain,
            "mostly changed windows skip the chunk path"
        );
    }

    #[test]
    fn unusable_chunk_hashes_are_ignored() {
        let basis = noise(4 << 20, 7);
        let mut new = basis.clone();
        new[10..20].fill(0);
        let len = basis.len() as u64;
        let sig = signature(&basis, len);
        let good = ChunkHashes::of_basis(&basis, len, 0, new.len() as u64).unwrap();
        let diff = |chunks: Option<&ChunkHashes>| {
            let mut d = Vec::new();
            let mut h = blake3::Hasher::new();
            diff_window_hashed(Some(&sig), chunks, &new, 0, &mut h, &mut d).unwrap();
            d
        };
        let plain = diff(None);
        let bad = [
            ChunkHashes {
                size: 0,
                ..good.clone()
            },
            ChunkHashes {
                first: good.size,
                ..good.clone()
            },
            ChunkHashes {
                hashes: vec![[0; 32]; 10_000],
                ..good.clone()
            },
            ChunkHashes {
                basis_first: u64::MAX,
                ..good.clone()
            },
        ];
        for c in bad {
            assert!(diff(Some(&c)) == plain, "unusable chunk hashes were used");
        }
        // a receiver whose chunk hashes describe other data gets a correct (larger) delta
        let lying = ChunkHashes {
            hashes: vec![[1; 32]; good.hashes.len()],
            ..good
        };
        let mut applied = Vec::new();
        fast_rsync::apply(&basis, &diff(Some(&lying)), &mut applied).unwrap();
        assert_eq!(applied, new);
    }
}

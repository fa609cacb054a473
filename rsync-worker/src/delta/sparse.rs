//! Writing the applied data: [`SparseWriter`] leaves holes where whole blocks are zeros
//! and hashes every byte for the whole-file verification.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::apply::DeltaSink;

const SPARSE_BLOCK: usize = 4096;

const WRITE_BUF: usize = 1 << 20;

static ZEROS: [u8; SPARSE_BLOCK] = [0; SPARSE_BLOCK];

/// Writes a file sequentially, leaving holes where whole blocks are zeros, hashing every
/// byte with BLAKE3 for the whole-file verification.
pub struct SparseWriter {
    file: File,
    /// Bytes appended so far.
    pos: u64,
    /// Contiguous non-hole data not yet written, starting at `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
    /// The incomplete block at the end (starts block-aligned at `pos - block.len()`).
    block: Vec<u8>,
    hasher: blake3::Hasher,
}

impl SparseWriter {
    /// Writes into `file` from offset 0 (the file should be empty).
    pub fn new(file: File) -> Self {
        Self {
            file,
            pos: 0,
            buf: Vec::with_capacity(WRITE_BUF),
            buf_start: 0,
            block: Vec::with_capacity(SPARSE_BLOCK),
            hasher: blake3::Hasher::new(),
        }
    }

    /// Bytes written so far (holes included).
    pub fn len(&self) -> u64 {
        self.pos
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.buf_start)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Handles one block that starts at `start` (a hole if all zeros).
    fn put_block(&mut self, start: u64, block: &[u8]) -> io::Result<()> {
        // a slice comparison is a memcmp: much faster than a byte loop
        if block == &ZEROS[..block.len()] {
            return self.flush_buf();
        }
        if self.buf.is_empty() {
            self.buf_start = start;
        }
        self.buf.extend_from_slice(block);
        if self.buf.len() >= WRITE_BUF {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Flushes, sets the final length (so a trailing hole exists) and returns the file and
    /// the BLAKE3 of everything written.
    pub fn finish(mut self) -> io::Result<(File, [u8; 32])> {
        let tail = std::mem::take(&mut self.block);
        self.put_block(self.pos - tail.len() as u64, &tail)?;
        self.flush_buf()?;
        self.file.set_len(self.pos)?;
        Ok((self.file, *self.hasher.finalize().as_bytes()))
    }
}

impl DeltaSink for SparseWriter {
    fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        if !self.block.is_empty() {
            let take = (SPARSE_BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            self.pos += take as u64;
            data = &data[take..];
            if self.block.len() < SPARSE_BLOCK {
                return Ok(());
            }
            let block = std::mem::take(&mut self.block);
            self.put_block(self.pos - SPARSE_BLOCK as u64, &block)?;
            self.block = block;
            self.block.clear();
        }
        let whole = data.len() - data.len() % SPARSE_BLOCK;
        for chunk in data[..whole].chunks(SPARSE_BLOCK) {
            self.put_block(self.pos, chunk)?;
            self.pos += SPARSE_BLOCK as u64;
        }
        self.block.extend_from_slice(&data[whole..]);
        self.pos += (data.len() - whole) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_writer_leaves_holes() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let f = File::create(t.path().join("s")).unwrap();
        let mut w = SparseWriter::new(f);
        w.append(b"he").unwrap();
        w.append(b"ad").unwrap();
        w.append(&[0u8; 4090]).unwrap(); // completes the first block
        w.append(&[0u8; 10]).unwrap();
        w.append(&vec![0u8; 8 << 20]).unwrap();
        w.append(b"tail").unwrap();
        w.append(&vec![0u8; 1 << 20]).unwrap();
        let (f, hash) = w.finish().unwrap();
        let md = f.metadata().unwrap();
        assert_eq!(md.len(), 4 + 4100 + (8 << 20) + 4 + (1 << 20));
        assert!(md.blocks() * 512 < 64 * 1024, "blocks {}", md.blocks());
        let content = std::fs::read(t.path().join("s")).unwrap();
        assert_eq!(hash, *blake3::hash(&content).as_bytes());
        assert_eq!(&content[..4], b"head");
    }
}

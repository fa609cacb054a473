//! Deterministic test data shared by this crate's unit tests and its integration tests
//! (`tests/`), which cannot see each other's `#[cfg(test)]` code: one generator, so a test
//! that needs incompressible bytes does not write its own.

/// `len` pseudo-random bytes (xorshift64 from `seed`): incompressible, so zstd and the
/// delta matcher cannot shrink them, and the same for the same seed, so a failure repeats.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

//! fast_rsync (as the core uses it) interoperates with librsync's `rdiff`, both ways:
//! our signature + rdiff's delta, applied by our streaming applier; rdiff's signature +
//! our delta, applied by `rdiff patch`. Requires the `rdiff` binary (apt package `rdiff`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;
use std::path::Path;
use std::process::Command;

use dr_syncer_rsync::delta::{self, DeltaApplier};

fn data() -> (Vec<u8>, Vec<u8>) {
    let basis: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut new = basis.clone();
    new[10_000..10_500].fill(7);
    new.splice(
        700_000..700_000,
        b"an insertion that shifts everything after it"
            .iter()
            .copied(),
    );
    new.truncate(1_400_000);
    new.extend_from_slice(b"appended tail");
    (basis, new)
}

/// Runs `rdiff` with `flags` on `files` (names in `dir`) and checks that it succeeded.
fn rdiff(dir: &Path, flags: &[&str], files: &[&str]) {
    let out = Command::new("rdiff")
        .args(flags)
        .args(files.iter().map(|f| dir.join(f)))
        .output()
        .expect("the rdiff binary (apt package rdiff) must be installed");
    assert!(
        out.status.success(),
        "rdiff {flags:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn our_signature_rdiff_delta_our_apply() {
    let t = tempfile::tempdir().unwrap();
    let (basis, new) = data();
    let sig = delta::signature(&basis, basis.len() as u64);
    fs::write(t.path().join("sig"), sig.serialized()).unwrap();
    fs::write(t.path().join("new"), &new).unwrap();
    rdiff(t.path(), &["delta"], &["sig", "new", "delta"]);
    let d = fs::read(t.path().join("delta")).unwrap();
    assert!(
        d.len() < 100_000,
        "rdiff used our signature: delta {} bytes",
        d.len()
    );
    let mut a = DeltaApplier::new(new.len() as u64);
    let mut out = Vec::new();
    // feed in odd-sized pieces like frames would arrive
    for chunk in d.chunks(1000) {
        a.feed(chunk, &basis, &mut out).unwrap();
    }
    assert!(a.is_done());
    assert_eq!(out, new);
    assert!(a.matched_bytes > 1_000_000);
}

#[test]
fn rdiff_signature_our_delta_rdiff_patch() {
    let t = tempfile::tempdir().unwrap();
    let (basis, new) = data();
    fs::write(t.path().join("basis"), &basis).unwrap();
    // fast_rsync speaks the MD4 + rollsum signature format
    rdiff(
        t.path(),
        &[
            "signature",
            "-H",
            "md4",
            "-R",
            "rollsum",
            "-S",
            "8",
            "-b",
            "2048",
        ],
        &["basis", "sig"],
    );
    let sig = delta::parse_signature(fs::read(t.path().join("sig")).unwrap()).unwrap();
    let mut d = Vec::new();
    delta::diff_window(Some(&sig), &new, &mut d).unwrap();
    assert!(
        d.len() < 100_000,
        "delta against rdiff's signature matched: {} bytes",
        d.len()
    );
    fs::write(t.path().join("delta"), &d).unwrap();
    rdiff(t.path(), &["patch"], &["basis", "delta", "out"]);
    assert_eq!(fs::read(t.path().join("out")).unwrap(), new);
    // and our all-literal delta (new files) is valid librsync too
    let mut lit = Vec::new();
    delta::literal_delta(&new, &mut lit).unwrap();
    fs::write(t.path().join("lit"), &lit).unwrap();
    rdiff(t.path(), &["patch"], &["basis", "lit", "out2"]);
    assert_eq!(fs::read(t.path().join("out2")).unwrap(), new);
}

//! Writing OCI archives, for tests that build small images of their own (the reader's unit
//! tests, the node's image-mode test): the inverse of [`super::ImageArchive::open`], kept to
//! what those tests need. `make images` writes the real archives (scripts/build-images.sh).

use std::fs::File;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The OCI digest of a blob: `sha256:<hex>`.
pub fn digest(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Writes an OCI archive at `path`: `oci-layout`, `index.json` and each blob under
/// `blobs/sha256/` by the digest given with it (a test may pair a digest with other bytes on
/// purpose, to check that readers verify).
pub fn write_archive(path: &Path, index: &[u8], blobs: &[(&str, &[u8])]) -> io::Result<()> {
    let mut archive = tar::Builder::new(File::create(path)?);
    let mut put = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        archive.append_data(&mut h, name, data)
    };
    put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    put("index.json", index)?;
    for (digest, data) in blobs {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        put(&format!("blobs/sha256/{hex}"), data)?;
    }
    archive.into_inner()?;
    Ok(())
}

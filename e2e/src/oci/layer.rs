//! Applying one layer (a tar, possibly gzip-compressed) onto a root filesystem: OCI
//! whiteouts, replacement of what lower layers put at a path, and the safety checks that
//! keep every write inside the root.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::{Descriptor, OciError, Verify};

/// Prefix of a whiteout file: `.wh.<name>` deletes `<name>` from lower layers.
const WHITEOUT: &str = ".wh.";
/// The opaque whiteout: the directory's lower-layer contents are hidden.
const OPAQUE: &str = ".wh..wh..opq";

/// How a layer's bytes are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// An uncompressed tar.
    Tar,
    /// A gzip-compressed tar.
    Gzip,
}

/// The decoding for a layer's media type; other types (zstd, foreign layers) are refused.
pub(super) fn decoder_kind(desc: &Descriptor) -> Result<Kind, OciError> {
    match desc.media_type.as_deref() {
        Some(
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ) => Ok(Kind::Gzip),
        Some(
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar",
        ) => Ok(Kind::Tar),
        other => Err(OciError::UnsupportedMediaType {
            digest: desc.digest.clone(),
            media_type: other.unwrap_or("(none)").to_string(),
        }),
    }
}

/// The layer stream, decoded, handing back the hashing reader at the end.
enum Decoder<R: Read> {
    Tar(R),
    Gzip(flate2::read::MultiGzDecoder<R>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Tar(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
        }
    }
}

impl<R: Read> Decoder<R> {
    /// Reads the decoded stream to its end (so a gzip trailer is checked), then returns
    /// the raw reader.
    fn into_raw(mut self) -> io::Result<R> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(match self {
            Decoder::Tar(r) => r,
            Decoder::Gzip(r) => r.into_inner(),
        })
    }
}

/// Applies the layer read from `raw` onto `dest` (canonical), returning the reader so the
/// caller can check the digest of everything read.
pub(super) fn apply<R: Read>(
    desc: &Descriptor,
    raw: Verify<R>,
    dest: &Path,
) -> Result<Verify<R>, OciError> {
    let layer = desc.digest.clone();
    let decoder = match decoder_kind(desc)? {
        Kind::Tar => Decoder::Tar(raw),
        Kind::Gzip => Decoder::Gzip(flate2::read::MultiGzDecoder::new(raw)),
    };
    let fail = |detail: String| {
        let layer = layer.clone();
        move |source| OciError::Layer {
            layer,
            detail,
            source,
        }
    };
    let mut archive = tar::Archive::new(decoder);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let mut written = HashSet::new();
    for entry in archive.entries().map_err(fail("read".into()))? {
        let mut entry = entry.map_err(fail("read entry".into()))?;
        let raw_path = entry
            .path()
            .map_err(fail("entry path".into()))?
            .into_owned();
        let unsafe_entry = |reason| OciError::UnsafeEntry {
            layer: layer.clone(),
            entry: raw_path.display().to_string(),
            reason,
        };
        let Some(rel) = relative(&raw_path).map_err(unsafe_entry)? else {
            continue;
        };
        let target = dest.join(&rel);
        let parent = target.parent().unwrap_or(dest);
        if !stays_inside(dest, parent) {
            return Err(unsafe_entry(
                "a parent directory is a symlink leading out of the root",
            ));
        }
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == OPAQUE {
            let dir_rel = rel.parent().unwrap_or(Path::new(""));
            clear_except(&dest.join(dir_rel), dir_rel, &written)
                .map_err(fail(format!("opaque whiteout {}", raw_path.display())))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            remove_any(&parent.join(hidden))
                .map_err(fail(format!("whiteout {}", raw_path.display())))?;
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            // Device nodes and fifos are not created: the sandbox mounts its own /dev.
            continue;
        }
        if kind.is_hard_link() {
            let link = entry.link_name().map_err(fail("link name".into()))?;
            let link = link.map(|l| l.into_owned()).unwrap_or_default();
            if relative(&link).map_err(unsafe_entry)?.is_none() {
                return Err(unsafe_entry("hard link without a target"));
            }
        }
        replace_conflict(&target, kind.is_dir())
            .map_err(fail(format!("replace {}", raw_path.display())))?;
        let unpacked = entry
            .unpack_in(dest)
            .map_err(fail(format!("unpack {}", raw_path.display())))?;
        if !unpacked {
            return Err(unsafe_entry("the tar library refused it"));
        }
        written.insert(rel);
    }
    archive
        .into_inner()
        .into_raw()
        .map_err(fail("read to the end".into()))
}

/// The entry path relative to the root, `None` for the root itself; absolute paths and
/// `..` are refused.
fn relative(path: &Path) -> Result<Option<PathBuf>, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("the path contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute"),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Whether `dir`, after resolving symlinks, is inside `dest` (a missing `dir` is: the tar
/// library creates it and checks each new parent itself).
fn stays_inside(dest: &Path, dir: &Path) -> bool {
    match dir.canonicalize() {
        Ok(real) => real.starts_with(dest),
        Err(_) => {
            let mut ancestor = dir;
            while std::fs::symlink_metadata(ancestor).is_err() {
                match ancestor.parent() {
                    Some(p) => ancestor = p,
                    None => return false,
                }
            }
            ancestor
                .canonicalize()
                .is_ok_and(|real| real.starts_with(dest))
        }
    }
}

/// Makes room for a new entry: a directory replaces a non-directory, anything else
/// replaces a directory (a directory over a directory merges, as in overlayfs).
fn replace_conflict(target: &Path, is_dir: bool) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(target) else {
        return Ok(());
    };
    let existing_dir = meta.file_type().is_dir();
    match (is_dir, existing_dir) {
        (true, true) | (false, false) => Ok(()),
        (true, false) => std::fs::remove_file(target),
        (false, true) => std::fs::remove_dir_all(target),
    }
}

/// Removes a file, symlink or directory tree, if present (never follows a symlink).
fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.file_type().is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    }
}

/// The opaque whiteout: removes everything under `dir` that this layer did not write.
fn clear_except(dir: &Path, rel: &Path, written: &HashSet<PathBuf>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        let child_rel = rel.join(entry.file_name());
        let path = entry.path();
        if !written.contains(&child_rel) {
            remove_any(&path)?;
        } else if entry.file_type()?.is_dir() {
            clear_except(&path, &child_rel, written)?;
        }
    }
    Ok(())
}

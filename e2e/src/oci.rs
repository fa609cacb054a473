//! A reader for OCI image archives (the `oci-archive:` transport of skopeo, or an OCI
//! layout directory), so tests and the simulated node can run the images we publish
//! without a container runtime.
//!
//! [`ImageArchive::open`] reads `index.json`, the image manifest and its config, verifying
//! each blob's sha256 digest and size against its descriptor. [`ImageArchive::unpack`]
//! applies the layers in order into a root filesystem directory: tar or tar+gzip layers,
//! OCI whiteouts (`.wh.<name>` and the opaque `.wh..wh..opq`), modes and (as root) numeric
//! ownership kept; absolute paths and `..` refused; nothing is written through a symlink
//! that leads out of the destination. Each layer's digest is verified while it is read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

mod layer;
pub mod pack;

/// The annotation holding an index entry's reference name (tag or full reference).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Media types of an image index (OCI and Docker's manifest list).
const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Nested indexes followed at most this deep (a guard against cycles).
const MAX_INDEX_DEPTH: usize = 4;

/// Manifests and configs larger than this are refused (they are small JSON documents).
const MAX_JSON: u64 = 4 << 20;

/// An opened, verified OCI image: its index entries, manifest and config, plus where its
/// blobs are so the layers can be unpacked later.
#[derive(Clone, Debug)]
pub struct ImageArchive {
    path: PathBuf,
    blobs: Blobs,
    refs: Vec<String>,
    manifest_digest: String,
    layers: Vec<Descriptor>,
    config: ImageConfig,
}

/// The runtime part of an image config (`config` in the OCI image config JSON): what a
/// container runtime uses to start a container from the image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`: replaced by a container's `command`.
    pub entrypoint: Vec<String>,
    /// `Cmd`: default arguments, replaced by a container's `args`.
    pub cmd: Vec<String>,
    /// `Env` as `NAME=value` strings, below the container's own env.
    pub env: Vec<String>,
    /// `WorkingDir`, unless the container sets `workingDir`.
    pub working_dir: Option<String>,
    /// `User` (`uid`, `uid:gid`, or names), unless the securityContext sets runAsUser.
    pub user: Option<String>,
    /// `Labels` (e.g. `org.opencontainers.image.source`).
    pub labels: BTreeMap<String, String>,
}

/// Why an image could not be opened or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Reading the archive or writing the root filesystem failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file the OCI layout requires is not in the archive.
    #[error("{} has no {entry} (not an OCI image archive?)", archive.display())]
    Missing {
        /// The archive.
        archive: PathBuf,
        /// The missing entry, e.g. `index.json` or `blobs/sha256/<hex>`.
        entry: String,
    },
    /// A JSON document (index, manifest, config) does not parse.
    #[error("{what} in {} is not valid: {source}", archive.display())]
    Json {
        /// Which document.
        what: String,
        /// The archive.
        archive: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A blob's content does not hash to its digest: the archive is corrupt or tampered with.
    #[error("blob {digest} in {}: content hashes to sha256:{actual}", archive.display())]
    DigestMismatch {
        /// The archive.
        archive: PathBuf,
        /// The digest the descriptor names.
        digest: String,
        /// The sha256 of the content, hex.
        actual: String,
    },
    /// A blob's size differs from its descriptor's.
    #[error("blob {digest} in {}: {actual} bytes, descriptor says {expected}", archive.display())]
    SizeMismatch {
        /// The archive.
        archive: PathBuf,
        /// The blob's digest.
        digest: String,
        /// The size the descriptor names.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A digest that is not `sha256:<64 lowercase hex>`.
    #[error("unsupported or malformed digest {0:?} (only sha256 is supported)")]
    BadDigest(String),
    /// A manifest or layer media type this reader does not handle.
    #[error("blob {digest}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The blob's digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// The index names no usable image manifest.
    #[error("{}: no image manifest: {detail}", archive.display())]
    NoManifest {
        /// The archive.
        archive: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// A layer entry would land outside the root filesystem or is otherwise unsafe.
    #[error("layer {layer}: refusing entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The layer's digest.
        layer: String,
        /// The entry's path as the layer names it.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A layer's tar stream could not be applied.
    #[error("layer {layer}: {detail}: {source}")]
    Layer {
        /// The layer's digest.
        layer: String,
        /// What failed (usually names the entry).
        detail: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Where the blobs are: inside an archive tar (offset and size of each file's data), or in
/// an OCI layout directory.
#[derive(Clone, Debug)]
enum Blobs {
    Archive(BTreeMap<String, (u64, u64)>),
    Dir(PathBuf),
}

/// An OCI content descriptor.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

/// The platform of an index entry.
#[derive(Clone, Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

/// `index.json` or a nested image index.
#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// The image config file; only its runtime part is used.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RawConfig>,
}

/// The runtime part as the JSON spells it (every field may be absent or null).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

impl ImageArchive {
    /// Opens an OCI archive (a tar holding `oci-layout`, `index.json` and `blobs/`) or an
    /// OCI layout directory, and reads and verifies its manifest and config. When the index
    /// (or an index it points to) lists several manifests, the one for this machine's
    /// architecture is used.
    pub fn open(path: &Path) -> Result<ImageArchive, OciError> {
        let blobs = if path.is_dir() {
            Blobs::Dir(path.to_path_buf())
        } else {
            Blobs::Archive(scan_archive(path)?)
        };
        let mut image = ImageArchive {
            path: path.to_path_buf(),
            blobs,
            refs: Vec::new(),
            manifest_digest: String::new(),
            layers: Vec::new(),
            config: ImageConfig::default(),
        };
        let index: Index = image.json_file("index.json")?;
        image.refs = index
            .manifests
            .iter()
            .filter_map(|d| d.annotations.as_ref()?.get(REF_NAME).cloned())
            .collect();
        let manifest_desc = image.pick_manifest(index, 0)?;
        let manifest: Manifest = image.json_blob(&manifest_desc, "image manifest")?;
        let config: ConfigFile = image.json_blob(&manifest.config, "image config")?;
        for layer in &manifest.layers {
            check_digest(&layer.digest)?;
            layer::decoder_kind(layer)?;
        }
        image.manifest_digest = manifest_desc.digest;
        image.layers = manifest.layers;
        image.config = config.config.unwrap_or_default().into();
        Ok(image)
    }

    /// The `org.opencontainers.image.ref.name` annotation of each index entry: a tag
    /// (`0.1.0`) or a full reference (`ghcr.io/dr-syncer/dr-syncer-agent:0.1.0`), as the
    /// tool that wrote the archive chose.
    pub fn ref_names(&self) -> Vec<String> {
        self.refs.clone()
    }

    /// The image manifest's digest (`sha256:...`): what a registry reports as the image's
    /// digest, and what a pod can pin with `image@sha256:...`.
    pub fn manifest_digest(&self) -> &str {
        &self.manifest_digest
    }

    /// The compressed layer digests, bottom layer first, as the manifest lists them.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }

    /// The image's runtime config (entrypoint, cmd, env, working dir, user, labels).
    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// The archive (or layout directory) this image was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies the layers in order into `dest` (created if missing), the image's root
    /// filesystem. Each layer's digest is verified as it is read; an error leaves `dest`
    /// partly written, so callers unpack into a fresh directory and remove it on failure.
    pub fn unpack(&self, dest: &Path) -> Result<(), OciError> {
        std::fs::create_dir_all(dest).map_err(|source| OciError::Io {
            what: "create",
            path: dest.to_path_buf(),
            source,
        })?;
        let dest = dest.canonicalize().map_err(|source| OciError::Io {
            what: "resolve",
            path: dest.to_path_buf(),
            source,
        })?;
        for desc in &self.layers {
            let reader = self.blob_reader(desc)?;
            let verified = layer::apply(desc, reader, &dest)?;
            self.finish(desc, verified)?;
        }
        Ok(())
    }

    /// Follows the index to one image manifest descriptor.
    fn pick_manifest(&self, index: Index, depth: usize) -> Result<Descriptor, OciError> {
        let no_manifest = |detail: String| OciError::NoManifest {
            archive: self.path.clone(),
            detail,
        };
        let arch = oci_arch();
        let count = index.manifests.len();
        let chosen = if count <= 1 {
            index.manifests.into_iter().next()
        } else {
            let mut all = index.manifests;
            let pos = all.iter().position(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.architecture == arch && p.os == "linux")
            });
            // Several entries without platforms are usually several tags of one image.
            let pos = pos.or_else(|| all.iter().position(|d| d.platform.is_none()));
            pos.map(|i| all.swap_remove(i))
        };
        let Some(desc) = chosen else {
            return Err(no_manifest(format!(
                "index lists {count} manifests, none for linux/{arch}"
            )));
        };
        let is_index = desc
            .media_type
            .as_deref()
            .is_some_and(|t| INDEX_TYPES.contains(&t));
        if !is_index {
            return Ok(desc);
        }
        if depth >= MAX_INDEX_DEPTH {
            return Err(no_manifest("image indexes nested too deep".into()));
        }
        let nested: Index = self.json_blob(&desc, "image index")?;
        self.pick_manifest(nested, depth + 1)
    }

    /// A top-level file of the layout (e.g. `index.json`) parsed as JSON.
    fn json_file<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, OciError> {
        let bytes = match &self.blobs {
            Blobs::Dir(dir) => read_file(&dir.join(name))?,
            Blobs::Archive(_) => self.read_archive_entry(name)?,
        };
        serde_json::from_slice(&bytes).map_err(|source| OciError::Json {
            what: name.to_string(),
            archive: self.path.clone(),
            source,
        })
    }

    /// A blob read whole, verified, and parsed as JSON.
    fn json_blob<T: serde::de::DeserializeOwned>(
        &self,
        desc: &Descriptor,
        what: &str,
    ) -> Result<T, OciError> {
        if desc.size > MAX_JSON {
            return Err(OciError::SizeMismatch {
                archive: self.path.clone(),
                digest: desc.digest.clone(),
                expected: MAX_JSON,
                actual: desc.size,
            });
        }
        let mut reader = self.blob_reader(desc)?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|source| OciError::Io {
                what: "read blob from",
                path: self.path.clone(),
                source,
            })?;
        self.finish(desc, reader)?;
        serde_json::from_slice(&bytes).map_err(|source| OciError::Json {
            what: format!("{what} {}", desc.digest),
            archive: self.path.clone(),
            source,
        })
    }

    /// A hashing reader over exactly the blob's stored bytes.
    fn blob_reader(&self, desc: &Descriptor) -> Result<Verify<io::Take<File>>, OciError> {
        let hex = check_digest(&desc.digest)?;
        let entry = format!("blobs/sha256/{hex}");
        let (file_path, offset, size) = match &self.blobs {
            Blobs::Dir(dir) => {
                let p = dir.join(&entry);
                let size = std::fs::metadata(&p)
                    .map_err(|_| self.missing(&entry))?
                    .len();
                (p, 0, size)
            }
            Blobs::Archive(map) => {
                let (offset, size) = *map.get(&entry).ok_or_else(|| self.missing(&entry))?;
                (self.path.clone(), offset, size)
            }
        };
        self.check_size(desc, size)?;
        let mut file = File::open(&file_path).map_err(|source| OciError::Io {
            what: "open",
            path: file_path.clone(),
            source,
        })?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|source| OciError::Io {
                what: "seek in",
                path: file_path.clone(),
                source,
            })?;
        Ok(Verify::new(file.take(size)))
    }

    /// A blob's size must be its descriptor's.
    fn check_size(&self, desc: &Descriptor, size: u64) -> Result<(), OciError> {
        if size == desc.size {
            return Ok(());
        }
        Err(OciError::SizeMismatch {
            archive: self.path.clone(),
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: size,
        })
    }

    /// Reads what is left of a blob and checks its size and digest.
    fn finish<R: Read>(&self, desc: &Descriptor, mut reader: Verify<R>) -> Result<(), OciError> {
        io::copy(&mut reader, &mut io::sink()).map_err(|source| OciError::Io {
            what: "read blob from",
            path: self.path.clone(),
            source,
        })?;
        let (size, actual) = reader.result();
        self.check_size(desc, size)?;
        if format!("sha256:{actual}") != desc.digest {
            return Err(OciError::DigestMismatch {
                archive: self.path.clone(),
                digest: desc.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// A small file of the archive tar, read whole.
    fn read_archive_entry(&self, name: &str) -> Result<Vec<u8>, OciError> {
        let file = File::open(&self.path).map_err(|source| OciError::Io {
            what: "open",
            path: self.path.clone(),
            source,
        })?;
        let io_err = |source| OciError::Io {
            what: "read",
            path: self.path.clone(),
            source,
        };
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().map_err(io_err)? {
            let mut entry = entry.map_err(io_err)?;
            let path = entry.path().map_err(io_err)?;
            if normalize(&path).as_deref() == Some(name) {
                let mut bytes = Vec::new();
                entry
                    .by_ref()
                    .take(MAX_JSON)
                    .read_to_end(&mut bytes)
                    .map_err(io_err)?;
                return Ok(bytes);
            }
        }
        Err(self.missing(name))
    }

    /// The error for an entry the layout should have.
    fn missing(&self, entry: &str) -> OciError {
        OciError::Missing {
            archive: self.path.clone(),
            entry: entry.to_string(),
        }
    }
}

impl From<RawConfig> for ImageConfig {
    fn from(raw: RawConfig) -> Self {
        ImageConfig {
            entrypoint: raw.entrypoint.unwrap_or_default(),
            cmd: raw.cmd.unwrap_or_default(),
            env: raw.env.unwrap_or_default(),
            working_dir: raw.working_dir.filter(|w| !w.is_empty()),
            user: raw.user.filter(|u| !u.is_empty()),
            labels: raw.labels.unwrap_or_default(),
        }
    }
}

/// Offsets and sizes of the `blobs/sha256/*` files in an archive tar.
fn scan_archive(path: &Path) -> Result<BTreeMap<String, (u64, u64)>, OciError> {
    let io_err = |source| OciError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut archive = tar::Archive::new(file);
    let mut blobs = BTreeMap::new();
    for entry in archive.entries().map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = normalize(&entry.path().map_err(io_err)?);
        if let Some(name) = name.filter(|n| n.starts_with("blobs/")) {
            blobs.insert(name, (entry.raw_file_position(), entry.size()));
        }
    }
    Ok(blobs)
}

/// An archive path without `./` parts, as a string (`None` if not UTF-8 or not relative).
fn normalize(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p.to_str()?),
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// The hex part of a `sha256:` digest, refusing anything else (it becomes a file name).
fn check_digest(digest: &str) -> Result<&str, OciError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .filter(|h| !h.bytes().any(|b| b.is_ascii_uppercase()));
    hex.ok_or_else(|| OciError::BadDigest(digest.to_string()))
}

/// A whole small file.
fn read_file(path: &Path) -> Result<Vec<u8>, OciError> {
    std::fs::read(path).map_err(|source| OciError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// This machine's architecture in OCI's spelling.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A reader that hashes and counts what passes through it.
pub(crate) struct Verify<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R> Verify<R> {
    /// Wraps `inner`.
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// Bytes read and their sha256 in lowercase hex.
    fn result(self) -> (u64, String) {
        let digest = self.hasher.finalize();
        let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
        (self.read, hex)
    }
}

impl<R: Read> Read for Verify<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

/// One entry of a test layer.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Link(&'a str, &'a str),
    /// A raw path the tar crate's builder would refuse (`..`, absolute).
    Raw(&'a str, &'a [u8]),
}

fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(1234);
        h.set_gid(4321);
        h.set_mtime(1_700_000_000);
        match e {
            E::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, p, io::empty()).unwrap();
            }
            E::File(p, data, mode) => {
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::Raw(p, data) => {
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                let name = &mut h.as_old_mut().name;
                name[..p.len()].copy_from_slice(p.as_bytes());
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

use super::pack::digest;

/// Blobs and descriptors of a test image; `corrupt` replaces a blob's stored bytes after
/// its descriptor was computed.
struct Img {
    blobs: Vec<(String, Vec<u8>)>,
    layers: Vec<serde_json::Value>,
}

impl Img {
    fn new() -> Self {
        Img {
            blobs: Vec::new(),
            layers: Vec::new(),
        }
    }

    fn blob(&mut self, data: Vec<u8>) -> (String, usize) {
        let d = digest(&data);
        let len = data.len();
        self.blobs.push((d.clone(), data));
        (d, len)
    }

    fn layer(&mut self, tar: Vec<u8>, gz: bool) -> &mut Self {
        let (data, media) = if gz {
            (gzip(&tar), "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            (tar, "application/vnd.oci.image.layer.v1.tar")
        };
        let (d, size) = self.blob(data);
        self.layers
            .push(serde_json::json!({"mediaType": media, "digest": d, "size": size}));
        self
    }

    /// Writes the archive; returns its path and the manifest digest.
    fn write(mut self, dir: &Path, corrupt: Option<usize>) -> (PathBuf, String) {
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {
                "Entrypoint": ["/usr/local/bin/app"], "Cmd": null,
                "Env": ["PATH=/usr/local/bin:/usr/bin"], "User": "65532:65532",
                "WorkingDir": "/work", "Labels": {"org.opencontainers.image.version": "0.1.0"}
            },
            "rootfs": {"type": "layers", "diff_ids": []}
        });
        let (cd, cs) = self.blob(serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": self.layers,
        });
        let (md, ms) = self.blob(serde_json::to_vec(&manifest).unwrap());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": md, "size": ms,
                "annotations": {REF_NAME: "ghcr.io/dr-syncer/app:0.1.0"}
            }]
        });
        if let Some(i) = corrupt {
            let data = &mut self.blobs[i].1;
            let last = data.len() - 1;
            data[last] ^= 0x55;
        }
        let path = dir.join("img.oci.tar");
        let blobs: Vec<(&str, &[u8])> = self
            .blobs
            .iter()
            .map(|(d, data)| (d.as_str(), data.as_slice()))
            .collect();
        pack::write_archive(&path, &serde_json::to_vec(&index).unwrap(), &blobs).unwrap();
        (path, md)
    }
}

#[test]
fn open_reads_refs_digest_and_config_and_unpack_applies_layers_with_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = Img::new();
    img.layer(
        layer_tar(&[
            E::Dir("usr/", 0o755),
            E::Dir("usr/local/bin/", 0o755),
            E::File("usr/local/bin/app", b"#!app", 0o4755),
            E::File("etc/gone", b"x", 0o644),
            E::Dir("opaque/", 0o755),
            E::File("opaque/old", b"old", 0o644),
            E::Dir("replaced/", 0o700),
            E::File("replaced/inner", b"i", 0o600),
            E::Link("lib64", "usr/lib"),
        ]),
        true,
    )
    .layer(
        layer_tar(&[
            E::File("etc/.wh.gone", b"", 0o644),
            E::Dir("opaque/", 0o750),
            E::File("opaque/.wh..wh..opq", b"", 0o644),
            E::File("opaque/new", b"new", 0o640),
            E::File("replaced", b"now a file", 0o644),
            E::File("./etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644),
        ]),
        false,
    );
    let (path, manifest) = img.write(dir.path(), None);
    let image = ImageArchive::open(&path).unwrap();
    assert_eq!(image.ref_names(), vec!["ghcr.io/dr-syncer/app:0.1.0"]);
    assert_eq!(image.manifest_digest(), manifest);
    assert_eq!(image.layer_digests().len(), 2);
    assert!(
        image
            .layer_digests()
            .iter()
            .all(|d| d.starts_with("sha256:"))
    );
    let config = image.config();
    assert_eq!(config.entrypoint, vec!["/usr/local/bin/app"]);
    assert!(config.cmd.is_empty());
    assert_eq!(config.user.as_deref(), Some("65532:65532"));
    assert_eq!(config.working_dir.as_deref(), Some("/work"));
    assert_eq!(config.env, vec!["PATH=/usr/local/bin:/usr/bin"]);
    assert_eq!(config.labels["org.opencontainers.image.version"], "0.1.0");

    let root = dir.path().join("rootfs");
    image.unpack(&root).unwrap();
    let app = std::fs::metadata(root.join("usr/local/bin/app")).unwrap();
    assert_eq!(app.permissions().mode() & 0o7777, 0o4755, "setuid bit kept");
    if nix::unistd::geteuid().is_root() {
        assert_eq!((app.uid(), app.gid()), (1234, 4321), "numeric owner kept");
    }
    assert!(!root.join("etc/gone").exists(), "whiteout applied");
    assert!(
        !root.join("opaque/old").exists(),
        "opaque whiteout hides lower"
    );
    assert_eq!(std::fs::read(root.join("opaque/new")).unwrap(), b"new");
    assert_eq!(std::fs::read(root.join("replaced")).unwrap(), b"now a file");
    assert_eq!(
        std::fs::read_link(root.join("lib64")).unwrap(),
        PathBuf::from("usr/lib")
    );
    assert!(root.join("etc/passwd").is_file());
}

#[test]
fn a_corrupt_layer_or_config_is_refused_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = Img::new();
    img.layer(layer_tar(&[E::File("a", b"hello world", 0o644)]), false);
    let (path, _) = img.write(dir.path(), Some(0));
    let image = ImageArchive::open(&path).unwrap();
    let err = image.unpack(&dir.path().join("root")).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let mut img = Img::new();
    img.layer(layer_tar(&[E::File("a", b"hello", 0o644)]), true);
    // Blob 1 is the config.
    let (path, _) = img.write(dir.path(), Some(1));
    let err = ImageArchive::open(&path).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("hashes to sha256:"), "{err}");
}

#[test]
fn escaping_entries_are_refused() {
    for (entries, what) in [
        (vec![E::Raw("../escape", b"x")], "'..'"),
        (vec![E::Raw("/abs", b"x")], "absolute"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut img = Img::new();
        img.layer(layer_tar(&entries), true);
        let (path, _) = img.write(dir.path(), None);
        let image = ImageArchive::open(&path).unwrap();
        let root = dir.path().join("sub/rootfs");
        let err = image.unpack(&root).unwrap_err();
        assert!(matches!(err, OciError::UnsafeEntry { .. }), "{err}");
        assert!(err.to_string().contains(what), "{err}");
        assert!(!dir.path().join("sub/escape").exists());
    }
}

#[test]
fn writes_through_a_symlink_out_of_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let outside_str = outside.to_str().unwrap().to_string();
    let mut img = Img::new();
    img.layer(layer_tar(&[E::Link("evil", &outside_str)]), true)
        .layer(
            layer_tar(&[
                E::File("evil/planted", b"x", 0o644),
                E::File("evil/.wh.x", b"", 0o644),
            ]),
            true,
        );
    let (path, _) = img.write(dir.path(), None);
    let image = ImageArchive::open(&path).unwrap();
    let err = image.unpack(&dir.path().join("rootfs")).unwrap_err();
    assert!(matches!(err, OciError::UnsafeEntry { .. }), "{err}");
    assert!(!outside.join("planted").exists());
}

#[test]
fn digests_must_be_sha256_hex() {
    assert!(check_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
    assert!(check_digest("sha256:../../etc/passwd").is_err());
    assert!(check_digest(&format!("sha512:{}", "a".repeat(64))).is_err());
    assert!(check_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
}

//! The OCI archives `make images` writes (scripts/build-images.sh): for each of the three
//! images, the index names the chart's reference, the config carries the labels, user and
//! entrypoint the chart relies on, the root filesystem is the minimal base plus the binary,
//! and the entrypoint runs `--version` chrooted in that root filesystem alone (needs root).
//! A second test builds the images twice and compares digests (reproducible builds).
//!
//! The archives come from `target/images/` (or `DR_SYNCER_IMAGE_DIR`): run `make images`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use dr_syncer_e2e::oci::ImageArchive;

/// Workspace version (`version.workspace = true`), which is the chart's appVersion.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Workspace `repository`, the `org.opencontainers.image.source` label.
const SOURCE: &str = env!("CARGO_PKG_REPOSITORY");
const REGISTRY: &str = "ghcr.io/dr-syncer";

/// The three images and the user each runs as.
const IMAGES: [(&str, &str); 3] = [
    ("dr-syncer-controller", "65532:65532"),
    ("dr-syncer-agent", "0:0"),
    ("dr-syncer-rsync-worker", "0:0"),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

fn image_dir() -> PathBuf {
    std::env::var_os("DR_SYNCER_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/images"))
}

fn archive_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-{VERSION}.oci.tar"))
}

fn open(path: &Path) -> ImageArchive {
    assert!(
        path.is_file(),
        "{} is missing: run make images (or set DR_SYNCER_IMAGE_DIR)",
        path.display()
    );
    ImageArchive::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the image tests chroot into the unpacked images: run them as root"
    );
}

/// Every regular file under `root`, as absolute paths inside it ("/etc/passwd").
fn regular_files(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(root, &entry.path(), out);
            } else if kind.is_file() {
                let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
                out.insert(format!("/{}", rel.display()));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn archives_hold_runnable_minimal_images() {
    require_root();
    let dir = image_dir();
    for (name, user) in IMAGES {
        let path = archive_path(&dir, name);
        let image = open(&path);
        let what = path.display();

        // The index entry carries the chart's full reference.
        assert_eq!(
            image.ref_names(),
            vec![format!("{REGISTRY}/{name}:{VERSION}")],
            "{what}: org.opencontainers.image.ref.name"
        );
        assert!(
            image.manifest_digest().starts_with("sha256:"),
            "{what}: manifest digest {}",
            image.manifest_digest()
        );
        assert_eq!(
            image.layer_digests().len(),
            2,
            "{what}: base + binary layers"
        );

        // Config: entrypoint, no cmd, env, working dir, user, labels.
        let config = image.config();
        let entrypoint = format!("/usr/local/bin/{name}");
        assert_eq!(
            config.entrypoint,
            vec![entrypoint.clone()],
            "{what}: entrypoint"
        );
        assert!(config.cmd.is_empty(), "{what}: cmd {:?}", config.cmd);
        assert!(
            config
                .env
                .contains(&"PATH=/usr/local/bin:/usr/bin:/bin".to_string()),
            "{what}: env {:?}",
            config.env
        );
        assert_eq!(
            config.working_dir.as_deref(),
            Some("/"),
            "{what}: working dir"
        );
        assert_eq!(config.user.as_deref(), Some(user), "{what}: user");
        let label = |key: &str| {
            config
                .labels
                .get(&format!("org.opencontainers.image.{key}"))
                .cloned()
                .unwrap_or_else(|| panic!("{what}: no label org.opencontainers.image.{key}"))
        };
        assert_eq!(label("source"), SOURCE, "{what}: source label");
        assert_eq!(label("version"), VERSION, "{what}: version label");
        assert!(
            !label("revision").is_empty(),
            "{what}: empty revision label"
        );
        assert_eq!(label("title"), name, "{what}: title label");
        assert_eq!(label("licenses"), "Apache-2.0", "{what}: licenses label");
        assert!(!label("created").is_empty(), "{what}: created label");

        // Root filesystem: the binary, /etc, and shared objects; nothing else (no shell,
        // no package manager).
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        image
            .unpack(&rootfs)
            .unwrap_or_else(|e| panic!("{what}: unpack: {e}"));
        let bin = rootfs.join(entrypoint.trim_start_matches('/'));
        let meta = std::fs::symlink_metadata(&bin)
            .unwrap_or_else(|e| panic!("{what}: entrypoint {entrypoint}: {e}"));
        assert!(meta.is_file(), "{what}: {entrypoint} is not a regular file");
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            0o755,
            "{what}: {entrypoint} mode"
        );
        let files = regular_files(&rootfs);
        let expected_etc = [
            "/etc/group",
            "/etc/nsswitch.conf",
            "/etc/passwd",
            "/etc/ssl/certs/ca-certificates.crt",
        ];
        for f in expected_etc.iter().chain([&entrypoint.as_str()]) {
            assert!(files.contains(*f), "{what}: {f} missing from the rootfs");
        }
        let other: Vec<&String> = files
            .iter()
            .filter(|f| {
                !expected_etc.contains(&f.as_str())
                    && **f != entrypoint
                    && !f.rsplit('/').next().unwrap_or_default().contains(".so")
            })
            .collect();
        assert!(other.is_empty(), "{what}: unexpected files {other:?}");
        let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        assert!(
            passwd
                .lines()
                .any(|l| l.starts_with("nonroot:x:65532:65532:")),
            "{what}: /etc/passwd has no nonroot 65532: {passwd}"
        );
        assert!(
            passwd.lines().any(|l| l.starts_with("root:x:0:0:")),
            "{what}: /etc/passwd has no root: {passwd}"
        );
        let tmp_mode = std::fs::metadata(rootfs.join("tmp"))
            .unwrap_or_else(|e| panic!("{what}: /tmp: {e}"))
            .permissions()
            .mode();
        assert_eq!(tmp_mode & 0o7777, 0o1777, "{what}: /tmp mode");

        // The entrypoint runs in that rootfs alone, as the image's user, with its env.
        // Resolved on this host's PATH: the child's PATH is the image's, which has no chroot.
        let out = Command::new(host_command("chroot"))
            .arg(format!("--userspec={user}"))
            .arg(&rootfs)
            .arg(&entrypoint)
            .arg("--version")
            .env_clear()
            .envs(config.env.iter().filter_map(|kv| kv.split_once('=')))
            .output()
            .unwrap_or_else(|e| panic!("chroot (coreutils): {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{what}: chroot {} {entrypoint} --version: {}\nstdout: {stdout}\nstderr: {}",
            rootfs.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("{name} {VERSION}")),
            "{what}: --version printed {stdout:?}"
        );
        eprintln!(
            "{name}: {} bytes, manifest {}, runs as {user}: {}",
            std::fs::metadata(&path).unwrap().len(),
            image.manifest_digest(),
            stdout.trim()
        );
    }
}

/// `name` found on this process's PATH (coreutils' chroot lives in /usr/sbin).
fn host_command(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found on PATH (coreutils)"))
}

/// Runs scripts/build-images.sh into `out` with the default inputs (binaries from
/// `${CARGO_TARGET_DIR:-target}/release`, time and revision from HEAD).
fn build_images(out: &Path) {
    let output = Command::new(workspace_root().join("scripts/build-images.sh"))
        .env("OUT_DIR", out)
        .env_remove("VERSION")
        .env_remove("REGISTRY")
        .env_remove("REVISION")
        .env_remove("IMAGES")
        .output()
        .expect("run scripts/build-images.sh");
    assert!(
        output.status.success(),
        "scripts/build-images.sh failed ({}); run make release-bins first\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn two_builds_of_one_commit_have_equal_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    build_images(&a);
    build_images(&b);
    for (name, _) in IMAGES {
        let (pa, pb) = (archive_path(&a, name), archive_path(&b, name));
        let (ia, ib) = (open(&pa), open(&pb));
        let (la, lb) = (ia.layer_digests(), ib.layer_digests());
        assert_eq!(la.len(), 2, "{name}: layers of the first build");
        assert_eq!(la.last(), lb.last(), "{name}: binary layer digest differs");
        assert_eq!(la.first(), lb.first(), "{name}: base layer digest differs");
        assert_eq!(
            ia.manifest_digest(),
            ib.manifest_digest(),
            "{name}: manifest digest differs"
        );
        let same_file = std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap();
        assert!(same_file, "{name}: the archive files differ byte for byte");
        eprintln!(
            "{name}: reproducible: manifest {}, layers {la:?}, archive identical",
            ia.manifest_digest()
        );
    }
}

//! Images the simulated node runs from their OCI archives (`make images`), not from host
//! binaries: each archive is unpacked once per test bed, and a container of that image runs
//! its entrypoint inside the unpacked root filesystem (see `sandbox::image_root`).
//!
//! A pod's image must name what was built, by one of the archive's ref names
//! (`ghcr.io/dr-syncer/dr-syncer-agent:0.1.0`) or by digest (`<repository>@sha256:<manifest>`);
//! anything else fails like an image pull would (`ErrImagePull`), never silently runs
//! something else.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::oci::{ImageArchive, ImageConfig};

/// The waiting reason of a container whose image the test bed does not have, as the kubelet
/// reports a failed pull.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";

/// File in an unpack directory naming the manifest digest unpacked there (a later test bed
/// in the same directory reuses it).
const MANIFEST_FILE: &str = "manifest-digest";

/// An image archive unpacked on this machine, ready to run.
#[derive(Clone, Debug)]
pub struct UnpackedImage {
    /// The root filesystem (every layer applied).
    pub rootfs: PathBuf,
    /// Entrypoint, cmd, env, working dir and user.
    pub config: ImageConfig,
    /// The archive's ref names (full references or tags).
    pub refs: Vec<String>,
    /// The manifest digest (`sha256:...`).
    pub manifest_digest: String,
}

/// Why our images could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The image directory does not hold exactly one archive for an image.
    #[error("{dir}: expected one {name}-*.oci.tar, found {found}: run make images")]
    Archive {
        /// The image directory.
        dir: PathBuf,
        /// The image name.
        name: String,
        /// How many archives matched.
        found: usize,
    },
    /// Opening or unpacking the archive failed.
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
    /// A filesystem operation on the unpack directory failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl UnpackedImage {
    /// Finds `<name>-*.oci.tar` in `image_dir` and unpacks it into `dest/<name>/rootfs`,
    /// unless that directory already holds the same manifest.
    pub fn prepare(image_dir: &Path, name: &str, dest: &Path) -> Result<Self, UnpackError> {
        let archive = find_archive(image_dir, name)?;
        let image = ImageArchive::open(&archive)?;
        let dir = dest.join(name);
        let rootfs = dir.join("rootfs");
        let marker = dir.join(MANIFEST_FILE);
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| UnpackError::Io { what, path, source }
        };
        let current = std::fs::read_to_string(&marker).unwrap_or_default();
        if current.trim() != image.manifest_digest() || !rootfs.is_dir() {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
            }
            image.unpack(&rootfs)?;
            std::fs::write(&marker, image.manifest_digest()).map_err(io("write", &marker))?;
        }
        Ok(UnpackedImage {
            rootfs,
            config: image.config().clone(),
            refs: image.ref_names(),
            manifest_digest: image.manifest_digest().to_owned(),
        })
    }

    /// Whether a pod's image reference names this image: one of its full ref names, a
    /// reference whose tag is a tag-only ref name, or any reference pinned to its digest.
    pub fn matches(&self, image: &str) -> bool {
        if let Some((_, digest)) = image.split_once('@') {
            return digest == self.manifest_digest;
        }
        let tag = tag_of(image);
        self.refs
            .iter()
            .any(|r| r == image || (!r.contains([':', '/']) && Some(r.as_str()) == tag))
    }

    /// What the node reports as the container's `imageID`: the first ref name pinned to the
    /// manifest digest, as a runtime reports the digest it pulled.
    pub fn image_id(&self) -> String {
        let name = self.refs.first().map(String::as_str).unwrap_or("image");
        let repository = name
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(name, |(repo, _)| repo);
        format!("{repository}@{}", self.manifest_digest)
    }

    /// Why a reference does not match, naming what the test bed has.
    pub fn mismatch(&self, image: &str) -> String {
        format!(
            "{ERR_IMAGE_PULL}: image {image:?} was not built: the test bed has {} ({}); run \
             make images",
            self.refs.join(", "),
            self.manifest_digest
        )
    }

    /// The image's `User` as numeric `uid:gid` (a bare uid runs with gid 0, as runc does).
    /// Names are not looked up: our images use numbers.
    pub fn user(&self) -> Option<(u32, u32)> {
        parse_user(self.config.user.as_deref()?)
    }

    /// The image's env as pairs, for variables the container does not set itself.
    pub fn env(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The program for a container: `command[0]`, else the entrypoint's first element,
    /// resolved inside the root filesystem (absolute, or through the image's `PATH`), and its
    /// arguments with Kubernetes' rules: `command` replaces the entrypoint, `args` the cmd.
    pub fn program(
        &self,
        command: &[String],
        args: &[String],
    ) -> Result<(PathBuf, String, Vec<String>), String> {
        let (argv, rest): (&[String], &[String]) = if command.is_empty() {
            let cmd = if args.is_empty() {
                &self.config.cmd
            } else {
                args
            };
            (&self.config.entrypoint, cmd)
        } else {
            (command, args)
        };
        let full: Vec<String> = argv.iter().chain(rest).cloned().collect();
        let Some((first, tail)) = full.split_first() else {
            return Err("the image has no entrypoint or cmd and the pod gives no command".into());
        };
        let path = self.lookup(first).ok_or_else(|| {
            format!(
                "executable {first:?} not found in image {}",
                self.refs.join(", ")
            )
        })?;
        Ok((path, first.clone(), tail.to_vec()))
    }

    /// `name` inside the root filesystem: an absolute path that is a file there, or a file
    /// in one of the image's `PATH` directories.
    fn lookup(&self, name: &str) -> Option<PathBuf> {
        let in_root = |p: &Path| {
            let rel = p.strip_prefix("/").unwrap_or(p);
            self.rootfs.join(rel).is_file().then(|| p.to_path_buf())
        };
        if name.starts_with('/') {
            return in_root(Path::new(name));
        }
        if name.contains('/') {
            return None;
        }
        let path = self
            .env()
            .into_iter()
            .find(|(k, _)| k == "PATH")
            .map_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_owned(), |(_, v)| v);
        path.split(':')
            .filter(|d| d.starts_with('/'))
            .find_map(|d| in_root(&Path::new(d).join(name)))
    }
}

/// Puts the image's env under the container's: a variable the container's `env` names
/// wins; otherwise the image's value replaces the node's default (the PATH every container
/// gets), as a runtime takes PATH from the image.
pub fn env_under(
    env: &mut Vec<(String, String)>,
    container: &Container,
    image_env: &[(String, String)],
) {
    let own = |name: &str| container.env.iter().flatten().any(|v| v.name == name);
    for (k, v) in image_env {
        if own(k) {
            continue;
        }
        match env.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
}

/// The uid:gid a container runs as: its own securityContext, else the pod's, else `image`'s.
pub fn run_as(pod: &Pod, container: &Container, image: Option<(u32, u32)>) -> Option<(u32, u32)> {
    let own = container.security_context.as_ref();
    let pod_ctx = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let uid = own
        .and_then(|c| c.run_as_user)
        .or_else(|| pod_ctx.and_then(|c| c.run_as_user));
    let gid = own
        .and_then(|c| c.run_as_group)
        .or_else(|| pod_ctx.and_then(|c| c.run_as_group));
    let to_u32 = |v: i64| u32::try_from(v).ok();
    match (uid.and_then(to_u32), gid.and_then(to_u32), image) {
        (None, None, image) => image,
        (Some(u), Some(g), _) => Some((u, g)),
        (Some(u), None, image) => Some((u, image.map_or(0, |(_, g)| g))),
        (None, Some(g), image) => Some((image.map_or(0, |(u, _)| u), g)),
    }
}

/// `uid` or `uid:gid`, numeric.
fn parse_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// The tag of `repo:tag` (not a registry port: the part after the last `/`).
fn tag_of(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, tag)| tag)
}

/// The one `<name>-*.oci.tar` in `dir`.
fn find_archive(dir: &Path, name: &str) -> Result<PathBuf, UnpackError> {
    let prefix = format!("{name}-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| UnpackError::Io {
            what: "read",
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|f| f.to_str()).is_some_and(|f| {
                f.starts_with(&prefix)
                    && f.ends_with(".oci.tar")
                    && f[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(UnpackError::Archive {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            found: n,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn image(root: &Path) -> UnpackedImage {
        std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        std::fs::write(root.join("usr/local/bin/agent"), "").unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/tool"), "").unwrap();
        UnpackedImage {
            rootfs: root.to_path_buf(),
            config: ImageConfig {
                entrypoint: strings(&["/usr/local/bin/agent"]),
                cmd: strings(&["--serve"]),
                env: strings(&["PATH=/usr/local/bin:/bin", "LANG=C"]),
                user: Some("65532:65532".into()),
                ..ImageConfig::default()
            },
            refs: strings(&["ghcr.io/dr-syncer/dr-syncer-agent:0.1.0"]),
            manifest_digest: "sha256:abc".into(),
        }
    }

    #[test]
    fn references_match_by_full_name_tag_only_ref_or_digest() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = image(dir.path());
        assert!(img.matches("ghcr.io/dr-syncer/dr-syncer-agent:0.1.0"));
        assert!(img.matches("reg:5000/x/dr-syncer-agent@sha256:abc"));
        assert!(!img.matches("ghcr.io/dr-syncer/dr-syncer-agent:0.2.0"));
        assert!(!img.matches("ghcr.io/dr-syncer/dr-syncer-agent@sha256:def"));
        assert!(!img.matches("ghcr.io/dr-syncer/dr-syncer-agent"));
        assert!(img.mismatch("x:0.2.0").starts_with(ERR_IMAGE_PULL));
        img.refs = strings(&["0.1.0"]);
        assert!(img.matches("anything.io/dr-syncer-agent:0.1.0"));
        assert!(!img.matches("localhost:5000/dr-syncer-agent"));
    }

    #[test]
    fn image_id_pins_the_repository_to_the_manifest_digest() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            image(dir.path()).image_id(),
            "ghcr.io/dr-syncer/dr-syncer-agent@sha256:abc"
        );
    }

    #[test]
    fn command_replaces_entrypoint_and_args_replace_cmd() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path());
        let (path, arg0, args) = img.program(&[], &[]).unwrap();
        assert_eq!(path, PathBuf::from("/usr/local/bin/agent"));
        assert_eq!(arg0, "/usr/local/bin/agent");
        assert_eq!(args, strings(&["--serve"]));
        let (_, _, args) = img.program(&[], &strings(&["-v"])).unwrap();
        assert_eq!(args, strings(&["-v"]));
        let (path, arg0, args) = img
            .program(&strings(&["tool", "a"]), &strings(&["b"]))
            .unwrap();
        assert_eq!(path, PathBuf::from("/bin/tool"));
        assert_eq!(arg0, "tool");
        assert_eq!(args, strings(&["a", "b"]));
        // Host programs are not in the image.
        assert!(img.program(&strings(&["sh"]), &[]).is_err());
        assert!(img.program(&strings(&["/usr/bin/env"]), &[]).is_err());
    }

    #[test]
    fn security_context_overrides_the_image_user() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path());
        assert_eq!(img.user(), Some((65532, 65532)));
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "c"}], "securityContext": {"runAsUser": 1000}}
        }))
        .unwrap();
        let plain = Container::default();
        assert_eq!(run_as(&pod, &plain, img.user()), Some((1000, 65532)));
        let own: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "securityContext": {"runAsUser": 7, "runAsGroup": 8}
        }))
        .unwrap();
        assert_eq!(run_as(&pod, &own, img.user()), Some((7, 8)));
        assert_eq!(run_as(&Pod::default(), &plain, None), None);
        assert_eq!(parse_user("0"), Some((0, 0)));
        assert_eq!(parse_user("nonroot"), None);
    }

    #[test]
    fn image_env_replaces_node_defaults_but_not_the_containers_own() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "env": [{"name": "LANG", "value": "de"}]
        }))
        .unwrap();
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let mut env = vec![pair("PATH", "/host/default"), pair("LANG", "de")];
        let image = [
            pair("PATH", "/usr/local/bin"),
            pair("LANG", "C"),
            pair("X", "1"),
        ];
        env_under(&mut env, &container, &image);
        assert_eq!(
            env,
            [
                pair("PATH", "/usr/local/bin"),
                pair("LANG", "de"),
                pair("X", "1")
            ]
        );
    }

    #[test]
    fn exactly_one_archive_per_image_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_archive(dir.path(), "dr-syncer-agent").unwrap_err();
        assert!(err.to_string().contains("run make images"), "{err}");
        std::fs::write(dir.path().join("dr-syncer-agent-0.1.0.oci.tar"), "").unwrap();
        std::fs::write(dir.path().join("dr-syncer-agent-extra-1.oci.tar"), "").unwrap();
        let found = find_archive(dir.path(), "dr-syncer-agent").unwrap();
        assert!(found.ends_with("dr-syncer-agent-0.1.0.oci.tar"));
        std::fs::write(dir.path().join("dr-syncer-agent-0.2.0.oci.tar"), "").unwrap();
        assert!(find_archive(dir.path(), "dr-syncer-agent").is_err());
    }
}

//! Which pods run for real: image repository parsing and command resolution.
//!
//! A pod runs one of our binaries when its image repository (registry, tag and digest
//! stripped, last path segment) is mapped in [`OurImages`]; anything else is an idle
//! placeholder, so ordinary workloads can still hold PVCs and be Ready.

use std::path::{Path, PathBuf};

use super::OurImages;
use super::unpacked::UnpackedImage;

/// Directories searched for a command given by name (the pod root shares the host's
/// system directories, so a host path is also the path inside the pod).
const SEARCH_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// How a container is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// Run a process: `host_binary` is bind-mounted into the pod root at `pod_path` (when it
    /// is one of ours) or is already visible there (a system binary), then exec'd.
    Process {
        /// The binary on the machine.
        host_binary: PathBuf,
        /// Whether `host_binary` must be bind-mounted into the pod root (ours) or is already
        /// there through the read-only system directories.
        bind: bool,
        /// The path exec'd inside the pod root.
        pod_path: PathBuf,
        /// argv[0] as the pod spec names it.
        arg0: String,
        /// The remaining arguments, before `$(VAR)` expansion.
        args: Vec<String>,
        /// Set when the container runs from an unpacked OCI image: `host_binary` is then the
        /// program's file inside the image's root filesystem.
        image: Option<Box<ImageRun>>,
    },
    /// Not one of our images: a container that runs without a process.
    Placeholder,
    /// One of our images, but a build the test bed does not have: the container waits with
    /// `ErrImagePull` and this message, as after a failed pull.
    Unpullable(String),
}

/// What a container run from an unpacked image needs beyond its program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRun {
    /// The unpacked root filesystem.
    pub rootfs: PathBuf,
    /// The image's env (under the container's).
    pub env: Vec<(String, String)>,
    /// The image's working directory.
    pub working_dir: Option<String>,
    /// The image's user (uid, gid).
    pub user: Option<(u32, u32)>,
    /// The `imageID` to report.
    pub image_id: String,
}

/// Where our binaries appear inside a pod root.
pub const POD_BIN_DIR: &str = "/.testbed/bin";

/// The repository's last path segment with registry, tag and digest removed:
/// `ghcr.io/org/dr-syncer-agent:v1@sha256:..` -> `dr-syncer-agent`.
pub fn repository_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// Decides how to run a container from its image, command and args.
///
/// For our images: no `command` runs the image's binary with `args`; a `command` whose
/// first element's basename is one of our binaries (by file name or repository name) runs
/// that binary with the rest of the command and `args`; any other command is looked up in
/// the system directories the pod root shares with the host and run as-is.
pub fn resolve(
    image: &str,
    command: &[String],
    args: &[String],
    images: &OurImages,
) -> Result<Launch, String> {
    if let Some(unpacked) = images.unpacked_for(repository_name(image)) {
        return from_image(image, command, args, unpacked);
    }
    let Some(image_binary) = images.binary_for(repository_name(image)) else {
        return Ok(Launch::Placeholder);
    };
    let Some((first, rest)) = command.split_first() else {
        return Ok(ours(image_binary, None, args.to_vec()));
    };
    let all_args = rest.iter().chain(args).cloned().collect();
    if let Some(binary) = our_binary_named(basename(first), images) {
        return Ok(ours(binary, Some(first.clone()), all_args));
    }
    let host_binary = system_binary(first)
        .ok_or_else(|| format!("executable {first:?} not found in the pod's system dirs"))?;
    Ok(Launch::Process {
        pod_path: host_binary.clone(),
        host_binary,
        bind: false,
        arg0: first.clone(),
        args: all_args,
        image: None,
    })
}

/// A container of an image the test bed runs from its unpacked archive; a reference that
/// names another build fails as a pull would.
fn from_image(
    image: &str,
    command: &[String],
    args: &[String],
    unpacked: &UnpackedImage,
) -> Result<Launch, String> {
    if !unpacked.matches(image) {
        return Ok(Launch::Unpullable(unpacked.mismatch(image)));
    }
    let (pod_path, arg0, args) = unpacked.program(command, args)?;
    let rel = pod_path.strip_prefix("/").unwrap_or(&pod_path);
    Ok(Launch::Process {
        host_binary: unpacked.rootfs.join(rel),
        bind: false,
        pod_path,
        arg0,
        args,
        image: Some(Box::new(ImageRun {
            rootfs: unpacked.rootfs.clone(),
            env: unpacked.env(),
            working_dir: unpacked.config.working_dir.clone(),
            user: unpacked.user(),
            image_id: unpacked.image_id(),
        })),
    })
}

/// A launch of one of our binaries, bind-mounted under [`POD_BIN_DIR`].
fn ours(binary: &Path, arg0: Option<String>, args: Vec<String>) -> Launch {
    let file = binary
        .file_name()
        .map(Path::new)
        .unwrap_or(Path::new("bin"));
    let pod_path = Path::new(POD_BIN_DIR).join(file);
    Launch::Process {
        host_binary: binary.to_path_buf(),
        bind: true,
        arg0: arg0.unwrap_or_else(|| pod_path.to_string_lossy().into_owned()),
        pod_path,
        args,
        image: None,
    }
}

/// The last path segment of a command.
fn basename(command: &str) -> &str {
    command.rsplit('/').next().unwrap_or(command)
}

/// Our binary whose file name or repository name is `name`.
fn our_binary_named<'a>(name: &str, images: &'a OurImages) -> Option<&'a Path> {
    images.iter().find_map(|(repo, binary)| {
        let file = binary.file_name().and_then(|f| f.to_str());
        (repo == name || file == Some(name)).then_some(binary)
    })
}

/// An absolute command path that exists, or a name found in [`SEARCH_PATH`].
fn system_binary(command: &str) -> Option<PathBuf> {
    if command.starts_with('/') {
        return Path::new(command).is_file().then(|| PathBuf::from(command));
    }
    if command.contains('/') {
        return None;
    }
    SEARCH_PATH
        .iter()
        .map(|dir| Path::new(dir).join(command))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn images() -> OurImages {
        OurImages::from_bin_dir(Path::new("/opt/bin"))
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn repository_name_strips_registry_tag_and_digest() {
        assert_eq!(repository_name("dr-syncer-agent"), "dr-syncer-agent");
        assert_eq!(
            repository_name("ghcr.io/supporttools/dr-syncer-agent:v1.2"),
            "dr-syncer-agent"
        );
        assert_eq!(
            repository_name("localhost:5000/dr-syncer-controller@sha256:abc"),
            "dr-syncer-controller"
        );
        assert_eq!(
            repository_name("reg:5000/x/dr-syncer-rsync-worker:1@sha256:ff"),
            "dr-syncer-rsync-worker"
        );
        assert_eq!(repository_name("busybox"), "busybox");
    }

    #[test]
    fn foreign_images_are_placeholders() {
        let launch = resolve("docker.io/library/nginx:1", &[], &[], &images());
        assert_eq!(launch, Ok(Launch::Placeholder));
    }

    #[test]
    fn our_image_without_command_runs_its_binary_with_args() {
        let launch = resolve(
            "x.io/dr-syncer-agent:v1",
            &[],
            &strings(&["--port", "22"]),
            &images(),
        );
        assert_eq!(
            launch,
            Ok(Launch::Process {
                host_binary: "/opt/bin/dr-syncer-agent".into(),
                bind: true,
                pod_path: "/.testbed/bin/dr-syncer-agent".into(),
                arg0: "/.testbed/bin/dr-syncer-agent".into(),
                args: strings(&["--port", "22"]),
                image: None,
            })
        );
    }

    #[test]
    fn command_naming_another_of_our_binaries_runs_that_binary() {
        let launch = resolve(
            "dr-syncer-agent",
            &strings(&["/usr/local/bin/dr-syncer-rsync-worker", "serve"]),
            &strings(&["-v"]),
            &images(),
        );
        let Ok(Launch::Process {
            host_binary,
            arg0,
            args,
            ..
        }) = launch
        else {
            panic!("expected a process, got {launch:?}");
        };
        assert_eq!(
            host_binary,
            PathBuf::from("/opt/bin/dr-syncer-rsync-worker")
        );
        assert_eq!(arg0, "/usr/local/bin/dr-syncer-rsync-worker");
        assert_eq!(args, strings(&["serve", "-v"]));
    }

    #[test]
    fn system_commands_run_from_the_shared_system_dirs() {
        let launch = resolve(
            "dr-syncer-agent",
            &strings(&["sh", "-c", "true"]),
            &[],
            &images(),
        );
        let Ok(Launch::Process {
            host_binary, bind, ..
        }) = launch
        else {
            panic!("expected a process, got {launch:?}");
        };
        assert!(host_binary.ends_with("sh"));
        assert!(!bind);
        let missing = resolve(
            "dr-syncer-agent",
            &strings(&["no-such-tool-xyz"]),
            &[],
            &images(),
        );
        assert!(missing.is_err());
    }
}

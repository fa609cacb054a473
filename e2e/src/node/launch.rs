//! Assembling one container run: what to exec (program, argv, env with `$(VAR)`
//! expansion, the image's env under the container's) and the sandbox to exec it in (volume
//! mounts, our binary or the image root, termination log, `/etc/hosts`, working dir, user).
//! Kept apart from the pod worker's lifecycle so each stays readable.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::ctx::NodeCtx;
use super::env::{Sources, container_env, expand, pod_hostname};
use super::image::Launch;
use super::process::{ContainerFiles, ExecSpec};
use super::rootcopy;
use super::sandbox::{BindMount, Prepared as Sandbox, SandboxSpec};
use super::unpacked;
use super::volumes::{self, Prepared};

/// Default terminationMessagePath.
const TERMINATION_LOG: &str = "/dev/termination-log";

/// Why a container could not be started: its waiting reason and message.
#[derive(Debug)]
pub(crate) struct NotStarted {
    /// `ErrImagePull` or `CreateContainerConfigError`, as the kubelet says them.
    pub reason: &'static str,
    /// What went wrong.
    pub message: String,
}

impl From<String> for NotStarted {
    /// Anything but a pull failure is a configuration error (a missing binary, Secret key,
    /// volume source, ...): the kubelet's `CreateContainerConfigError`.
    fn from(message: String) -> Self {
        NotStarted {
            reason: "CreateContainerConfigError",
            message,
        }
    }
}

/// The parts of a pod worker a container run is assembled from.
pub(crate) struct PodParts<'a> {
    /// The node.
    pub ctx: &'a NodeCtx,
    /// The pod as last seen.
    pub pod: &'a Pod,
    /// The pod's state directory (root, tmp, hosts).
    pub dir: &'a Path,
    /// Secrets and ConfigMaps the pod references.
    pub sources: &'a Sources,
    /// The pod's prepared volumes by name.
    pub volumes: &'a BTreeMap<String, Prepared>,
}

/// The exec spec and sandbox for a container, `None` for a placeholder.
pub(crate) fn exec_for(
    p: &PodParts<'_>,
    spec: &Container,
    launch: &Result<Launch, String>,
    files: &ContainerFiles,
    image_ref: &str,
) -> Result<Option<(ExecSpec, Sandbox)>, NotStarted> {
    let (host_binary, bind, pod_path, arg0, args, image) = match launch.clone()? {
        Launch::Process {
            host_binary,
            bind,
            pod_path,
            arg0,
            args,
            image,
        } => (host_binary, bind, pod_path, arg0, args, image),
        Launch::Placeholder => return Ok(None),
        Launch::Unpullable(message) => {
            return Err(NotStarted {
                reason: unpacked::ERR_IMAGE_PULL,
                message,
            });
        }
    };
    if !host_binary.is_file() {
        return Err(format!(
            "binary {} for image {:?} not found: build it (cargo build -p <crate>) or pass \
             the right --bin-dir",
            host_binary.display(),
            image_ref
        )
        .into());
    }
    let mut env = container_env(p.pod, spec, p.ctx.cfg.ip, &p.ctx.api, p.sources)?;
    if let Some(run) = &image {
        unpacked::env_under(&mut env, spec, &run.env);
    }
    let args = args.iter().map(|a| expand(a, env.as_slice())).collect();
    let mut mounts = volumes::container_mounts(spec, p.volumes, &env)?;
    if bind {
        mounts.push(BindMount {
            source: host_binary,
            target: pod_path.clone(),
            read_only: true,
        });
    }
    let message_path = spec
        .termination_message_path
        .as_deref()
        .unwrap_or(TERMINATION_LOG);
    mounts.push(BindMount {
        source: files.termination_log(),
        target: PathBuf::from(message_path),
        read_only: false,
    });
    if !files.termination_log().exists() {
        files.reset().map_err(|e| e.to_string())?;
    }
    let image_root = match image.as_ref().map(|r| r.rootfs.clone()) {
        Some(rootfs) if !rootcopy::overlay_usable(&files.dir) => {
            // No overlay: this run gets its own copy of the image (bound writable).
            let copy = files.dir.join("image-root");
            rootcopy::fresh_copy(&rootfs, &copy)
                .map_err(|e| format!("copying image root to {}: {e}", copy.display()))?;
            Some(copy)
        }
        other => other,
    };
    mounts.push(BindMount {
        source: p.dir.join("hosts"),
        target: PathBuf::from("/etc/hosts"),
        read_only: true,
    });
    let spec = SandboxSpec {
        root: p.dir.join("root"),
        tmp_dir: p.dir.join("tmp"),
        scratch: files.scratch(),
        hostname: pod_hostname(p.pod),
        mounts,
        working_dir: PathBuf::from(
            spec.working_dir
                .as_deref()
                .or(image.as_ref().and_then(|r| r.working_dir.as_deref()))
                .unwrap_or("/"),
        ),
        user: image
            .as_ref()
            .and_then(|r| unpacked::run_as(p.pod, spec, r.user)),
        image_root,
    };
    let sandbox = Sandbox::new(&spec).map_err(|e| e.to_string())?;
    let exec = ExecSpec {
        program: pod_path,
        arg0,
        args,
        env,
    };
    Ok(Some((exec, sandbox)))
}

/// The pod's /etc/hosts: localhost and its own name on the node IP.
pub(crate) fn hosts_file(ip: Ipv4Addr, hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n")
}

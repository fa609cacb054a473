//! The container sandbox: a private mount (and UTS) namespace whose root is a per-pod
//! directory assembled from read-only bind mounts of the host's system directories, a
//! private `/dev`, `/proc` and `/tmp`, and the pod's volumes, entered with `chroot`.
//! `/etc` is an overlay (host `/etc` below, a per-run scratch dir above) so that volumes can
//! be mounted at new paths under it (`/etc/app/config`) without touching the host.
//!
//! Every mount is made in the child after `unshare(CLONE_NEWNS)`, never in the host
//! namespace: the mounts live exactly as long as the container's processes, so a stopped or
//! crashed node can never leave a mount behind. The steps are computed up front as a list of
//! [`Op`]s with pre-built C strings (pure, unit tested), and the forked child only walks the
//! list with raw syscalls: no allocation between fork and exec.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

/// Host directories shared read-only with every pod (symlinks, as in merged-/usr systems,
/// are recreated as symlinks).
const SYSTEM_DIRS: [&str; 7] = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/opt"];

/// Device nodes bind-mounted from the host into the pod's private `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// A bind mount of a host path at a path inside the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// The host path (file or directory).
    pub source: PathBuf,
    /// The absolute path inside the pod.
    pub target: PathBuf,
    /// Remounted read-only after binding.
    pub read_only: bool,
}

/// Everything needed to enter a container's sandbox.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    /// The pod root on the host (created by the caller; mountpoints are created in it).
    pub root: PathBuf,
    /// Host directory mounted as the pod's `/tmp`.
    pub tmp_dir: PathBuf,
    /// Per-run host scratch dir (same filesystem throughout) holding the `/etc` overlay's
    /// upper and work dirs; the caller empties it before each run.
    pub scratch: PathBuf,
    /// The pod's hostname (its own UTS namespace).
    pub hostname: String,
    /// Volumes, our binary and the termination-log file, in any order.
    pub mounts: Vec<BindMount>,
    /// Working directory inside the pod (created if missing).
    pub working_dir: PathBuf,
    /// An image's unpacked root filesystem to run in instead of the host's system dirs and
    /// `/etc` (`None`: the binary-mapping default).
    pub image_root: Option<PathBuf>,
    /// `uid:gid` to run as after entering (`None`: root, as today).
    pub user: Option<(u32, u32)>,
}

/// One step run in the child between fork and exec.
#[derive(Debug, PartialEq, Eq)]
pub enum Op {
    /// mkdir, tolerating EEXIST.
    Mkdir(CString),
    /// Create an empty file if missing (a file bind-mount target).
    Touch(CString),
    /// symlink(target, link), tolerating EEXIST.
    Symlink(CString, CString),
    /// mount(2) with an optional source, filesystem type and data.
    Mount {
        /// Source path or filesystem name.
        source: Option<CString>,
        /// Target path (host view, under the pod root).
        target: CString,
        /// Filesystem type for a fresh mount (proc, tmpfs).
        fstype: Option<CString>,
        /// mount flags.
        flags: MsFlags,
        /// Filesystem options.
        data: Option<CString>,
    },
    /// The first step, or if it fails the others (e.g. overlay, else a read-only bind).
    Either(Box<Op>, Vec<Op>),
}

/// Why a sandbox could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A mount target inside the pod was not a clean absolute path.
    #[error("mount path {0:?} must be absolute and must not contain '..'")]
    BadTarget(PathBuf),
    /// A volume source on the host does not exist.
    #[error("volume source {0} does not exist")]
    MissingSource(PathBuf),
    /// A path contained a NUL byte.
    #[error("path {0:?} contains a NUL byte")]
    Nul(PathBuf),
}

/// Plans the whole sandbox: system dirs, /proc, /dev, /tmp, then the mounts (parents before
/// children), as a list of steps for [`enter`].
pub fn plan(spec: &SandboxSpec) -> Result<Vec<Op>, SandboxError> {
    let mut ops = vec![Op::Mount {
        source: None,
        target: cstr(Path::new("/"))?,
        fstype: None,
        flags: MsFlags::MS_REC | MsFlags::MS_SLAVE,
        data: None,
    }];
    let at = |p: &str| spec.root.join(p);
    match &spec.image_root {
        Some(rootfs) => image_root(&mut ops, rootfs, &spec.root, &spec.scratch)?,
        None => {
            for dir in SYSTEM_DIRS {
                system_dir(&mut ops, &spec.root, Path::new(dir))?;
            }
            etc_overlay(&mut ops, &at("etc"), &spec.scratch)?;
        }
    }
    ops.push(Op::Mkdir(cstr(&at("proc"))?));
    ops.push(fresh(
        "proc",
        &at("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None,
    )?);
    ops.push(Op::Mkdir(cstr(&at("sys"))?));
    bind(&mut ops, Path::new("/sys"), &at("sys"), true, true)?;
    dev(&mut ops, &spec.root)?;
    ops.push(Op::Mkdir(cstr(&at("tmp"))?));
    bind(&mut ops, &spec.tmp_dir, &at("tmp"), false, false)?;
    let mut mounts = spec.mounts.clone();
    mounts.sort_by_key(|m| m.target.components().count());
    for m in &mounts {
        volume(&mut ops, &spec.root, m)?;
    }
    let workdir = inside(&spec.root, &spec.working_dir)?;
    mkdirs(&mut ops, &spec.root, &workdir)?;
    Ok(ops)
}

/// A host system directory: read-only recursive bind, or the same symlink.
fn system_dir(ops: &mut Vec<Op>, root: &Path, dir: &Path) -> Result<(), SandboxError> {
    let target = inside(root, dir)?;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        if let Ok(link) = std::fs::read_link(dir) {
            ops.push(Op::Symlink(cstr(&link)?, cstr(&target)?));
        }
        return Ok(());
    }
    ops.push(Op::Mkdir(cstr(&target)?));
    bind(ops, dir, &target, true, true)
}

/// An image's root filesystem as the pod root: an overlay with the unpacked image read-only
/// below and the run's scratch above, so the container may write its root (as under a real
/// runtime) and each run starts from the image again. Where overlayfs is unavailable, a
/// writable bind of `rootfs` (mountpoints are then created in it): the caller then passes a
/// per-run copy of the image as `rootfs` (see `rootcopy`), so the shared image stays clean.
fn image_root(
    ops: &mut Vec<Op>,
    rootfs: &Path,
    root: &Path,
    scratch: &Path,
) -> Result<(), SandboxError> {
    let (upper, work) = (scratch.join("root-upper"), scratch.join("root-work"));
    for dir in [scratch, upper.as_path(), work.as_path()] {
        ops.push(Op::Mkdir(cstr(dir)?));
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        rootfs.display(),
        upper.display(),
        work.display()
    );
    let overlay = fresh("overlay", root, MsFlags::empty(), Some(&data))?;
    let mut bind_rootfs = Vec::new();
    bind(&mut bind_rootfs, rootfs, root, false, true)?;
    ops.push(Op::Either(Box::new(overlay), bind_rootfs));
    ops.push(Op::Mkdir(cstr(&root.join("etc"))?));
    Ok(())
}

/// `/etc` as an overlay: host `/etc` read-only below, the run's scratch above.
fn etc_overlay(ops: &mut Vec<Op>, target: &Path, scratch: &Path) -> Result<(), SandboxError> {
    let (upper, work) = (scratch.join("etc-upper"), scratch.join("etc-work"));
    for dir in [scratch, upper.as_path(), work.as_path(), target] {
        ops.push(Op::Mkdir(cstr(dir)?));
    }
    let data = format!(
        "lowerdir=/etc,upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    let overlay = fresh("overlay", target, MsFlags::empty(), Some(&data))?;
    // Where overlayfs is unavailable (e.g. the state dir is itself on overlayfs), fall back to
    // a plain bind (read-only remount below): volumes then cannot be mounted at new paths
    // under /etc, but everything else works.
    let mut bind_etc = Vec::new();
    bind(&mut bind_etc, Path::new("/etc"), target, true, true)?;
    ops.push(Op::Either(Box::new(overlay), bind_etc));
    Ok(())
}

/// A private `/dev`: tmpfs with the usual devices, pts, shm and fd links.
fn dev(ops: &mut Vec<Op>, root: &Path) -> Result<(), SandboxError> {
    let dev = root.join("dev");
    ops.push(Op::Mkdir(cstr(&dev)?));
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME;
    ops.push(fresh("tmpfs", &dev, flags, Some("mode=755,size=65536k"))?);
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if host.exists() {
            ops.push(Op::Touch(cstr(&dev.join(name))?));
            bind(ops, &host, &dev.join(name), false, false)?;
        }
    }
    ops.push(Op::Mkdir(cstr(&dev.join("pts"))?));
    bind(ops, Path::new("/dev/pts"), &dev.join("pts"), false, true)?;
    ops.push(Op::Mkdir(cstr(&dev.join("shm"))?));
    let shm_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    ops.push(fresh(
        "tmpfs",
        &dev.join("shm"),
        shm_flags,
        Some("mode=1777,size=65536k"),
    )?);
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink(
            cstr(Path::new(target))?,
            cstr(&dev.join(link))?,
        ));
    }
    Ok(())
}

/// A volume (or file) bind mount at its target, creating the mountpoint first.
fn volume(ops: &mut Vec<Op>, root: &Path, m: &BindMount) -> Result<(), SandboxError> {
    let target = inside(root, &m.target)?;
    let meta =
        std::fs::metadata(&m.source).map_err(|_| SandboxError::MissingSource(m.source.clone()))?;
    if meta.is_dir() {
        mkdirs(ops, root, &target)?;
    } else {
        if let Some(parent) = target.parent() {
            mkdirs(ops, root, parent)?;
        }
        ops.push(Op::Touch(cstr(&target)?));
    }
    bind(ops, &m.source, &target, m.read_only, true)
}

/// Bind `source` at `target`, then remount read-only if asked (a bind mount ignores
/// MS_RDONLY on the first call).
fn bind(
    ops: &mut Vec<Op>,
    source: &Path,
    target: &Path,
    read_only: bool,
    recursive: bool,
) -> Result<(), SandboxError> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    ops.push(Op::Mount {
        source: Some(cstr(source)?),
        target: cstr(target)?,
        fstype: None,
        flags,
        data: None,
    });
    if read_only {
        ops.push(Op::Mount {
            source: None,
            target: cstr(target)?,
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            data: None,
        });
    }
    Ok(())
}

/// A fresh filesystem mount (proc, tmpfs).
fn fresh(
    fstype: &str,
    target: &Path,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<Op, SandboxError> {
    Ok(Op::Mount {
        source: Some(cstr(Path::new(fstype))?),
        target: cstr(target)?,
        fstype: Some(cstr(Path::new(fstype))?),
        flags,
        data: data.map(|d| cstr(Path::new(d))).transpose()?,
    })
}

/// mkdir for every directory from the pod root down to `dir` (host view).
fn mkdirs(ops: &mut Vec<Op>, root: &Path, dir: &Path) -> Result<(), SandboxError> {
    let relative = dir.strip_prefix(root).unwrap_or(dir);
    let mut current = root.to_path_buf();
    for part in relative.components() {
        current.push(part);
        ops.push(Op::Mkdir(cstr(&current)?));
    }
    Ok(())
}

/// The host view of an absolute pod path: `root` + `path`, refusing `..` and relative paths.
pub fn inside(root: &Path, path: &Path) -> Result<PathBuf, SandboxError> {
    let mut out = root.to_path_buf();
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(SandboxError::BadTarget(path.to_path_buf()));
    }
    for c in components {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(SandboxError::BadTarget(path.to_path_buf())),
        }
    }
    Ok(out)
}

/// A path as a C string.
fn cstr(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SandboxError::Nul(path.to_path_buf()))
}

/// Everything [`enter`] needs, pre-built so the child never allocates.
#[derive(Debug)]
pub struct Prepared {
    ops: Vec<Op>,
    root: CString,
    workdir: CString,
    hostname: Vec<u8>,
    user: Option<(u32, u32)>,
}

impl Prepared {
    /// Plans the sandbox for `spec`.
    pub fn new(spec: &SandboxSpec) -> Result<Self, SandboxError> {
        Ok(Self {
            ops: plan(spec)?,
            root: cstr(&spec.root)?,
            workdir: cstr(&spec.working_dir)?,
            hostname: spec.hostname.as_bytes().to_vec(),
            user: spec.user,
        })
    }

    /// Runs in the forked child: new mount + UTS namespace, the planned mounts, hostname,
    /// chroot, chdir and, when a user is set, setgroups/setgid/setuid. Async-signal-safe:
    /// syscalls on pre-built data only; on failure the failing step is written to stderr
    /// (the container log) and the error returned to spawn.
    pub fn enter(&self) -> io::Result<()> {
        use nix::sched::{CloneFlags, unshare};
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS).map_err(fail(b"unshare"))?;
        for op in &self.ops {
            run(op)?;
        }
        nix::unistd::sethostname(OsStr::from_bytes(&self.hostname))
            .map_err(fail(b"sethostname"))?;
        nix::unistd::chroot(self.root.as_c_str()).map_err(fail(b"chroot"))?;
        nix::unistd::chdir(self.workdir.as_c_str()).map_err(fail(b"chdir"))?;
        if let Some((uid, gid)) = self.user {
            use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
            setgroups(&[]).map_err(fail(b"setgroups"))?;
            setgid(Gid::from_raw(gid)).map_err(fail(b"setgid"))?;
            setuid(Uid::from_raw(uid)).map_err(fail(b"setuid"))?;
        }
        Ok(())
    }
}

/// One step in the child.
fn run(op: &Op) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{AT_FDCWD, OFlag, open};
    use nix::sys::stat::Mode;
    let tolerate_exists = |r: nix::Result<()>| match r {
        Err(Errno::EEXIST) => Ok(()),
        other => other,
    };
    match op {
        Op::Mkdir(path) => tolerate_exists(nix::unistd::mkdir(
            path.as_c_str(),
            Mode::from_bits_truncate(0o755),
        ))
        .map_err(fail_at(b"mkdir ", path)),
        Op::Touch(path) => {
            let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
            open(path.as_c_str(), flags, Mode::from_bits_truncate(0o644))
                .map(drop)
                .map_err(fail_at(b"create ", path))
        }
        Op::Symlink(target, link) => tolerate_exists(nix::unistd::symlinkat(
            target.as_c_str(),
            AT_FDCWD,
            link.as_c_str(),
        ))
        .map_err(fail_at(b"symlink ", link)),
        Op::Mount { target, .. } => mount(op).map_err(fail_at(b"mount ", target)),
        Op::Either(first, fallback) => {
            run_quiet(first).or_else(|_| fallback.iter().try_for_each(run))
        }
    }
}

/// A mount step whose failure is not reported (the caller has a fallback).
fn run_quiet(op: &Op) -> io::Result<()> {
    match op {
        Op::Mount { .. } => mount(op).map_err(io::Error::from),
        other => run(other),
    }
}

/// The mount(2) call of a mount step, one place for the reporting and the quiet runner
/// (any other step is a no-op here: callers match `Op::Mount` first).
fn mount(op: &Op) -> nix::Result<()> {
    let Op::Mount {
        source,
        target,
        fstype,
        flags,
        data,
    } = op
    else {
        return Ok(());
    };
    nix::mount::mount(
        source.as_deref(),
        target.as_c_str(),
        fstype.as_deref(),
        *flags,
        data.as_deref(),
    )
}

/// Error mapper for a step without a path.
fn fail(what: &'static [u8]) -> impl Fn(nix::errno::Errno) -> io::Error {
    move |errno| {
        report(what, b"");
        io::Error::from(errno)
    }
}

/// Error mapper for a step on a path.
fn fail_at<'a>(
    what: &'static [u8],
    path: &'a CString,
) -> impl Fn(nix::errno::Errno) -> io::Error + 'a {
    move |errno| {
        report(what, path.as_bytes());
        io::Error::from(errno)
    }
}

/// Writes `testbed sandbox: <what><path> failed` to stderr without allocating.
fn report(what: &[u8], path: &[u8]) {
    let stderr = std::io::stderr();
    use std::os::fd::AsFd;
    let fd = stderr.as_fd();
    for part in [b"testbed sandbox: ".as_slice(), what, path, b" failed\n"] {
        let _ = nix::unistd::write(fd, part);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn spec(dir: &Path) -> SandboxSpec {
        SandboxSpec {
            root: "/pods/p/root".into(),
            tmp_dir: "/pods/p/tmp".into(),
            scratch: "/pods/p/run".into(),
            hostname: "p".into(),
            mounts: vec![
                BindMount {
                    source: dir.join("vol"),
                    target: "/data/sub".into(),
                    read_only: true,
                },
                BindMount {
                    source: dir.to_path_buf(),
                    target: "/data".into(),
                    read_only: false,
                },
                BindMount {
                    source: dir.join("log"),
                    target: "/dev/termination-log".into(),
                    read_only: false,
                },
            ],
            working_dir: "/work".into(),
            image_root: None,
            user: None,
        }
    }

    #[test]
    fn plan_mounts_parents_first_and_remounts_read_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vol")).unwrap();
        std::fs::write(dir.path().join("log"), "").unwrap();
        let ops = plan(&spec(dir.path())).unwrap();
        let mount_of = |target: &str| {
            ops.iter()
                .position(|op| matches!(op, Op::Mount { target: t, source: Some(_), .. } if *t == c(target)))
                .unwrap()
        };
        let data = mount_of("/pods/p/root/data");
        let sub = mount_of("/pods/p/root/data/sub");
        assert!(
            data < sub,
            "parent volume must be mounted before the nested one"
        );
        assert!(mount_of("/pods/p/root/dev") < mount_of("/pods/p/root/dev/termination-log"));
        assert_eq!(
            ops[sub + 1],
            Op::Mount {
                source: None,
                target: c("/pods/p/root/data/sub"),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                data: None,
            }
        );
        assert!(ops.contains(&Op::Touch(c("/pods/p/root/dev/termination-log"))));
        assert!(ops.contains(&Op::Mkdir(c("/pods/p/root/work"))));
        let overlay = ops.iter().find_map(|op| match op {
            Op::Either(first, _) => Some(first.as_ref()),
            _ => None,
        });
        assert_eq!(
            overlay,
            Some(&Op::Mount {
                source: Some(c("overlay")),
                target: c("/pods/p/root/etc"),
                fstype: Some(c("overlay")),
                flags: MsFlags::empty(),
                data: Some(c(
                    "lowerdir=/etc,upperdir=/pods/p/run/etc-upper,workdir=/pods/p/run/etc-work"
                )),
            })
        );
        let usr = mount_of("/pods/p/root/usr");
        assert!(
            matches!(&ops[usr + 1], Op::Mount { flags, .. } if flags.contains(MsFlags::MS_RDONLY))
        );
    }

    #[test]
    fn an_image_root_replaces_the_host_system_dirs_and_etc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vol")).unwrap();
        std::fs::write(dir.path().join("log"), "").unwrap();
        let mut spec = spec(dir.path());
        spec.image_root = Some("/images/agent/rootfs".into());
        let ops = plan(&spec).unwrap();
        let first_either = ops.iter().find_map(|op| match op {
            Op::Either(first, fallback) => Some((first.as_ref(), fallback)),
            _ => None,
        });
        let (overlay, fallback) = first_either.unwrap();
        assert_eq!(
            overlay,
            &Op::Mount {
                source: Some(c("overlay")),
                target: c("/pods/p/root"),
                fstype: Some(c("overlay")),
                flags: MsFlags::empty(),
                data: Some(c(
                    "lowerdir=/images/agent/rootfs,upperdir=/pods/p/run/root-upper,\
                     workdir=/pods/p/run/root-work"
                )),
            }
        );
        assert!(matches!(
            &fallback[0],
            Op::Mount { source: Some(src), target, .. }
                if *src == c("/images/agent/rootfs") && *target == c("/pods/p/root")
        ));
        // Nothing from the host's system dirs or /etc, and the root comes before any mount
        // inside it.
        let host_mount = ops.iter().any(|op| {
            matches!(op, Op::Mount { source: Some(src), .. }
                if [c("/usr"), c("/lib"), c("/bin"), c("/etc")].contains(src))
        });
        assert!(!host_mount, "{ops:#?}");
        let overlay_at = ops
            .iter()
            .position(|op| matches!(op, Op::Either(..)))
            .unwrap();
        let proc_at = ops
            .iter()
            .position(
                |op| matches!(op, Op::Mount { target, .. } if *target == c("/pods/p/root/proc")),
            )
            .unwrap();
        assert!(overlay_at < proc_at);
    }

    #[test]
    fn targets_must_be_absolute_and_stay_inside_the_root() {
        let root = Path::new("/r");
        assert_eq!(
            inside(root, Path::new("/a/./b")).unwrap(),
            PathBuf::from("/r/a/b")
        );
        assert!(inside(root, Path::new("/a/../../etc")).is_err());
        assert!(inside(root, Path::new("relative")).is_err());
    }

    #[test]
    fn missing_volume_source_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = plan(&spec(&dir.path().join("absent"))).unwrap_err();
        assert!(matches!(err, SandboxError::MissingSource(_)), "{err}");
    }
}

//! Finding and removing whatever a test bed left behind: processes and mounts. Used by the
//! supervisor on shutdown, by `down` to verify (and force) a clean machine, and by tests to
//! assert it from `/proc`.

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Mount points at or under `dir` in this process's mount namespace, deepest first (the
/// order they must be unmounted in). Reads `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything at or under `dir`; returns what is still mounted afterwards.
pub fn unmount_all(dir: &Path) -> Vec<PathBuf> {
    for mount in mounts_under(dir) {
        if let Err(e) = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %mount.display(), error = %e, "unmount failed");
        }
    }
    mounts_under(dir)
}

/// Processes that belong to the test bed in `dir`: in the supervisor's session `sid` (every
/// process it starts inherits it), or with their command line, working directory or root
/// under `dir` (pods chrooted into a root assembled there). Excludes the caller and its
/// ancestors (a shell running `testbed down --dir DIR` names DIR on its command line).
pub fn processes(dir: &Path, sid: Option<u32>) -> Vec<u32> {
    let mine = ancestors();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !mine.contains(pid))
        .filter(|&pid| crate::process::alive(pid))
        .filter(|&pid| sid.is_some_and(|sid| session(pid) == Some(sid)) || touches(pid, dir))
        .collect()
}

/// This process and its ancestors up to init.
fn ancestors() -> Vec<u32> {
    let mut chain = vec![std::process::id()];
    while let Some(parent) = chain.last().and_then(|&pid| stat_field(pid, 1)) {
        if parent == 0 || chain.contains(&parent) {
            break;
        }
        chain.push(parent);
    }
    chain
}

fn session(pid: u32) -> Option<u32> {
    stat_field(pid, 3)
}

/// Field `n` (0-based) after the `(comm)` of `/proc/<pid>/stat`: 0 state, 1 ppid, 2 pgrp,
/// 3 session.
fn stat_field(pid: u32, n: usize) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(n)?
        .parse()
        .ok()
}

fn touches(pid: u32, dir: &Path) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let in_cmdline = cmdline
        .split(|&b| b == 0)
        .any(|arg| names_path_under(arg, dir));
    let link_under = |name: &str| {
        std::fs::read_link(format!("/proc/{pid}/{name}"))
            .is_ok_and(|p| p.starts_with(dir) && p != Path::new("/"))
    };
    in_cmdline || link_under("cwd") || link_under("root")
}

/// True if `arg` contains `dir` as a whole path (followed by `/` or the end of the
/// argument), e.g. `--data-dir=DIR/clusters/x` but not `DIR2/...`.
fn names_path_under(arg: &[u8], dir: &Path) -> bool {
    let dir = dir.as_os_str().as_encoded_bytes();
    if dir.is_empty() || arg.len() < dir.len() {
        return false;
    }
    (0..=arg.len() - dir.len())
        .any(|i| arg[i..].starts_with(dir) && matches!(arg.get(i + dir.len()), None | Some(b'/')))
}

/// SIGKILLs every process of the test bed; returns the pids it signalled.
pub fn kill_all(dir: &Path, sid: Option<u32>) -> Vec<u32> {
    let pids = processes(dir, sid);
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    pids
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn command_line_match_is_by_whole_path() {
        let dir = Path::new("/tmp/tb");
        assert!(names_path_under(b"--data-dir=/tmp/tb/clusters/a", dir));
        assert!(names_path_under(b"/tmp/tb", dir));
        assert!(!names_path_under(b"--data-dir=/tmp/tb2/clusters/a", dir));
        assert!(!names_path_under(b"/tmp/t", dir));
    }

    #[test]
    fn unescapes_mountinfo_octal() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn finds_a_child_by_its_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        // `sh -c CMD NAME`: NAME becomes $0 and shows in /proc/<pid>/cmdline once the shell
        // has exec'd; its first output line proves it has.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("echo started; sleep 30; true")
            .arg(&marker)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "started\n");
        let found = processes(dir.path(), None);
        assert!(
            found.contains(&child.id()),
            "{found:?} lacks {}",
            child.id()
        );
        kill_all(dir.path(), None);
        child.wait().unwrap();
        assert!(processes(dir.path(), None).is_empty());
    }
}

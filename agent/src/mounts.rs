//! Whether a directory is a mount point ([`is_mount_point`]), as the agent sees the node's
//! filesystem. A CSI or local volume whose disk did not mount is an ordinary (usually
//! empty) directory on the node's root filesystem: serving it would make the worker
//! believe the volume is empty. A mount point is recognised by a device change from its
//! parent, or, for a bind mount of a directory on the same filesystem (which keeps the
//! device), by its line in `/proc/self/mountinfo`.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Where the kernel lists this process's mounts.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Whether `dir` (an absolute path without symlinks) is the root of a mount.
pub fn is_mount_point(dir: &Path) -> io::Result<bool> {
    let meta = std::fs::symlink_metadata(dir)?;
    let parent = std::fs::symlink_metadata(dir.join(".."))?;
    if meta.dev() != parent.dev() || meta.ino() == parent.ino() {
        return Ok(true);
    }
    let table = std::fs::read(MOUNTINFO)?;
    Ok(mount_points(&table).any(|m| m == dir.as_os_str().as_bytes()))
}

/// The mount points (field 5, octal escapes undone) of a `mountinfo` table.
pub fn mount_points(table: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    table
        .split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(unescape)
}

/// Undoes mountinfo's `\ooo` escapes (space, tab, newline, backslash).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8) + (c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_read_and_unescaped() {
        let table = b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
            98 22 0:50 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv\\040a/mount rw - ext4 /dev/x rw\n\
            99 22 8:1 /data /mnt/bind\\134dir rw - ext4 /dev/sda1 rw\n";
        let points: Vec<Vec<u8>> = mount_points(table).collect();
        assert_eq!(
            points,
            [
                b"/".to_vec(),
                b"/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv a/mount".to_vec(),
                b"/mnt/bind\\dir".to_vec(),
            ]
        );
    }

    #[test]
    fn proc_and_root_are_mount_points_a_plain_directory_is_not() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        assert!(is_mount_point(Path::new("/proc")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        assert!(!is_mount_point(&plain).unwrap());
        assert!(is_mount_point(&dir.path().join("missing")).is_err());
    }
}

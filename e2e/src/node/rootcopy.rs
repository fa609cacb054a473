//! The fallback root of an image container where overlayfs cannot be used: a fresh copy of
//! the unpacked image per run, so a run never writes into the image every other container
//! shares and a restart starts from the image again (the overlay gives both for free).

use std::io;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::Path;

/// Whether an overlay whose upper dir is under `scratch_parent` can be mounted: the kernel
/// knows overlayfs and `scratch_parent` is not itself on overlayfs (not a valid upper dir).
pub fn overlay_usable(scratch_parent: &Path) -> bool {
    let known = std::fs::read_to_string("/proc/filesystems").is_ok_and(|list| {
        list.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    });
    let on_overlay = nix::sys::statfs::statfs(scratch_parent)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC);
    known && !on_overlay
}

/// Replaces `dest` with a copy of `rootfs`: directories, files (mode and owner kept) and
/// symlinks (as links, never followed); other file types are skipped.
pub fn fresh_copy(rootfs: &Path, dest: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(dest).is_ok() {
        std::fs::remove_dir_all(dest)?;
    }
    copy_tree(rootfs, dest)
}

/// Copies one directory tree.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(from)?;
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
            let m = std::fs::symlink_metadata(&src)?;
            lchown(&dst, Some(m.uid()), Some(m.gid()))?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst)?;
            let m = std::fs::metadata(&src)?;
            lchown(&dst, Some(m.uid()), Some(m.gid()))?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
    }
    lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_fresh_copy_keeps_modes_and_links_and_drops_what_the_last_run_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("usr/bin")).unwrap();
        std::fs::write(rootfs.join("usr/bin/app"), "x").unwrap();
        std::fs::set_permissions(
            rootfs.join("usr/bin/app"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::os::unix::fs::symlink("usr/bin", rootfs.join("bin")).unwrap();
        let dest = dir.path().join("run/root");
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        fresh_copy(&rootfs, &dest).unwrap();
        std::fs::write(dest.join("written-by-run"), "y").unwrap();
        fresh_copy(&rootfs, &dest).unwrap();
        assert!(!dest.join("written-by-run").exists());
        let mode = std::fs::metadata(dest.join("usr/bin/app"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o4755);
        assert_eq!(
            std::fs::read_link(dest.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
    }
}

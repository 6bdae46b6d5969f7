//! A real small filesystem for full-disk tests: a size-limited tmpfs (root only: as root it must
//! mount, see `common::require_root`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mount point, lazily unmounted when dropped (before the temp dir holding it goes).
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` (mount's own spelling: `512k`, `4m`) at `at`, or say why not.
    pub fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        Tmpfs::mount_with(at, &format!("size={size}"))
    }

    /// Mount a tmpfs with mount options `opts` (`noatime,size=512m`) at `at`, or say why not.
    pub fn mount_with(at: &Path, opts: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(at.to_owned()))
    }

    /// `mount`, or `None` with the reason printed (as `common::require_root` decides).
    pub fn mount_or_skip(at: &Path, size: &str) -> Option<Tmpfs> {
        Tmpfs::mount_with_or_skip(at, &format!("size={size}"))
    }

    /// `mount_with`, or `None` with the reason printed (as `common::require_root` decides).
    pub fn mount_with_or_skip(at: &Path, opts: &str) -> Option<Tmpfs> {
        super::require_root("a tmpfs mount", || Tmpfs::mount_with(at, opts))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the filesystem holding `dir` to 100% with one file `dir/filler`.
pub fn fill(dir: &Path) {
    let out = Command::new("sh")
        .args(["-c", "head -c 1G /dev/zero > filler; true"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let st = rustix_free(dir);
    assert_eq!(st, 0, "the filesystem at {dir:?} is not full");
}

/// Free bytes (for unprivileged users) of the filesystem holding `path`.
pub fn rustix_free(path: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    it.next().unwrap() * it.next().unwrap()
}

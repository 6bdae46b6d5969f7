//! A real small filesystem for full-disk tests: a size-limited tmpfs (root only: as root it must
//! mount, see `common::require_root`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `kib` KiB at `at`, or `None` with the reason printed.
    pub fn mount_or_skip(at: &Path, kib: u64) -> Option<Tmpfs> {
        super::common::require_root("a tmpfs mount", || {
            std::fs::create_dir_all(at).unwrap();
            match Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
                .arg(at)
                .output()
            {
                Ok(out) if out.status.success() => Ok(Tmpfs(at.to_owned())),
                Ok(out) => Err(format!(
                    "mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => Err(format!("cannot run mount: {e}")),
            }
        })
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

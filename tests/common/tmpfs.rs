//! A real small filesystem for full-disk tests: a size-limited tmpfs (root only; required, never
//! skipped, when `CARGO_GUARDED_REQUIRE_TOOLS` is set and we are root).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `kib` KiB at `at`, or `None` with the reason printed.
    pub fn mount_or_skip(at: &Path, kib: u64) -> Option<Tmpfs> {
        let why = if !super::is_root() {
            "not running as root (tmpfs mounts need it)".to_owned()
        } else {
            std::fs::create_dir_all(at).unwrap();
            match Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
                .arg(at)
                .output()
            {
                Ok(out) if out.status.success() => return Some(Tmpfs(at.to_owned())),
                Ok(out) => format!(
                    "mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => format!("cannot run mount: {e}"),
            }
        };
        if std::env::var_os("CARGO_GUARDED_REQUIRE_TOOLS").is_some() && super::is_root() {
            panic!("tmpfs test required but cannot run: {why}");
        }
        eprintln!("skipped: {why}");
        None
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

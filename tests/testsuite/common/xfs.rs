//! Real filesystems on loop devices (root only, see `common::require_root`): an XFS with
//! reflink (extents shared between files: `cp --reflink`, `FICLONE`) and, through the same
//! [`LoopFs`], any filesystem `mkfs.<type>` makes (an ext4 with reserved blocks). The image is
//! a sparse file in a temp dir; `mount -o loop` detaches the loop device at unmount.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A filesystem image mounted at a path; lazily unmounted when dropped (the loop device goes
/// with it), before its image's temp dir is removed.
pub struct LoopFs {
    pub path: PathBuf,
    _image: tempfile::TempDir,
}

impl LoopFs {
    /// Make a `size`-byte image (sparse) with `mkfs.<fstype> <mkfs_args…>`, mount it at `at`
    /// (created), or say why not.
    pub fn mount(at: &Path, fstype: &str, mkfs_args: &[&str], size: u64) -> Result<LoopFs, String> {
        let image = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let file = image.path().join("fs.img");
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(size))
            .map_err(|e| format!("cannot make {}: {e}", file.display()))?;
        run(Command::new(format!("mkfs.{fstype}"))
            .args(mkfs_args)
            .arg(&file))?;
        std::fs::create_dir_all(at).map_err(|e| format!("cannot make {}: {e}", at.display()))?;
        run(Command::new("mount")
            .args(["-t", fstype, "-o", "loop"])
            .arg(&file)
            .arg(at))?;
        Ok(LoopFs {
            path: at.to_owned(),
            _image: image,
        })
    }

    /// `mount`, or `None` with the reason printed (as `common::require_root` decides).
    pub fn mount_or_skip(at: &Path, fstype: &str, mkfs_args: &[&str], size: u64) -> Option<LoopFs> {
        super::require_root(&format!("a loop-mounted {fstype}"), || {
            LoopFs::mount(at, fstype, mkfs_args, size)
        })
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// An XFS with reflink on a loop device (`mkfs.xfs -m reflink=1`; 320 MiB, about the smallest
/// size `mkfs.xfs` accepts). `.ci/run` installs `xfsprogs`.
pub struct Xfs;

impl Xfs {
    /// Mount a fresh reflink XFS at `at`, or say why not.
    pub fn mount(at: &Path) -> Result<LoopFs, String> {
        LoopFs::mount(at, "xfs", &["-q", "-m", "reflink=1"], 320 << 20)
    }

    /// `mount`, or `None` with the reason printed (as `common::require_root` decides).
    pub fn mount_or_skip(at: &Path) -> Option<LoopFs> {
        super::require_root("a loop-mounted xfs", || Xfs::mount(at))
    }

    /// A reflink XFS of `mib` MiB at `at` (room for a real build and its seed), or `None` with
    /// the reason printed.
    pub fn mount_sized_or_skip(at: &Path, mib: u64) -> Option<LoopFs> {
        super::require_root("a loop-mounted xfs", || {
            LoopFs::mount(at, "xfs", &["-q", "-m", "reflink=1"], mib << 20)
        })
    }
}

/// `cp --reflink=always from to`: a copy whose extents are all shared with `from`.
pub fn reflink_copy(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .args(["-a", "--reflink=always"])
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cp --reflink=always failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `statvfs` of `path`: (bytes available to unprivileged users, total bytes, used bytes), after
/// a `sync -f` so delayed allocation and deferred frees have landed.
pub fn space(path: &Path) -> (u64, u64, u64) {
    let _ = Command::new("sync").arg("-f").arg(path).status();
    let out = Command::new("stat")
        .args(["-f", "-c", "%a %b %f %S"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let n: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (avail, blocks, free, frsize) = (n[0], n[1], n[2], n[3]);
    (avail * frsize, blocks * frsize, (blocks - free) * frsize)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
/// Whether every data extent of `file` is shared with another file (FIEMAP's shared flag, as
/// `filefrag -v` prints it). `None` if the file has no extents (empty).
pub fn extents_shared(file: &Path) -> Option<bool> {
    let out = Command::new("filefrag")
        .arg("-v")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "filefrag -v {}: {out:?}",
        file.display()
    );
    let out = String::from_utf8_lossy(&out.stdout);
    let extents: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .filter(|l| l.contains(':') && l.contains(".."))
        .collect();
    if extents.is_empty() {
        return None;
    }
    Some(extents.iter().all(|l| l.contains("shared")))
}

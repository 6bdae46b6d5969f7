//! A real XFS with reflink on a loop device (root only: as root it must work, see
//! `common::require_root`), for seeds that must share extents.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted XFS image, unmounted (lazily) and its loop device freed when dropped.
pub struct Xfs {
    pub mount: PathBuf,
    image: PathBuf,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Xfs {
    /// `mkfs.xfs -m reflink=1` on a sparse image of `mib` MiB under `dir`, mounted at
    /// `dir/xfs` through a loop device, or why not.
    pub fn mount(dir: &Path, mib: u64) -> Result<Xfs, String> {
        let image = dir.join("xfs.img");
        let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        f.set_len(mib << 20).map_err(|e| e.to_string())?;
        drop(f);
        run(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image))?;
        let mount = dir.join("xfs");
        std::fs::create_dir_all(&mount).unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount))?;
        Ok(Xfs { mount, image })
    }

    pub fn mount_or_skip(dir: &Path, mib: u64) -> Option<Xfs> {
        super::common::require_root("an XFS loop mount (xfsprogs)", || Xfs::mount(dir, mib))
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// Whether every data extent of `file` is shared with another file (FIEMAP's shared flag, as
/// `filefrag -v` prints it). `None` if the file has no extents (empty).
pub fn extents_shared(file: &Path) -> Option<bool> {
    let out = run(Command::new("filefrag").arg("-v").arg(file)).unwrap();
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

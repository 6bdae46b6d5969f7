//! File-system primitives the lease protocol and the guard are built on: no-follow opens relative
//! to a directory fd, deletion that never follows a symlink or leaves the root's filesystem, size
//! walks with a time budget, and free space.
//!
//! Everything here works relative to an open directory fd (the `*at` syscalls, via rustix), so a
//! path component swapped for a symlink between two steps cannot redirect us (CVE-2022-21658).

use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// `(st_dev, st_ino)`: what a path has to still name for us to trust it is the dir we locked.
pub(crate) type Identity = (u64, u64);

/// Open `name` in `dir` as a directory, refusing symlinks (`ELOOP`) and non-directories
/// (`ENOTDIR`).
pub(crate) fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `(dev, ino)` of an open file.
pub(crate) fn identity(fd: BorrowedFd<'_>) -> io::Result<Identity> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// `(dev, ino)` of the entry `name` in `dir`, without following a symlink.
pub(crate) fn identity_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Identity> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok((st.st_dev, st.st_ino))
}

/// Whether the entry `name` in `dir` is a symlink (not followed).
pub(crate) fn is_symlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
}

/// Names in `dir`, without `.` and `..`.
pub(crate) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<(OsString, FileType)>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((OsStr::from_bytes(name).to_owned(), entry.file_type()));
    }
    Ok(out)
}

/// Read at most `cap` bytes of the regular file `name` in `dir`; `Ok(None)` if it is larger.
/// Never follows a symlink and never blocks on a FIFO (`O_NONBLOCK`, then a type check).
pub(crate) fn read_capped(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    cap: u64,
) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if st.st_size as u64 > cap {
        return Ok(None);
    }
    let mut buf = Vec::with_capacity(st.st_size as usize);
    File::from(fd).take(cap + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= cap).then_some(buf))
}

/// Replace `name` in `dir` atomically with `bytes` (temp file + rename), so a reader sees the old
/// or the new contents, never half of either. The temp name is unique, so concurrent writers
/// (several jobs creating one new root's `CACHEDIR.TAG`) never rename each other's file away.
pub(crate) fn write_atomic(dir: BorrowedFd<'_>, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple());
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    let written = File::from(fd)
        .write_all(bytes)
        .and_then(|()| Ok(rustix::fs::renameat(dir, tmp.as_str(), dir, name)?));
    if written.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    written
}

/// Remove the tree `name` in `parent` without following symlinks and without entering another
/// filesystem. Iterative, so a deep tree cannot overflow the stack; fds are held only along the
/// current path. What cannot be removed (a mount point inside, an entry that fails) stays with
/// its ancestors; everything else goes, and the first error is returned.
pub(crate) fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr, dev: u64) -> io::Result<()> {
    struct Frame {
        dir: Dir,
        name: OsString,
    }
    let open = |at: BorrowedFd<'_>, name: &OsStr| -> io::Result<Dir> {
        let fd = open_dir_nofollow(at, name)?;
        let st = rustix::fs::fstat(&fd)?;
        if st.st_dev != dev {
            return Err(io::Error::other(format!(
                "{} is on another filesystem (a mount point); left in place",
                Path::new(name).display()
            )));
        }
        Ok(Dir::new(fd)?)
    };
    let mut first_error: Option<io::Error> = None;
    let mut stack = vec![Frame {
        dir: open(parent, name)?,
        name: name.to_owned(),
    }];
    while let Some(top) = stack.last_mut() {
        match top.dir.read() {
            Some(entry) => {
                let entry = entry?;
                let child = entry.file_name();
                if child == c"." || child == c".." {
                    continue;
                }
                let fd = top.dir.fd()?;
                let mut ty = entry.file_type();
                if ty == FileType::Unknown {
                    let st = rustix::fs::statat(fd, child, AtFlags::SYMLINK_NOFOLLOW)?;
                    ty = FileType::from_raw_mode(st.st_mode);
                }
                if ty == FileType::Directory {
                    let child = os(child).to_owned();
                    match open(fd, &child) {
                        Ok(dir) => stack.push(Frame { dir, name: child }),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                } else if let Err(e) = rustix::fs::unlinkat(fd, child, AtFlags::empty()) {
                    first_error.get_or_insert(e.into());
                }
            }
            None => {
                let done = stack.pop().expect("stack is non-empty");
                drop(done.dir);
                let at = match stack.last() {
                    Some(f) => f.dir.fd()?,
                    None => parent,
                };
                match rustix::fs::unlinkat(at, &done.name, AtFlags::REMOVEDIR) {
                    // Not empty because of what already failed: that error says why.
                    Err(Errno::NOTEMPTY) if first_error.is_some() => {}
                    Err(e) => {
                        first_error.get_or_insert(e.into());
                    }
                    Ok(()) => {}
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Bytes used by the tree `name` in `parent` (allocated blocks, not apparent sizes), or `None`
/// once `deadline` passes: sizes are for ordering and reports, never worth stalling a build.
pub(crate) fn tree_size(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    deadline: Option<Instant>,
) -> Option<u64> {
    let root = open_dir_nofollow(parent, name).ok()?;
    let dev = rustix::fs::fstat(&root).ok()?.st_dev;
    let mut total = 0u64;
    let mut stack = vec![root];
    while let Some(fd) = stack.pop() {
        if deadline.is_some_and(|d| Instant::now() > d) {
            return None;
        }
        let Ok(dir) = Dir::read_from(&fd) else {
            continue;
        };
        for entry in dir.flatten() {
            let child = entry.file_name();
            if child == c"." || child == c".." {
                continue;
            }
            let Ok(st) = rustix::fs::statat(&fd, child, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            total += st.st_blocks as u64 * 512;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory
                && st.st_dev == dev
                && let Ok(sub) = open_dir_nofollow(fd.as_fd(), os(child))
            {
                stack.push(sub);
            }
        }
    }
    Some(total)
}

fn os(name: &CStr) -> &OsStr {
    OsStr::from_bytes(name.to_bytes())
}

/// Free space for unprivileged users, and the filesystem's total size.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Space {
    pub(crate) free: u64,
    pub(crate) total: u64,
}

impl Space {
    pub(crate) fn of(path: &Path) -> io::Result<Space> {
        let st = fs4::statvfs(path)?;
        Ok(Space {
            free: st.available_space(),
            total: st.total_space(),
        })
    }

    /// Used share of the disk, in whole percent, for log lines.
    pub(crate) fn used_pct(&self) -> u64 {
        if self.total == 0 {
            return 0;
        }
        100 - (self.free as u128 * 100 / self.total as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn remove_tree_does_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), "keep").unwrap();
        let victim = t.path().join("victim");
        std::fs::create_dir_all(victim.join("a/b/c")).unwrap();
        std::fs::write(victim.join("a/b/c/file"), "x").unwrap();
        symlink(&outside, victim.join("a/link")).unwrap();
        let parent = File::open(t.path()).unwrap();
        let dev = identity(parent.as_fd()).unwrap().0;
        remove_tree(parent.as_fd(), OsStr::new("victim"), dev).unwrap();
        assert!(!victim.exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("precious")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn remove_tree_refuses_a_symlink_at_the_top() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        symlink(t.path().join("real"), t.path().join("link")).unwrap();
        let parent = File::open(t.path()).unwrap();
        let dev = identity(parent.as_fd()).unwrap().0;
        assert!(remove_tree(parent.as_fd(), OsStr::new("link"), dev).is_err());
        assert!(t.path().join("real").exists());
    }

    #[test]
    fn read_capped_rejects_large_and_special_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("big"), vec![b'x'; 100]).unwrap();
        std::fs::write(t.path().join("small"), "hi").unwrap();
        let d = File::open(t.path()).unwrap();
        assert_eq!(read_capped(d.as_fd(), OsStr::new("big"), 10).unwrap(), None);
        assert_eq!(
            read_capped(d.as_fd(), OsStr::new("small"), 10)
                .unwrap()
                .unwrap(),
            b"hi"
        );
        assert!(read_capped(d.as_fd(), OsStr::new("."), 10).is_err());
    }

    #[test]
    fn sizes_are_measured() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), vec![1u8; 10_000]).unwrap();
        let d = File::open(t.path()).unwrap();
        assert!(tree_size(d.as_fd(), OsStr::new("d"), None).unwrap() >= 10_000);
    }
}

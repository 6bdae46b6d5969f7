//! Opens, reads and writes relative to a directory fd, never following a symlink; a file's
//! identity (`(st_dev, st_ino)`), and the modes of entries every user of a root shares.

use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

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

pub(super) fn os(name: &CStr) -> &OsStr {
    OsStr::from_bytes(name.to_bytes())
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
    Staged::write(dir, name, bytes)?.commit()
}

/// A replacement for `name` in `dir`, written in full to a temp file but not yet in place:
/// whatever can fail for want of space has failed by now, and `commit` is a rename over an
/// existing name. Dropped uncommitted, the temp file is removed.
pub(crate) struct Staged<'a> {
    dir: BorrowedFd<'a>,
    name: &'a str,
    tmp: Option<String>,
}

impl<'a> Staged<'a> {
    pub(crate) fn write(dir: BorrowedFd<'a>, name: &'a str, bytes: &[u8]) -> io::Result<Self> {
        use std::io::Write;
        let tmp = format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple());
        let fd = rustix::fs::openat(
            dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let staged = Staged {
            dir,
            name,
            tmp: Some(tmp),
        };
        File::from(fd).write_all(bytes)?;
        Ok(staged)
    }

    /// Put it in place (a rename within `dir`).
    pub(crate) fn commit(mut self) -> io::Result<()> {
        let tmp = self.tmp.take().unwrap_or_default();
        let renamed = rustix::fs::renameat(self.dir, tmp.as_str(), self.dir, self.name);
        if renamed.is_err() {
            let _ = rustix::fs::unlinkat(self.dir, tmp.as_str(), AtFlags::empty());
        }
        Ok(renamed?)
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = rustix::fs::unlinkat(self.dir, tmp.as_str(), AtFlags::empty());
        }
    }
}

/// `base` plus the write bits `dir` grants its group and others (and its sticky bit, for a
/// `base` with an execute bit, i.e. a dir): in a shared root (mode 1777) every user's jobs and
/// guards must be able to use the entries any of them created.
pub(crate) fn shared_mode(dir: BorrowedFd<'_>, base: u32) -> Mode {
    let dir_mode = rustix::fs::fstat(dir).map_or(0, |st| st.st_mode);
    let mut mode = base | (dir_mode & 0o022);
    if base & 0o100 != 0 {
        mode |= dir_mode & 0o1000;
    }
    Mode::from_raw_mode(mode)
}

/// Create the file `name` in `dir` with `dir`'s sharing mode (`fchmod` after create: the umask).
/// An existing one is opened read-only (`flock` works on any open file, and another user's file
/// need not be writable for us).
pub(crate) fn create_shared_file(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    match rustix::fs::openat(
        dir,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => {
            rustix::fs::fchmod(&fd, shared_mode(dir, 0o644))?;
            Ok(File::from(fd))
        }
        Err(Errno::EXIST) => open_read_only(dir, name),
        Err(e) => Err(e.into()),
    }
}

/// Open the file `name` in `dir` read-only, never following a symlink.
pub(crate) fn open_read_only(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let ro = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        ro,
        Mode::empty(),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

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
}

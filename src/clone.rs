//! Copying a finished job dir's tree into a new one, for a seed (docs/protocol.md#seed): a
//! reflink clone (`FICLONE`) of each file where the filesystem can, else a real copy
//! (`copy_file_range`, then plain reads and writes).
//!
//! What cargo needs to find the copy fresh: every file's mtime to the nanosecond (neither
//! `FICLONE` nor `copy_file_range` copies times, and `cp -r` makes cargo rebuild with `Dirty
//! dep`), and hard links kept together (cargo hard-links its outputs into `target/<profile>/`).
//! The source is read with `O_NOATIME`, because pruning reads which units were used from
//! fingerprint access times: a copy that bumped them would make every unit of the source look used.
//! Each file's access time is carried over to the copy for the same reason.
//!
//! Everything is relative to open dir fds and never follows a symlink (symlinks are copied as
//! symlinks); dirs on another mount, FIFOs, sockets and devices are left out. The source is
//! untrusted input: a tree deeper than `MAX_DEPTH` is an error, not a stack overflow.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::fs::{self, MountId};

/// Deeper than any target dir cargo makes; a deeper tree is not one of ours.
const MAX_DEPTH: usize = 64;

/// A real copy asks `Limits::still_room` again after writing this much (and a large file is
/// copied in pieces of this size): other writers share the disk (another job's build), and a
/// reservation made before the copy cannot see them.
const RECHECK_BYTES: u64 = 32 << 20;

/// How the data got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// Every file with data was cloned (`FICLONE`): the copy shares the source's extents.
    Reflink,
    /// At least one file's data was copied.
    Copy,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Reflink => "reflink",
            Method::Copy => "copy",
        })
    }
}

/// What one clone did.
#[derive(Debug, Default, Clone)]
pub(crate) struct Copied {
    pub(crate) files: u64,
    /// Apparent bytes of every regular file copied (each inode once).
    pub(crate) bytes: u64,
    /// The part of `bytes` that was really written (not shared by a reflink).
    pub(crate) written: u64,
}

impl Copied {
    pub(crate) fn method(&self) -> Method {
        if self.written == 0 {
            Method::Reflink
        } else {
            Method::Copy
        }
    }
}

/// Bounds on one clone.
pub(crate) struct Limits<'a> {
    /// Stop once the tree's files add up to more than this (the seed size cap).
    pub(crate) max_bytes: u64,
    /// Stop once more than this would be really written (the room left on the disk).
    pub(crate) max_written: u64,
    /// The root's mount: dirs on any other mount are left out.
    pub(crate) mount: MountId,
    /// Entries to leave out, by their path relative to the source dir.
    pub(crate) skip: &'a dyn Fn(&Path) -> bool,
    /// Asked every `RECHECK_BYTES` really written: `false` stops the copy (free space fell to
    /// the line).
    pub(crate) still_room: &'a dyn Fn() -> bool,
}

/// Why a clone stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The tree is larger than `max_bytes`.
    TooBig(u64),
    /// Copying would write more than `max_written`.
    NoRoom(u64),
    /// Free space fell to the line during the copy (`still_room`), after this many bytes.
    BelowLine(u64),
    Io(PathBuf, io::Error),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::TooBig(max) => write!(f, "larger than {}", crate::quantity::Bytes(*max)),
            Stop::NoRoom(max) => write!(
                f,
                "copying it would write more than the {} the disk can spare",
                crate::quantity::Bytes(*max)
            ),
            Stop::BelowLine(written) => write!(
                f,
                "free space fell to the reclaim line after {} of copying",
                crate::quantity::Bytes(*written)
            ),
            Stop::Io(path, e) => write!(f, "failed to copy {}: {e}", path.display()),
        }
    }
}

/// The state of one clone: totals and the hard links seen so far.
struct Walk<'a> {
    limits: &'a Limits<'a>,
    dst_top: BorrowedFd<'a>,
    copied: Copied,
    /// Source `(dev, ino)` of a file with several links → its copy's path under `dst_top`.
    links: HashMap<(u64, u64), PathBuf>,
    /// Bytes really written since `still_room` was last asked.
    unchecked: u64,
}

/// Copy the entries of the dir `src` into the (empty) dir `dst`.
pub(crate) fn clone_tree(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    limits: &Limits<'_>,
) -> Result<Copied, Stop> {
    let mut walk = Walk {
        limits,
        dst_top: dst,
        copied: Copied::default(),
        links: HashMap::new(),
        unchecked: 0,
    };
    walk.dir(src, dst, Path::new(""), 0)?;
    Ok(walk.copied)
}

fn io_at(rel: &Path) -> impl Fn(io::Error) -> Stop + '_ {
    move |e| Stop::Io(rel.to_owned(), e)
}

fn errno_at(rel: &Path) -> impl Fn(Errno) -> Stop + '_ {
    move |e| Stop::Io(rel.to_owned(), e.into())
}

impl Walk<'_> {
    fn dir(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        rel: &Path,
        depth: usize,
    ) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Io(
                rel.to_owned(),
                io::Error::other(format!("deeper than {MAX_DEPTH} levels")),
            ));
        }
        for (name, _) in fs::list(src).map_err(io_at(rel))? {
            let path = rel.join(&name);
            if (self.limits.skip)(&path) {
                continue;
            }
            let st = rustix::fs::statat(src, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno_at(&path))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => self.subdir(src, dst, &name, &path, &st, depth)?,
                FileType::RegularFile => self.file(src, dst, &name, &path, &st)?,
                // At the top, a symlink would become the new job's `target/` or `build/`:
                // never copied (cargo makes none there), so the job builds in a real dir.
                FileType::Symlink if depth == 0 => {}
                FileType::Symlink => {
                    let target =
                        rustix::fs::readlinkat(src, &name, Vec::new()).map_err(errno_at(&path))?;
                    rustix::fs::symlinkat(target.as_c_str(), dst, &name)
                        .map_err(errno_at(&path))?;
                }
                // FIFOs, sockets and devices are nothing cargo needs (and a FIFO could hang us).
                _ => {}
            }
        }
        Ok(())
    }

    fn subdir(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsString,
        path: &Path,
        st: &Stat,
        depth: usize,
    ) -> Result<(), Stop> {
        let from = fs::open_dir_nofollow(src, name).map_err(io_at(path))?;
        // Another filesystem or a bind mount inside the source is not part of the job's tree.
        if fs::mount_of(from.as_fd()).map_err(io_at(path))? != self.limits.mount {
            return Ok(());
        }
        rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700)).map_err(errno_at(path))?;
        let to = fs::open_dir_nofollow(dst, name).map_err(io_at(path))?;
        self.dir(from.as_fd(), to.as_fd(), path, depth + 1)?;
        rustix::fs::fchmod(&to, Mode::from_raw_mode(st.st_mode & 0o7777))
            .map_err(errno_at(path))?;
        rustix::fs::futimens(&to, &times(st)).map_err(errno_at(path))?;
        Ok(())
    }

    fn file(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        st: &Stat,
    ) -> Result<(), Stop> {
        let ident = (st.st_dev, st.st_ino);
        if st.st_nlink > 1
            && let Some(first) = self.links.get(&ident)
        {
            // The same inode again: link to its copy, as cargo linked it.
            return rustix::fs::linkat(self.dst_top, first, dst, name, AtFlags::empty())
                .map_err(errno_at(path));
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if self.copied.bytes.saturating_add(size) > self.limits.max_bytes {
            return Err(Stop::TooBig(self.limits.max_bytes));
        }
        let from = open_noatime(src, name).map_err(errno_at(path))?;
        let to = rustix::fs::openat(
            dst,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(st.st_mode & 0o777),
        )
        .map_err(errno_at(path))?;
        if size > 0 && rustix::fs::ioctl_ficlone(&to, &from).is_err() {
            if self.copied.written.saturating_add(size) > self.limits.max_written {
                return Err(Stop::NoRoom(self.limits.max_written));
            }
            let mut done = 0;
            while done < size {
                let piece = (size - done).min(RECHECK_BYTES);
                copy_data(&from, &to, done, piece).map_err(io_at(path))?;
                done += piece;
                self.copied.written += piece;
                self.unchecked += piece;
                if self.unchecked >= RECHECK_BYTES {
                    self.unchecked = 0;
                    if !(self.limits.still_room)() {
                        return Err(Stop::BelowLine(self.copied.written));
                    }
                }
            }
        }
        rustix::fs::futimens(&to, &times(st)).map_err(errno_at(path))?;
        self.copied.files += 1;
        self.copied.bytes += size;
        if st.st_nlink > 1 {
            self.links.insert(ident, path.to_owned());
        }
        Ok(())
    }
}

/// Open a source file for reading without updating its access time. `O_NOATIME` is refused
/// (`EPERM`) on a file of another uid; then it is opened plainly (its atime is then the
/// filesystem's business, `relatime` mostly).
fn open_noatime(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty()),
        other => other,
    }
}

/// `size` bytes of `from` at `offset` into `to` at the same offset: `copy_file_range`
/// (in-kernel, and a clone on filesystems that can), else plain reads and writes (across
/// filesystems on old kernels, or where unsupported).
fn copy_data(from: &OwnedFd, to: &OwnedFd, offset: u64, size: u64) -> io::Result<()> {
    let mut left = size;
    let (mut off_in, mut off_out) = (offset, offset);
    while left > 0 {
        let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        match rustix::fs::copy_file_range(from, Some(&mut off_in), to, Some(&mut off_out), chunk) {
            Ok(0) => return Ok(()), // the file shrank meanwhile; the verification decides
            Ok(n) => left = left.saturating_sub(n as u64),
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) if left == size => {
                use std::io::{Seek, SeekFrom};
                let mut r = std::fs::File::from(from.try_clone()?);
                let mut w = std::fs::File::from(to.try_clone()?);
                r.seek(SeekFrom::Start(off_in))?;
                w.seek(SeekFrom::Start(off_out))?;
                io::copy(&mut io::Read::take(r, left), &mut w)?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The source's access and modification times, to the nanosecond.
fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

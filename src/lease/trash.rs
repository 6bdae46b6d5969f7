//! The root's `.trash/` (docs/protocol.md#claim-the-guard), opened once per sweep: the guard's
//! claim renames a dir into it whole, a sweep locks each entry while it deletes it, and
//! everything in it is deleted.

use std::ffi::{OsStr, OsString};
use std::fs::{File, TryLockError};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType};

use crate::fs;

use super::layout::TRASH;

/// `.trash/`, open (never followed) relative to the root's fd.
pub(crate) struct Trash {
    fd: OwnedFd,
    path: PathBuf,
    /// The root's mount: deletion never leaves it.
    mount: fs::MountId,
}

impl Trash {
    /// Open the `.trash/` of the root at `root_fd` (whose path is `root_path`).
    pub(super) fn open(
        root_fd: BorrowedFd<'_>,
        root_path: &Path,
        mount: fs::MountId,
    ) -> io::Result<Trash> {
        Ok(Trash {
            fd: fs::open_dir_nofollow(root_fd, OsStr::new(TRASH))?,
            path: root_path.join(TRASH),
            mount,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path of an entry, for messages.
    pub(crate) fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// Its entries and their types.
    pub(crate) fn entries(&self) -> io::Result<Vec<(OsString, FileType)>> {
        fs::list(self.fd())
    }

    /// Lock an entry (a dir, never followed) for deletion; `WouldBlock` while another sweep is
    /// deleting it.
    pub(crate) fn lock(&self, name: &OsStr) -> io::Result<File> {
        let entry = File::from(fs::open_dir_nofollow(self.fd(), name)?);
        match entry.try_lock() {
            Ok(()) => Ok(entry),
            Err(TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// What deleting an entry will free, as the deletion counts it (each inode once, shared
    /// extents not at all), if it can be measured.
    pub(crate) fn usage(&self, name: &OsStr) -> Option<u64> {
        fs::tree_usage(self.fd(), name, None).map(|u| u.exclusive)
    }

    /// Remove an entry that is not a dir (a symlink or file): the entry itself, never what it
    /// points to.
    pub(crate) fn unlink(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(self.fd(), name, AtFlags::empty())?)
    }

    /// Delete an entry; what it freed (counted, see [`fs::Removal`]) and the first error.
    pub(crate) fn delete(&self, name: &OsStr) -> fs::Removal {
        fs::remove_tree(self.fd(), name, self.mount)
    }
}

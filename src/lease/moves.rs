//! Renames under a held lock, checked afterwards: what acquire, adopt and claim share.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use anyhow::Result;
use rustix::fs::RenameFlags;
use rustix::io::Errno;

use crate::fs;

/// `renameat2(RENAME_NOREPLACE)`. Where the filesystem lacks it, a plain rename is still safe for
/// us: the destination would be a job dir, never empty (it holds `lease.json`), and rename(2)
/// refuses to replace a non-empty directory.
pub(super) fn rename_noreplace(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> Result<(), Errno> {
    match rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL | Errno::NOSYS) => rustix::fs::renameat(from_dir, from, to_dir, to),
        other => other,
    }
}

pub(super) fn is_exists(e: Errno) -> bool {
    e == Errno::EXIST || e == Errno::NOTEMPTY
}

/// Race closed: we check and lock a dir through its fd, but `rename` moves whatever the *name*
/// points at when it runs. A third party who can write the root may swap the names in between
/// (`renameat2(RENAME_EXCHANGE)` of the checked dir with a live job's dir), so after each rename
/// the inode now under `to` must be the one we hold. If it is not, the wrong dir was moved: put it
/// back under `from` (never replacing) and report why, so nobody deletes or adopts it.
pub(super) fn verify_moved(
    held: &File,
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> Result<(), String> {
    let ours = fs::identity(held.as_fd()).map_err(|e| format!("cannot stat the held dir ({e})"))?;
    match fs::identity_at(to_dir, to) {
        Ok(now) if now == ours => return Ok(()),
        Ok(_) => {}
        // Gone already: nothing of anyone's is under the new name for us to misuse.
        Err(e) => return Err(format!("moved dir vanished at once ({e})")),
    }
    match rename_noreplace(to_dir, to, from_dir, from) {
        Ok(()) => Err(
            "the name was swapped for another dir between check and rename; put that dir back"
                .into(),
        ),
        Err(e) => Err(format!(
            "the name was swapped for another dir between check and rename; could not put it \
             back ({}), it is left under {}",
            io::Error::from(e),
            to.to_string_lossy()
        )),
    }
}

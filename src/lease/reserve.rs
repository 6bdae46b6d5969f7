//! Room for seeds copied at the same time (docs/protocol.md#seed): each seeder reserves the bytes
//! its copy may write, in a file of its own under the root's `.reservations/` dir, locked for as
//! long as it copies and removed when done. Under the root's `.reservations.lock` a seeder sums
//! the reservations whose lock is held, and takes at most what is left: the free space above the
//! line, less the others' reservations. A file whose lock is free is a crashed seeder's: ignored,
//! and removed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::fs;

use super::root::Root;

/// The dir of reservation files, and the lock taken while reading or adding one.
const DIR: &str = ".reservations";
const LOCK: &str = ".reservations.lock";

/// One seeder's reservation: held (locked) until dropped, then removed.
pub(super) struct Reservation {
    dir: OwnedFd,
    name: OsString,
    /// Its lock: held exclusively while the reservation stands.
    _file: File,
    /// The bytes this seeder may write.
    pub(super) bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = rustix::fs::unlinkat(&self.dir, &self.name, AtFlags::empty());
    }
}

/// Reserve up to `want` bytes of `room` (the free space above the line, read under the lock by
/// `room`) less what the other seeders in flight reserved.
pub(super) fn reserve(root: &Root, room: &dyn Fn() -> u64, want: u64) -> io::Result<Reservation> {
    match rustix::fs::mkdirat(root.fd(), DIR, fs::shared_mode(root.fd(), 0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let dir = fs::open_dir_nofollow(root.fd(), OsStr::new(DIR))?;
    let lock = root.open_lock_file(LOCK)?;
    // Held for a listing and a file write: never long.
    lock.lock()?;
    let others = in_flight(dir.as_fd());
    let bytes = want.min(room().saturating_sub(others));
    let name = OsString::from(uuid::Uuid::new_v4().simple().to_string());
    let fd = rustix::fs::openat(
        &dir,
        &name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    let mut file = File::from(fd);
    // Locked before the reservations lock is dropped: no reader can take it for a crashed one.
    rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)?;
    let reservation = Reservation {
        dir,
        name,
        _file: file.try_clone()?,
        bytes,
    };
    file.write_all(bytes.to_string().as_bytes())?;
    Ok(reservation)
}

/// The bytes reserved by seeders still copying; a reservation whose lock is free (its seeder
/// died) is removed. A file that cannot be read counts nothing (it is no seeder of ours).
fn in_flight(dir: std::os::fd::BorrowedFd<'_>) -> u64 {
    let Ok(names) = fs::list(dir) else {
        return 0;
    };
    let mut total: u64 = 0;
    for (name, _) in names {
        // Ours are regular files named by a uuid; anything else is not a seeder's, and is left
        // alone (opened without blocking, so a FIFO cannot hang us, then checked).
        let ours = name.len() == 32 && name.as_encoded_bytes().iter().all(u8::is_ascii_hexdigit);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let Ok(fd) = rustix::fs::openat(dir, &name, flags, Mode::empty()) else {
            continue;
        };
        let regular = rustix::fs::fstat(&fd)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
        if !ours || !regular {
            continue;
        }
        let file = File::from(fd);
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
            Err(Errno::WOULDBLOCK) => {
                let mut text = String::new();
                if (&file).take(32).read_to_string(&mut text).is_ok() {
                    total = total.saturating_add(text.trim().parse().unwrap_or(0));
                }
            }
            Ok(()) => {
                let _ = rustix::fs::unlinkat(dir, &name, AtFlags::empty());
            }
            Err(_) => {}
        }
    }
    total
}

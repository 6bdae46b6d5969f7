//! Whether the kernel lock can be trusted on a directory's filesystem (the root's, in practice).
//!
//! On NFS, CIFS/SMB, FUSE (which includes Docker Desktop's virtiofs) and 9p a `flock` can
//! "succeed" while another client holds it. Cargo treats "locking not supported" as "acquired";
//! for a deleter that is the wrong default. Where locks are untrusted the guard falls back to
//! heartbeat-only expiry with a safety margin (`lease::classify`).
//!
//! `wait`: waiting politely for a lock another process holds (try, say who, poll, deadline).

use std::ffi::OsStr;
use std::fs::{File, TryLockError};
use std::os::fd::BorrowedFd;

use rustix::fs::{Mode, OFlags};

use crate::fs;

mod wait;

pub(crate) use wait::{Patience, Waited, try_exclusive, try_shared, wait};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockTrust {
    Trusted,
    /// Why not: the filesystem type, or the self-test that failed.
    Untrusted(&'static str),
}

impl std::fmt::Display for LockTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockTrust::Trusted => write!(f, "trusted"),
            LockTrust::Untrusted(why) => write!(f, "untrusted ({why})"),
        }
    }
}

/// Judge the filesystem of `dir` (the root) by its type, then confirm with a self-test in `dir`:
/// two opens of one scratch file; the second `try_lock` must fail while the first holds the lock.
/// `forced` (`CARGO_GUARDED_LOCKS=trusted|untrusted`) overrides both, for tests and for admins
/// who know better.
pub(crate) fn assess(dir: BorrowedFd<'_>, forced: Option<bool>) -> LockTrust {
    match forced {
        Some(true) => return LockTrust::Trusted,
        Some(false) => return LockTrust::Untrusted("forced by CARGO_GUARDED_LOCKS"),
        None => {}
    }
    if let Ok(st) = rustix::fs::fstatfs(dir) {
        // `f_type`'s width differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let ty = st.f_type as i64;
        if let Some(why) = crate::fs::fs_kind(ty).and_then(|k| k.locks_may_lie) {
            return LockTrust::Untrusted(why);
        }
    }
    if self_test(dir) {
        LockTrust::Trusted
    } else {
        LockTrust::Untrusted("lock self-test failed")
    }
}

/// The self-test never blocks: anyone who can read the root can open `.locktest` and hold a
/// lock on it, and a blocking wait would let them freeze every job and guard. If the shared file
/// is busy (another guard testing right now, or someone holding it on purpose), the test runs on
/// a scratch file unique to this process, removed afterwards. If neither can be opened (a user
/// who may read but not write the root, e.g. for `status`), the filesystem type decided already
/// (`assess`), and the test counts as passed: on a local filesystem flock is kernel-enforced.
fn self_test(dir: BorrowedFd<'_>) -> bool {
    let shared = OsStr::new(".locktest");
    if let Some(a) = open_shared(dir, shared) {
        match a.try_lock() {
            Ok(()) => {
                let refused = second_open_refused(dir, shared);
                let _ = a.unlock();
                return refused;
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(_)) => return false,
        }
    }
    let scratch = format!(".locktest-{}", uuid::Uuid::new_v4().simple());
    let Ok(fd) = rustix::fs::openat(
        dir,
        scratch.as_str(),
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) else {
        return true;
    };
    let a = File::from(fd);
    let refused = a.lock().is_ok() && second_open_refused(dir, OsStr::new(&scratch));
    let _ = rustix::fs::unlinkat(dir, scratch.as_str(), rustix::fs::AtFlags::empty());
    refused
}

/// Open `.locktest` read-only (flock works on any open file, and another user's file may not be
/// writable for us), creating it if missing with the dir's sharing mode.
fn open_shared(dir: BorrowedFd<'_>, name: &OsStr) -> Option<File> {
    match fs::open_read_only(dir, name) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_shared_file(dir, name).ok()
        }
        Err(_) => None,
    }
}

/// A second, independent open of `name` must not get the lock the first one holds.
fn second_open_refused(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    let Ok(file) = fs::open_read_only(dir, name) else {
        return false;
    };
    matches!(file.try_lock(), Err(TryLockError::WouldBlock))
}

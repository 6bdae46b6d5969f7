//! Whether the kernel lock can be trusted on the root's filesystem.
//!
//! On NFS, CIFS/SMB, FUSE (which includes Docker Desktop's virtiofs) and 9p a `flock` can
//! "succeed" while another client holds it. Cargo treats "locking not supported" as "acquired";
//! for a deleter that is the wrong default. Where locks are untrusted the guard falls back to
//! heartbeat-only expiry with a safety margin (`lease::classify`).

use std::ffi::OsStr;
use std::fs::{File, TryLockError};

use rustix::fs::{Mode, OFlags};

use crate::lease::Root;

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

/// `statfs` magic numbers of filesystems whose locks may lie (linux/magic.h).
const UNTRUSTED: &[(i64, &str)] = &[
    (0x6969, "nfs"),
    (0x517B, "smb"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x6573_5546, "fuse (includes virtiofs)"),
    (0x0102_1997, "9p"),
    (0x00C3_6400, "ceph"),
    (0x6B41_4653, "afs"),
];

/// Judge the root's filesystem by its type, then confirm with a self-test: two opens of one
/// scratch file; the second `try_lock` must fail while the first holds the lock.
/// `forced` (`CARGO_GUARDED_LOCKS=trusted|untrusted`) overrides both, for tests and for admins
/// who know better.
pub(crate) fn assess(root: &Root, forced: Option<bool>) -> LockTrust {
    match forced {
        Some(true) => return LockTrust::Trusted,
        Some(false) => return LockTrust::Untrusted("forced by CARGO_GUARDED_LOCKS"),
        None => {}
    }
    if let Ok(st) = rustix::fs::fstatfs(root.fd()) {
        // `f_type`'s width differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let ty = st.f_type as i64;
        if let Some((_, name)) = UNTRUSTED.iter().find(|(magic, _)| *magic == ty) {
            return LockTrust::Untrusted(name);
        }
    }
    if self_test(root) {
        LockTrust::Trusted
    } else {
        LockTrust::Untrusted("lock self-test failed")
    }
}

fn self_test(root: &Root) -> bool {
    let name = OsStr::new(".locktest");
    let open = || {
        rustix::fs::openat(
            root.fd(),
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(File::from)
    };
    let (Ok(a), Ok(b)) = (open(), open()) else {
        return false;
    };
    // Other guards run this test at the same time: wait for our turn on the first handle.
    if a.lock().is_err() {
        return false;
    }
    let refused = matches!(b.try_lock(), Err(TryLockError::WouldBlock));
    let _ = a.unlock();
    refused
}

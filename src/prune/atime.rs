//! Access times as the signal of use: the self-test that reads are recorded, the check that a
//! unit's fingerprint was read since the last reset, and the reset itself.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::SystemTime;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use super::layout::{list, open_sub};
use crate::fs;

/// The scratch file of the atime self-test, inside `target/`.
const PROBE: &str = ".cargo-guarded-atime-probe";
/// `ST_NOATIME` in `statvfs`'s `f_flag`.
const ST_NOATIME: u64 = 1024;

/// `Ok` when a read of a file under `target` is recorded in its atime, else why not.
pub(super) fn atime_observable(target: BorrowedFd<'_>) -> Result<(), String> {
    if let Ok(st) = rustix::fs::fstatvfs(target)
        && st.f_flag.bits() & ST_NOATIME != 0
    {
        return Err("mounted noatime".into());
    }
    let probe = || -> io::Result<bool> {
        let _ = rustix::fs::unlinkat(target, PROBE, AtFlags::empty());
        fs::write_atomic(target, PROBE, b"x")?;
        // Both times in the past, atime = mtime: exactly the state a reset leaves, and far
        // enough back that a coarse clock still records the read as later.
        let past = Timespec {
            tv_sec: (now_ns() / 1_000_000_000) as i64 - 3600,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            target,
            PROBE,
            &Timestamps {
                last_access: past,
                last_modification: past,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        let fd = rustix::fs::openat(
            target,
            PROBE,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut buf = [0u8; 1];
        std::fs::File::from(fd).read_exact(&mut buf)?;
        let st = rustix::fs::statat(target, PROBE, AtFlags::SYMLINK_NOFOLLOW)?;
        let _ = rustix::fs::unlinkat(target, PROBE, AtFlags::empty());
        Ok(st.st_atime > past.tv_sec)
    };
    match probe() {
        Ok(true) => Ok(()),
        Ok(false) => Err("a read of a test file left its access time unchanged".into()),
        Err(e) => Err(format!("the access-time self-test failed: {e}")),
    }
}

/// Whether any file of the unit's fingerprint dir was read or written since `reset`. The reset
/// left atime == mtime exactly, so any other atime is a read (even one that moved it backwards,
/// as on a file whose mtime a skewed server clock put in the future).
pub(super) fn fingerprint_read(fp: Option<BorrowedFd<'_>>, unit: &str, reset: u64) -> bool {
    let Some(dir) = fp.and_then(|fp| open_sub(fp, unit)) else {
        return true;
    };
    list(dir.as_fd()).iter().any(|(name, ty)| {
        *ty == FileType::RegularFile
            && stat_ns(dir.as_fd(), name)
                .is_some_and(|(atime, mtime)| atime != mtime || mtime >= reset)
    })
}

pub(super) fn reset_unit(fp: BorrowedFd<'_>, unit: &str) {
    let Some(dir) = open_sub(fp, unit) else {
        return;
    };
    for (name, ty) in list(dir.as_fd()) {
        if ty != FileType::RegularFile {
            continue;
        }
        let Ok(st) = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let mtime = Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        };
        let omit = Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        };
        let _ = rustix::fs::utimensat(
            &dir,
            &name,
            &Timestamps {
                last_access: mtime,
                last_modification: omit,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        );
    }
}

/// `(atime, mtime)` in ns since the epoch, not following symlinks.
pub(super) fn stat_ns(dir: BorrowedFd<'_>, name: impl rustix::path::Arg) -> Option<(u64, u64)> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let ns = |s: i64, n: u64| (s.max(0) as u64).saturating_mul(1_000_000_000) + n;
    Some((
        ns(st.st_atime, st.st_atime_nsec as u64),
        ns(st.st_mtime, st.st_mtime_nsec as u64),
    ))
}

pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

//! The job lock (docs/protocol.md#linger-ends-with-the-job): a lock file of the job's own,
//! `job.lock` in its dir, held shared by a process that lives as long as the CI job (`cargo
//! guarded hold`, which the runner's end-of-job cleanup kills). A released lease records whether
//! such a holder was alive at release (`job_lock`); once it is gone, the job is over, no later
//! step of it can come, and its linger ends at once.
//!
//! Not the dir's lock: the job's own steps take that one exclusively, and a job-lifetime holder
//! of it would make them wait. Sound because it only ever *shortens* a linger, which protects
//! nothing but warmth: a live step is protected by the dir's lock, never by the linger. A holder
//! that dies early (killed by hand) costs the job's later steps their warm dir, nothing more.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::FlockOperation;
use rustix::io::Errno;

use crate::fs;
use crate::locks::LockTrust;

use super::clock::Now;
use super::expiry::{Expiry, classify};
use super::layout::JOB_LOCK;
use super::record::{Lease, State, read, write};

/// Take the job lock of the job dir `dir` shared, for as long as the returned file lives.
pub(crate) fn hold(dir: BorrowedFd<'_>) -> std::io::Result<File> {
    let file = fs::create_shared_file(dir, OsStr::new(JOB_LOCK))?;
    rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared)?;
    Ok(file)
}

/// A holder that starts after a step released (the action starts it after the job's first step,
/// once the dir exists): record it in that released lease, under the dir's lock (taken only if
/// free, as every reader takes it), so the step's linger also ends with the holder. `false` if
/// the dir is held (a step runs: its own release will record the holder) or not released.
pub(crate) fn record_in_released(dir: &File) -> bool {
    let Ok(taken) = super::probe::take(dir.as_fd()) else {
        return false;
    };
    let recorded = match read(dir.as_fd()) {
        Ok(mut lease) if lease.state == State::Released => {
            lease.job_lock = Some(true);
            write(dir.as_fd(), &lease).is_ok()
        }
        _ => false,
    };
    drop(taken);
    let _ = rustix::fs::flock(dir, FlockOperation::Unlock);
    recorded
}

/// Whether a job-lifetime holder holds `dir`'s job lock now (a try-lock that would block).
/// `false` when there is no job lock, or it is free (taken and released at once), or it cannot be
/// tried.
pub(super) fn held_by_job(dir: BorrowedFd<'_>) -> bool {
    let Ok(file) = fs::open_read_only(dir, OsStr::new(JOB_LOCK)) else {
        return false;
    };
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => false,
        Err(Errno::WOULDBLOCK) => true,
        Err(_) => false,
    }
}

/// `classify`, plus the job lock: a lingering lease whose job had a job-lifetime holder at
/// release, and whose holder is gone now, is expired (the job is over). Only where locks are
/// trusted: elsewhere a free lock proves nothing, and the linger runs its course.
pub(crate) fn expiry(dir: BorrowedFd<'_>, lease: &Lease, now: &Now, trust: LockTrust) -> Expiry {
    let expiry = classify(lease, now, trust);
    if matches!(expiry, Expiry::Lingering { .. })
        && lease.state == State::Released
        && lease.job_lock == Some(true)
        && trust == LockTrust::Trusted
        && job_lock_free(dir)
    {
        return Expiry::Expired { since: now.wall };
    }
    expiry
}

/// The job lock exists and nobody holds it (an exclusive try-lock succeeds; released at once).
fn job_lock_free(dir: BorrowedFd<'_>) -> bool {
    let Ok(file) = fs::open_read_only(dir, OsStr::new(JOB_LOCK)) else {
        return false;
    };
    rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok()
}

//! Step 4, the guard's claim (docs/protocol.md#claim-the-guard): decide under the dir's lock,
//! move it into `.trash/` still holding it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime};

use anyhow::Result;

use crate::locks::LockTrust;

use super::clock::Now;
use super::expiry::Expiry;
use super::joblock::expiry;
use super::moves::{rename_noreplace, verify_moved};
use super::probe::{Busy, Hold, take};
use super::protected::Protected;
use super::record::{Lease, read};
use super::root::Root;
use super::seed::no_seed_in_flight;
use super::step::step;
use super::trash::Trash;

/// What the guard may do with one job dir.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Moved into `.trash/` under this name; the caller deletes it.
    Trashed { trash_name: OsString, lease: Lease },
    /// Dry run: this dir would have been moved.
    Would { lease: Lease },
    /// Not reclaimable; the reason says why.
    Kept {
        lease: Option<Lease>,
        reason: Protected,
    },
}

/// Claim an expired dir for deletion: decide while holding its lock, and move it into `.trash/`
/// while still holding it, so no job can resume or adopt it between the decision and the move.
/// `lingering_too` (`gc --workspace`): a released dir still inside its linger is claimed as
/// well — under its lock a released lease has no process left (docs/protocol.md#claim-the-guard).
/// `trash`: where it goes; `None` in a dry run, which only decides.
pub(crate) fn claim(
    root: &Root,
    trash: Option<&Trash>,
    name: &OsStr,
    trust: LockTrust,
    lingering_too: bool,
) -> Claim {
    let kept = |lease: Option<Lease>, reason: Protected| Claim::Kept { lease, reason };
    let dir = match root.open_job(name) {
        Ok(d) => d,
        Err(skip) => return kept(None, Protected::Skipped(skip)),
    };
    let lease = match read(dir.as_fd()) {
        Ok(l) => l,
        Err(why) => return kept(None, Protected::Unknown(why)),
    };
    // Held until the rename into `.trash/` is done (both locks: docs/protocol.md#what-a-lock-means).
    let _taken = match take(dir.as_fd()) {
        Ok(taken) => taken,
        Err(Busy::Live(Hold::Dir)) => {
            let holder = lease.holder();
            return kept(Some(lease), Protected::StillLocked { holder });
        }
        // Race closed: wrapper and reaper SIGKILLed together while the command's processes
        // still write into the dir; they hold the tree lock they inherited.
        Err(Busy::Live(Hold::Tree)) => {
            let job_id = lease.job_id.clone();
            return kept(Some(lease), Protected::TreeAlive { job_id });
        }
        Err(Busy::Unknown(e)) => return kept(Some(lease), Protected::Unknown(e)),
    };
    step("guard-locked");
    // Race closed: the name now points elsewhere (renamed, or swapped for a symlink).
    if !root.still_names(name, &dir) {
        return kept(Some(lease), Protected::Changed);
    }
    // Race closed: re-read under the lock; the owner may have resumed it since the scan.
    let lease = match read(dir.as_fd()) {
        Ok(l) => l,
        Err(why) => return kept(None, Protected::Unknown(why)),
    };
    let expiry = expiry(dir.as_fd(), &lease, &Now::read(), trust);
    // Race closed: a later step of the job resumed it since the scan (its lease is active again
    // and, once its lock is gone, it is no longer lingering): kept like any live dir.
    let lingering = lingering_too && matches!(expiry, Expiry::Lingering { .. });
    if let (false, Err(reason)) = (lingering, Protected::unless_expired(&expiry, &lease)) {
        return kept(Some(lease), reason);
    }
    let Some(trash) = trash else {
        return Claim::Would { lease };
    };
    // Race closed: a new job copies a seed from this dir without its lock (docs/protocol.md#seed);
    // deleting it mid-copy would waste that copy. Held until the dir is in `.trash/`.
    let Some(_no_seed) = no_seed_in_flight(&dir) else {
        return kept(Some(lease), Protected::Seeding);
    };
    step("guard-rename");
    let trash_name = match move_to_trash(root, trash, name, &dir) {
        Ok(trash_name) => trash_name,
        Err(e) => {
            return kept(Some(lease), Protected::NotMoved(e));
        }
    };
    drop(dir);
    step("guard-trashed");
    Claim::Trashed { trash_name, lease }
}

/// A `.new-*` dir left by a job that crashed while creating its dir. Its creator locks it right
/// after `mkdir`, so an unlocked one older than `min_age` is abandoned: its name in `.trash/`
/// once moved there, `Ok(None)` when it is not (yet) abandoned, and why it could not be moved
/// (it stays where it is) as the error, for the sweep's report to say.
pub(crate) fn claim_unfinished(
    root: &Root,
    trash: &Trash,
    name: &OsStr,
    min_age: Duration,
) -> Result<Option<OsString>, String> {
    let Ok(dir) = root.open_job(name) else {
        return Ok(None);
    };
    if !old_enough(&dir, min_age) {
        return Ok(None);
    }
    // Its creator made the tree lock right after locking the dir: both, as for any job dir.
    let Ok(_taken) = take(dir.as_fd()) else {
        return Ok(None);
    };
    if !root.still_names(name, &dir) {
        return Ok(None);
    }
    move_to_trash(root, trash, name, &dir)
        .map(Some)
        .map_err(|why| format!("kept {}: {why}", root.join(name).display()))
}

/// Whether the `.new-*` dir `dir` last changed at least `min_age` ago (its inode's ctime): one
/// younger may still be getting its creator's lock.
pub(crate) fn old_enough(dir: &File, min_age: Duration) -> bool {
    let Ok(st) = rustix::fs::fstat(dir) else {
        return false;
    };
    let changed = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_ctime.max(0) as u64);
    SystemTime::now()
        .duration_since(changed)
        .unwrap_or_default()
        >= min_age
}

/// Rename `name` into `.trash/` under a unique name (the caller holds its lock on `dir`),
/// returning that name. Same filesystem, so the rename is atomic: the dir is whole under one
/// name or the other. Checked afterwards (`verify_moved`): only the locked inode may end up in
/// `.trash/`, where everything is deleted.
fn move_to_trash(root: &Root, trash: &Trash, name: &OsStr, dir: &File) -> Result<OsString, String> {
    let trash_name = OsString::from(format!(
        "{}.{}",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    rename_noreplace(root.fd(), name, trash.fd(), &trash_name)
        .map_err(|e| io::Error::from(e).to_string())?;
    step("trash-renamed");
    verify_moved(dir, root.fd(), name, trash.fd(), &trash_name)?;
    Ok(trash_name)
}

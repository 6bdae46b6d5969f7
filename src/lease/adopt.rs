//! Adoption (docs/protocol.md#adopt): a job with no dir takes an expired one of its workspace,
//! and ends the released leases of earlier jobs from its own runner.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rustix::io::Errno;

use crate::term;
use crate::workspace::WorkspaceKey;

use super::acquire::{Request, check_owned};
use super::held::{Held, held};
use super::moves::{is_exists, rename_noreplace, verify_moved};
use super::record::{Lease, State, Verdict, classify, read, write};
use super::root::Root;
use super::step;

pub(super) struct Candidate {
    name: OsString,
    pub(super) lease: Lease,
}

/// One pass over the root for a job that needs a dir:
///
/// - A runner runs one job at a time, so a *released* lease of a different job from this same
///   runner (same runner name and boot id) has ended: no later step of it can come. Mark it
///   expired now instead of letting it linger (under its lock, re-checked, so a job that just
///   resumed it is not touched).
/// - Collect expired dirs of this workspace and toolchain, most recently used first.
pub(super) fn scan_for_new_job(
    root: &Root,
    req: &Request<'_>,
    key: &WorkspaceKey,
) -> Vec<Candidate> {
    let Ok(names) = root.job_names() else {
        return Vec::new();
    };
    let now = SystemTime::now();
    let mut out = Vec::new();
    for (name, _) in names {
        let Ok(dir) = root.open_job(&name) else {
            continue;
        };
        let Ok(mut lease) = read(dir.as_fd()) else {
            continue;
        };
        let same_runner = req.owner.runner.is_some()
            && lease.runner == req.owner.runner
            && lease.boot_id == req.owner.boot_id
            && lease.job_id != req.job_id;
        if same_runner
            && lease.state == State::Released
            && lease.expires_at > now
            && dir.try_lock().is_ok()
            && root.still_names(&name, &dir)
            && let Ok(mut fresh) = read(dir.as_fd())
            && fresh.state == State::Released
        {
            fresh.expires_at = now;
            if write(dir.as_fd(), &fresh).is_ok() {
                term::verbose(
                    "Ended",
                    format_args!("released lease of job `{}` from this runner", fresh.job_id),
                );
                lease = fresh;
            }
        }
        let owned = check_owned(&dir);
        drop(dir);
        if lease.same_key(key)
            && matches!(classify(&lease, now, req.trust), Verdict::Expired { .. })
        {
            // Another user's dir is not ours to take (nor could we write it): start fresh.
            match owned {
                Ok(()) => out.push(Candidate { name, lease }),
                Err(why) => term::verbose(
                    "Note",
                    format_args!("not adopting {}: {why}", root.join(&name).display()),
                ),
            }
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.lease.renewed_at));
    out
}

pub(super) enum AdoptOutcome {
    Adopted(Box<Held>),
    /// Someone else (a guard, another adopter, a resuming step) got there first.
    Lost,
    /// Our own job's name appeared meanwhile.
    NameTaken,
}

/// Adopt: take an expired dir of the same workspace for this job. The guard and other adopters
/// race us only through the dir's lock, so exactly one of us wins.
pub(super) fn adopt(
    root: &Root,
    req: &Request<'_>,
    key: &WorkspaceKey,
    cand: &Candidate,
) -> Result<AdoptOutcome> {
    let Ok(dir) = root.open_job(&cand.name) else {
        return Ok(AdoptOutcome::Lost);
    };
    // A live owner, a guard mid-claim or another adopter holds it: not ours.
    if dir.try_lock().is_err() {
        return Ok(AdoptOutcome::Lost);
    }
    // Race closed: renamed into `.trash/` or to another adopter's name between open and lock.
    if !root.still_names(&cand.name, &dir) {
        return Ok(AdoptOutcome::Lost);
    }
    // Race closed: swapped for another user's dir, lease or `target` since the scan.
    if let Err(why) = check_owned(&dir) {
        term::verbose(
            "Note",
            format_args!("not adopting {}: {why}", root.join(&cand.name).display()),
        );
        return Ok(AdoptOutcome::Lost);
    }
    // Race closed: the dir's own job resumed it (renewing the lease) after our scan.
    match read(dir.as_fd()) {
        Ok(l)
            if l.same_key(key)
                && matches!(
                    classify(&l, SystemTime::now(), req.trust),
                    Verdict::Expired { .. }
                ) => {}
        _ => return Ok(AdoptOutcome::Lost),
    }
    step("adopt-locked");
    // Rename under the lock, never replacing: if our name exists, a sibling step created it.
    match rename_noreplace(root.fd(), &cand.name, root.fd(), OsStr::new(req.name)) {
        Ok(()) => {}
        Err(e) if is_exists(e) => return Ok(AdoptOutcome::NameTaken),
        Err(Errno::NOENT) => return Ok(AdoptOutcome::Lost),
        Err(e) => {
            return Err(io::Error::from(e)).with_context(|| {
                format!(
                    "failed to rename {} to {}",
                    root.join(&cand.name).display(),
                    root.join(req.name).display()
                )
            });
        }
    }
    if let Err(why) = verify_moved(&dir, root.fd(), &cand.name, root.fd(), OsStr::new(req.name)) {
        term::warn(format_args!(
            "did not adopt {}: {why}",
            root.join(&cand.name).display()
        ));
        return Ok(AdoptOutcome::Lost);
    }
    // A crash here leaves the dir under our name with the old (expired) lease: a later step of
    // this job takes it over, or a guard reclaims it. Either is safe.
    step("adopt-renamed");
    let mut lease = req.lease(Some(key), SystemTime::now());
    // The size stays for the guard's ordering, but as unmeasured: this job changes the dir, so
    // its release measures again (a measurement taken when an earlier job released would
    // otherwise be carried through job after job, see SIZE_REFRESH).
    lease.size_bytes = cand.lease.size_bytes;
    lease.size_measured_at = None;
    write(dir.as_fd(), &lease)
        .with_context(|| format!("failed to write lease in {}", root.join(req.name).display()))?;
    let held = held(root, OsStr::new(req.name), dir, lease)?;
    Ok(AdoptOutcome::Adopted(Box::new(held)))
}

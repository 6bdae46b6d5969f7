//! Adoption (docs/protocol.md#adopt): a job with no dir takes an expired one of its workspace,
//! and ends the released leases of earlier jobs from its own runner.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rustix::io::Errno;

use crate::workspace::WorkspaceKey;

use super::clock::Now;
use super::expiry::Expiry;
use super::held::{Held, held};
use super::joblock::expiry;
use super::moves::{is_exists, rename_noreplace, verify_moved};
use super::notice::Notice;
use super::owned::check_owned;
use super::probe::{TREE_LOCK, take};
use super::record::{Lease, State, read, stage, write};
use super::request::{Origin, Request};
use super::root::Root;
use super::seed::no_seed_in_flight;
use super::step::step;

pub(super) struct Candidate {
    pub(super) name: OsString,
    pub(super) lease: Lease,
}

/// What a new job's scan found of its workspace, most recently used first.
#[derive(Default)]
pub(super) struct Scan {
    /// Expired dirs: adoptable.
    pub(super) expired: Vec<Candidate>,
    /// Finished dirs (released, lingering or expired): seed sources.
    pub(super) finished: Vec<Candidate>,
    /// Other jobs of the workspace running now (their lease live): whether the freshest
    /// finished dir is kept as the seed source (docs/protocol.md#seed).
    pub(super) live: usize,
}

/// One pass over the root for a job that needs a dir:
///
/// - A runner runs one job at a time, so a *released* lease of a different job from this same
///   runner (same runner name and boot id) has ended: no later step of it can come. Mark it
///   expired now instead of letting it linger (under its lock, re-checked, so a job that just
///   resumed it is not touched).
/// - Collect expired dirs of this workspace and toolchain (to adopt), and finished ones (to seed
///   from), most recently used first.
pub(super) fn scan_for_new_job(root: &Root, req: &Request<'_>, key: &WorkspaceKey) -> Scan {
    let Ok(names) = root.job_names() else {
        return Scan::default();
    };
    if req.warm_from_any && (req.adopt || req.seed.is_some()) {
        // Once per job: only a job without a dir scans.
        req.notices.notice(Notice::WarmFromAny);
    }
    let now = Now::read();
    let mut out = Scan::default();
    for (name, _) in names {
        let Ok(dir) = root.open_job(&name) else {
            continue;
        };
        let Ok(lease) = read(dir.as_fd()) else {
            continue;
        };
        let lease = end_if_same_runner(root, req, &now, &name, &dir, lease);
        let owned = check_owned(&dir);
        if !lease.same_key(key) {
            continue;
        }
        let expiry = expiry(dir.as_fd(), &lease, &now, req.trust);
        let expired = matches!(expiry, Expiry::Expired { .. });
        if matches!(expiry, Expiry::Live { .. }) && name != req.name {
            out.live += 1;
        }
        let finished = expired || matches!(expiry, Expiry::Lingering { .. });
        // Another user's dir is not ours to take, nor to copy (its files would run in our
        // build): start fresh.
        if let Err(why) = owned {
            if finished {
                req.notices.notice(Notice::NotAdopting {
                    dir: root.join(&name),
                    why,
                });
            }
            continue;
        }
        // Only from dirs that jobs of a trusted scope wrote (docs/protocol.md#scopes).
        if let Err(why) = req.may_warm_from(&lease) {
            if finished && (req.adopt || req.seed.is_some()) {
                req.passed_over.set(req.passed_over.get() + 1);
                req.notices.notice(Notice::OtherScope {
                    dir: root.join(&name),
                    why,
                });
            }
            continue;
        }
        // Whether its owner is running (its lock held) is checked when the seed is taken.
        if finished {
            out.finished.push(Candidate {
                name: name.clone(),
                lease: lease.clone(),
            });
        }
        if expired {
            out.expired.push(Candidate { name, lease });
        }
    }
    out.expired
        .sort_by_key(|c| std::cmp::Reverse(c.lease.renewed_at));
    out.finished
        .sort_by_key(|c| std::cmp::Reverse(c.lease.renewed_at));
    out
}

/// A released lease of a different job from this same runner has ended (see
/// `scan_for_new_job`): mark it expired, under its lock, and return the lease as it now reads.
fn end_if_same_runner(
    root: &Root,
    req: &Request<'_>,
    now: &Now,
    name: &OsStr,
    dir: &std::fs::File,
    mut lease: Lease,
) -> Lease {
    let same_runner = req.owner.runner.is_some()
        && lease.runner == req.owner.runner
        && lease.boot_id == req.owner.boot_id
        && lease.job_id != req.job_id;
    if same_runner
        && lease.state == State::Released
        && lease.expires_at > now.wall
        && let Ok(_taken) = take(dir.as_fd())
        && root.still_names(name, dir)
        && let Ok(mut fresh) = read(dir.as_fd())
        && fresh.state == State::Released
    {
        // Stamped with the clocks it is ended on, so that it reads as expired now on
        // either clock (`Now::judging`).
        now.stamp(&mut fresh);
        fresh.expires_at = now.wall;
        if write(dir.as_fd(), &fresh).is_ok() {
            req.notices.notice(Notice::Ended {
                dir: root.join(name),
                job_id: fresh.job_id.clone(),
            });
            // As written: the seed's re-check compares with what it reads back, and the
            // file keeps times at its own precision, not the clock's nanoseconds.
            lease = read(dir.as_fd()).unwrap_or(fresh);
        }
    }
    lease
}

pub(super) enum AdoptOutcome {
    Adopted(Box<Held>),
    /// Someone else (a guard, another adopter, a resuming step) got there first.
    Lost,
    /// Our own job's name appeared meanwhile.
    NameTaken,
}

/// The lease, re-read under the lock, is still expired, of our workspace and of a scope we may
/// warm from.
fn still_expired(dir: &std::fs::File, req: &Request<'_>, key: &WorkspaceKey) -> bool {
    read(dir.as_fd()).is_ok_and(|l| {
        l.same_key(key)
            && req.may_warm_from(&l).is_ok()
            && matches!(
                expiry(dir.as_fd(), &l, &Now::read(), req.trust),
                Expiry::Expired { .. }
            )
    })
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
    // A live owner, a guard mid-claim, another adopter, or processes of its job that outlived
    // their wrapper hold it, or its locks cannot be tried: not ours.
    let Ok(taken) = take(dir.as_fd()) else {
        return Ok(AdoptOutcome::Lost);
    };
    // Race closed: renamed into `.trash/` or to another adopter's name between open and lock.
    if !root.still_names(&cand.name, &dir) {
        return Ok(AdoptOutcome::Lost);
    }
    // Race closed: swapped for another user's dir, lease or `target` since the scan.
    if let Err(why) = check_owned(&dir) {
        req.notices.notice(Notice::NotAdopting {
            dir: root.join(&cand.name),
            why,
        });
        return Ok(AdoptOutcome::Lost);
    }
    // Race closed: the dir's own job resumed it (renewing the lease) after our scan.
    if !still_expired(&dir, req, key) {
        return Ok(AdoptOutcome::Lost);
    }
    // Race closed: a new job is copying a seed from this dir (docs/protocol.md#seed); adopting
    // it now would make its copy half old, half ours. Held until our lease is written.
    let Some(_no_seed) = no_seed_in_flight(&dir) else {
        return Ok(AdoptOutcome::Lost);
    };
    // Race closed: a lease write that failed after the rename (a full disk) left the dir under
    // our job's name with the old job's lease, listed as that job. Our lease is written in full
    // before the rename; after it, only a rename within the dir remains.
    let (lease, staged) = stage_lease(root, req, key, cand, &dir)?;
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
        req.notices.notice(Notice::NotAdopted {
            dir: root.join(&cand.name),
            why,
        });
        return Ok(AdoptOutcome::Lost);
    }
    // A crash here leaves the dir under our name with the old (expired) lease: a later step of
    // this job takes it over, or a guard reclaims it. Either is safe.
    step("adopt-renamed");
    staged
        .commit()
        .with_context(|| format!("failed to write lease in {}", root.join(req.name).display()))?;
    let tree = taken.into_shared(dir.as_fd()).with_context(|| {
        format!(
            "failed to lock {}",
            root.join(req.name).join(TREE_LOCK).display()
        )
    })?;
    let held = held(root, OsStr::new(req.name), dir, tree, lease)?;
    Ok(AdoptOutcome::Adopted(Box::new(held)))
}

/// The adopter's lease, written in full beside the old one (put in place after the rename).
fn stage_lease<'a>(
    root: &Root,
    req: &Request<'_>,
    key: &WorkspaceKey,
    cand: &Candidate,
    dir: &'a std::fs::File,
) -> Result<(Lease, crate::fs::Staged<'a>)> {
    let mut lease = req.lease(Some(key), SystemTime::now());
    lease.origin = Some(Origin::ADOPTED.into());
    // Sticky: the adopted dir keeps its earlier writers' scopes.
    lease.scopes = req.scopes_after(Some(&cand.lease));
    // Sticky too: the cold build the dir's line started from (docs/protocol.md#what-warmth-saved).
    lease.cold = cand.lease.cold.clone();
    // The size stays for the guard's ordering, but as unmeasured: this job changes the dir, so
    // its release measures again (a measurement taken when an earlier job released would
    // otherwise be carried through job after job, see SIZE_REFRESH).
    lease.size_bytes = cand.lease.size_bytes;
    lease.size_measured_at = None;
    let staged = stage(dir.as_fd(), &lease).with_context(|| {
        format!(
            "failed to write lease in {}",
            root.join(&cand.name).display()
        )
    })?;
    Ok((lease, staged))
}

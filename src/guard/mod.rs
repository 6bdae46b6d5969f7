//! The disk guard: one sweep over the root that reclaims expired job dirs, oldest-expired first,
//! until free space reaches the target. `cargo guarded gc` and the precheck before every wrapped
//! command both run exactly this code.
//!
//! Safe to run from every runner's hook at once: sweeps take turns on `.guard.lock` for their
//! decisions and renames into `.trash/`, and each dir is claimed under its own lock
//! (`lease::claim`), which live jobs hold for their whole run. Deleting what was trashed happens
//! after the turn, under a lock on each trash entry, so a slow or stopped delete holds no one up.
//!
//! The sweep's steps, one file each: `scan` (every job dir's lease), `plan` (which expired dirs
//! go, each claimed under its lock), `trash` (what `.trash/` holds and the deletes after the
//! turn); `report` is what the sweep decided.

mod plan;
mod report;
mod scan;
mod trash;

use std::ffi::OsStr;
use std::fs::File;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::fault;
use crate::fs::Space;
use crate::lease::{self, GUARD_LOCK, Root};
use crate::locks::{self, LockTrust, Patience, Waited};
use crate::quantity::{RoundDuration, Threshold};
use crate::term;

use plan::{Planning, plan};
use scan::{root_size, scan};
use trash::{Claimed, Pending};

#[cfg(test)]
pub(crate) use report::WhyKept;
pub(crate) use report::{Kept, Removed, Report, RootCap};

/// How long `gc` waits for another sweep of the same root before giving up on this one.
pub(crate) const GUARD_WAIT: Duration = Duration::from_secs(60);

/// `--reclaim-below`'s default: reclaim expired dirs when free space is below 15% of the disk
/// (df's 85% used).
pub(crate) const DEFAULT_RECLAIM_BELOW: Threshold = Threshold::Percent(15.0);

/// `--reclaim-to`'s default is `--reclaim-below` raised by this many percentage points: a sweep
/// that starts under pressure leaves some headroom instead of stopping just above the line.
pub(crate) const DEFAULT_RECLAIM_TO_POINTS: f64 = 5.0;

/// `--keep-expired`'s default: the newest expired dir of each workspace stays for the next job
/// to adopt warm, even without disk pressure.
pub(crate) const DEFAULT_KEEP_EXPIRED: usize = 1;

/// The longest an unlocked `.new-*` dir is given to take its lock before it counts as abandoned
/// (`unfinished_age`).
const UNFINISHED_AGE_MAX: Duration = Duration::from_secs(60);

/// How old an unlocked `.new-*` dir must be for the guard to take it for abandoned (its creator
/// died between `mkdir` and its lock: docs/protocol.md#claim-the-guard): `min(ttl, 60s)`. A
/// creator locks its dir within milliseconds; a minute covers one that is stopped or swapping,
/// and a creator that outlasts it starts over (docs/protocol.md#acquire). A short TTL shortens
/// it too, as it shortens every other wait for a dead job.
pub(crate) fn unfinished_age(ttl: Duration) -> Duration {
    ttl.min(UNFINISHED_AGE_MAX)
}

/// The guard's settings as given (thresholds that may be shares of the disk), before a
/// filesystem's size turns them into a [`Sweep`]: resolved once in `Config`, read by `gc`, the
/// precheck, a seed's room and `doctor` alike.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Reclaim when free space is below this…
    pub(crate) reclaim_below: Threshold,
    /// …until it reaches this (`None`: `reclaim_below` plus [`DEFAULT_RECLAIM_TO_POINTS`]).
    pub(crate) reclaim_to: Option<Threshold>,
    /// Expired dirs kept per workspace for warm reuse.
    pub(crate) keep_expired: usize,
    /// `--max-root-size`: the root's cap in bytes, if any.
    pub(crate) max_root_size: Option<u64>,
    /// An unlocked `.new-*` dir older than this is abandoned ([`unfinished_age`]).
    pub(crate) unfinished_age: Duration,
}

impl Policy {
    /// The sweep these settings make on a filesystem of `total` bytes (as df counts it).
    pub(crate) fn sweep(&self, total: u64, trust: LockTrust) -> Sweep {
        let reclaim_below = self.reclaim_below.bytes(total);
        let reclaim_to = match self.reclaim_to {
            Some(t) => t.bytes(total),
            None => self
                .reclaim_below
                .plus_points(DEFAULT_RECLAIM_TO_POINTS, total),
        }
        .max(reclaim_below);
        Sweep {
            dry_run: false,
            all_expired: false,
            reclaim_below,
            reclaim_to,
            keep_expired: self.keep_expired,
            max_root_size: self.max_root_size,
            max_time: None,
            turn_wait: GUARD_WAIT,
            trust,
            unfinished_age: self.unfinished_age,
            workspace: None,
        }
    }
}

/// What one sweep should do.
#[derive(Debug, Clone)]
pub(crate) struct Sweep {
    pub(crate) dry_run: bool,
    /// Reclaim every expired dir, whatever the free space.
    pub(crate) all_expired: bool,
    /// Start reclaiming under pressure when free space is below this many bytes…
    pub(crate) reclaim_below: u64,
    /// …and keep going until it reaches this many.
    pub(crate) reclaim_to: u64,
    /// Expired dirs kept per workspace for warm reuse; older expired ones always go.
    pub(crate) keep_expired: usize,
    /// `--max-root-size`: reclaim expired dirs, oldest first, until the root holds at most
    /// this many bytes, whatever the free space.
    pub(crate) max_root_size: Option<u64>,
    /// Start no new deletion after this long.
    pub(crate) max_time: Option<Duration>,
    /// How long to wait for a sweep already running on this root.
    pub(crate) turn_wait: Duration,
    pub(crate) trust: LockTrust,
    /// An unlocked `.new-*` dir (a job that died while creating its dir) older than this is
    /// abandoned. Younger ones may still be getting their lock.
    pub(crate) unfinished_age: Duration,
    /// `gc --workspace`: only dirs whose lease names this workspace key, every expired one and
    /// every lingering (released) one too; live ones are reported, never touched. Dirs of other
    /// workspaces are left out of the report.
    pub(crate) workspace: Option<String>,
}

/// Run one sweep.
pub(crate) fn sweep(root: &Root, opts: &Sweep) -> Result<Report> {
    sweep_with(root, opts, None, &|| Ok(()))
}

/// Run one sweep. `spare`: a job dir never to claim (the running job's own, which it is about to
/// resume). `interrupted`: `Err` once the caller was told to stop; waiting for the turn ends then.
///
/// Steps: take the turn, claim what `.trash/` holds, scan the root, plan and claim (rename into
/// `.trash/`), give the turn back, delete. `.guard.lock` covers only the decisions and the
/// renames; deleting runs after the lock is released (as Bazel does with its `.deleted` dirs),
/// so a slow delete or a stopped sweep never makes another job wait for its turn.
pub(crate) fn sweep_with(
    root: &Root,
    opts: &Sweep,
    spare: Option<&OsStr>,
    interrupted: &dyn Fn() -> Result<()>,
) -> Result<Report> {
    let start = Instant::now();
    let before = Space::of(&root.path)
        .with_context(|| format!("failed to read free space of {}", root.path.display()))?;
    let mut report = Report::new(opts, before);

    // One sweep at a time per root. A dry run changes nothing: it needs no turn and no trash.
    // `.trash/` is opened once, under the turn: every claim and delete of the sweep goes there.
    let (turn, trash) = if opts.dry_run {
        (None, None)
    } else {
        match take_turn(root, opts.turn_wait, interrupted)? {
            Some(lock) => {
                root.ensure_layout()?;
                (Some(lock), Some(root.trash()?))
            }
            // Not waiting (a precheck with room to spare): the running sweep does this work.
            None if opts.turn_wait.is_zero() => return Ok(report),
            None => {
                report.errors.push(format!(
                    "another sweep held {} for {}; skipped this sweep",
                    root.join(GUARD_LOCK).display(),
                    RoundDuration(opts.turn_wait)
                ));
                return Ok(report);
            }
        }
    };
    let mut pending = Vec::new();
    if let Some(trash) = &trash {
        record(&mut report, &mut pending, trash::claim_leftovers(trash));
    }
    // What the unfinished dirs claimed here will free counts toward the target like an expired
    // dir's: a sweep that left it out would claim warm dirs it does not need to.
    let unfinished = trash::claim_unfinished(root, trash.as_ref(), opts);
    let unfinished = record(&mut report, &mut pending, unfinished);
    let clocks = lease::Now::read();
    let expired = scan(root, opts, spare, &clocks, &mut report)?;
    report.root_cap = opts.max_root_size.map(|cap| {
        let before = root_size(root);
        RootCap {
            cap,
            before,
            after: before,
        }
    });
    fault::point("guard-scanned");
    let planning = Planning {
        root,
        trash: trash.as_ref(),
        opts,
        start,
        now: clocks.wall,
    };
    let projected = plan(&planning, expired, unfinished, &mut report, &mut pending);
    // The decisions and renames are done: let other sweeps and prechecks in, then delete.
    drop(turn);
    if let Some(c) = &mut report.root_cap {
        c.after = c.before.saturating_sub(projected);
    }
    if let Some(trash) = &trash {
        for d in trash::delete(trash, pending) {
            report.deleted(d.removed, d.removal, d.rest);
        }
    }
    let counted = before.free.saturating_add(report.freed());
    report.after = if opts.dry_run {
        before.with_free(before.free.saturating_add(projected))
    } else {
        Space::of(&root.path).unwrap_or(before.with_free(counted))
    };
    Ok(report)
}

/// Record what a claiming step did in `.trash/`: the dirs a dry run would claim, the errors;
/// the entries it claimed join `pending`. Returns what they will free.
fn record(report: &mut Report, pending: &mut Vec<Pending>, claimed: Claimed) -> u64 {
    report.removed.extend(claimed.would);
    report.errors.extend(claimed.errors);
    pending.extend(claimed.pending);
    claimed.bytes
}

/// Take `.guard.lock`, waiting up to `wait` for a sweep on another runner to finish. A signal
/// (`interrupted`) ends the wait at once: the README promises a prompt exit.
fn take_turn(
    root: &Root,
    wait: Duration,
    interrupted: &dyn Fn() -> Result<()>,
) -> Result<Option<File>> {
    // Read-only where it exists: another user's lock file need not be writable for us.
    let lock = root
        .open_lock_file(GUARD_LOCK)
        .with_context(|| format!("failed to open {}", root.join(GUARD_LOCK).display()))?;
    let patience = Patience {
        since: Instant::now(),
        limit: Some(wait),
        poll: Duration::from_millis(50),
        interrupted,
    };
    let try_lock = || {
        locks::try_exclusive(&lock)
            .with_context(|| format!("failed to lock {}", root.join(GUARD_LOCK).display()))
    };
    let mut announced = false;
    let held = || {
        // Said once, and only when waiting at all (a precheck with room to spare does not).
        if !announced && !wait.is_zero() {
            term::status(
                "Waiting",
                format_args!(
                    "up to {} for another sweep of {} ({})",
                    RoundDuration(wait),
                    root.path.display(),
                    GUARD_LOCK
                ),
            );
            announced = true;
        }
        Ok(ControlFlow::Continue(()))
    };
    let taken = locks::wait(&patience, try_lock, held)? == Waited::Taken;
    Ok(taken.then_some(lock))
}

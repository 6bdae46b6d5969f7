//! The sweep's plan: which expired dirs go, oldest-expired first, by retention, the free-space
//! target, the root's cap and `--max-time`; each one claimed under its lock.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime};

use crate::fs;
use crate::lease::{self, Claim, Lease, Root, TRASH};

use super::Sweep;
use super::report::{Kept, Removed, Report, WhyKept};
use super::scan::Expired;
use super::trash::{Pending, lock_trash_entry};

/// Decide, oldest-expired first, which expired dirs go, and claim each (`lease::claim`: under
/// its lock, into `.trash/`). `claimed`: what the sweep already claimed will free (unfinished
/// dirs). Returns what everything claimed will free (see below).
pub(super) fn plan(
    root: &Root,
    opts: &Sweep,
    (start, now): (Instant, SystemTime),
    (expired, claimed): (Vec<Expired>, u64),
    report: &mut Report,
    pending: &mut Vec<Pending>,
) -> u64 {
    let excess = beyond_retention(&expired, opts.keep_expired);
    let under_pressure = report.under_pressure();
    let free_before = report.before.free;
    // What the dirs claimed so far will free once deleted. The deletes come after the turn, so
    // the decisions count each claimed dir's measured size (`fs::tree_usage`'s exclusive bytes:
    // each inode once, shared extents not at all; the recorded one if it cannot be measured),
    // the same arithmetic as the deletion's. Measured only where a decision depends on it
    // (under pressure, without `--all-expired`), so `gc --all-expired` walks each dir once,
    // to delete it; the report then counts what was really unlinked. Never a fresh `statvfs`: with delayed block accounting
    // (ext4, XFS) free space shows up late, and a re-read would make the sweep delete past
    // `--reclaim-to`.
    let mut projected = claimed;
    let root_cap = report.root_cap;
    // Claimed dirs are measured where a decision depends on what they free: under pressure,
    // and under a root cap.
    let measure = (under_pressure || root_cap.is_some()) && !opts.all_expired;
    for (i, e) in expired.into_iter().enumerate() {
        let job_id = Some(e.lease.job_id.clone());
        // Oldest first, like the rest: the root's size less what is claimed so far.
        let over_cap = root_cap.is_some_and(|c| c.before.saturating_sub(projected) > c.cap);
        let wanted = opts.all_expired
            || opts.workspace.is_some()
            || excess.contains(&i)
            || over_cap
            || (under_pressure && short_of_target(free_before, projected, opts.reclaim_to));
        if let Some(reason) = hold_back(opts, wanted, under_pressure, start) {
            report.kept.push(Kept::new(root, &e.name, job_id, reason));
            continue;
        }
        let expired_for = now.duration_since(e.since).unwrap_or_default();
        let claim = lease::claim(root, &e.name, opts.trust, opts.dry_run, e.lingering);
        projected = projected.saturating_add(take_claim(
            root,
            (claim, measure),
            (&e.name, expired_for, e.lingering, over_cap),
            report,
            pending,
        ));
    }
    projected
}

/// Why an expired dir stays this time, if it does: not `wanted` (warm, or the target is
/// reached), or `--max-time` is up.
fn hold_back(opts: &Sweep, wanted: bool, under_pressure: bool, start: Instant) -> Option<WhyKept> {
    if !wanted && under_pressure {
        Some(WhyKept::TargetReached)
    } else if !wanted {
        Some(WhyKept::Warm {
            keep_expired: opts.keep_expired,
        })
    } else if opts.max_time.is_some_and(|m| start.elapsed() >= m) {
        Some(WhyKept::MaxTime)
    } else {
        None
    }
}

/// Record what `lease::claim` did with one expired dir; returns what it will free (a dry run
/// always measures it, to report it; a real claim only if `measure`, else its recorded size).
fn take_claim(
    root: &Root,
    (claim, measure): (Claim, bool),
    (name, expired_for, lingering, over_cap): (&OsStr, Duration, bool, bool),
    report: &mut Report,
    pending: &mut Vec<Pending>,
) -> u64 {
    let removed = |lease: Lease, bytes| Removed::Expired {
        job_id: lease.job_id,
        name: name.to_string_lossy().into_owned(),
        dir: root.join(name).display().to_string(),
        bytes,
        expired_for,
        lingering,
        over_cap,
    };
    match claim {
        Claim::Kept { reason, lease } => {
            let job_id = lease.map(|l| l.job_id);
            report
                .kept
                .push(Kept::new(root, name, job_id, WhyKept::Lease(reason)));
            0
        }
        Claim::Would { lease } => {
            // Measured now, as the deletion will count it (each inode once, shared extents
            // not at all): the recorded size may be jobs old and counted what deletion cannot
            // free, so "would remove" and "removed" would disagree.
            let bytes = fs::tree_usage(root.fd(), name, None)
                .map(|u| u.exclusive)
                .or(lease.size_bytes)
                .unwrap_or(0);
            report.removed.push(removed(lease, bytes));
            bytes
        }
        Claim::Trashed { trash_name, lease } => {
            let estimate = measure
                .then(|| fs::open_dir_nofollow(root.fd(), OsStr::new(TRASH)).ok())
                .flatten()
                .and_then(|trash| fs::tree_usage(trash.as_fd(), &trash_name, None))
                .map(|u| u.exclusive)
                .or(lease.size_bytes);
            // Still under the turn, so no other sweep can lock it first.
            match lock_trash_entry(root, &trash_name) {
                Ok(lock) => pending.push(Pending {
                    trash_name,
                    _lock: lock,
                    removed: Some(removed(lease, 0)),
                }),
                Err(e) => report.errors.push(format!(
                    "failed to lock {}: {e}",
                    root.join(TRASH).join(&trash_name).display()
                )),
            }
            estimate.unwrap_or(0)
        }
    }
}

/// Whether a sweep under pressure still needs to reclaim: free space as the sweep found it plus
/// what the dirs it claimed will free is below the target (never a re-read free space, which
/// lags behind the deletes on filesystems with delayed block accounting).
fn short_of_target(free_before: u64, freed: u64, reclaim_to: u64) -> bool {
    free_before.saturating_add(freed) < reclaim_to
}

/// Indices (into the oldest-first list) of expired dirs beyond the `keep` most recently used of
/// their workspace. Dirs with no recorded workspace are never counted as excess.
fn beyond_retention(expired: &[Expired], keep: usize) -> Vec<usize> {
    let mut by_workspace: HashMap<(&str, Option<&str>), Vec<usize>> = HashMap::new();
    for (i, e) in expired.iter().enumerate() {
        if let Some(ws) = e.lease.workspace.as_deref() {
            by_workspace
                .entry((ws, e.lease.toolchain.as_deref()))
                .or_default()
                .push(i);
        }
    }
    let mut excess = Vec::new();
    for mut idx in by_workspace.into_values() {
        idx.sort_by(|&a, &b| {
            expired[b]
                .lease
                .renewed_at
                .cmp(&expired[a].lease.renewed_at)
        });
        excess.extend(idx.into_iter().skip(keep));
    }
    excess
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item 20 of issue 13: under pressure, "enough" is decided from the free space the sweep
    /// found plus what it counted as freed, not from a `statvfs` that may still lag behind.
    #[test]
    fn the_pressure_decision_uses_the_counted_bytes() {
        let (before, target) = (100, 1_000);
        assert!(short_of_target(before, 0, target));
        assert!(short_of_target(before, 899, target));
        // 900 counted: the target is reached, even if the disk does not show it yet.
        assert!(!short_of_target(before, 900, target));
        assert!(!short_of_target(u64::MAX, u64::MAX, target));
    }
}

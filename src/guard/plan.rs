//! The sweep's plan: which expired dirs go, oldest-expired first, by retention, the free-space
//! target, the root's cap and `--max-time`; each one claimed under its lock.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::time::{Duration, Instant, SystemTime};

use crate::fs;
use crate::lease::{self, Claim, Lease, Root, Trash};

use super::Sweep;
use super::report::{Kept, Removed, Report, WhyKept};
use super::scan::Expired;
use super::trash::{Pending, lock_claimed};

/// What a plan works in: the root, where claimed dirs go, the sweep's options and clocks.
pub(super) struct Planning<'a> {
    pub(super) root: &'a Root,
    /// `.trash/`; `None` in a dry run, which only decides.
    pub(super) trash: Option<&'a Trash>,
    pub(super) opts: &'a Sweep,
    /// When the sweep started (for `--max-time`).
    pub(super) start: Instant,
    /// The wall clock the scan judged expiry by.
    pub(super) now: SystemTime,
}

/// Decide, oldest-expired first, which expired dirs go, and claim each (`lease::claim`: under
/// its lock, into `.trash/`). `claimed`: what the sweep already claimed will free (unfinished
/// dirs). Returns what everything claimed will free (see below).
pub(super) fn plan(
    p: &Planning<'_>,
    expired: Vec<Expired>,
    claimed: u64,
    report: &mut Report,
    pending: &mut Vec<Pending>,
) -> u64 {
    let (root, opts) = (p.root, p.opts);
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
        if let Some(reason) = hold_back(opts, wanted, under_pressure, p.start) {
            report.kept.push(Kept::new(root, &e.name, job_id, reason));
            continue;
        }
        let chosen = Chosen {
            name: &e.name,
            claim: lease::claim(root, p.trash, &e.name, opts.trust, e.lingering),
            expired_for: p.now.duration_since(e.since).unwrap_or_default(),
            lingering: e.lingering,
            over_cap,
            measure,
        };
        projected = projected.saturating_add(take_claim(p, chosen, report, pending));
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

/// An expired dir the plan chose, and what `lease::claim` did with it.
struct Chosen<'a> {
    /// Its name under the root.
    name: &'a OsStr,
    claim: Claim,
    expired_for: Duration,
    /// Released but not yet expired (`gc --workspace`).
    lingering: bool,
    /// The root was over `--max-root-size` when it was chosen.
    over_cap: bool,
    /// A decision depends on what a real claim frees: measure it, else take its recorded size.
    measure: bool,
}

/// Record what `lease::claim` did with one expired dir; returns what it will free (a dry run
/// always measures it, to report it; a real claim only if `measure`, else its recorded size).
fn take_claim(
    p: &Planning<'_>,
    chosen: Chosen<'_>,
    report: &mut Report,
    pending: &mut Vec<Pending>,
) -> u64 {
    let (root, name) = (p.root, chosen.name);
    let removed = |lease: Lease, bytes| Removed::Expired {
        job_id: lease.job_id,
        name: name.to_string_lossy().into_owned(),
        dir: root.join(name).display().to_string(),
        bytes,
        expired_for: chosen.expired_for,
        lingering: chosen.lingering,
        over_cap: chosen.over_cap,
    };
    match chosen.claim {
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
            // A claim moves a dir only into the trash it was given.
            let Some(trash) = p.trash else { return 0 };
            let estimate = chosen
                .measure
                .then(|| trash.usage(&trash_name))
                .flatten()
                .or(lease.size_bytes);
            // Still under the turn, so no other sweep can lock it first.
            match lock_claimed(trash, trash_name, Some(removed(lease, 0))) {
                Ok(claimed) => pending.push(claimed),
                Err(e) => report.errors.push(e),
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

    /// Under pressure, "enough" is decided from the free space the sweep found plus what it
    /// counted as freed, not from a `statvfs` that may still lag behind the deletes (delayed
    /// block accounting), which would make the sweep delete past its target.
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

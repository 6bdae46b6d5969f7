//! `cargo guarded status`: the root's free space and every job dir with its lease state.

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::AsFd;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::fs::{self, Space};
use crate::job_id;
use crate::lease::{self, Cold, Protected, Root, TARGET, Warmth};
use crate::locks::LockTrust;
use crate::prune::{self, BudgetState, LastPrune, saved};
use crate::scope::Scope;
use crate::warm;

#[derive(Debug)]
pub(crate) struct Status {
    pub(crate) root: String,
    pub(crate) space: Space,
    pub(crate) leases: Vec<Entry>,
    /// Job dirs and bytes by what a guard may do with them.
    pub(crate) totals: Totals,
    /// Per workspace, how the jobs whose dirs are in the root started.
    pub(crate) starts: Vec<Starts>,
    /// What warmth saved over every workspace (`starts` has it per workspace).
    pub(crate) warmth: Saved,
}

/// Units reused and compiled by the jobs whose dirs are in the root, and the estimate of time
/// saved (docs/protocol.md#what-warmth-saved), over every workspace.
#[derive(Debug, Serialize, Default, Clone, PartialEq)]
pub(crate) struct Saved {
    pub(crate) units_reused: u64,
    pub(crate) units_compiled: u64,
    /// Dirs whose lease has no counts, or unknown ones: left out of both sums.
    pub(crate) dirs_not_counted: usize,
    /// The sum of the workspaces' estimates; unknown (`null`) when a workspace that reused
    /// units has no cold build on record.
    pub(crate) saved_secs_estimate: Option<f64>,
}

impl Saved {
    fn of(starts: &[Starts]) -> Saved {
        let mut t = Saved {
            saved_secs_estimate: Some(0.0),
            ..Saved::default()
        };
        for s in starts {
            t.units_reused += s.units_reused;
            t.units_compiled += s.units_compiled;
            t.dirs_not_counted += s.dirs_not_counted;
            t.saved_secs_estimate = match (t.saved_secs_estimate, s.saved_secs_estimate) {
                (Some(a), Some(b)) => Some(a + b),
                (a, None) if s.units_reused == 0 => a,
                _ => None,
            };
        }
        t
    }
}

/// How the jobs of one workspace started, counted over the job dirs in the root (each dir's
/// lease records how its job first came by it; a later step that resumed it keeps that).
#[derive(Debug, Serialize, Default, Clone, PartialEq)]
pub(crate) struct Starts {
    pub(crate) workspace: String,
    /// Built from empty: cold.
    pub(crate) fresh: usize,
    /// Took an expired dir of the workspace: warm.
    pub(crate) adopted: usize,
    /// Started from a copy of a finished dir: warm.
    pub(crate) seeded: usize,
    /// Laid out from an object store's manifest on a fresh host: warm.
    pub(crate) restored: usize,
    /// Leases written before the origin was recorded.
    pub(crate) unknown: usize,
    /// Units kept warm by content verification when their jobs started from a dir built
    /// elsewhere, and units it made stale, over the dirs in the root.
    pub(crate) units_verified: usize,
    pub(crate) units_stale: usize,
    /// Later steps of the jobs, which resumed their job's dir (counted at their release).
    pub(crate) resumed: u64,
    /// Over the dirs whose lease counts them: units the jobs used without compiling them, and
    /// units they compiled (docs/protocol.md#what-warmth-saved).
    pub(crate) units_reused: u64,
    pub(crate) units_compiled: u64,
    /// Dirs whose lease has no counts, or unknown ones: left out of both sums.
    pub(crate) dirs_not_counted: usize,
    /// Cold builds of the workspace on record in the dirs' leases (each job once).
    pub(crate) cold_builds: usize,
    /// Their commands' wall time per unit they compiled; `null`: no cold build on record.
    pub(crate) cold_secs_per_unit: Option<f64>,
    /// An estimate: `cold_secs_per_unit` times `units_reused`; `null`: unknown.
    pub(crate) saved_secs_estimate: Option<f64>,
}

impl Starts {
    fn of(leases: &[Entry]) -> Vec<Starts> {
        let mut by: std::collections::BTreeMap<&str, Starts> = Default::default();
        for e in leases {
            let Some(ws) = e.workspace.as_deref() else {
                continue;
            };
            let s = by.entry(ws).or_insert_with(|| Starts {
                workspace: ws.to_owned(),
                ..Starts::default()
            });
            match e.origin.as_deref() {
                Some(lease::Origin::FRESH) => s.fresh += 1,
                Some(lease::Origin::ADOPTED) => s.adopted += 1,
                Some(lease::Origin::SEEDED) => s.seeded += 1,
                Some(lease::Origin::RESTORED) => s.restored += 1,
                _ => s.unknown += 1,
            }
            if let Some(v) = &e.verified {
                s.units_verified += v.verified;
                s.units_stale += v.stale_count();
            }
            s.count(e.warmth.as_ref());
        }
        let mut starts: Vec<Starts> = by.into_values().collect();
        for s in &mut starts {
            let cold = leases
                .iter()
                .filter(|e| e.workspace.as_deref() == Some(s.workspace.as_str()))
                .filter_map(|e| e.cold.as_ref());
            let ids: std::collections::BTreeSet<&str> =
                cold.clone().map(|c| c.job_id.as_str()).collect();
            s.cold_builds = ids.len();
            s.cold_secs_per_unit = saved::secs_per_unit(cold);
            s.saved_secs_estimate = saved::estimate(s.cold_secs_per_unit, Some(s.units_reused));
        }
        starts
    }

    /// Add one dir's counts (`None`, or an unknown count: not counted).
    fn count(&mut self, warmth: Option<&Warmth>) {
        match warmth.map(|w| (w.units_reused, w.units_compiled, w.steps)) {
            Some((Some(reused), Some(compiled), steps)) => {
                self.units_reused += reused;
                self.units_compiled += compiled;
                self.resumed += steps.unwrap_or(1).saturating_sub(1);
            }
            _ => self.dirs_not_counted += 1,
        }
    }
}

/// What a guard may do with a job dir, in the order `status` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LeaseState {
    /// A running job's dir (a fresh heartbeat, or a stale one with its lock held).
    Active,
    /// Released, lingering for the job's later steps.
    Released,
    /// The lease says active, but nobody holds its locks (its holder was killed): reclaimable
    /// once its heartbeat is older than its TTL (`expires_at`). Only where locks are trusted.
    Gone,
    /// A guard may reclaim it.
    Expired,
    /// Its lease could not be read (see `Entry::note`): kept until someone looks.
    Unknown,
}

impl fmt::Display for LeaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeaseState::Active => "active",
            LeaseState::Released => "released",
            LeaseState::Gone => "gone",
            LeaseState::Expired => "expired",
            LeaseState::Unknown => "unknown",
        })
    }
}

/// Counts and bytes of one kind of job dir (bytes as far as known: see `Entry::size_measured`).
#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) dirs: usize,
    pub(crate) bytes: u64,
}

#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// `active`: a running job's dir, never reclaimed.
    pub(crate) live: Tally,
    /// `released`: protected until its linger ends, for the job's later steps; and `gone`:
    /// protected until its dead holder's heartbeat is older than its TTL.
    pub(crate) lingering: Tally,
    /// `expired`: a guard may reclaim it.
    pub(crate) reclaimable: Tally,
    /// `unknown`: kept, never reclaimed, until someone looks.
    pub(crate) unknown: Tally,
}

impl Totals {
    fn of(leases: &[Entry]) -> Totals {
        let mut t = Totals::default();
        for e in leases {
            let tally = match e.state {
                LeaseState::Active => &mut t.live,
                LeaseState::Released | LeaseState::Gone => &mut t.lingering,
                LeaseState::Expired => &mut t.reclaimable,
                LeaseState::Unknown => &mut t.unknown,
            };
            tally.dirs += 1;
            tally.bytes += e.size_bytes.unwrap_or(0);
        }
        t
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) job_id: String,
    pub(crate) state: LeaseState,
    pub(crate) dir: String,
    pub(crate) target_dir: String,
    pub(crate) workspace: Option<String>,
    /// How the job first came by the dir: `fresh`, `adopted`, `seeded` (none in older leases).
    pub(crate) origin: Option<String>,
    /// The scope of every job that wrote in the dir (none in leases of earlier versions).
    pub(crate) scopes: Option<Vec<Scope>>,
    pub(crate) host: Option<String>,
    pub(crate) pid: Option<u32>,
    pub(crate) created_at: Option<SystemTime>,
    pub(crate) renewed_at: Option<SystemTime>,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) size_bytes: Option<u64>,
    /// `true`: `size_bytes` was measured by this call (`--sizes`); `false`: it is the size the
    /// lease last recorded (at release; 0 or none while a job runs), possibly stale.
    pub(crate) size_measured: bool,
    /// What pruning removed from this dir when its current job adopted it (`prune.json`).
    pub(crate) pruned: Option<LastPrune>,
    /// The dir's size against its budget, as its last prune left it (`prune.json`).
    pub(crate) budget: Option<BudgetState>,
    /// What content verification decided when the dir's job started from it elsewhere.
    pub(crate) verified: Option<warm::LastVerdict>,
    /// What the job's units came to so far, and the cold build of the dir's line (the lease's).
    pub(crate) warmth: Option<Warmth>,
    pub(crate) cold: Option<Cold>,
    /// Why a dir is `unknown`.
    pub(crate) note: Option<String>,
    /// Why a guard keeps it now (`None`: expired, or its lease could not be read): the same
    /// reading, and words, as `gc`'s (`Protected::of_dir`).
    pub(crate) kept: Option<Protected>,
    /// The dir's own lock is free but processes of its job's command still hold its tree lock
    /// (they outlived their wrapper): the dir is kept while they run.
    pub(crate) orphans: bool,
}

pub(crate) fn collect(root: &Root, trust: LockTrust, sizes: bool) -> Result<Status> {
    let space = Space::of(&root.path)
        .with_context(|| format!("failed to read free space of {}", root.path.display()))?;
    let now = lease::Now::read();
    let mut leases = Vec::new();
    for (name, _) in root.job_names()? {
        let mut entry = entry(root, &name, &now, trust);
        if sizes && let Some(measured) = fs::tree_size(root.fd(), &name, None) {
            entry.size_bytes = Some(measured);
            entry.size_measured = true;
        }
        leases.push(entry);
    }
    // By state (what a guard may do), then oldest first (to the second, as listed): the order a
    // guard reclaims in.
    let whole_secs =
        |t: Option<SystemTime>| t.map(|t| t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs()));
    leases.sort_by(|a, b| {
        (a.state, whole_secs(a.created_at), &a.job_id).cmp(&(
            b.state,
            whole_secs(b.created_at),
            &b.job_id,
        ))
    });
    let starts = Starts::of(&leases);
    Ok(Status {
        root: root.path.display().to_string(),
        space,
        totals: Totals::of(&leases),
        warmth: Saved::of(&starts),
        starts,
        leases,
    })
}

/// One job dir as its lease (if readable) describes it.
fn entry(root: &Root, name: &OsStr, now: &lease::Now, trust: LockTrust) -> Entry {
    let dir_path = root.join(name);
    let mut entry = Entry {
        job_id: name.to_string_lossy().into_owned(),
        state: LeaseState::Unknown,
        dir: dir_path.display().to_string(),
        target_dir: dir_path.join(TARGET).display().to_string(),
        workspace: None,
        origin: None,
        scopes: None,
        host: None,
        pid: None,
        created_at: None,
        renewed_at: None,
        expires_at: None,
        size_bytes: None,
        size_measured: false,
        pruned: None,
        budget: None,
        verified: None,
        warmth: None,
        cold: None,
        note: None,
        kept: None,
        orphans: false,
    };
    let lease = match root.open_job(name) {
        Ok(dir) => lease::read(dir.as_fd()).map(|l| (l, dir)),
        Err(skip) => Err(skip.to_string()),
    };
    match lease {
        Err(why) => entry.note = Some(why),
        Ok((l, dir)) => {
            let verdict = Protected::of_dir(dir.as_fd(), &l, now, trust);
            entry.state = state(&verdict);
            entry.kept = verdict.err();
            entry.orphans = matches!(entry.kept, Some(Protected::TreeAlive { .. }));
            if let Some(Protected::Unknown(why)) = &entry.kept {
                entry.note = Some(why.clone());
            }
            entry.job_id = l.job_id.clone();
            entry.workspace = l.workspace.clone();
            entry.origin = l.origin.clone();
            entry.scopes = l.scopes.clone();
            entry.host = Some(l.runner.clone().unwrap_or(l.host.clone()));
            entry.pid = Some(l.pid);
            entry.created_at = Some(l.created_at);
            entry.renewed_at = Some(l.renewed_at);
            entry.expires_at = Some(l.expires_at);
            entry.size_bytes = l.size_bytes;
            (entry.warmth, entry.cold) = (l.warmth.clone(), l.cold.clone());
            let pruning = prune::last_pruned(dir.as_fd());
            entry.pruned = pruning.last;
            entry.budget = pruning.budget;
            entry.verified = warm::last_verdict(dir.as_fd());
            if let Some(left) = pruning.left_in_place {
                entry.note = Some(format!("pruning left something in place: {left}"));
            }
            // A crash between an adoption's rename and its lease write (`adopt-renamed`) leaves
            // the previous job's lease in a dir under the adopter's name: listed under the dir's
            // own job, with what the lease says.
            if name != OsStr::new(&job_id::sanitize(&l.job_id)) {
                entry.job_id = name.to_string_lossy().into_owned();
                entry.note = Some(format!(
                    "lease names job `{}`: an adoption into this dir was interrupted; the dir's \
                     job takes it over at its next step, a guard reclaims it once expired",
                    l.job_id
                ));
            }
        }
    }
    entry
}

/// What a guard may do with a dir, by the reading `gc` decides with (`Protected::of_dir`).
fn state(verdict: &Result<SystemTime, Protected>) -> LeaseState {
    match verdict {
        Ok(_) => LeaseState::Expired,
        // A fresh heartbeat with its lock held; a stale one whose lock is still held (a stopped
        // build), or its orphans still alive.
        Err(
            Protected::Live { .. } | Protected::StillLocked { .. } | Protected::TreeAlive { .. },
        ) => LeaseState::Active,
        Err(Protected::Lingering { .. }) => LeaseState::Released,
        // A fresh heartbeat, but nobody holds the locks: the holder was killed a moment ago.
        Err(Protected::Gone { .. }) => LeaseState::Gone,
        Err(_) => LeaseState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::lease::{Expiry, Hold, Holder, Lease};

    /// The table of docs/protocol.md#what-a-lock-means, as `status` shows it.
    #[test]
    fn a_dir_is_shown_by_its_lease_and_its_locks() {
        // Timestamps deserialize from borrowed text: parsed from a string, as leases are read.
        let text = serde_json::json!({
            "protocol": 1, "job_id": "j", "token": "t", "workspace": null, "toolchain": null,
            "host": "h", "boot_id": null, "runner": null, "pid": 1,
            "created_at": "2026-01-01T00:00:00Z", "renewed_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-01T00:10:00Z", "heartbeat_secs": 1, "ttl_secs": 600,
            "state": "active", "size_bytes": null, "command": []
        })
        .to_string();
        let lease: Lease = serde_json::from_str(&text).unwrap();
        let live = Expiry::Live {
            renewed_ago: Duration::from_secs(1),
        };
        let lingering = Expiry::Lingering {
            expires_in: Duration::from_secs(60),
        };
        let expired = Expiry::Expired {
            since: SystemTime::UNIX_EPOCH,
        };
        let unknown = Holder::Unknown("lock failed (EIO)".into());
        for (expiry, holder, want) in [
            (&live, &Holder::Live(Hold::Dir), LeaseState::Active),
            (&live, &Holder::Live(Hold::Tree), LeaseState::Active),
            (&live, &Holder::Gone, LeaseState::Gone),
            // Untrusted locks prove nothing: the fresh heartbeat decides.
            (&live, &Holder::Unseen, LeaseState::Active),
            (&live, &unknown, LeaseState::Unknown),
            (&lingering, &Holder::Gone, LeaseState::Released),
            (&lingering, &unknown, LeaseState::Unknown),
            (&expired, &Holder::Live(Hold::Dir), LeaseState::Active),
            (&expired, &Holder::Live(Hold::Tree), LeaseState::Active),
            (&expired, &Holder::Gone, LeaseState::Expired),
            (&expired, &Holder::Unseen, LeaseState::Expired),
            (&expired, &unknown, LeaseState::Unknown),
        ] {
            let verdict = Protected::of_reading(expiry, holder, &lease);
            assert_eq!(state(&verdict), want, "{expiry:?} {holder:?}");
        }
        let gone = Protected::of_reading(&live, &Holder::Gone, &lease).unwrap_err();
        assert_eq!(gone.detail().to_string(), "holder gone; reclaimable in 9m");
    }
}

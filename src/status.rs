//! `cargo guarded status`: the root's free space and every job dir with its lease state.

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::fs::{self, Space};
use crate::lease::{self, Root, TARGET, Verdict};
use crate::locks::LockTrust;
use crate::prune::{self, BudgetState, LastPrune};

#[derive(Debug)]
pub(crate) struct Status {
    pub(crate) root: String,
    pub(crate) space: Space,
    pub(crate) leases: Vec<Entry>,
    /// Job dirs and bytes by what a guard may do with them.
    pub(crate) totals: Totals,
}

/// What a guard may do with a job dir, in the order `status` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LeaseState {
    /// A running job's dir (a fresh heartbeat, or a stale one with its lock held).
    Active,
    /// Released, lingering for the job's later steps.
    Released,
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
    /// `released`: protected until its linger ends, for the job's later steps.
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
                LeaseState::Released => &mut t.lingering,
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
    /// Why a dir is `unknown`.
    pub(crate) note: Option<String>,
}

pub(crate) fn collect(root: &Root, trust: LockTrust, sizes: bool) -> Result<Status> {
    let space = Space::of(&root.path)
        .with_context(|| format!("failed to read free space of {}", root.path.display()))?;
    let now = SystemTime::now();
    let mut leases = Vec::new();
    for (name, _) in root.job_names()? {
        let mut entry = entry(root, &name, now, trust);
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
    Ok(Status {
        root: root.path.display().to_string(),
        space,
        totals: Totals::of(&leases),
        leases,
    })
}

/// One job dir as its lease (if readable) describes it.
fn entry(root: &Root, name: &OsStr, now: SystemTime, trust: LockTrust) -> Entry {
    let dir_path = root.join(name);
    let mut entry = Entry {
        job_id: name.to_string_lossy().into_owned(),
        state: LeaseState::Unknown,
        dir: dir_path.display().to_string(),
        target_dir: dir_path.join(TARGET).display().to_string(),
        workspace: None,
        host: None,
        pid: None,
        created_at: None,
        renewed_at: None,
        expires_at: None,
        size_bytes: None,
        size_measured: false,
        pruned: None,
        budget: None,
        note: None,
    };
    let lease = match root.open_job(name) {
        Ok(dir) => lease::read(dir.as_fd()).map(|l| (l, dir)),
        Err(skip) => Err(skip.to_string()),
    };
    match lease {
        Err(why) => entry.note = Some(why),
        Ok((l, dir)) => {
            entry.state = match lease::classify(&l, now, trust) {
                Verdict::Live { .. } => LeaseState::Active,
                Verdict::Lingering { .. } => LeaseState::Released,
                // A stale heartbeat but a held lock: a stopped build, still alive.
                Verdict::Expired { .. } if dir.try_lock().is_err() => LeaseState::Active,
                Verdict::Expired { .. } => LeaseState::Expired,
            };
            entry.job_id = l.job_id.clone();
            entry.workspace = l.workspace.clone();
            entry.host = Some(l.runner.clone().unwrap_or(l.host.clone()));
            entry.pid = Some(l.pid);
            entry.created_at = Some(l.created_at);
            entry.renewed_at = Some(l.renewed_at);
            entry.expires_at = Some(l.expires_at);
            entry.size_bytes = l.size_bytes;
            (entry.pruned, entry.budget) = prune::last_pruned(dir.as_fd());
        }
    }
    entry
}

/// The status of a root that does not exist yet: no job dirs, and the free space of the
/// filesystem it would be created on.
pub(crate) fn empty(root: &Path) -> Result<Status> {
    let existing = root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let space = Space::of(existing)
        .with_context(|| format!("failed to read free space of {}", existing.display()))?;
    Ok(Status {
        root: root.display().to_string(),
        space,
        leases: Vec::new(),
        totals: Totals::default(),
    })
}

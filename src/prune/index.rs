//! `prune.json`, the per-dir index of pruning: the generation counter, when each unit and
//! incremental dir was first and last used, the units being removed, and what the last prune did.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::fd::BorrowedFd;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fs;
use crate::term;

/// The index, in the job dir (not in `target/`, so `cargo clean` cannot lose it).
pub(crate) const INDEX: &str = "prune.json";
pub(super) const INDEX_VERSION: u32 = 1;
/// An index is a few dozen bytes per unit; anything larger is not ours.
const MAX_INDEX_BYTES: u64 = 8 << 20;

/// Profile dir (relative to `target/`, or `build:` + relative to `build/`) → entry → value.
pub(super) type PerProfile<T> = BTreeMap<String, BTreeMap<String, T>>;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Index {
    pub(super) version: u32,
    /// Adoptions observed so far.
    pub(super) generation: u64,
    /// When atimes were last reset (ns since the epoch); `None`: never (nothing observable yet).
    pub(super) reset_at_ns: Option<u64>,
    /// The largest size of the dir at its first K adoptions: what its builds of every job
    /// shape take (a build-only job's fresh dir alone would make a test job look oversized).
    pub(super) base_size: Option<u64>,
    /// Adoptions that contributed to `base_size` so far.
    #[serde(default)]
    pub(super) base_samples: u64,
    /// Unit (`<pkg>-<hash>`) → last generation using it.
    pub(super) units: PerProfile<u64>,
    /// Unit → first generation using it. Absent (an index written before this field): unknown,
    /// taken as 0, so the unit is never taken to have replaced another (see `identity`).
    #[serde(default)]
    pub(super) first: PerProfile<u64>,
    /// `incremental/` entry → (its mtime in ns, last generation it changed).
    pub(super) incremental: PerProfile<(u64, u64)>,
    /// `incremental/` entry → first generation it was seen changing.
    #[serde(default)]
    pub(super) incremental_first: PerProfile<u64>,
    /// Profile dir → hashes whose fingerprint was being removed: a crash mid-prune leaves their
    /// outputs, removed at the next adoption (if cargo has not rebuilt the unit meanwhile).
    pub(super) pending: BTreeMap<String, BTreeSet<String>>,
    /// Profile dir → units once used by one job together with another unit of their identity:
    /// never superseded (see `identity`).
    #[serde(default)]
    pub(super) plural: BTreeMap<String, BTreeSet<String>>,
    /// What the last adoption that pruned this dir removed, for `status`.
    #[serde(default)]
    pub(super) last_prune: Option<LastPrune>,
    /// What the last prune could not remove (its first failure: a unit behind a bind mount, a
    /// file it may not delete): warned about once, then shown by `status` while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) left_in_place: Option<String>,
    /// `generation` is the running job's, already accounted for at a release of one of its
    /// steps (reads since `reset_at_ns` are still its own): the next adoption does not count
    /// a new one. Absent in an index written before pruning at release: `false`.
    #[serde(default)]
    pub(super) open: bool,
    /// Job shape (the command a step ran) → the units the last job of that shape used: the
    /// working set the size budget is measured against (see `budget`). Absent in older indexes.
    #[serde(default)]
    pub(super) shapes: BTreeMap<String, Shape>,
    /// The dir's size against its budget after the last prune, for `status`.
    #[serde(default)]
    pub(super) budget: Option<BudgetState>,
}

/// The units one job shape used, the last time a job of that shape ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Shape {
    /// The generation of that job.
    pub(super) generation: u64,
    /// Their bytes (each inode once) when it released.
    pub(super) bytes: u64,
    /// Profile dir → units.
    pub(super) units: BTreeMap<String, BTreeSet<String>>,
}

/// A dir's size against its budget, as the last prune left it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct BudgetState {
    /// The dir's size after the prune (`target/` and `build/`, each inode once).
    pub(crate) size: u64,
    /// The budget: `--warm-budget` times the working set.
    pub(crate) budget: u64,
    /// What the recent jobs of each shape used (and files of no unit).
    pub(crate) working_set: u64,
}

impl BudgetState {
    /// Over budget though nothing more may go: the units the recent jobs used take it all
    /// ("never delete what the last job used" wins), or a removal failed or ran out of time.
    pub(crate) fn over(&self) -> bool {
        self.size > self.budget
    }
}

/// What the last prune of a dir removed and when, as recorded in its `prune.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastPrune {
    /// Dead units removed (superseded and budget ones included).
    pub(crate) units: usize,
    /// Of those, units replaced by a unit of the same identity in the job before.
    pub(crate) superseded: usize,
    /// Of those, units removed to bring the dir within its budget (absent in older indexes).
    #[serde(default)]
    pub(crate) budget: usize,
    /// Whether it ran at a job's release (else at an adoption).
    #[serde(default)]
    pub(crate) at_release: bool,
    pub(crate) incremental: usize,
    pub(crate) bytes: u64,
    /// Seconds since the epoch.
    pub(crate) at: u64,
    /// The job whose dir was pruned (the one adopted).
    pub(crate) from: String,
}

/// The index, or `None` when absent or unusable (then it is rebuilt: every unit counts as used).
pub(super) fn load(job_dir: BorrowedFd<'_>) -> Option<Index> {
    let bytes = fs::read_capped(job_dir, OsStr::new(INDEX), MAX_INDEX_BYTES).ok()??;
    match serde_json::from_slice::<Index>(&bytes) {
        Ok(i) if i.version == INDEX_VERSION => Some(i),
        _ => {
            term::verbose(
                "Ignoring",
                format_args!("an unusable {INDEX}; rebuilding it"),
            );
            None
        }
    }
}

pub(super) fn save(job_dir: BorrowedFd<'_>, index: &Index) -> Result<()> {
    let bytes = serde_json::to_vec(index)?;
    fs::write_atomic(job_dir, INDEX, &bytes).with_context(|| format!("failed to write {INDEX}"))
}

/// What the last prune of the job dir `job_dir` removed, if it was ever pruned and its index is
/// readable. For `status` (table and `--json`): a dir's pruned bytes next to its size.
pub(crate) fn last_pruned(job_dir: BorrowedFd<'_>) -> Summary {
    /// Only the fields `status` needs: the per-unit maps are skipped, not built, for each job
    /// dir `status` lists.
    #[derive(Deserialize)]
    struct Fields {
        version: u32,
        #[serde(default)]
        last_prune: Option<LastPrune>,
        #[serde(default)]
        left_in_place: Option<String>,
        #[serde(default)]
        budget: Option<BudgetState>,
    }
    let Some(Ok(index)) = fs::read_capped(job_dir, OsStr::new(INDEX), MAX_INDEX_BYTES)
        .ok()
        .flatten()
        .map(|bytes| serde_json::from_slice::<Fields>(&bytes))
    else {
        return Summary::default();
    };
    if index.version != INDEX_VERSION {
        return Summary::default();
    }
    Summary {
        last: index.last_prune,
        left_in_place: index.left_in_place,
        budget: index.budget,
    }
}

/// What `status` shows of a dir's pruning.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) last: Option<LastPrune>,
    /// What the last prune could not remove.
    pub(crate) left_in_place: Option<String>,
    /// The dir's size against its budget, as the last prune left it.
    pub(crate) budget: Option<BudgetState>,
}

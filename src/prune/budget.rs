//! The size budget: a warm dir stays within `--warm-budget` times its working set, the bytes of
//! what the recent jobs of each shape used (each shape's last job, for shapes run within the
//! last K jobs; a shape is the command a step ran). Above it, units that no such job used go,
//! least recently used first, until the dir is within it. What the recent jobs used is never a
//! candidate, so "never delete what the last job used" wins over the budget; and jobs of
//! several shapes adopting each other's dir (check, test, llvm-cov) keep each other's units.
//!
//! The cost: a shape that has not run in K jobs lost its units by the K rule anyway; a unit no
//! recent job used (a dependency renamed away, a crate built against a dependency that since
//! moved, without a same-identity replacement) goes before K jobs have passed when it takes the
//! dir over budget, and a job that needs it again recompiles it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use super::Scan;
use super::index::{BudgetState, Index, Shape};
use super::layout::{entry_bytes, open_sub, outputs_by_hash, unit_bytes, unit_hash};
use crate::fs::Usage;
use crate::lease;

/// The size walk of the whole dir; past it, the budget is not applied this time.
const WALK_BUDGET: Duration = Duration::from_secs(3);
/// A shape's command is its key; longer ones are cut (a key, not a record of the command).
const MAX_SHAPE_KEY: usize = 200;

/// What the budget decided: the units to remove (profile dir, unit), and the state it leaves.
pub(super) struct Plan {
    pub(super) state: BudgetState,
    /// The dir's size before anything was removed.
    pub(super) total: u64,
}

/// Record that the job of `generation` ran `shape` and used the live units `scan` marks as
/// used by it (every step records the units its job used so far: the union over steps is
/// kept). A step that failed records too, whatever its exit (it built and used its units), but
/// adds to what its shape used before rather than replace it: stopped early, it may have read
/// only part of its graph. Shapes older than `window` generations are forgotten.
pub(super) fn record(
    index: &mut Index,
    scan: &Scan,
    shape: &str,
    succeeded: bool,
    generation: u64,
    window: u64,
) {
    let mut key: String = shape.chars().take(MAX_SHAPE_KEY).collect();
    if key.is_empty() {
        key = "?".into();
    }
    let mut units: BTreeMap<String, BTreeSet<String>> = scan
        .units
        .iter()
        .map(|(rel, u)| {
            let used = u.iter().filter(|(_, s)| s.last == generation);
            (rel.clone(), used.map(|(n, _)| n.clone()).collect())
        })
        .filter(|(_, u): &(String, BTreeSet<String>)| !u.is_empty())
        .collect();
    if !succeeded && let Some(before) = index.shapes.get(&key) {
        for (rel, u) in &before.units {
            units
                .entry(rel.clone())
                .or_default()
                .extend(u.iter().cloned());
        }
    }
    let bytes = bytes_of(scan, &units);
    index.shapes.insert(
        key,
        Shape {
            generation,
            bytes,
            units,
        },
    );
    index
        .shapes
        .retain(|_, s| generation.saturating_sub(s.generation) <= window);
}

/// Keep in each shape only the units still live (the index stays small).
pub(super) fn forget_gone(index: &mut Index) {
    for shape in index.shapes.values_mut() {
        for (rel, u) in &mut shape.units {
            u.retain(|n| index.units.get(rel).is_some_and(|l| l.contains_key(n)));
        }
        shape.units.retain(|_, u| !u.is_empty());
    }
}

/// Bytes of `units` (per profile dir), each inode once.
fn bytes_of(scan: &Scan, units: &BTreeMap<String, BTreeSet<String>>) -> u64 {
    let mut usage = Usage::default();
    let mut bytes = 0;
    for (rel, fd) in &scan.profiles {
        let Some(names) = units.get(rel) else {
            continue;
        };
        let outputs = outputs_by_hash(fd.as_fd());
        for unit in names {
            bytes += unit_bytes(fd.as_fd(), unit, &outputs, &mut usage);
        }
    }
    bytes
}

/// Apply the budget of `factor` times the working set to `scan`: candidates (live units that
/// neither the job of `generation` nor the last job of a recent shape used) move to the dead,
/// least recently used first, until the dir, less what is dead already, is within budget.
/// `None` when the dir could not be measured in time (the budget waits for the next prune).
pub(super) fn apply(
    job_dir: BorrowedFd<'_>,
    scan: &mut Scan,
    shapes: &BTreeMap<String, Shape>,
    generation: u64,
    window: u64,
    factor: f64,
) -> Option<Plan> {
    let total = lease::job_size(job_dir, Some(Instant::now() + WALK_BUDGET))?;
    let recent: BTreeSet<(&str, &str)> = shapes
        .values()
        .filter(|s| generation.saturating_sub(s.generation) <= window)
        .flat_map(|s| {
            s.units
                .iter()
                .flat_map(|(rel, u)| u.iter().map(move |n| (rel.as_str(), n.as_str())))
        })
        .collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    for (rel, units) in &scan.units {
        for (unit, s) in units {
            if s.last < generation && !recent.contains(&(rel.as_str(), unit.as_str())) {
                candidates.push((s.last, Kind::Unit, rel.clone(), unit.clone(), 0));
            }
        }
    }
    // `incremental/` dirs are rustc's cache, never read by a no-op build: any the job did not
    // write may go (its crate recompiles from scratch if it ever changes again).
    for (rel, dirs) in &scan.incremental {
        for (name, (_, s)) in dirs {
            if s.last < generation {
                candidates.push((s.last, Kind::Incremental, rel.clone(), name.clone(), 0));
            }
        }
    }
    let dead = sizes(scan, &mut candidates);
    let spare: u64 = candidates.iter().map(|c| c.4).sum();
    let working_set = total.saturating_sub(dead + spare);
    let budget = (working_set as f64 * factor) as u64;
    let mut size = total.saturating_sub(dead);
    // Least recently used first, a unit before a cache dir, then by name: a stable choice.
    candidates.sort();
    for (_, kind, rel, name, bytes) in candidates {
        if size <= budget {
            break;
        }
        if choose(scan, kind, rel, name) {
            size = size.saturating_sub(bytes);
        }
    }
    Some(Plan {
        state: BudgetState {
            size,
            budget,
            working_set,
        },
        total,
    })
}

/// What the budget may remove: an `incremental/` dir or a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// First: a unit no recent job used is likelier dead than a crate's cache.
    Unit,
    Incremental,
}

/// `(last generation used, kind, profile dir, name, bytes)`.
type Candidate = (u64, Kind, String, String, u64);

/// Move a candidate from the live to the dead; `false` if it was not live.
fn choose(scan: &mut Scan, kind: Kind, rel: String, name: String) -> bool {
    match kind {
        Kind::Unit => {
            let seen = scan.units.get_mut(&rel).and_then(|u| u.remove(&name));
            let (Some(seen), Some(h)) = (seen, unit_hash(&name)) else {
                return false;
            };
            scan.budget.insert((rel.clone(), h.to_owned()));
            scan.dead_units.push((rel, name, seen));
        }
        Kind::Incremental => {
            if scan
                .incremental
                .get_mut(&rel)
                .and_then(|d| d.remove(&name))
                .is_none()
            {
                return false;
            }
            scan.dead_inc.push((rel, name));
        }
    }
    true
}

/// The bytes of what `scan` already has dead (units and `incremental/` dirs); each candidate's
/// bytes are filled in. One pass, each inode once.
fn sizes(scan: &Scan, candidates: &mut [Candidate]) -> u64 {
    let mut usage = Usage::default();
    let mut dead = 0;
    for (rel, fd) in &scan.profiles {
        let outputs = outputs_by_hash(fd.as_fd());
        let inc = open_sub(fd.as_fd(), "incremental");
        let inc_bytes = |name: &str, usage: &mut Usage| {
            inc.as_ref()
                .map_or(0, |d| entry_bytes(d.as_fd(), OsStr::new(name), usage))
        };
        for (r, unit, _) in &scan.dead_units {
            if r == rel {
                dead += unit_bytes(fd.as_fd(), unit, &outputs, &mut usage);
            }
        }
        for (r, name) in &scan.dead_inc {
            if r == rel {
                dead += inc_bytes(name, &mut usage);
            }
        }
        for (_, kind, r, name, bytes) in candidates.iter_mut() {
            if r == rel {
                *bytes = match kind {
                    Kind::Unit => unit_bytes(fd.as_fd(), name, &outputs, &mut usage),
                    Kind::Incremental => inc_bytes(name, &mut usage),
                };
            }
        }
    }
    dead
}

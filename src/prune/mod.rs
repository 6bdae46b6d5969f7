//! Pruning of adopted target dirs: units (cargo's `.fingerprint/<pkg>-<hash>/` with the outputs
//! carrying that hash) that no job of this dir used in the last K jobs are removed at adoption,
//! and so, at once, are units the last job replaced by units of the same identity (a dependency
//! bumped in `Cargo.lock`, and its dependents: see `identity`).
//!
//! What it relies on, verified with strace on cargo 1.95: every build (even a no-op one) opens
//! the fingerprint hash file (`.fingerprint/<unit>/<kind>-<target>`) of every unit in its graph
//! to compare it. Liveness is decided per unit from those reads, never per output file (a no-op
//! build only `stat`s most rlibs). To see a read on `relatime` mounts, each fingerprint file's
//! atime is reset to its mtime at adoption (`utimensat` also moves its ctime to now): relatime
//! then records the next read, however soon. Where reads are not recorded at all (`noatime`,
//! some FUSE/NFS mounts), a self-test on a scratch file says so and only the size backstop
//! (`--max-warm-size`) applies.
//!
//! A small per-dir index (`prune.json` next to `lease.json`, so `cargo clean` cannot lose it)
//! holds the generation counter (one per adopting job: the steps of a job resume, so they share
//! one generation) and, per unit, the first and last generation that used it. Everything runs at
//! adoption, under the lock the adopter holds: no one can be building in the dir.
//!
//! The trade-off of the superseded rule: jobs alternating between two lockfiles (branch A, then
//! branch B, then A) recompile the dependencies that differ between them (and their dependents)
//! in every job, no more than a fresh dir would compile; everything else stays warm. Where that
//! is the common pattern, `--no-prune` keeps every unit (only the size backstop applies), and
//! `--prune-after` still bounds the K rule for units without a same-identity replacement.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, FileType, Mode};

use crate::fs;
use crate::lease::{BUILD_DIR, TARGET};
use crate::quantity::{self, Bytes};

mod atime;
mod budget;
mod delete;
mod identity;
mod index;
mod layout;
pub(crate) mod saved;

pub(crate) use index::{BudgetState, INDEX, LastPrune, last_pruned};
use index::{Index, PerProfile};
/// Where cargo keeps units, for content verification (`warm/`) as for pruning.
#[cfg(feature = "store")]
pub(crate) use layout::output_hash;
pub(crate) use layout::profile_dirs;
use layout::{list, open_sub, remove, unit_hash};

/// No new deletion starts after this; what is left stays dead and goes at the next adoption.
const BUDGET: Duration = Duration::from_secs(2);

/// `--max-warm-size`: an absolute size, a multiple of the dir's largest size over its first K
/// adoptions, or off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum WarmLimit {
    Bytes(u64),
    Times(f64),
    Off,
}

impl WarmLimit {
    pub(crate) fn parse(s: &str) -> Result<WarmLimit, String> {
        let t = s.trim();
        if t == "off" || t == "0" {
            return Ok(WarmLimit::Off);
        }
        if let Some(x) = t.strip_suffix(['x', '×']) {
            return match x.trim().parse::<f64>() {
                Ok(f) if f >= 1.0 && f.is_finite() => Ok(WarmLimit::Times(f)),
                _ => Err(format!(
                    "invalid multiple `{s}`; use e.g. `3x` (at least 1x), a size, or `off`"
                )),
            };
        }
        quantity::parse_size(t, "`3x`, `2GiB`, `500MB` or `off`").map(WarmLimit::Bytes)
    }

    /// The limit in bytes for a dir whose first jobs left at most `base` bytes.
    fn bytes(self, base: Option<u64>) -> Option<u64> {
        match self {
            WarmLimit::Bytes(b) => Some(b),
            WarmLimit::Times(f) => base.map(|b| (b as f64 * f) as u64),
            WarmLimit::Off => None,
        }
    }
}

impl fmt::Display for WarmLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarmLimit::Bytes(b) => write!(f, "{}", Bytes(*b)),
            WarmLimit::Times(x) => write!(f, "{x}x its largest size over its first jobs"),
            WarmLimit::Off => f.write_str("off"),
        }
    }
}

/// A `--max-warm-size` as the option takes it (`3x`, `2GiB`, `off`), for help texts; `WarmLimit`'s
/// own `Display` speaks to a reader (`3x its largest size over its first jobs`).
pub(crate) struct WarmLimitArg(pub(crate) WarmLimit);

impl fmt::Display for WarmLimitArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            WarmLimit::Bytes(b) => write!(f, "{}", quantity::SizeArg(b)),
            WarmLimit::Times(x) => write!(f, "{x}x"),
            WarmLimit::Off => f.write_str("off"),
        }
    }
}

/// What `--no-prune`, `--prune-after` and `--max-warm-size` resolved to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) enabled: bool,
    /// A unit unused by this many consecutive jobs is dead.
    pub(crate) after: u64,
    pub(crate) max_warm: WarmLimit,
    /// `--warm-budget`: the dir's size bound as a multiple of its working set; `None`: off.
    pub(crate) budget: Option<f64>,
}

/// `--prune-after`'s default K: a unit no job of the dir used in the last K jobs is dead (the K
/// rule).
pub(crate) const DEFAULT_AFTER: u64 = 3;

/// `--max-warm-size`'s default: an adopted dir still over three times its largest size at its
/// first K adoptions (what a fresh build of each job shape takes) is emptied.
pub(crate) const DEFAULT_MAX_WARM: WarmLimit = WarmLimit::Times(3.0);

/// `--warm-budget`'s default: a warm dir is kept within 1.3 times its working set (without a
/// budget, fd's v10.0.0..v10.3.0 history reached 1.95x a fresh build: docs/warmth.md, "A size
/// budget, after every job").
pub(crate) const DEFAULT_BUDGET: f64 = 1.3;

/// `--warm-budget`: a factor of at least 1 (`Some`), or `off` (`None`). A newtype, as clap
/// reads an `Option<Option<_>>` field as an option whose value may be missing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WarmBudget(pub(crate) Option<f64>);

impl WarmBudget {
    pub(crate) fn parse(s: &str) -> Result<WarmBudget, String> {
        let t = s.trim();
        if t == "off" {
            return Ok(WarmBudget(None));
        }
        match t
            .strip_suffix(['x', '×'])
            .unwrap_or(t)
            .trim()
            .parse::<f64>()
        {
            Ok(f) if f >= 1.0 && f.is_finite() => Ok(WarmBudget(Some(f))),
            _ => Err(format!(
                "invalid budget `{s}`; use a multiple of the working set of at least 1, like \
                 `1.3`, or `off`"
            )),
        }
    }
}

/// What one prune (at adoption or at release) removed, and why.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pruned {
    pub(crate) units: usize,
    /// Of `units`, those replaced by a unit of the same identity in the job before.
    pub(crate) superseded: usize,
    /// Of `units`, those removed to bring the dir within its budget; the rest (neither these nor
    /// `superseded`) are the K rule's (no job used them in K jobs).
    pub(crate) budget: usize,
    /// It ran at a job's release (else at an adoption).
    pub(crate) at_release: bool,
    /// The dir's size against its budget after it, where the budget applies and was measured.
    pub(crate) state: Option<BudgetState>,
    /// `incremental/` dirs rustc had not written in K jobs, or of a superseded crate.
    pub(crate) incremental: usize,
    pub(crate) bytes: u64,
}

/// The first and last generation that used a unit (or changed an `incremental/` dir).
#[derive(Debug, Clone, Copy)]
struct Seen {
    first: u64,
    last: u64,
}

impl Seen {
    /// New since the last adoption (or the index was lost): in use by the job of `generation`.
    fn new(generation: u64) -> Seen {
        Seen {
            first: generation,
            last: generation,
        }
    }

    /// Known, first used at `first` (unknown for entries of an older index: 0, so never taken
    /// as a replacement), last at `last`, and used again by the job of `generation` or not.
    fn known(first: Option<u64>, last: u64, used: bool, generation: u64) -> Seen {
        Seen {
            first: first.unwrap_or(0),
            last: if used {
                generation
            } else {
                last.min(generation)
            },
        }
    }

    /// The K rule.
    fn dead(&self, generation: u64, after: u64) -> bool {
        generation - self.last >= after
    }
}

/// How an adoption's pruning ended, for `report::prune` to say.
pub(crate) enum Outcome {
    /// Pruning is off: the base size was recorded, nothing else done.
    Off,
    /// The backstop emptied the dir.
    Emptied { size: u64, limit: u64 },
    /// Reads are not observable here (why); only the backstop applies.
    Unobservable(String),
    Ran {
        pruned: Pruned,
        generation: u64,
        /// The first removal that failed: the rest went on.
        first_error: Option<String>,
        /// The previous prune of this dir left the same thing in place (and said so then).
        said_before: bool,
    },
}

impl Outcome {
    /// What this prune removed (nothing when it was off, not possible here, or emptied the dir
    /// instead).
    pub(crate) fn pruned(&self) -> Pruned {
        match self {
            Outcome::Ran { pruned, .. } => pruned.clone(),
            Outcome::Off | Outcome::Emptied { .. } | Outcome::Unobservable(_) => Pruned::default(),
        }
    }
}

/// When pruning runs: right after a job adopted a dir, or as a job (one of its steps) releases
/// its own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Moment<'a> {
    /// Adopted from `from`; `size` is the dir's, measured by the adoption (`lease::job_size`,
    /// within its budget), else the size `from`'s lease recorded.
    Adoption { from: &'a str, size: Option<u64> },
    /// The job `job` releases after a step that ran `shape` (its command), which succeeded or
    /// not (a failed step's units add to its shape's, see `budget::record`).
    Release {
        job: &'a str,
        shape: &'a str,
        succeeded: bool,
    },
}

/// Called right after a job adopted `from`'s dir, while its lock is held: what pruning did,
/// for `report::prune` to say. Its errors never fail the job (pruning is an optimisation): the
/// caller warns.
pub(crate) fn at_adoption(
    job_dir: BorrowedFd<'_>,
    from: &str,
    size: Option<u64>,
    s: &Settings,
) -> Result<Outcome> {
    run(job_dir, Moment::Adoption { from, size }, s)
}

/// Called as a step of the job `job` that ran `shape` releases its dir, its lock still held
/// and its command over: what the job replaced (units of the same identity it superseded) goes
/// now rather than at the next adoption, and the dir is brought within its budget, so the bound
/// holds from the release on. No K rule here: a later step of the job may still use the units
/// of the last K jobs.
pub(crate) fn at_release(
    job_dir: BorrowedFd<'_>,
    job: &str,
    shape: &str,
    succeeded: bool,
    s: &Settings,
) -> Result<Outcome> {
    let m = Moment::Release {
        job,
        shape,
        succeeded,
    };
    run(job_dir, m, s)
}

fn run(job_dir: BorrowedFd<'_>, m: Moment<'_>, s: &Settings) -> Result<Outcome> {
    let target = match fs::open_dir_nofollow(job_dir, OsStr::new(TARGET)) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Off),
        Err(e) => return Err(e).context("failed to open target/"),
    };
    // Deletion stays on the job dir's mount: a bind mount inside `target/` keeps its files.
    let dev = fs::mount_of(job_dir)?;
    let mut index = index::load(job_dir).unwrap_or_else(|| Index {
        version: index::INDEX_VERSION,
        ..Index::default()
    });
    let size = match m {
        Moment::Adoption { size, .. } => measure(size, &mut index, s.after),
        Moment::Release { .. } => None,
    };
    let why_not = if !s.enabled {
        Some(Outcome::Off)
    } else {
        atime::atime_observable(target.as_fd())
            .err()
            .map(Outcome::Unobservable)
    };
    if let Some(outcome) = why_not {
        // The backstop alone; the base size is still recorded for it.
        if let Some(emptied) = backstop(job_dir, &index, size, 0, s, dev)? {
            return Ok(emptied);
        }
        index::save(job_dir, &index)?;
        return Ok(outcome);
    }
    // The job running since the last reset has one generation, however many of its steps
    // released since.
    let generation = index.generation + u64::from(!index.open);
    let ran = prune(job_dir, target.as_fd(), &mut index, m, s, generation, dev)?;
    // The backstop comes after pruning: only a dir that pruning could not bring down is emptied.
    if let Outcome::Ran { pruned, .. } = &ran
        && let Some(emptied) = backstop(job_dir, &index, size, pruned.bytes, s, dev)?
    {
        return Ok(emptied);
    }
    Ok(ran)
}

/// Scan, pick what goes by each rule (K, superseded, budget), remove it, record the new state.
fn prune(
    job_dir: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    index: &mut Index,
    m: Moment<'_>,
    s: &Settings,
    generation: u64,
    dev: fs::MountId,
) -> Result<Outcome> {
    let release = matches!(m, Moment::Release { .. });
    let after = if release { u64::MAX } else { s.after };
    let mut scan = scan(job_dir, target, index, generation, after);
    supersede(&mut scan, generation);
    if let Moment::Release {
        shape, succeeded, ..
    } = m
    {
        budget::record(index, &scan, shape, succeeded, generation, s.after);
    }
    let plan = s.budget.and_then(|factor| {
        budget::apply(
            job_dir,
            &mut scan,
            &index.shapes,
            generation,
            s.after,
            factor,
        )
    });
    let (mut pruned, first_error) = delete::dead(job_dir, index, &mut scan, dev)?;
    let said_before = first_error.is_some() && index.left_in_place == first_error;
    index.left_in_place.clone_from(&first_error);
    pruned.at_release = release;
    pruned.state = plan.map(|p| BudgetState {
        size: p.total.saturating_sub(pruned.bytes),
        ..p.state
    });
    let who = match m {
        Moment::Adoption { from, .. } => from,
        Moment::Release { job, .. } => job,
    };
    finish(
        job_dir,
        std::mem::take(index),
        scan,
        generation,
        &pruned,
        who,
    )?;
    Ok(Outcome::Ran {
        pruned,
        generation,
        first_error,
        said_before,
    })
}

/// At adoption, the `--max-warm-size` backstop: a dir still larger than its limit once pruning
/// removed `freed` bytes is emptied, not adopted warm.
fn backstop(
    job_dir: BorrowedFd<'_>,
    index: &Index,
    size: Option<u64>,
    freed: u64,
    s: &Settings,
    dev: fs::MountId,
) -> Result<Option<Outcome>> {
    let (Some(size), Some(limit)) = (size, s.max_warm.bytes(index.base_size)) else {
        return Ok(None);
    };
    let size = size.saturating_sub(freed);
    if size <= limit {
        return Ok(None);
    }
    empty(job_dir, dev)?;
    Ok(Some(Outcome::Emptied { size, limit }))
}

/// The adopted dir's `size` (measured by the adoption itself, so not walked again here),
/// recorded as a base size over the dir's first `after` adoptions.
fn measure(size: Option<u64>, index: &mut Index, after: u64) -> Option<u64> {
    if let Some(size) = size
        && index.base_samples < after
    {
        index.base_size = Some(index.base_size.unwrap_or(0).max(size));
        index.base_samples += 1;
    }
    size
}

/// Empty an oversized dir: `target/` recreated empty, `build/` and the index gone.
fn empty(job_dir: BorrowedFd<'_>, dev: fs::MountId) -> Result<()> {
    remove(job_dir, OsStr::new(TARGET), dev).context("failed to empty the oversized target/")?;
    rustix::fs::mkdirat(job_dir, TARGET, Mode::from_raw_mode(0o755))
        .map_err(io::Error::from)
        .context("failed to recreate target/")?;
    if fs::open_dir_nofollow(job_dir, OsStr::new(BUILD_DIR)).is_ok() {
        remove(job_dir, OsStr::new(BUILD_DIR), dev)
            .context("failed to empty the oversized build/")?;
    }
    let _ = rustix::fs::unlinkat(job_dir, INDEX, AtFlags::empty());
    Ok(())
}

/// Every unit and `incremental/` dir of the job dir, live or dead by the K rule.
struct Scan {
    profiles: Vec<(String, OwnedFd)>,
    units: PerProfile<Seen>,
    incremental: PerProfile<(u64, Seen)>,
    dead_units: Vec<(String, String, Seen)>,
    dead_inc: Vec<(String, String)>,
    /// `(profile dir, hash)` of the dead units that were superseded.
    superseded: BTreeSet<(String, String)>,
    /// `(profile dir, hash)` of the dead units the budget chose.
    budget: BTreeSet<(String, String)>,
    /// Units never superseded (`Index::plural`).
    plural: BTreeMap<String, BTreeSet<String>>,
}

/// Every profile dir of the job dir: units live under `target/`, or under `build/` when a build
/// dir is configured (cmd/job.rs points `CARGO_BUILD_BUILD_DIR` there), named `build:<rel>`.
fn profiles(job_dir: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Vec<(String, OwnedFd)> {
    let mut profiles = profile_dirs(target);
    if let Some(build) = open_sub(job_dir, BUILD_DIR) {
        profiles.extend(
            profile_dirs(build.as_fd())
                .into_iter()
                .map(|(rel, fd)| (format!("{BUILD_DIR}:{rel}"), fd)),
        );
    }
    profiles
}

fn scan(
    job_dir: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    index: &Index,
    generation: u64,
    after: u64,
) -> Scan {
    let profiles = profiles(job_dir, target);
    let mut scan = Scan {
        profiles: Vec::new(),
        units: BTreeMap::new(),
        incremental: BTreeMap::new(),
        dead_units: Vec::new(),
        dead_inc: Vec::new(),
        superseded: BTreeSet::new(),
        budget: BTreeSet::new(),
        plural: index.plural.clone(),
    };
    let pass = Pass {
        index,
        generation,
        after,
    };
    for (rel, fd) in &profiles {
        pass.units(&mut scan, rel, fd.as_fd());
        pass.incremental(&mut scan, rel, fd.as_fd());
    }
    scan.profiles = profiles;
    scan
}

/// One adoption's scan: the index before it, its generation, K.
struct Pass<'a> {
    index: &'a Index,
    generation: u64,
    after: u64,
}

impl Pass<'_> {
    fn units(&self, scan: &mut Scan, rel: &str, profile: BorrowedFd<'_>) {
        let Pass {
            index,
            generation,
            after,
        } = *self;
        let known = index.units.get(rel);
        let firsts = index.first.get(rel);
        let live = scan.units.entry(rel.to_owned()).or_default();
        let fp = open_sub(profile, ".fingerprint");
        for (name, ty) in fp.as_ref().map_or_else(Vec::new, |d| list(d.as_fd())) {
            let Some(name) = name.to_str() else { continue };
            if ty != FileType::Directory || unit_hash(name).is_none() {
                continue;
            }
            let seen = match known.and_then(|k| k.get(name)) {
                None => Seen::new(generation),
                Some(&last) => {
                    let used = index.reset_at_ns.is_none_or(|reset| {
                        atime::fingerprint_read(fp.as_ref().map(|d| d.as_fd()), name, reset)
                    });
                    let first = firsts.and_then(|f| f.get(name)).copied();
                    Seen::known(first, last, used, generation)
                }
            };
            if seen.dead(generation, after) {
                scan.dead_units
                    .push((rel.to_owned(), name.to_owned(), seen));
            } else {
                live.insert(name.to_owned(), seen);
            }
        }
    }

    /// Incremental state is never read by a no-op build: it is live while rustc keeps writing it
    /// (each compile of the crate makes a new session dir, changing the mtime).
    fn incremental(&self, scan: &mut Scan, rel: &str, profile: BorrowedFd<'_>) {
        let Pass {
            index,
            generation,
            after,
        } = *self;
        let known = index.incremental.get(rel);
        let firsts = index.incremental_first.get(rel);
        let live = scan.incremental.entry(rel.to_owned()).or_default();
        let Some(inc) = open_sub(profile, "incremental") else {
            return;
        };
        for (name, ty) in list(inc.as_fd()) {
            let Some(name) = name.to_str() else { continue };
            if ty != FileType::Directory {
                continue;
            }
            let Some(mtime) = atime::stat_ns(inc.as_fd(), name).map(|t| t.1) else {
                continue;
            };
            let first = firsts.and_then(|f| f.get(name)).copied();
            let seen = match known.and_then(|k| k.get(name)) {
                Some(&(m, last)) => Seen::known(first, last, m != mtime, generation),
                None => Seen::new(generation),
            };
            if seen.dead(generation, after) {
                scan.dead_inc.push((rel.to_owned(), name.to_owned()));
            } else {
                live.insert(name.to_owned(), (mtime, seen));
            }
        }
    }
}

/// Move superseded units, and the `incremental/` dirs of their crates that a dir of the same
/// crate replaced, from live to dead.
fn supersede(scan: &mut Scan, generation: u64) {
    let sup = identity::superseded(&scan.profiles, &scan.units, &scan.plural, generation);
    scan.plural = sup.plural;
    for (rel, unit) in sup.units {
        if let Some(seen) = scan.units.get_mut(&rel).and_then(|u| u.remove(&unit)) {
            if let Some(h) = unit_hash(&unit) {
                scan.superseded.insert((rel.clone(), h.to_owned()));
            }
            scan.dead_units.push((rel, unit, seen));
        }
    }
    // Per (profile dir, crate): the latest first change among dirs the last job wrote.
    let crate_of = |name: &str| name.rsplit_once('-').map(|(c, _)| c.to_owned());
    let mut written: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (rel, dirs) in &scan.incremental {
        for (name, (_, s)) in dirs {
            if s.last == generation
                && let Some(c) = crate_of(name)
            {
                let f = written.entry((rel.clone(), c)).or_insert(s.first);
                *f = (*f).max(s.first);
            }
        }
    }
    for (rel, dirs) in &mut scan.incremental {
        let targets = sup.targets.get(rel);
        dirs.retain(|name, (_, s)| {
            let replaced = s.last < generation
                && identity::same_crate(name, targets)
                && crate_of(name)
                    .and_then(|c| written.get(&(rel.clone(), c)))
                    .is_some_and(|&f| s.last < f);
            if replaced {
                scan.dead_inc.push((rel.clone(), name.clone()));
            }
            !replaced
        });
    }
}

/// Atime back to mtime (ctime becomes now), for the live units `which` picks: the next job's
/// reads show.
fn reset(scan: &Scan, which: impl Fn(&Seen) -> bool) {
    for (rel, fd) in &scan.profiles {
        let Some(fp) = open_sub(fd.as_fd(), ".fingerprint") else {
            continue;
        };
        for (unit, seen) in scan.units.get(rel).into_iter().flatten() {
            if which(seen) {
                atime::reset_unit(fp.as_fd(), unit);
            }
        }
    }
}

/// Record the new state and, at adoption, make the next job's reads observable.
fn finish(
    job_dir: BorrowedFd<'_>,
    mut index: Index,
    scan: Scan,
    generation: u64,
    pruned: &Pruned,
    from: &str,
) -> Result<()> {
    let now = atime::now_ns();
    if pruned.at_release {
        // The job may have more steps: their reads count from the same reset, as its own. Only
        // the reads of this scan (of units the job did not use) are undone.
        reset(&scan, |s| s.last < generation);
        index.open = true;
    } else {
        reset(&scan, |_| true);
        index.reset_at_ns = Some(now);
        index.open = false;
    }
    let split = |m: &PerProfile<Seen>, f: fn(&Seen) -> u64| -> PerProfile<u64> {
        m.iter()
            .map(|(rel, u)| {
                (
                    rel.clone(),
                    u.iter().map(|(n, s)| (n.clone(), f(s))).collect(),
                )
            })
            .collect()
    };
    index.version = index::INDEX_VERSION;
    index.generation = generation;
    index.units = split(&scan.units, |s| s.last);
    budget::forget_gone(&mut index);
    if pruned.state.is_some() {
        index.budget = pruned.state;
    }
    // Only live units stay marked.
    index.plural = scan.plural;
    for (rel, p) in &mut index.plural {
        p.retain(|u| index.units.get(rel).is_some_and(|l| l.contains_key(u)));
    }
    index.plural.retain(|_, p| !p.is_empty());
    index.first = split(&scan.units, |s| s.first);
    let inc_seen: PerProfile<Seen> = scan
        .incremental
        .iter()
        .map(|(rel, d)| {
            (
                rel.clone(),
                d.iter().map(|(n, (_, s))| (n.clone(), *s)).collect(),
            )
        })
        .collect();
    index.incremental_first = split(&inc_seen, |s| s.first);
    index.incremental = scan
        .incremental
        .into_iter()
        .map(|(rel, d)| {
            (
                rel,
                d.into_iter().map(|(n, (m, s))| (n, (m, s.last))).collect(),
            )
        })
        .collect();
    if pruned.units > 0 || pruned.incremental > 0 {
        index.last_prune = Some(LastPrune {
            units: pruned.units,
            superseded: pruned.superseded,
            budget: pruned.budget,
            at_release: pruned.at_release,
            incremental: pruned.incremental,
            bytes: pruned.bytes,
            at: now / 1_000_000_000,
            from: from.to_owned(),
        });
    }
    index::save(job_dir, &index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_limits() {
        assert_eq!(WarmLimit::parse("3x").unwrap(), WarmLimit::Times(3.0));
        assert_eq!(WarmLimit::parse("2GiB").unwrap(), WarmLimit::Bytes(2 << 30));
        assert_eq!(WarmLimit::parse("off").unwrap(), WarmLimit::Off);
        assert!(WarmLimit::parse("0.5x").is_err());
        assert!(WarmLimit::parse("lots").is_err());
        assert!(WarmLimit::parse("3").unwrap_err().contains("`3x`, `2GiB`"));
        assert_eq!(WarmLimit::Times(3.0).bytes(Some(100)), Some(300));
        assert_eq!(WarmLimit::Times(3.0).bytes(None), None);
    }

    #[test]
    fn warm_budgets() {
        assert_eq!(WarmBudget::parse("1.3").unwrap(), WarmBudget(Some(1.3)));
        assert_eq!(WarmBudget::parse("2x").unwrap(), WarmBudget(Some(2.0)));
        assert_eq!(WarmBudget::parse("off").unwrap(), WarmBudget(None));
        assert!(WarmBudget::parse("0.9").is_err());
        assert!(WarmBudget::parse("lots").is_err());
    }
}

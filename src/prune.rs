//! Pruning of adopted target dirs: units (cargo's `.fingerprint/<pkg>-<hash>/` with the outputs
//! carrying that hash) that no job of this dir used in the last K jobs are removed at adoption.
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
//! one generation) and, per unit, the last generation that used it. Everything runs at adoption,
//! under the lock the adopter holds: no one can be building in the dir.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use serde::{Deserialize, Serialize};

use crate::fault;
use crate::fs;
use crate::lease::TARGET;
use crate::term;
use crate::units::{self, Bytes};

/// The index, in the job dir (not in `target/`).
pub(crate) const INDEX: &str = "prune.json";
const INDEX_VERSION: u32 = 1;
/// An index is a few dozen bytes per unit; anything larger is not ours.
const MAX_INDEX_BYTES: u64 = 8 << 20;
/// The scratch file of the atime self-test, inside `target/`.
const PROBE: &str = ".cargo-guarded-atime-probe";
/// No new deletion starts after this; what is left stays dead and goes at the next adoption.
const BUDGET: Duration = Duration::from_secs(2);
/// The size walk of the backstop, when the lease has no recent size.
const SIZE_BUDGET: Duration = Duration::from_millis(500);
/// The job dir's `build/`, cargo's build dir when one is configured.
const BUILD_DIR: &str = "build";
/// Where cargo puts per-unit outputs named `…-<hash>…` inside a profile dir.
const OUTPUT_DIRS: &[&str] = &["deps", "build", "examples"];
/// `ST_NOATIME` in `statvfs`'s `f_flag`.
const ST_NOATIME: u64 = 1024;

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
        units::parse_size(t).map(WarmLimit::Bytes)
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

/// What `--no-prune`, `--prune-after` and `--max-warm-size` resolved to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) enabled: bool,
    /// A unit unused by this many consecutive jobs is dead.
    pub(crate) after: u64,
    pub(crate) max_warm: WarmLimit,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    version: u32,
    /// Adoptions observed so far.
    generation: u64,
    /// When atimes were last reset (ns since the epoch); `None`: never (nothing observable yet).
    reset_at_ns: Option<u64>,
    /// The largest size of the dir at its first K adoptions: what its builds of every job
    /// shape take (a build-only job's fresh dir alone would make a test job look oversized).
    base_size: Option<u64>,
    /// Adoptions that contributed to `base_size` so far.
    #[serde(default)]
    base_samples: u64,
    /// Profile dir (relative to `target/`) → unit (`<pkg>-<hash>`) → last generation using it.
    units: BTreeMap<String, BTreeMap<String, u64>>,
    /// Profile dir → `incremental/` entry → (its mtime in ns, last generation it changed).
    incremental: BTreeMap<String, BTreeMap<String, (u64, u64)>>,
    /// Profile dir → hashes whose fingerprint was being removed: a crash mid-prune leaves their
    /// outputs, removed at the next adoption (if cargo has not rebuilt the unit meanwhile).
    pending: BTreeMap<String, BTreeSet<String>>,
}

/// What one adoption pruned.
#[derive(Debug, Default)]
pub(crate) struct Pruned {
    pub(crate) units: usize,
    /// `incremental/` dirs rustc had not written in K jobs.
    pub(crate) incremental: usize,
    pub(crate) bytes: u64,
}

/// Called right after a job adopted `from`'s dir, while its lock is held. Never fails the job:
/// pruning is an optimisation, so its errors are warnings.
/// Returns what was pruned (nothing, when pruning is off, not possible here, or failed).
pub(crate) fn at_adoption(
    job_dir: BorrowedFd<'_>,
    from: &str,
    size: Option<u64>,
    s: &Settings,
) -> Pruned {
    run(job_dir, from, size, s).unwrap_or_else(|e| {
        term::warn(format_args!("pruning the dir adopted from {from}: {e:#}"));
        Pruned::default()
    })
}

fn run(job_dir: BorrowedFd<'_>, from: &str, size: Option<u64>, s: &Settings) -> Result<Pruned> {
    let target = match fs::open_dir_nofollow(job_dir, OsStr::new(TARGET)) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Pruned::default()),
        Err(e) => return Err(e).context("failed to open target/"),
    };
    // Deletion stays on the job dir's mount: a bind mount inside `target/` keeps its files.
    let dev = fs::mount_of(job_dir)?;
    let mut index = load(job_dir).unwrap_or_else(|| Index {
        version: INDEX_VERSION,
        ..Index::default()
    });
    // The lease's size can be minutes (jobs) old: measure now, within a budget.
    let deadline = Instant::now() + SIZE_BUDGET;
    let size = fs::tree_size(job_dir, OsStr::new(TARGET), Some(deadline))
        .map(|t| t + fs::tree_size(job_dir, OsStr::new(BUILD_DIR), Some(deadline)).unwrap_or(0))
        .or(size);
    if let Some(size) = size
        && index.base_samples < s.after
    {
        index.base_size = Some(index.base_size.unwrap_or(0).max(size));
        index.base_samples += 1;
    }

    // The backstop, everywhere: a dir far larger than a fresh build is emptied, not adopted warm.
    if let (Some(size), Some(limit)) = (size, s.max_warm.bytes(index.base_size))
        && size > limit
    {
        drop(target);
        remove(job_dir, OsStr::new(TARGET), dev)
            .context("failed to empty the oversized target/")?;
        rustix::fs::mkdirat(job_dir, TARGET, Mode::from_raw_mode(0o755))
            .map_err(io::Error::from)
            .context("failed to recreate target/")?;
        if fs::open_dir_nofollow(job_dir, OsStr::new(BUILD_DIR)).is_ok() {
            remove(job_dir, OsStr::new(BUILD_DIR), dev)
                .context("failed to empty the oversized build/")?;
        }
        let _ = rustix::fs::unlinkat(job_dir, INDEX, AtFlags::empty());
        term::status(format_args!(
            "the dir adopted from {from} is {}, over --max-warm-size ({}{}): emptied it; this job \
             builds fresh",
            Bytes(size),
            Bytes(limit),
            match s.max_warm {
                WarmLimit::Times(_) => format!(", {}", s.max_warm),
                _ => String::new(),
            }
        ));
        return Ok(Pruned::default());
    }
    if !s.enabled {
        // Still record the base size, for the backstop.
        save(job_dir, &index)?;
        return Ok(Pruned::default());
    }
    if let Err(why) = atime_observable(target.as_fd()) {
        term::status(format_args!(
            "not pruning the dir adopted from {from}: access times are not recorded on its \
             filesystem ({why}); only the --max-warm-size backstop ({}) applies",
            s.max_warm
        ));
        save(job_dir, &index)?;
        return Ok(Pruned::default());
    }

    let generation = index.generation + 1;
    let deadline = Instant::now() + BUDGET;
    let mut pruned = Pruned::default();
    let mut dead_inc = Vec::new();
    let mut dead_units: Vec<(String, String)> = Vec::new();
    // Units live under `target/`, or under `build/` when a build dir is configured (run.rs
    // points `CARGO_BUILD_BUILD_DIR` there).
    let mut profiles = profile_dirs(target.as_fd());
    if let Some(build) = open_sub(job_dir, BUILD_DIR) {
        profiles.extend(
            profile_dirs(build.as_fd())
                .into_iter()
                .map(|(rel, fd)| (format!("{BUILD_DIR}:{rel}"), fd)),
        );
    }
    let mut units_now: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut inc_now: BTreeMap<String, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
    for (rel, fd) in &profiles {
        let known = index.units.get(rel);
        let seen = units_now.entry(rel.clone()).or_default();
        let fp = open_sub(fd.as_fd(), ".fingerprint");
        for (name, ty) in fp.as_ref().map_or_else(Vec::new, |d| list(d.as_fd())) {
            let Some(name) = name.to_str() else { continue };
            if ty != FileType::Directory || unit_hash(name).is_none() {
                continue;
            }
            let last = match known.and_then(|k| k.get(name)) {
                // Unknown: new since the last adoption (or the index was lost), so in use.
                None => generation,
                Some(&last) => {
                    let used = index.reset_at_ns.is_none_or(|reset| {
                        fingerprint_read(fp.as_ref().map(|d| d.as_fd()), name, reset)
                    });
                    if used {
                        generation
                    } else {
                        last.min(generation)
                    }
                }
            };
            if generation - last >= s.after {
                dead_units.push((rel.clone(), name.to_owned()));
            } else {
                seen.insert(name.to_owned(), last);
            }
        }
        // Incremental state is never read by a no-op build: it is live while rustc keeps
        // writing it (each compile of the crate makes a new session dir, changing the mtime).
        let known_inc = index.incremental.get(rel);
        let seen_inc = inc_now.entry(rel.clone()).or_default();
        if let Some(inc) = open_sub(fd.as_fd(), "incremental") {
            for (name, ty) in list(inc.as_fd()) {
                let Some(name) = name.to_str() else { continue };
                if ty != FileType::Directory {
                    continue;
                }
                let Some(mtime) = stat_ns(inc.as_fd(), name).map(|t| t.1) else {
                    continue;
                };
                let last = match known_inc.and_then(|k| k.get(name)) {
                    Some(&(m, last)) if m == mtime => last.min(generation),
                    _ => generation,
                };
                if generation - last >= s.after {
                    dead_inc.push((rel.clone(), name.to_owned()));
                } else {
                    seen_inc.insert(name.to_owned(), (mtime, last));
                }
            }
        }
    }

    // Record what is about to go before touching it: a crash mid-prune is finished next time.
    let mut pending = std::mem::take(&mut index.pending);
    // A profile dir that is gone took its units with it.
    pending.retain(|rel, _| profiles.iter().any(|(r, _)| r == rel));
    for (rel, unit) in &dead_units {
        if let Some(h) = unit_hash(unit) {
            pending.entry(rel.clone()).or_default().insert(h.to_owned());
        }
    }
    if !dead_units.is_empty() {
        index.pending = pending.clone();
        save(job_dir, &index)?;
    }

    let mut first_error = None;
    let mut finished: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, fd) in &profiles {
        let Some(hashes) = pending.get(rel) else {
            continue;
        };
        let fp = open_sub(fd.as_fd(), ".fingerprint");
        let fp_names: BTreeMap<String, String> = fp
            .as_ref()
            .map_or_else(Vec::new, |d| list(d.as_fd()))
            .into_iter()
            .filter_map(|(n, _)| {
                let n = n.into_string().ok()?;
                Some((unit_hash(&n)?.to_owned(), n))
            })
            .collect();
        let outputs = outputs_by_hash(fd.as_fd());
        for hash in hashes {
            if Instant::now() > deadline {
                break;
            }
            let dead = dead_units
                .iter()
                .any(|(r, u)| r == rel && unit_hash(u) == Some(hash.as_str()));
            let fingerprint = fp_names.get(hash);
            // A pending unit that cargo rebuilt since (its fingerprint is back) is live again.
            if fingerprint.is_some() && !dead {
                finished
                    .entry(rel.clone())
                    .or_default()
                    .insert(hash.clone());
                continue;
            }
            // The fingerprint first: without it cargo rebuilds the unit, so a crash between the
            // two steps never leaves a unit that looks built but has lost its outputs.
            let mut result = Ok(0);
            if let (Some(name), Some(fp)) = (fingerprint, &fp) {
                result = remove(fp.as_fd(), OsStr::new(name), dev);
                // Once per prune, so a test pausing here is not held at every unit.
                if pruned.units == 0 {
                    fault::point("prune-fingerprint-removed");
                }
            }
            for (sub, name) in outputs.get(hash).into_iter().flatten() {
                if result.is_err() {
                    break;
                }
                if let Some(dir) = open_sub(fd.as_fd(), sub) {
                    result = remove(dir.as_fd(), name, dev).map(|b| b + result.unwrap_or(0));
                }
            }
            match result {
                Ok(bytes) => {
                    if fingerprint.is_some() {
                        pruned.units += 1;
                    }
                    pruned.bytes += bytes;
                    finished
                        .entry(rel.clone())
                        .or_default()
                        .insert(hash.clone());
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| format!("{rel}: unit {hash}: {e}"));
                }
            }
        }
    }
    for (rel, name) in &dead_inc {
        if Instant::now() > deadline {
            break;
        }
        let Some((_, fd)) = profiles.iter().find(|(r, _)| r == rel) else {
            continue;
        };
        if let Some(inc) = open_sub(fd.as_fd(), "incremental") {
            match remove(inc.as_fd(), OsStr::new(name), dev) {
                Ok(b) => {
                    pruned.bytes += b;
                    pruned.incremental += 1;
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| format!("{rel}/incremental/{name}: {e}"));
                }
            }
        }
    }
    // Dead units not reached within the budget stay pending (their fingerprint may still be
    // there: they are dead and get removed at the next adoption).
    for (rel, hashes) in &mut pending {
        if let Some(done) = finished.get(rel) {
            hashes.retain(|h| !done.contains(h));
        }
    }
    pending.retain(|_, h| !h.is_empty());
    // Units left unpruned by the budget keep their old generation, so they stay dead.
    for (rel, unit) in &dead_units {
        let hash = unit_hash(unit).unwrap_or_default();
        if pending.get(rel).is_some_and(|p| p.contains(hash))
            && let Some(last) = index.units.get(rel).and_then(|k| k.get(unit))
        {
            units_now
                .entry(rel.clone())
                .or_default()
                .insert(unit.clone(), *last);
        }
    }

    // Make the next job's reads observable: atime back to mtime (ctime becomes now).
    let reset_at = now_ns();
    for (rel, fd) in &profiles {
        let Some(fp) = open_sub(fd.as_fd(), ".fingerprint") else {
            continue;
        };
        for unit in units_now.get(rel).into_iter().flat_map(|u| u.keys()) {
            reset_unit(fp.as_fd(), unit);
        }
    }
    index.version = INDEX_VERSION;
    index.generation = generation;
    index.reset_at_ns = Some(reset_at);
    index.units = units_now;
    index.incremental = inc_now;
    index.pending = pending;
    save(job_dir, &index)?;

    if pruned.units > 0 || pruned.incremental > 0 {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        term::status(format_args!(
            "pruned {} dead unit{}{}, {}, of {from} (warm)",
            pruned.units,
            plural(pruned.units),
            match pruned.incremental {
                0 => String::new(),
                n => format!(" and {n} stale incremental dir{}", plural(n)),
            },
            Bytes(pruned.bytes)
        ));
    } else {
        term::verbose(format_args!(
            "nothing to prune in the dir adopted from {from} (generation {generation})"
        ));
    }
    if let Some(e) = first_error {
        term::warn(format_args!("pruning left something in place: {e}"));
    }
    Ok(pruned)
}

/// `Ok` when a read of a file under `target` is recorded in its atime, else why not.
fn atime_observable(target: BorrowedFd<'_>) -> Result<(), String> {
    if let Ok(st) = rustix::fs::fstatvfs(target)
        && st.f_flag.bits() & ST_NOATIME != 0
    {
        return Err("mounted noatime".into());
    }
    let probe = || -> io::Result<bool> {
        let _ = rustix::fs::unlinkat(target, PROBE, AtFlags::empty());
        fs::write_atomic(target, PROBE, b"x")?;
        // Both times in the past, atime = mtime: exactly the state a reset leaves, and far
        // enough back that a coarse clock still records the read as later.
        let past = Timespec {
            tv_sec: (now_ns() / 1_000_000_000) as i64 - 3600,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            target,
            PROBE,
            &Timestamps {
                last_access: past,
                last_modification: past,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        let fd = rustix::fs::openat(
            target,
            PROBE,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut buf = [0u8; 1];
        std::fs::File::from(fd).read_exact(&mut buf)?;
        let st = rustix::fs::statat(target, PROBE, AtFlags::SYMLINK_NOFOLLOW)?;
        let _ = rustix::fs::unlinkat(target, PROBE, AtFlags::empty());
        Ok(st.st_atime > past.tv_sec)
    };
    match probe() {
        Ok(true) => Ok(()),
        Ok(false) => Err("a read of a test file left its access time unchanged".into()),
        Err(e) => Err(format!("the access-time self-test failed: {e}")),
    }
}

/// Whether any file of the unit's fingerprint dir was read or written since `reset`. The reset
/// left atime == mtime exactly, so any other atime is a read (even one that moved it backwards,
/// as on a file whose mtime a skewed server clock put in the future).
fn fingerprint_read(fp: Option<BorrowedFd<'_>>, unit: &str, reset: u64) -> bool {
    let Some(dir) = fp.and_then(|fp| open_sub(fp, unit)) else {
        return true;
    };
    list(dir.as_fd()).iter().any(|(name, ty)| {
        *ty == FileType::RegularFile
            && stat_ns(dir.as_fd(), name)
                .is_some_and(|(atime, mtime)| atime != mtime || mtime >= reset)
    })
}

fn reset_unit(fp: BorrowedFd<'_>, unit: &str) {
    let Some(dir) = open_sub(fp, unit) else {
        return;
    };
    for (name, ty) in list(dir.as_fd()) {
        if ty != FileType::RegularFile {
            continue;
        }
        let Ok(st) = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let mtime = Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        };
        let omit = Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        };
        let _ = rustix::fs::utimensat(
            &dir,
            &name,
            &Timestamps {
                last_access: mtime,
                last_modification: omit,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        );
    }
}

/// `(atime, mtime)` in ns since the epoch, not following symlinks.
fn stat_ns(dir: BorrowedFd<'_>, name: impl rustix::path::Arg) -> Option<(u64, u64)> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let ns = |s: i64, n: u64| (s.max(0) as u64).saturating_mul(1_000_000_000) + n;
    Some((
        ns(st.st_atime, st.st_atime_nsec as u64),
        ns(st.st_mtime, st.st_mtime_nsec as u64),
    ))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// The 16-hex-digit hash of a unit dir named `<pkg>-<hash>`.
fn unit_hash(name: &str) -> Option<&str> {
    let (_, hash) = name.rsplit_once('-')?;
    is_hash(hash).then_some(hash)
}

fn is_hash(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The hash an output is named by: `-<hash>` followed by the end of the name or a `.`
/// (`libdep-<hash>.rlib`, `app-<hash>`, `dep-<hash>.d`, `build/app-<hash>/`).
fn output_hash(name: &str) -> Option<&str> {
    name.match_indices('-').find_map(|(i, _)| {
        let rest = name.get(i + 1..)?;
        let hash = rest.get(..16)?;
        let after = &rest[16..];
        (is_hash(hash) && (after.is_empty() || after.starts_with('.'))).then_some(hash)
    })
}

/// Per hash, the `(subdir, name)` of every output of a profile dir carrying it.
fn outputs_by_hash(profile: BorrowedFd<'_>) -> BTreeMap<String, Vec<(&'static str, OsString)>> {
    let mut out: BTreeMap<String, Vec<(&'static str, OsString)>> = BTreeMap::new();
    for sub in OUTPUT_DIRS {
        let Some(dir) = open_sub(profile, sub) else {
            continue;
        };
        for (name, _) in list(dir.as_fd()) {
            if let Some(hash) = name.to_str().and_then(output_hash) {
                out.entry(hash.to_owned()).or_default().push((sub, name));
            }
        }
    }
    out
}

/// Profile dirs (those holding a `.fingerprint/`) under `target/`, to a depth of three:
/// `debug`, `release`, `<triple>/debug`, `llvm-cov-target/debug`,
/// `llvm-cov-target/<triple>/debug`.
fn profile_dirs(target: BorrowedFd<'_>) -> Vec<(String, OwnedFd)> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, OwnedFd, usize)> = Vec::new();
    for (name, ty) in list(target) {
        // `doc/` holds no units (its fingerprints are in the profile dirs) and many dirs.
        if let (Some(n), FileType::Directory) = (name.to_str(), ty)
            && n != "doc"
            && let Some(fd) = open_sub(target, n)
        {
            stack.push((n.to_owned(), fd, 1));
        }
    }
    while let Some((rel, fd, depth)) = stack.pop() {
        let entries = list(fd.as_fd());
        if entries
            .iter()
            .any(|(n, t)| n == ".fingerprint" && *t == FileType::Directory)
        {
            out.push((rel, fd));
            continue;
        }
        if depth >= 3 {
            continue;
        }
        for (name, ty) in entries {
            if let (Some(n), FileType::Directory) = (name.to_str(), ty)
                && !n.starts_with('.')
                && n != "doc"
                && let Some(sub) = open_sub(fd.as_fd(), n)
            {
                stack.push((format!("{rel}/{n}"), sub, depth + 1));
            }
        }
    }
    out
}

fn open_sub(dir: BorrowedFd<'_>, name: impl AsRef<OsStr>) -> Option<OwnedFd> {
    fs::open_dir_nofollow(dir, name.as_ref()).ok()
}

fn list(dir: BorrowedFd<'_>) -> Vec<(OsString, FileType)> {
    fs::list(dir).unwrap_or_default()
}

/// Remove one entry (a tree or a file) and return the bytes it held. The one place pruning
/// deletes through, so a change of `fs::remove_tree`'s signature is adapted here.
fn remove(parent: BorrowedFd<'_>, name: &OsStr, dev: fs::MountId) -> io::Result<u64> {
    let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        fs::remove_tree(parent, name, dev).result()
    } else {
        rustix::fs::unlinkat(parent, name, AtFlags::empty())?;
        Ok(st.st_blocks as u64 * 512)
    }
}

/// The index, or `None` when absent or unusable (then it is rebuilt: every unit counts as used).
fn load(job_dir: BorrowedFd<'_>) -> Option<Index> {
    let bytes = fs::read_capped(job_dir, OsStr::new(INDEX), MAX_INDEX_BYTES).ok()??;
    match serde_json::from_slice::<Index>(&bytes) {
        Ok(i) if i.version == INDEX_VERSION => Some(i),
        _ => {
            term::verbose(format_args!("ignoring an unusable {INDEX}; rebuilding it"));
            None
        }
    }
}

fn save(job_dir: BorrowedFd<'_>, index: &Index) -> Result<()> {
    let bytes = serde_json::to_vec(index)?;
    fs::write_atomic(job_dir, INDEX, &bytes).with_context(|| format!("failed to write {INDEX}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_of_units_and_outputs() {
        assert_eq!(unit_hash("app-97532eca4de05c2f"), Some("97532eca4de05c2f"));
        assert_eq!(
            unit_hash("my-crate-97532eca4de05c2f"),
            Some("97532eca4de05c2f")
        );
        assert_eq!(unit_hash("app"), None);
        assert_eq!(unit_hash("app-97532eca4de05c2"), None);
        assert_eq!(
            output_hash("libdep-9dec66c2b9db0a41.rlib"),
            Some("9dec66c2b9db0a41")
        );
        assert_eq!(output_hash("it-007597780e491eda"), Some("007597780e491eda"));
        assert_eq!(
            output_hash("app-8001e15a8f46b33b.app.abc-cgu.0.rcgu.o"),
            Some("8001e15a8f46b33b")
        );
        assert_eq!(output_hash("app-8001e15a8f46b33bx"), None);
        assert_eq!(output_hash("app"), None);
    }

    #[test]
    fn warm_limits() {
        assert_eq!(WarmLimit::parse("3x").unwrap(), WarmLimit::Times(3.0));
        assert_eq!(WarmLimit::parse("2GiB").unwrap(), WarmLimit::Bytes(2 << 30));
        assert_eq!(WarmLimit::parse("off").unwrap(), WarmLimit::Off);
        assert!(WarmLimit::parse("0.5x").is_err());
        assert!(WarmLimit::parse("lots").is_err());
        assert_eq!(WarmLimit::Times(3.0).bytes(Some(100)), Some(300));
        assert_eq!(WarmLimit::Times(3.0).bytes(None), None);
    }
}

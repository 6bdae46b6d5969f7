//! Freshness by content for dirs built elsewhere (docs/protocol.md#warm-starts-from-elsewhere).
//!
//! Cargo judges a path package's units by mtime, and a dir that moved (adopted, seeded) carries
//! units built from another checkout, at another target path. At release, [`record`] writes
//! what each path-package unit was built from (`inputs.json`: the checkout, the job dir's path,
//! a digest per input). At a warm start, [`verify`] keeps a unit only when its inputs here have
//! the recorded content and nothing it baked in names what moved; every other unit is made
//! stale by removing its fingerprint file, so cargo rebuilds it and, through output mtimes,
//! everything that depends on it. In CI (or with `--restore-mtimes`), verified inputs get their
//! recorded mtimes back, so cargo's mtime rules see on a fresh clone what they saw where the
//! dir was built: that is what makes a fresh clone warm.
//!
//! Registry and git units are judged by version and commit and stay warm, unless rustc saw them
//! read an env var naming another job's dir. A job resuming its own dir from the same checkout
//! is left to cargo's rules.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

mod checkout;
mod depinfo;
mod digest;
mod record;
mod roots;
mod units;

pub(crate) use checkout::Checkout;
#[cfg(feature = "store")]
pub(crate) use digest::sha256_hex;
pub(crate) use record::{LastVerdict, RECORD, read_verdict as last_verdict};

use depinfo::DepPath;
use digest::Digests;
use record::{Record, UnitRecord};
use roots::Roots;
use units::{Judged, Unit};

use crate::fs;

/// What [`record`] wrote.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Recorded {
    /// Path-package units recorded.
    pub(crate) units: usize,
    /// Path-package units left out (an input newer than the unit, missing, or unreadable).
    pub(crate) left_out: usize,
    /// Inputs read for their digest (the rest were unchanged since the last record).
    pub(crate) files_read: usize,
}

/// Why a unit was made stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Why {
    /// An input here has other content than the unit was built from (or is missing, or the
    /// unit's inputs are other files now).
    ContentDiffers,
    /// The dir has no record of what this path-package unit was built from.
    NoRecord,
    /// Cargo recorded an input by absolute path inside the other checkout.
    PathMoved,
    /// rustc saw the unit read an env var naming the other checkout or another job's dir
    /// (`CARGO_BIN_EXE_*`, `CARGO_TARGET_TMPDIR`, `CARGO_MANIFEST_DIR`).
    EnvDep,
}

impl Why {
    pub(crate) fn words(self) -> &'static str {
        match self {
            Why::ContentDiffers => "content differs",
            Why::NoRecord => "no record",
            Why::PathMoved => "the path moved",
            Why::EnvDep => "an env-dep on the old dir",
        }
    }

    pub(crate) fn key(self) -> &'static str {
        match self {
            Why::ContentDiffers => "content_differs",
            Why::NoRecord => "no_record",
            Why::PathMoved => "path_moved",
            Why::EnvDep => "env_dep",
        }
    }
}

/// What [`verify`] decided for a dir built elsewhere.
#[derive(Debug, Default, Clone)]
pub(crate) struct Verdict {
    /// Path-package units whose inputs here have the recorded content: kept warm.
    pub(crate) verified: usize,
    /// Units made stale, by reason, with their fingerprint names (`<pkg>-<hash>/<kind>-<target>`).
    pub(crate) stale: BTreeMap<Why, Vec<String>>,
    /// Checkout files given their recorded mtime back.
    pub(crate) restored: usize,
    /// Where the dir was last built, when that is known.
    pub(crate) built_in: Option<PathBuf>,
}

impl Verdict {
    pub(crate) fn stale_count(&self) -> usize {
        self.stale.values().map(Vec::len).sum()
    }
}

/// Where a job builds now.
pub(crate) struct Here<'a> {
    pub(crate) checkout: &'a Checkout,
    /// The job dir's path.
    pub(crate) job_dir: &'a Path,
    /// The root the job dirs live in: an env var naming any other dir in it names another job's.
    pub(crate) root: &'a Path,
    /// The workspace root, where cargo runs rustc for a path package.
    pub(crate) workspace: &'a Path,
}

/// At release: record what each path-package unit of the dir was built from.
pub(crate) fn record(job_dir: BorrowedFd<'_>, here: &Here<'_>) -> std::io::Result<Recorded> {
    let previous = record::read(job_dir);
    let empty = BTreeMap::new();
    let mut digests = Digests::new(previous.as_ref().map_or(&empty, |p| &p.files));
    let units = units::scan(job_dir);
    let roots = Roots::new(here, &units);
    let mut out = record::new(here.checkout.clone(), here.job_dir.to_path_buf());
    let mut recorded = Recorded::default();
    for unit in units.iter().filter(|u| roots.is_path(u)) {
        let Some(pkg_root) = roots.of(unit) else {
            recorded.left_out += 1;
            continue;
        };
        match record_unit(unit, &pkg_root, here.checkout, &mut digests) {
            Some((rec, entries)) => {
                recorded.units += 1;
                out.files.extend(entries);
                out.units.insert(unit.id.clone(), rec);
            }
            None => recorded.left_out += 1,
        }
    }
    recorded.files_read = digests.read;
    record::write(job_dir, &out)?;
    Ok(recorded)
}

/// A unit's record, when every input can be read and none is newer than cargo's reference for
/// the unit (else cargo itself would rebuild it, and there is nothing true to record).
fn record_unit(
    unit: &Unit,
    pkg_root: &str,
    checkout: &Checkout,
    digests: &mut Digests<'_>,
) -> Option<(UnitRecord, Vec<(String, digest::Entry)>)> {
    let hash = unit.hash.clone()?;
    let (inputs, absolute) = inputs_of(unit, pkg_root, checkout)?;
    let limit = match &unit.judged {
        Judged::Precalculated(s) => units::precalculated_mtime(s),
        Judged::EnvOnly => None,
        _ => Some(unit.reference_ns?),
    };
    let mut entries = Vec::with_capacity(inputs.len());
    for rel in &inputs {
        let entry = digests.entry(&checkout.path, rel)?;
        if limit.is_some_and(|limit| entry.stat.mtime_ns > limit) {
            return None;
        }
        entries.push((rel.clone(), entry));
    }
    let rec = UnitRecord {
        hash,
        reference_ns: unit.reference_ns,
        inputs,
        absolute,
    };
    Some((rec, entries))
}

/// The checkout files a path-package unit is judged on, relative to the checkout root, and
/// whether cargo recorded any of them by absolute path. `None`: not knowable here.
fn inputs_of(unit: &Unit, pkg_root: &str, checkout: &Checkout) -> Option<(Vec<String>, bool)> {
    let in_pkg = |p: &Path| {
        let joined = checkout.path.join(pkg_root).join(p);
        checkout.relative(&joined)
    };
    let mut inputs = Vec::new();
    let mut absolute = false;
    match &unit.judged {
        Judged::DepInfo(info) => {
            for file in &info.files {
                match file {
                    DepPath::Package(p) => inputs.push(in_pkg(p)?),
                    DepPath::Build(p) if p.is_absolute() => {
                        // Outside the checkout: it did not move, cargo judges it as always.
                        if let Some(rel) = checkout.relative(p) {
                            absolute = true;
                            inputs.push(rel);
                        }
                    }
                    // Generated into the build root: moved with the dir.
                    DepPath::Build(_) => {}
                }
            }
        }
        Judged::RerunIfChanged(paths) => {
            for p in paths {
                let Some(rel) = in_pkg(p) else {
                    continue;
                };
                inputs.extend(
                    checkout::tree(&checkout.path, &rel)?
                        .into_iter()
                        .map(|e| e.0),
                );
            }
        }
        Judged::Precalculated(s) => {
            units::precalculated_mtime(s)?;
            inputs = checkout::package_files(&checkout.path, pkg_root)?;
        }
        Judged::EnvOnly => {}
        Judged::Unknown => return None,
    }
    inputs.sort();
    inputs.dedup();
    Some((inputs, absolute))
}

/// At a warm start: keep the units whose inputs here have the recorded content, make every other
/// unit that depends on what moved stale, and (`restore`) give verified inputs their recorded
/// mtimes. `None`: the dir was last built here, by this checkout, at this path (cargo's rules
/// hold as they are).
///
/// `resumed`: the job's own dir, from an earlier step. With no record (a dir a plain cargo built
/// after `env`, or one from before records were kept) it is left to cargo: a job's steps run in
/// its own checkout.
pub(crate) fn verify(
    job_dir: BorrowedFd<'_>,
    here: &Here<'_>,
    restore: bool,
    resumed: bool,
) -> Option<Verdict> {
    let record = record::read(job_dir);
    match &record {
        Some(r) if r.job_dir == here.job_dir && r.checkout == *here.checkout => return None,
        None if resumed => return None,
        _ => {}
    }
    let empty = BTreeMap::new();
    let mut digests = Digests::new(record.as_ref().map_or(&empty, |r| &r.files));
    let mut verdict = Verdict {
        built_in: record.as_ref().map(|r| r.checkout.path.clone()),
        ..Verdict::default()
    };
    let mut keep: BTreeMap<String, u64> = BTreeMap::new();
    let units = units::scan(job_dir);
    let roots = Roots::new(here, &units);
    for unit in &units {
        let is_path = roots.is_path(unit);
        match judge_unit(unit, is_path, record.as_ref(), &roots, here, &mut digests) {
            Judgement::External => {}
            Judgement::Verified(inputs) => {
                verdict.verified += 1;
                keep.extend(inputs);
            }
            Judgement::Stale(why) => {
                make_stale(job_dir, unit);
                let name = unit.id.rsplit('/').take(2).collect::<Vec<_>>();
                verdict
                    .stale
                    .entry(why)
                    .or_default()
                    .push(format!("{}/{}", name[1], name[0]));
            }
        }
    }
    if restore {
        for (rel, mtime) in keep {
            let now = digests.done.get(&rel).cloned().flatten();
            if now.is_some_and(|e| e.stat.mtime_ns != mtime)
                && checkout::set_mtime(&here.checkout.path, &rel, mtime)
            {
                verdict.restored += 1;
            }
        }
    }
    let last = LastVerdict {
        verified: verdict.verified,
        stale: verdict
            .stale
            .iter()
            .map(|(why, names)| (why.key().to_owned(), names.len()))
            .collect(),
        restored: verdict.restored,
    };
    // Only `status` reads it: a failure to write it changes nothing else.
    let _ = record::write_verdict(job_dir, &last);
    Some(verdict)
}

enum Judgement {
    /// Not a path package here, and nothing it baked in names what moved: cargo's rules hold.
    External,
    /// Kept: its inputs with their recorded mtimes.
    Verified(Vec<(String, u64)>),
    Stale(Why),
}

fn judge_unit(
    unit: &Unit,
    is_path: bool,
    record: Option<&Record>,
    roots: &Roots<'_>,
    here: &Here<'_>,
    digests: &mut Digests<'_>,
) -> Judgement {
    if unit
        .env_deps
        .iter()
        .any(|(name, value)| names_what_moved(name, value.as_deref(), record, here))
    {
        return Judgement::Stale(Why::EnvDep);
    }
    let recorded = record.and_then(|r| r.units.get(&unit.id).map(|u| (r, u)));
    if !is_path && recorded.is_none() {
        return Judgement::External;
    }
    let Some(pkg_root) = roots.of(unit) else {
        return match recorded {
            // A path package where it was built, gone or ambiguous here.
            Some(_) => Judgement::Stale(Why::ContentDiffers),
            None => Judgement::Stale(Why::NoRecord),
        };
    };
    let Some((record, rec)) = recorded else {
        return Judgement::Stale(Why::NoRecord);
    };
    if unit.hash.as_deref() != Some(rec.hash.as_str()) || unit.reference_ns != rec.reference_ns {
        return Judgement::Stale(Why::NoRecord);
    }
    if rec.absolute && record.checkout.path != here.checkout.path {
        return Judgement::Stale(Why::PathMoved);
    }
    let Some((inputs, _)) = inputs_of(unit, &pkg_root, here.checkout) else {
        return Judgement::Stale(Why::ContentDiffers);
    };
    if inputs != rec.inputs {
        return Judgement::Stale(Why::ContentDiffers);
    }
    let mut keep = Vec::with_capacity(inputs.len());
    for rel in inputs {
        let (Some(was), Some(now)) = (
            record.files.get(&rel),
            digests.entry(&here.checkout.path, &rel),
        ) else {
            return Judgement::Stale(Why::ContentDiffers);
        };
        if was.sha256 != now.sha256 {
            return Judgement::Stale(Why::ContentDiffers);
        }
        keep.push((rel, was.stat.mtime_ns));
    }
    Judgement::Verified(keep)
}

/// Whether an env var rustc saw the unit read names what moved: the other checkout (when it was
/// elsewhere) or a dir of the root other than this job's. `OUT_DIR` is the one exception: it
/// names the unit's own build script's output, which moved with the dir, content and mtimes
/// alike, and is read to `include!` generated code that cargo's dep-info tracks (relative to
/// the build root). Counting it would rebuild every crate that includes generated code at every
/// warm start; a crate that keeps `env!("OUT_DIR")` as a run-time string is left to cargo, as
/// cargo leaves it.
fn names_what_moved(
    name: &str,
    value: Option<&str>,
    record: Option<&Record>,
    here: &Here<'_>,
) -> bool {
    let Some(value) = value else {
        return false;
    };
    if name == "OUT_DIR" {
        return false;
    }
    if let Some(r) = record
        && r.checkout.path != here.checkout.path
        && mentions(value, &r.checkout.path)
    {
        return true;
    }
    let root = here.root.to_string_lossy();
    let own = here.job_dir.to_string_lossy();
    let own = own.as_ref();
    value.match_indices(&format!("{root}/")).any(|(i, _)| {
        let rest = &value[i..];
        !(rest == own || rest.starts_with(&format!("{own}/")))
    })
}

/// `value` names `path` or a path under it.
fn mentions(value: &str, path: &Path) -> bool {
    let path = path.to_string_lossy();
    value.match_indices(path.as_ref()).any(|(i, _)| {
        value[i + path.len()..]
            .chars()
            .next()
            .is_none_or(|c| c == '/' || c == ':' || c == ' ')
    })
}

/// Remove the unit's fingerprint file: cargo then finds no fingerprint, rebuilds the unit, and
/// its new outputs are newer than its dependents', which rebuild in turn.
fn make_stale(job_dir: BorrowedFd<'_>, unit: &Unit) {
    let mut dir: Option<OwnedFd> = None;
    for part in unit.unit_dir.iter() {
        let at = dir.as_ref().map_or(job_dir, |d| d.as_fd());
        match fs::open_dir_nofollow(at, part) {
            Ok(d) => dir = Some(d),
            Err(_) => return,
        }
    }
    if let Some(dir) = dir {
        let _ = rustix::fs::unlinkat(&dir, OsStr::new(&unit.file), rustix::fs::AtFlags::empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_that_name_another_dir() {
        let checkout = Checkout {
            path: "/w/repo".into(),
            dev: 1,
            ino: 2,
            btime_ns: None,
        };
        let here = Here {
            checkout: &checkout,
            job_dir: Path::new("/r/b"),
            root: Path::new("/r"),
            workspace: Path::new("/w/repo"),
        };
        let moved = |name: &str, v: &str| names_what_moved(name, Some(v), None, &here);
        assert!(moved("CARGO_BIN_EXE_app", "/r/a/target/debug/app"));
        assert!(moved("CARGO_TARGET_TMPDIR", "/r/a/target/tmp"));
        assert!(!moved("CARGO_BIN_EXE_app", "/r/b/target/debug/app"));
        assert!(!moved(
            "OUT_DIR",
            "/r/a/target/debug/build/x-0123456789abcdef/out"
        ));
        assert!(!moved("CARGO_MANIFEST_DIR", "/w/repo/app"));
        assert!(moved("X", "/r/b/x:/r/c/y"));
        let mut record = record::new(
            Checkout {
                path: "/w/other".into(),
                ..checkout.clone()
            },
            "/r/a".into(),
        );
        let elsewhere = |v: &str, r: &Record| names_what_moved("X", Some(v), Some(r), &here);
        assert!(elsewhere("/w/other/app", &record));
        assert!(elsewhere("/w/other", &record));
        assert!(!elsewhere("/w/other-repo/app", &record));
        record.checkout.path = "/w/repo".into();
        assert!(!elsewhere("/w/repo/app", &record));
    }
}

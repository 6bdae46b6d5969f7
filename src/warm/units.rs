//! The compiled units of a job dir as cargo's fingerprints describe them: where each unit's
//! fingerprint file is, what cargo judges it on (`LocalFingerprint`: a dep-info file, a build
//! script's `rerun-if-changed` paths, or a precalculated string) and which env vars rustc saw it
//! read. Everything here is read with `O_NOATIME` (pruning reads access times as its signal of
//! use, `prune/atime.rs`) and parsed as untrusted input: what does not parse is `Unknown`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::FileType;
use serde::Deserialize;

use super::depinfo::{self, CargoDepInfo};
use super::digest::{ns, read_noatime};
use crate::fs;

/// Fingerprint JSON, dep-info and `.d` files are small; a larger one is not cargo's.
const MAX_META_BYTES: u64 = 4 << 20;

/// One unit: `<tree>/<profile>/.fingerprint/<pkg>-<hash>/<kind>-<target>`.
#[derive(Debug)]
pub(super) struct Unit {
    /// The fingerprint file's path relative to the job dir: the unit's name in the record.
    pub(super) id: String,
    /// `<pkg>` of the unit dir's `<pkg>-<hash>`.
    pub(super) pkg: String,
    /// The fingerprint file's content (cargo's hash of everything but the file system).
    pub(super) hash: Option<String>,
    pub(super) judged: Judged,
    /// The unit's reference mtime in ns: its dep-info file, or its build script's `output`.
    pub(super) reference_ns: Option<u64>,
    /// rustc's `# env-dep:` lines for the unit (empty for build-script runs).
    pub(super) env_deps: Vec<(String, Option<String>)>,
    /// The relative sources rustc's `.d` lists (relative to the workspace root, where cargo runs
    /// rustc for a path package): they tell two path packages of one name apart.
    pub(super) rustc_sources: Vec<String>,
    /// The fingerprint hashes of the unit's dependencies, as their fingerprint files spell them.
    pub(super) deps: Vec<String>,
    /// The profile dir (for `stale`) and the fingerprint file's name in its unit dir.
    pub(super) unit_dir: PathBuf,
    pub(super) file: String,
}

/// What cargo judges a unit's own inputs on.
#[derive(Debug)]
pub(super) enum Judged {
    DepInfo(CargoDepInfo),
    /// A build-script run with `rerun-if-changed` paths, relative to the package root.
    RerunIfChanged(Vec<PathBuf>),
    /// A build-script run with no `rerun-if-*`, or a rustdoc unit: a string, for a path package
    /// `"<secs>.<nanos>s (<newest file>)"`.
    Precalculated(String),
    /// Only `rerun-if-env-changed` (judged by value: nothing on disk), or nothing at all.
    EnvOnly,
    /// Unreadable or of a shape this version does not know.
    Unknown,
}

#[derive(Deserialize)]
struct Json {
    #[serde(default)]
    local: Vec<serde_json::Value>,
    /// `[pkg id hash, name, public, fingerprint hash]` per dependency.
    #[serde(default)]
    deps: Vec<serde_json::Value>,
}

/// Every unit of the job dir's `target/` and `build/`.
pub(super) fn scan(job_dir: BorrowedFd<'_>) -> Vec<Unit> {
    let mut out = Vec::new();
    for tree in [crate::lease::TARGET, crate::lease::BUILD_DIR] {
        let Ok(top) = fs::open_dir_nofollow(job_dir, OsStr::new(tree)) else {
            continue;
        };
        for (rel, profile) in crate::prune::profile_dirs(top.as_fd()) {
            scan_profile(&format!("{tree}/{rel}"), profile.as_fd(), &mut out);
        }
    }
    out
}

fn scan_profile(rel: &str, profile: BorrowedFd<'_>, out: &mut Vec<Unit>) {
    let Ok(fp) = fs::open_dir_nofollow(profile, OsStr::new(".fingerprint")) else {
        return;
    };
    let rustc_d = rustc_dep_files(profile);
    for (name, ty) in fs::list(fp.as_fd()).unwrap_or_default() {
        let Some(unit) = name.to_str().filter(|_| ty == FileType::Directory) else {
            continue;
        };
        let Some((pkg, hash)) = unit.rsplit_once('-') else {
            continue;
        };
        let Ok(dir) = fs::open_dir_nofollow(fp.as_fd(), &name) else {
            continue;
        };
        for (file, ty) in fs::list(dir.as_fd()).unwrap_or_default() {
            let Some(json) = file.to_str().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            if ty != FileType::RegularFile {
                continue;
            }
            let rustc = rustc_d.get(hash).and_then(|d| read_text(profile, d));
            let env_deps = rustc
                .as_deref()
                .map(depinfo::rustc_env_deps)
                .unwrap_or_default();
            let rustc_sources = rustc
                .as_deref()
                .map(depinfo::rustc_relative_sources)
                .unwrap_or_default();
            let (judged, reference_ns, deps) = judge(profile, dir.as_fd(), json);
            out.push(Unit {
                id: format!("{rel}/.fingerprint/{unit}/{json}"),
                pkg: pkg.to_owned(),
                hash: read_text(dir.as_fd(), json).map(|h| h.trim().to_owned()),
                judged,
                reference_ns,
                env_deps,
                rustc_sources,
                deps,
                unit_dir: PathBuf::from(format!("{rel}/.fingerprint/{unit}")),
                file: json.to_owned(),
            });
        }
    }
}

/// rustc's `.d` files by unit hash: `deps/<crate>-<hash>.d`, and a build script's
/// `build/<pkg>-<hash>/build_script_build-<hash>.d`.
fn rustc_dep_files(profile: BorrowedFd<'_>) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let by_hash = |name: &str| {
        let stem = name.strip_suffix(".d")?;
        let (_, hash) = stem.rsplit_once('-')?;
        (hash.len() == 16).then(|| hash.to_owned())
    };
    if let Ok(deps) = fs::open_dir_nofollow(profile, OsStr::new("deps")) {
        for (name, _) in fs::list(deps.as_fd()).unwrap_or_default() {
            if let Some(n) = name.to_str()
                && let Some(hash) = by_hash(n)
            {
                out.insert(hash, PathBuf::from("deps").join(n));
            }
        }
    }
    if let Ok(build) = fs::open_dir_nofollow(profile, OsStr::new("build")) {
        for (name, _) in fs::list(build.as_fd()).unwrap_or_default() {
            let Some(dir) = name.to_str() else { continue };
            let Some((_, hash)) = dir.rsplit_once('-') else {
                continue;
            };
            let d = format!("build_script_build-{hash}.d");
            out.entry(hash.to_owned())
                .or_insert_with(|| PathBuf::from("build").join(dir).join(d));
        }
    }
    out
}

/// What cargo judges the unit on, and its reference file's mtime.
fn judge(
    profile: BorrowedFd<'_>,
    unit_dir: BorrowedFd<'_>,
    stem: &str,
) -> (Judged, Option<u64>, Vec<String>) {
    let Some(json) = read_text(unit_dir, format!("{stem}.json")) else {
        return (Judged::Unknown, None, Vec::new());
    };
    let Ok(json) = serde_json::from_str::<Json>(&json) else {
        return (Judged::Unknown, None, Vec::new());
    };
    // Cargo writes a fingerprint hash to its file as the u64's little-endian bytes in hex.
    let deps = json
        .deps
        .iter()
        .filter_map(|d| d.get(3)?.as_u64())
        .map(|h| h.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let (judged, reference) = judge_local(profile, unit_dir, &json);
    (judged, reference, deps)
}

fn judge_local(
    profile: BorrowedFd<'_>,
    unit_dir: BorrowedFd<'_>,
    json: &Json,
) -> (Judged, Option<u64>) {
    let mut judged = Judged::EnvOnly;
    let mut reference = None;
    for local in &json.local {
        if let Some(dep) = local.get("CheckDepInfo") {
            let Some(name) = dep
                .get("dep_info")
                .and_then(|d| d.as_str())
                .and_then(|d| d.rsplit('/').next())
            else {
                return (Judged::Unknown, None);
            };
            reference = mtime_ns(unit_dir, name);
            judged = match read_noatime(unit_dir, OsStr::new(name), MAX_META_BYTES)
                .and_then(|b| depinfo::parse_cargo(&b))
            {
                Some(info) => Judged::DepInfo(info),
                None => Judged::Unknown,
            };
        } else if let Some(rerun) = local.get("RerunIfChanged") {
            let paths = rerun.get("paths").and_then(|p| p.as_array());
            let output = rerun.get("output").and_then(|o| o.as_str());
            let (Some(paths), Some(output)) = (paths, output) else {
                return (Judged::Unknown, None);
            };
            // `<build root>/<profile>/build/<pkg>-<hash>/output`: the last three components
            // are in this profile dir.
            let parts: Vec<&str> = output.rsplit('/').take(3).collect();
            if let [file, unit, build] = parts[..] {
                reference = fs::open_dir_nofollow(profile, OsStr::new(build))
                    .ok()
                    .and_then(|b| fs::open_dir_nofollow(b.as_fd(), OsStr::new(unit)).ok())
                    .and_then(|u| mtime_ns(u.as_fd(), file));
            }
            judged = Judged::RerunIfChanged(
                paths
                    .iter()
                    .filter_map(|p| p.as_str().map(PathBuf::from))
                    .collect(),
            );
        } else if let Some(s) = local.get("Precalculated").and_then(|s| s.as_str()) {
            judged = Judged::Precalculated(s.to_owned());
        } else if local.get("RerunIfEnvChanged").is_none() {
            return (Judged::Unknown, None);
        }
    }
    (judged, reference)
}

fn read_text(dir: BorrowedFd<'_>, name: impl AsRef<std::path::Path>) -> Option<String> {
    let name = name.as_ref();
    // A relative path of a few components, opened one dir at a time, never following links.
    let mut parts: Vec<&OsStr> = name.iter().collect();
    let file = parts.pop()?;
    let mut held: Option<OwnedFd> = None;
    for part in parts {
        let at = held.as_ref().map_or(dir, |h| h.as_fd());
        held = Some(fs::open_dir_nofollow(at, part).ok()?);
    }
    let at = held.as_ref().map_or(dir, |h| h.as_fd());
    String::from_utf8(read_noatime(at, file, MAX_META_BYTES)?).ok()
}

/// A file's mtime in ns since the epoch, not following symlinks.
pub(super) fn mtime_ns(dir: BorrowedFd<'_>, name: impl rustix::path::Arg) -> Option<u64> {
    let st = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some(ns(st.st_mtime, st.st_mtime_nsec as u64))
}

/// A path package's precalculated fingerprint: `"<secs>.<nanos>s (<path>)"` (cargo's
/// `PathSource::fingerprint`; a registry or git package's is a version or a commit).
pub(super) fn precalculated_mtime(s: &str) -> Option<u64> {
    let (time, rest) = s.split_once("s (")?;
    rest.ends_with(')').then_some(())?;
    let (secs, nanos) = time.split_once('.')?;
    (nanos.len() == 9).then_some(())?;
    Some(ns(secs.parse().ok()?, nanos.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precalculated_strings() {
        assert_eq!(
            precalculated_mtime("1796597314.226354469s (src/lib.rs)"),
            Some(1_796_597_314_226_354_469)
        );
        assert_eq!(precalculated_mtime("1.0.219"), None);
        assert_eq!(precalculated_mtime("1796597314.2s (x)"), None);
        assert_eq!(precalculated_mtime("abc.226354469s (x)"), None);
    }
}

//! The superseded rule: a unit the last job did not use is dead at once when a unit that job did
//! use has the same identity and the two were never in use together.
//!
//! A unit's identity is what makes cargo build it the way it does, bar where its source comes
//! from: package name, target kind and name (the fingerprint file's name, `lib-dep`), profile,
//! features, rustflags, compile kind, compiler, config, the kinds of its outputs (standing for
//! the compile mode: `cargo check` leaves `.rmeta` alone), and, recursively, its dependencies'
//! identities (read from `.fingerprint/<unit>/<kind>-<target>.json`, whose `deps` name each
//! dependency's fingerprint hash, the contents of its `<kind>-<target>` file). Versions, sources
//! and paths are not part of it: a dependency bumped in `Cargo.lock` gives a new unit of the same
//! identity, and so do its dependents. A crate built against a dependency with other features
//! (feature unification differing between `cargo build` and `cargo test`) has another identity.
//!
//! Identity alone is not enough: two semver-incompatible versions of one crate with the same
//! features have one identity, and a build-only job uses one of them while a test job uses both.
//! So a unit is only superseded by one first used after its own last use: units ever used in one
//! job (or in overlapping runs of jobs) never supersede each other. And a unit once used by one
//! job together with another of its identity is never superseded at all (the K rule alone
//! applies): when the test-only 1.x stays and a build job bumps 2.x, the new 2.x unit was first
//! used after 1.x's last use, yet 1.x is still needed by the next test job.
//!
//! A dependency rebuilt in place since (same unit dir, new fingerprint: a workspace crate edited,
//! a build script rerun) is found by its package id hash and name instead (as named by units of
//! the same target), when only one unit has them: the old dependent is stale for cargo anyway, as its recorded dependency fingerprint
//! no longer matches. Anything unreadable, unknown or odd (a dependency not found either way, a
//! cycle, two fingerprint files) has no identity: only the K rule applies to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::FileType;
use serde_json::Value;

use super::Seen;
use super::index::PerProfile;
use super::layout::{list, open_sub, outputs_by_hash, unit_hash};
use crate::fs;

/// A fingerprint JSON is a few hundred bytes plus ~60 per dependency.
const MAX_JSON_BYTES: u64 = 1 << 20;
/// Dependency chains deeper than this (real graphs are a few dozen deep) have no identity.
const MAX_DEPTH: usize = 256;

/// One unit's fingerprint as read from its dir.
struct Fingerprint {
    /// The contents of `<kind>-<target>`: what dependents' `deps` name it by.
    hash: u64,
    /// The identity of the unit itself, without its dependencies.
    own: u64,
    /// `(package id hash, name, fingerprint hash)` of each dependency, as it was when this unit
    /// was built.
    deps: Vec<(u64, String, u64)>,
    /// The fingerprint file's name with `-` as `_`: ends with the crate name.
    target: String,
}

/// The units (per profile dir) that are superseded, and the targets they were (`lib_dep`), to
/// tie `incremental/` dirs of the same crate to them.
pub(super) struct Superseded {
    pub(super) units: Vec<(String, String)>,
    pub(super) targets: BTreeMap<String, BTreeSet<String>>,
    /// Units ever used together with another of their identity, so far.
    pub(super) plural: BTreeMap<String, BTreeSet<String>>,
}

/// Units of `units` (the live ones, with their first and last generation) that the job of
/// `generation` did not use and that a unit it did use supersedes; none of `plural`.
pub(super) fn superseded(
    profiles: &[(String, OwnedFd)],
    units: &PerProfile<Seen>,
    plural: &BTreeMap<String, BTreeSet<String>>,
    generation: u64,
) -> Superseded {
    let mut out = Superseded {
        units: Vec::new(),
        targets: BTreeMap::new(),
        plural: plural.clone(),
    };
    let fps = read_all(profiles, units);
    let mut ids = Ids::new(&fps);
    // Per (profile dir, identity): the latest first use among units the last job used, and
    // those units.
    let mut live: HashMap<(&str, u64), (u64, Vec<&str>)> = HashMap::new();
    for (rel, seen) in units {
        for (unit, s) in seen {
            if s.last == generation
                && let Some(id) = ids.of(rel, unit)
            {
                let e = live
                    .entry((rel.as_str(), id))
                    .or_insert((s.first, Vec::new()));
                e.0 = e.0.max(s.first);
                e.1.push(unit);
            }
        }
    }
    // Several units of one identity used by one job (two versions of a crate at once): never
    // replaced by the rule, whichever of them a later bump replaces.
    for ((rel, _), (_, group)) in &live {
        if group.len() > 1 {
            let p = out.plural.entry((*rel).to_owned()).or_default();
            p.extend(group.iter().map(|u| (*u).to_owned()));
        }
    }
    for (rel, seen) in units {
        for (unit, s) in seen {
            if s.last < generation
                && !plural.get(rel).is_some_and(|p| p.contains(unit))
                && let Some(id) = ids.of(rel, unit)
                && live
                    .get(&(rel.as_str(), id))
                    .is_some_and(|(f, _)| s.last < *f)
            {
                out.units.push((rel.clone(), unit.clone()));
                if let Some(fp) = fps.get(&(rel.clone(), unit.clone())) {
                    out.targets
                        .entry(rel.clone())
                        .or_default()
                        .insert(fp.target.clone());
                }
            }
        }
    }
    out
}

/// The fingerprints of `units`, where readable.
fn read_all(
    profiles: &[(String, OwnedFd)],
    units: &PerProfile<Seen>,
) -> HashMap<(String, String), Fingerprint> {
    let mut fps = HashMap::new();
    for (rel, fd) in profiles {
        let Some(fp_dir) = open_sub(fd.as_fd(), ".fingerprint") else {
            continue;
        };
        let outputs = outputs_by_hash(fd.as_fd());
        for unit in units.get(rel).into_iter().flat_map(|u| u.keys()) {
            // The kinds of outputs stand for cargo's compile mode, which the JSON lacks: a
            // `cargo check` unit (`.rmeta` alone) is no replacement for a `cargo build` one.
            let kinds: BTreeSet<(&str, &str)> = unit_hash(unit)
                .and_then(|h| outputs.get(h))
                .into_iter()
                .flatten()
                .filter_map(|(sub, name)| {
                    let ext = name.to_str()?.rsplit_once('.').map_or("", |(_, e)| e);
                    // Objects are rustc's leftovers from an interrupted build, not a mode.
                    (ext != "o").then_some((*sub, ext))
                })
                .collect();
            if let Some(fp) = read(fp_dir.as_fd(), unit, &kinds) {
                fps.insert((rel.clone(), unit.clone()), fp);
            }
        }
    }
    fps
}

/// Whether the `incremental/` entry `name` (`<crate>-<id>`) belongs to a crate one of whose
/// targets in `targets` (`lib_dep`, `bin_app`) was superseded.
pub(super) fn same_crate(name: &str, targets: Option<&BTreeSet<String>>) -> bool {
    let Some((krate, _)) = name.rsplit_once('-') else {
        return false;
    };
    let suffix = format!("_{krate}");
    targets.is_some_and(|t| t.iter().any(|t| t == krate || t.ends_with(&suffix)))
}

/// `(dependent's target, dependency's package id hash, name)` → the one unit (profile dir, unit
/// name) it names, or `None` where several.
type ByPkg<'a> = HashMap<(&'a str, u64, &'a str), Option<&'a (String, String)>>;

/// Identities, computed once per unit; `None` for anything unreadable, unresolved or cyclic.
struct Ids<'a> {
    fps: &'a HashMap<(String, String), Fingerprint>,
    /// Fingerprint hash → units carrying it (the same unit may sit in two profile dirs).
    by_hash: HashMap<u64, Vec<&'a (String, String)>>,
    /// `(dependent's target, dependency's package id hash, name)` → the one unit it names
    /// (`None`: several). With the dependent's target (`bin_app`), as a package's build script
    /// run depends on its compiled build script under the same package and name as the
    /// package's binaries depend on the run.
    by_pkg: ByPkg<'a>,
    memo: HashMap<&'a (String, String), Option<u64>>,
}

impl<'a> Ids<'a> {
    fn new(fps: &'a HashMap<(String, String), Fingerprint>) -> Ids<'a> {
        let mut by_hash: HashMap<u64, Vec<&(String, String)>> = HashMap::new();
        for (key, fp) in fps {
            by_hash.entry(fp.hash).or_default().push(key);
        }
        let mut by_pkg: ByPkg<'a> = HashMap::new();
        let deps = fps
            .values()
            .flat_map(|fp| fp.deps.iter().map(move |d| (fp.target.as_str(), d)));
        for (of, (pkg, name, hash)) in deps {
            if let Some([unit]) = by_hash.get(hash).map(Vec::as_slice) {
                let e = by_pkg
                    .entry((of, *pkg, name.as_str()))
                    .or_insert(Some(unit));
                if *e != Some(unit) {
                    *e = None;
                }
            }
        }
        Ids {
            fps,
            by_hash,
            by_pkg,
            memo: HashMap::new(),
        }
    }

    fn of(&mut self, rel: &str, unit: &str) -> Option<u64> {
        let key = self
            .fps
            .get_key_value(&(rel.to_owned(), unit.to_owned()))?
            .0;
        self.identity(key, 0)
    }

    fn identity(&mut self, key: &'a (String, String), depth: usize) -> Option<u64> {
        if let Some(id) = self.memo.get(key) {
            return *id;
        }
        // A planted chain of thousands of units must not exhaust the stack.
        if depth > MAX_DEPTH {
            return None;
        }
        // In progress: a cycle (only in planted files) resolves to no identity.
        self.memo.insert(key, None);
        let fp = self.fps.get(key)?;
        let mut deps = Vec::with_capacity(fp.deps.len());
        for (pkg, name, hash) in &fp.deps {
            // A dependency in the same profile dir first (a host dependency of a cross build
            // sits in another). Not found: the dependency was rebuilt in place since (a
            // workspace crate edited, a build script rerun), so this unit is stale for cargo
            // anyway (its recorded dependency fingerprint no longer matches); it is taken as
            // built against the dependency as it is now, when only one unit has its package
            // and name.
            let dep = self
                .by_hash
                .get(hash)
                .and_then(|c| c.iter().find(|k| k.0 == key.0).or(c.first()))
                .copied()
                .or_else(|| {
                    let k = (fp.target.as_str(), *pkg, name.as_str());
                    self.by_pkg.get(&k).copied().flatten()
                });
            deps.push((name, self.identity(dep?, depth + 1)?));
        }
        deps.sort();
        let mut h = DefaultHasher::new();
        fp.own.hash(&mut h);
        deps.hash(&mut h);
        let id = Some(h.finish());
        self.memo.insert(key, id);
        id
    }
}

/// The fingerprint of `unit`: its one `<kind>-<target>` file with the `.json` next to it.
fn read(fp_dir: BorrowedFd<'_>, unit: &str, kinds: &BTreeSet<(&str, &str)>) -> Option<Fingerprint> {
    let pkg = unit.strip_suffix(unit_hash(unit)?)?;
    let dir = open_sub(fp_dir, unit)?;
    let files: BTreeSet<String> = list(dir.as_fd())
        .into_iter()
        .filter(|(_, t)| *t == FileType::RegularFile)
        .filter_map(|(n, _)| n.into_string().ok())
        .collect();
    let mut targets = files
        .iter()
        .filter_map(|n| n.strip_suffix(".json"))
        .filter(|t| files.contains(*t));
    let target = targets.next()?;
    if targets.next().is_some() {
        return None;
    }
    let cap = |name: &str, cap| fs::read_capped(dir.as_fd(), OsStr::new(name), cap).ok()?;
    // Cargo writes the hash as the hex of its little-endian bytes (`util::to_hex`).
    let hex = std::str::from_utf8(&cap(target, 64)?)
        .ok()?
        .trim()
        .to_owned();
    let hash = u64::from_str_radix(&hex, 16)
        .ok()
        .filter(|_| hex.len() == 16)?
        .swap_bytes();
    let json: Value =
        serde_json::from_slice(&cap(&format!("{target}.json"), MAX_JSON_BYTES)?).ok()?;
    let mut h = DefaultHasher::new();
    (pkg, target, kinds).hash(&mut h);
    for field in [
        "rustc",
        "features",
        "profile",
        "rustflags",
        "config",
        "compile_kind",
    ] {
        // Hashed as JSON text, whatever its shape; a missing field: no identity.
        json.get(field)?.to_string().hash(&mut h);
    }
    let deps = json
        .get("deps")?
        .as_array()?
        .iter()
        .map(|d| {
            let name = d.get(1)?.as_str()?.to_owned();
            Some((d.get(0)?.as_u64()?, name, d.get(3)?.as_u64()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Fingerprint {
        hash,
        own: h.finish(),
        deps,
        target: target.replace('-', "_"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit dir `name` whose fingerprint is `hash` and whose deps name `deps` (hashes).
    fn plant(fp: &std::path::Path, name: &str, hash: u64, deps: &[u64]) {
        let dir = fp.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let le: String = hash
            .to_le_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(dir.join("lib-x"), le).unwrap();
        let deps: Vec<String> = deps
            .iter()
            .map(|d| format!("[1,\"x\",false,{d}]"))
            .collect();
        let json = format!(
            "{{\"rustc\":1,\"features\":\"[]\",\"profile\":2,\"rustflags\":[],\"config\":3,\
             \"compile_kind\":0,\"deps\":[{}]}}",
            deps.join(",")
        );
        std::fs::write(dir.join("lib-x.json"), json).unwrap();
    }

    /// Planted input: a cycle and a chain far deeper than any real graph get no identity (no
    /// hang, no stack overflow), so nothing of them is superseded; two same-identity units, one
    /// used last, one not, are.
    #[test]
    fn planted_cycles_and_deep_chains_have_no_identity() {
        let t = tempfile::tempdir().unwrap();
        let fp = t.path().join("debug/.fingerprint");
        let mut units: PerProfile<Seen> = BTreeMap::new();
        let mut add = |name: String, hash, deps: &[u64], last| {
            plant(&fp, &name, hash, deps);
            let seen = Seen { first: last, last };
            units.entry("debug".into()).or_default().insert(name, seen);
        };
        add(format!("x-{:016x}", 1), 1, &[2], 1);
        add(format!("x-{:016x}", 2), 2, &[1], 2);
        for i in 0..600u64 {
            let deps = if i == 0 { vec![] } else { vec![100 + i - 1] };
            add(format!("x-{:016x}", 100 + i), 100 + i, &deps, 1 + i % 2);
        }
        let root = std::fs::File::open(t.path()).unwrap();
        let profiles = vec![(
            "debug".to_owned(),
            fs::open_dir_nofollow(root.as_fd(), OsStr::new("debug")).unwrap(),
        )];
        let sup = superseded(&profiles, &units, &BTreeMap::new(), 2);
        let gone: BTreeSet<&str> = sup.units.iter().map(|(_, u)| u.as_str()).collect();
        assert!(!gone.contains(format!("x-{:016x}", 1).as_str()));
        // The chain's first units have identities: each with no deps (only the first) is
        // distinct from the rest, so only what MAX_DEPTH cuts off could go, and it cannot.
        assert!(gone.len() <= 1, "{gone:?}");
    }

    #[test]
    fn incremental_dirs_of_superseded_crates() {
        let t: BTreeSet<String> = ["lib_dep".to_owned(), "bin_my_app".to_owned()].into();
        assert!(same_crate("dep-0qk4vklz7dpon", Some(&t)));
        assert!(same_crate("my_app-3quytutno2jja", Some(&t)));
        assert!(!same_crate("feat-0pvqa2munelbi", Some(&t)));
        assert!(!same_crate("dep", Some(&t)));
        assert!(!same_crate("dep-0qk4vklz7dpon", None));
    }
}

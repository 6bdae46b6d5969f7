//! Which units are a path package's, and where in the checkout each package's root is: read
//! from what cargo and rustc wrote for the unit, with the checkout's manifests as a fallback.
//!
//! Cargo records a path package's files relative to its root (a registry package's not at all),
//! and runs rustc for it in the workspace root, so rustc's `.d` names the same files relative to
//! the workspace: the difference is the package's root. A build script's run has neither; the
//! script it runs (a dependency of the same package) tells. Walking the checkout for manifests
//! is needed only when neither says, which keeps a large checkout (vendored trees, `node_modules`)
//! out of every release.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::depinfo::DepPath;
use super::units::{self, Judged, Unit};
use super::{Here, checkout};

pub(super) struct Roots<'u> {
    here: &'u Here<'u>,
    /// The workspace root relative to the checkout root.
    workspace: String,
    /// Units by their fingerprint hash, for a build-script run's script.
    by_hash: BTreeMap<&'u str, &'u Unit>,
    /// Packages some unit's own files show to be path packages.
    evidence: BTreeSet<&'u str>,
    /// The checkout's manifests (package name -> roots), walked only when needed.
    listing: OnceCell<BTreeMap<String, Vec<String>>>,
}

/// How far a build-script run's script is followed (the run, then its script).
const DEPTH: usize = 2;

impl<'u> Roots<'u> {
    pub(super) fn new(here: &'u Here<'u>, units: &'u [Unit]) -> Roots<'u> {
        Roots {
            here,
            workspace: here.checkout.relative(here.workspace).unwrap_or_default(),
            by_hash: units
                .iter()
                .filter_map(|u| Some((u.hash.as_deref()?, u)))
                .collect(),
            evidence: units
                .iter()
                .filter(|u| own_files(u) || precalculated_mtime(u))
                .map(|u| u.pkg.as_str())
                .collect(),
            listing: OnceCell::new(),
        }
    }

    fn listing(&self) -> &BTreeMap<String, Vec<String>> {
        self.listing
            .get_or_init(|| checkout::packages(&self.here.checkout.path).unwrap_or_default())
    }

    /// Whether the unit is a path package's (its freshness depends on the checkout).
    pub(super) fn is_path(&self, unit: &Unit) -> bool {
        self.is_path_depth(unit, 0)
    }

    fn is_path_depth(&self, unit: &Unit, depth: usize) -> bool {
        if self.evidence.contains(unit.pkg.as_str()) {
            return true;
        }
        match &unit.judged {
            // Its own dep-info lists no file relative to a package root: not a path package.
            Judged::DepInfo(_) => false,
            Judged::Precalculated(_) => false,
            _ => match self.script(unit) {
                Some(script) if depth < DEPTH => self.is_path_depth(script, depth + 1),
                // A run whose script is gone: the manifests tell.
                _ => self.listing().contains_key(&unit.pkg),
            },
        }
    }

    /// The unit's package root relative to the checkout root, when it can be told.
    pub(super) fn of(&self, unit: &Unit) -> Option<String> {
        self.of_depth(unit, 0)
            .or_else(|| match self.listing().get(&unit.pkg)?.as_slice() {
                [one] => Some(one.clone()),
                // Two path packages of one name, and nothing said which.
                _ => None,
            })
    }

    fn of_depth(&self, unit: &Unit, depth: usize) -> Option<String> {
        if let Some(root) = self.by_sources(unit) {
            return Some(root);
        }
        let script = self.script(unit).filter(|_| depth < DEPTH)?;
        self.of_depth(script, depth + 1)
    }

    /// From the unit's own files: a package-relative path in cargo's dep-info, and the same file
    /// workspace-relative in rustc's `.d`.
    fn by_sources(&self, unit: &Unit) -> Option<String> {
        let Judged::DepInfo(info) = &unit.judged else {
            return None;
        };
        for file in &info.files {
            let DepPath::Package(p) = file else { continue };
            let p = p.to_str()?;
            for src in &unit.rustc_sources {
                let Some(prefix) = src.strip_suffix(p) else {
                    continue;
                };
                if !(prefix.is_empty() || prefix.ends_with('/')) {
                    continue;
                }
                let abs = self
                    .here
                    .checkout
                    .path
                    .join(&self.workspace)
                    .join(prefix.trim_end_matches('/'));
                // Inside the checkout, with a manifest: a package root.
                let root = self.here.checkout.relative(&abs)?;
                if Path::new(&self.here.checkout.path)
                    .join(&root)
                    .join("Cargo.toml")
                    .is_file()
                {
                    return Some(root);
                }
            }
        }
        None
    }

    /// A build-script run's script: the dependency of the same package it runs.
    fn script(&self, unit: &Unit) -> Option<&'u Unit> {
        unit.deps
            .iter()
            .filter_map(|h| self.by_hash.get(h.as_str()).copied())
            .find(|d| d.pkg == unit.pkg)
    }
}

fn own_files(u: &Unit) -> bool {
    matches!(&u.judged, Judged::DepInfo(info)
        if info.files.iter().any(|f| matches!(f, DepPath::Package(_))))
}

fn precalculated_mtime(u: &Unit) -> bool {
    matches!(&u.judged, Judged::Precalculated(s) if units::precalculated_mtime(s).is_some())
}

//! Removing dead units and `incremental/` dirs, crash-safely: what is about to go is recorded in
//! the index first, each unit's fingerprint goes before its outputs, and a unit cargo rebuilt
//! meanwhile is left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use anyhow::Result;

use super::index::{self, Index};
use super::layout::{list, open_sub, outputs_by_hash, remove, unit_hash};
use super::{BUDGET, Pruned, Scan};
use crate::fault;
use crate::fs;

/// Remove `scan`'s dead units (and the pending ones of a crashed prune) and dead `incremental/`
/// dirs, within [`BUDGET`]. Leaves `index.pending` and `scan.units` saying what is still to go.
/// Returns what went, and the first removal that failed.
pub(super) fn dead(
    job_dir: BorrowedFd<'_>,
    index: &mut Index,
    scan: &mut Scan,
    dev: fs::MountId,
) -> Result<(Pruned, Option<String>)> {
    let deadline = Instant::now() + BUDGET;
    // Record what is about to go before touching it: a crash mid-prune is finished next time.
    let mut pending = std::mem::take(&mut index.pending);
    // A profile dir that is gone took its units with it.
    pending.retain(|rel, _| scan.profiles.iter().any(|(r, _)| r == rel));
    for (rel, unit, _) in &scan.dead_units {
        if let Some(h) = unit_hash(unit) {
            pending.entry(rel.clone()).or_default().insert(h.to_owned());
        }
    }
    if !scan.dead_units.is_empty() {
        index.pending = pending.clone();
        index::save(job_dir, index)?;
    }

    let mut pruned = Pruned::default();
    let mut first_error = None;
    let mut finished: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, fd) in &scan.profiles {
        let Some(hashes) = pending.get(rel) else {
            continue;
        };
        let done = finished.entry(rel.clone()).or_default();
        let units = Units {
            rel,
            profile: fd,
            dead: &scan.dead_units,
            superseded: &scan.superseded,
            budget: &scan.budget,
            dev,
        };
        if let Err(e) = units.remove(hashes, deadline, &mut pruned, done) {
            first_error.get_or_insert(e);
        }
    }
    incremental(scan, dev, deadline, &mut pruned, &mut first_error);
    // Dead units not reached within the budget stay pending (their fingerprint may still be
    // there: they are dead and get removed at the next adoption).
    for (rel, hashes) in &mut pending {
        if let Some(done) = finished.get(rel) {
            hashes.retain(|h| !done.contains(h));
        }
    }
    pending.retain(|_, h| !h.is_empty());
    // Units left unpruned by the budget keep their old generation, so they stay dead.
    for (rel, unit, seen) in &scan.dead_units {
        let hash = unit_hash(unit).unwrap_or_default();
        if pending.get(rel).is_some_and(|p| p.contains(hash)) {
            scan.units
                .entry(rel.clone())
                .or_default()
                .insert(unit.clone(), *seen);
        }
    }
    index.pending = pending;
    Ok((pruned, first_error))
}

/// Remove `scan`'s dead `incremental/` dirs until `deadline`.
fn incremental(
    scan: &Scan,
    dev: fs::MountId,
    deadline: Instant,
    pruned: &mut Pruned,
    first_error: &mut Option<String>,
) {
    for (rel, name) in &scan.dead_inc {
        if Instant::now() > deadline {
            break;
        }
        let Some((_, fd)) = scan.profiles.iter().find(|(r, _)| r == rel) else {
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
}

/// The pending units of one profile dir.
struct Units<'a> {
    rel: &'a str,
    profile: &'a OwnedFd,
    dead: &'a [(String, String, super::Seen)],
    superseded: &'a BTreeSet<(String, String)>,
    budget: &'a BTreeSet<(String, String)>,
    dev: fs::MountId,
}

impl Units<'_> {
    /// Remove the units of `hashes` until `deadline`, adding to `pruned` and to `done` (hashes
    /// no longer pending). Returns the first failure, after going on with the others.
    fn remove(
        &self,
        hashes: &BTreeSet<String>,
        deadline: Instant,
        pruned: &mut Pruned,
        done: &mut BTreeSet<String>,
    ) -> Result<(), String> {
        let rel = self.rel;
        let fp = open_sub(self.profile.as_fd(), ".fingerprint");
        let fp_names: BTreeMap<String, String> = fp
            .as_ref()
            .map_or_else(Vec::new, |d| list(d.as_fd()))
            .into_iter()
            .filter_map(|(n, _)| {
                let n = n.into_string().ok()?;
                Some((unit_hash(&n)?.to_owned(), n))
            })
            .collect();
        let outputs = outputs_by_hash(self.profile.as_fd());
        let mut first_error = None;
        for hash in hashes {
            if Instant::now() > deadline {
                break;
            }
            let dead = self
                .dead
                .iter()
                .any(|(r, u, _)| r == rel && unit_hash(u) == Some(hash.as_str()));
            let fingerprint = fp_names.get(hash);
            // A pending unit that cargo rebuilt since (its fingerprint is back) is live again.
            if fingerprint.is_some() && !dead {
                done.insert(hash.clone());
                continue;
            }
            // The fingerprint first: without it cargo rebuilds the unit, so a crash between the
            // two steps never leaves a unit that looks built but has lost its outputs.
            let mut result = Ok(0);
            if let (Some(name), Some(fp)) = (fingerprint, &fp) {
                result = remove(fp.as_fd(), OsStr::new(name), self.dev);
                // Once per prune, so a test pausing here is not held at every unit.
                if pruned.units == 0 {
                    fault::point("prune-fingerprint-removed");
                }
            }
            for (sub, name) in outputs.get(hash).into_iter().flatten() {
                if result.is_err() {
                    break;
                }
                if let Some(dir) = open_sub(self.profile.as_fd(), sub) {
                    result = remove(dir.as_fd(), name, self.dev).map(|b| b + result.unwrap_or(0));
                }
            }
            match result {
                Ok(bytes) => {
                    if fingerprint.is_some() {
                        pruned.units += 1;
                        let key = (rel.to_owned(), hash.clone());
                        if self.superseded.contains(&key) {
                            pruned.superseded += 1;
                        } else if self.budget.contains(&key) {
                            pruned.budget += 1;
                        }
                    }
                    pruned.bytes += bytes;
                    done.insert(hash.clone());
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| format!("{rel}: unit {hash}: {e}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

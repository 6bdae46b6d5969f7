//! `inputs.json` in a job dir (next to `lease.json`, so `cargo clean` cannot lose it, and copied
//! with the dir by a seed): where the dir was last built and, per path-package unit, the
//! content of every input it was built from. Written by whoever built the dir: read with a size
//! cap, and anything that does not parse is no record (every path unit is then rebuilt).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checkout::Checkout;
use super::digest::{Entry, read_noatime};
use crate::fs;

pub(crate) const RECORD: &str = "inputs.json";
/// What the last content verification of the dir decided, for `status`.
pub(crate) const VERDICT: &str = "verified.json";
const VERSION: u32 = 1;
/// A workspace of tens of thousands of files records a few MiB.
const MAX_RECORD_BYTES: u64 = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) version: u32,
    pub(super) checkout: Checkout,
    /// The job dir's path when it was built: env vars rustc baked in name it.
    pub(super) job_dir: PathBuf,
    /// Every recorded input, relative to the checkout's root.
    pub(super) files: BTreeMap<String, Entry>,
    /// Path-package units by fingerprint file (relative to the job dir).
    pub(super) units: BTreeMap<String, UnitRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct UnitRecord {
    /// The fingerprint file's content when recorded.
    pub(super) hash: String,
    /// The reference file's mtime (ns) when recorded: cargo rewrites it whenever it rebuilds the
    /// unit, and a path unit's hash does not change with its sources, so this is what tells a
    /// unit rebuilt after the record (by a step that never released) from the recorded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) reference_ns: Option<u64>,
    pub(super) inputs: Vec<String>,
    /// Some input was recorded by cargo as an absolute path inside the checkout.
    #[serde(default)]
    pub(super) absolute: bool,
}

pub(super) fn read(job_dir: BorrowedFd<'_>) -> Option<Record> {
    let bytes = read_noatime(job_dir, OsStr::new(RECORD), MAX_RECORD_BYTES)?;
    let record: Record = serde_json::from_slice(&bytes).ok()?;
    (record.version == VERSION).then_some(record)
}

pub(super) fn write(job_dir: BorrowedFd<'_>, record: &Record) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    fs::write_atomic(job_dir, RECORD, &bytes)
}

pub(super) fn new(checkout: Checkout, job_dir: PathBuf) -> Record {
    Record {
        version: VERSION,
        checkout,
        job_dir,
        files: BTreeMap::new(),
        units: BTreeMap::new(),
    }
}

/// What the last content verification of a dir decided: counts only, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastVerdict {
    /// Units kept warm by content.
    pub(crate) verified: usize,
    /// Units made stale, by reason (`content_differs`, `no_record`, `path_moved`, `env_dep`).
    pub(crate) stale: BTreeMap<String, usize>,
    /// Checkout files given their recorded mtimes.
    pub(crate) restored: usize,
}

impl LastVerdict {
    pub(crate) fn stale_count(&self) -> usize {
        self.stale.values().sum()
    }
}

pub(crate) fn read_verdict(job_dir: BorrowedFd<'_>) -> Option<LastVerdict> {
    let bytes = read_noatime(job_dir, OsStr::new(VERDICT), 64 * 1024)?;
    serde_json::from_slice(&bytes).ok()
}

pub(super) fn write_verdict(job_dir: BorrowedFd<'_>, verdict: &LastVerdict) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(verdict).map_err(std::io::Error::other)?;
    fs::write_atomic(job_dir, VERDICT, &bytes)
}

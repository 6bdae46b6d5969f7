//! What a run of the binary did, read back through its `--json` output (`status --json`,
//! `gc --json`) and the job dirs' identities, never through its prose: wording changes (issue 22
//! item 8: `adopted job-0 ` became `Adopted job-0 (warm, …)`) must not break a bench.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Run, guarded, timed};

/// A dir's `(device, inode)`: a job dir keeps it when a job adopts the dir (adoption renames it,
/// docs/protocol.md#adopt), so identities before and after a run tell adopted from fresh.
pub type Identity = (u64, u64);

/// Every job dir in `root` (name → identity), as found now.
pub fn dir_identities(root: &Path) -> BTreeMap<String, Identity> {
    super::job_dirs(root)
        .into_iter()
        .filter_map(|name| {
            let meta = std::fs::symlink_metadata(root.join(&name)).ok()?;
            Some((name, (meta.dev(), meta.ino())))
        })
        .collect()
}

/// `cargo guarded status --json` of `root`, parsed.
pub fn status_json(root: &Path, logs: &Path) -> Value {
    let run = timed(&mut guarded(root, root, ["status", "--json"]), logs);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("status --json printed no JSON ({e}):\n{}", run.stdout))
}

/// The dir `status --json` names for job `id`'s lease, if it lists one.
pub fn lease_dir(status: &Value, id: &str) -> Option<PathBuf> {
    status["leases"]
        .as_array()?
        .iter()
        .find(|l| l["job_id"] == id)
        .and_then(|l| l["dir"].as_str())
        .map(PathBuf::from)
}

/// How job `id` came by its dir, given the job dirs before its run.
#[derive(Debug, PartialEq, Eq)]
pub enum Origin {
    /// A new dir.
    Fresh,
    /// Its own dir, the one of the same name.
    Resumed,
    /// The dir that was this job dir (by name) before the run.
    Adopted(String),
}

/// How job `id` came by its dir: its lease's dir from `status --json`, matched by identity
/// against the dirs in `root` before the run (`before`, from [`dir_identities`]).
pub fn origin(root: &Path, id: &str, before: &BTreeMap<String, Identity>, logs: &Path) -> Origin {
    let status = status_json(root, logs);
    let dir = lease_dir(&status, id)
        .unwrap_or_else(|| panic!("status --json lists no lease of job {id}:\n{status:#}"));
    let meta = std::fs::symlink_metadata(&dir)
        .unwrap_or_else(|e| panic!("job {id}'s dir {} is gone: {e}", dir.display()));
    let now = (meta.dev(), meta.ino());
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    match before.iter().find(|(_, identity)| **identity == now) {
        None => Origin::Fresh,
        Some((was, _)) if *was == name => Origin::Resumed,
        Some((was, _)) => Origin::Adopted(was.clone()),
    }
}

/// The names of the job dirs a `gc --json` run removed.
pub fn gc_removed(run: &Run) -> Vec<String> {
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("gc --json printed no JSON ({e}):\n{}", run.stdout));
    report["removed"]
        .as_array()
        .unwrap_or_else(|| panic!("gc --json has no `removed` list:\n{report:#}"))
        .iter()
        .map(|r| {
            let dir = r["dir"].as_str().expect("a removed entry without `dir`");
            dir.rsplit('/').next().unwrap().to_owned()
        })
        .collect()
}

//! The names the protocol gives things: in the root (`.trash/`, `.guard.lock`, the marker, the
//! `.new-*` dirs under construction) and in a job dir (`lease.json`, `target/`, `build/`, its
//! locks), and a job dir's size as a lease records it.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::time::Instant;

pub(crate) const LEASE_FILE: &str = "lease.json";
/// `CARGO_TARGET_DIR` inside a job dir; a subdirectory so `cargo clean` cannot remove the lease.
pub(crate) const TARGET: &str = "target";
/// The job dir's `build/`, cargo's build dir when one is configured (`CARGO_BUILD_BUILD_DIR`).
pub(crate) const BUILD_DIR: &str = "build";
pub(crate) const TRASH: &str = ".trash";
pub(crate) const GUARD_LOCK: &str = ".guard.lock";
/// `rustc -vV` answers, cached by `workspace::toolchain`.
pub(crate) const TOOLCHAIN_CACHE: &str = ".toolchains";
/// Job dirs under construction: invisible under a dot-name until complete.
pub(crate) const NEW_PREFIX: &str = ".new-";
/// In a job dir: shared by jobs copying a seed from it, needed alone to adopt or reclaim it.
pub(crate) const SEED_LOCK: &str = "seed.lock";
/// In a job dir: held shared by a process that lives as long as the CI job (`hold`); once it is
/// free, a released lease that recorded it has ended (docs/protocol.md#linger-ends-with-the-job).
pub(crate) const JOB_LOCK: &str = "job.lock";
/// Written only by cargo-guarded, when it lays out a root: `gc` and `status` work only in a
/// directory that has it (or the layout of earlier versions, which then gets it).
pub(crate) const ROOT_MARKER: &str = ".cargo-guarded-root";

/// The size a lease records and pruning measures: the job dir's `target/` plus its `build/`,
/// together each inode once (cargo hard-links outputs between them), within `deadline`.
pub(crate) fn job_size(job_dir: BorrowedFd<'_>, deadline: Option<Instant>) -> Option<u64> {
    crate::fs::trees_size(
        job_dir,
        &[OsStr::new(TARGET), OsStr::new(BUILD_DIR)],
        deadline,
    )
}

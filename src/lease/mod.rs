//! The lease protocol (`docs/protocol.md`): the root's layout, the lease record, and the steps in the
//! order a job takes them — acquire (fresh, resumed or adopted), renew, release — followed by the
//! guard's claim on an expired dir. Each step's comment names the race it closes.
//!
//! Two signals guard a job dir: the kernel locks (`flock` on the job dir itself, held by the
//! wrapper for the whole run, and the tree lock its command inherits; `probe` says what they
//! mean) and the lease's heartbeat. A dir is expired only when the lock is
//! free **and** the lease says so; a stopped build keeps its lock, a lying filesystem keeps the
//! heartbeat. Paths always come from the root's own directory entries, opened relative to the
//! root's fd without following symlinks; nothing in a lease is ever used as a path.
//!
//! One file per concern: `root` (the root's layout and its entries; `NotAJobDir`: an entry it
//! skips), `record` (the lease record and its parsing), `clock` (the clocks a lease is written and
//! judged on), `expiry` (what a lease's times say: live, lingering or expired), `acquire` and
//! `adopt` (step 1; `request`: what a job asks for and how it came by its dir, `owned`: whether a
//! dir is ours to use), `held` (a job dir held under its lock), `session` (the heartbeat and the
//! session that releases itself), `release` (step 3), `claim` (the guard's step) and `protected`
//! (why the protocol keeps a dir from it), `probe` (what a lock means: who holds a dir), `moves`
//! (the checked renames acquire and claim share), `seed` (a new job's copy of a finished dir,
//! when there is nothing to adopt), `joblock` (a linger that ends with the CI job).

use std::time::Duration;

use crate::fault;

mod acquire;
mod adopt;
mod claim;
mod clock;
mod expiry;
mod held;
mod joblock;
mod moves;
mod notice;
mod owned;
mod probe;
mod protected;
mod record;
mod release;
mod request;
mod reserve;
mod root;
mod seed;
mod session;
mod starting;
#[cfg(test)]
mod tests;

pub(crate) use acquire::WaitTimedOut;
pub(crate) use claim::{Claim, claim, claim_unfinished, old_enough as unfinished_old_enough};
pub(crate) use clock::Now;
pub(crate) use expiry::{Expiry, classify};
pub(crate) use held::Held;
pub(crate) use joblock::{hold as hold_job_lock, record_in_released};
pub(crate) use notice::{Level, Notice, Notices};
pub(crate) use probe::{Hold, Holder, probe};
pub(crate) use protected::{KeptAs, Protected};
pub(crate) use record::{Cold, Lease, Owner, State, Warmth, read};
pub(crate) use request::{Origin, Request};
pub(crate) use root::{NotAJobDir, Root};
pub(crate) use seed::{DEFAULT_SEED_MAX_SIZE, Seeding, describe as seed_words};
pub(crate) use session::Session;

/// Version of `lease.json`'s schema. A guard keeps (never deletes) a lease of any other version.
pub(crate) const PROTOCOL: u32 = 1;
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
/// The longest `--ttl`/`--linger` (and `ttl_secs` in a lease) we accept: 3650 days (10 years).
/// Longer is a typo (`20000y`), and it keeps `now + ttl` far from `SystemTime`'s limits and
/// inside the years RFC 3339 can print (up to 9999), so every lease we write can be read back.
pub(crate) const MAX_LEASE_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

/// The shortest `--ttl` we accept: the heartbeat renews a lease every `ttl/5` but at most every
/// 100 ms (`record::heartbeat_interval`), so below this a live job's dir would expire between
/// two beats (`0s` even as it starts).
pub(crate) const MIN_TTL: Duration = Duration::from_secs(1);
/// Beyond this a `--ttl` or `--linger` gets a warning: a dir whose job died (TTL) or ended
/// (linger) stays out of the guard's reach that long, which is rarely what was meant.
pub(crate) const SANE_LEASE_CEILING: Duration = Duration::from_secs(24 * 3600);
/// `--ttl`'s default: an active lease whose heartbeat stopped this long ago is expired. The
/// heartbeat renews it every `ttl/5`, at most every 60 s (`record::heartbeat_interval`), so
/// several missed beats stay inside it.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
/// `--linger`'s default: how long a released lease stays protected, so that the job's later
/// steps find their dir (docs/protocol.md#release).
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_secs(60 * 60);

/// The size a lease records and pruning measures: the job dir's `target/` plus its `build/`,
/// together each inode once (cargo hard-links outputs between them), within `deadline`.
pub(crate) fn job_size(
    job_dir: std::os::fd::BorrowedFd<'_>,
    deadline: Option<std::time::Instant>,
) -> Option<u64> {
    use std::ffi::OsStr;
    crate::fs::trees_size(
        job_dir,
        &[OsStr::new(TARGET), OsStr::new(BUILD_DIR)],
        deadline,
    )
}

/// A protocol step: a fault point for the crash and race tests, and in unit tests the place
/// where the property test lets a third party rename things.
fn step(name: &str) {
    fault::point(name);
    #[cfg(test)]
    tests::third_party(name);
}

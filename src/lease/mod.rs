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
//! when there is nothing to adopt), `joblock` (a linger that ends with the CI job); `layout`
//! (the names of things in the root and in a job dir), `limits` (the protocol's version, the
//! bounds of a lease's durations), `step` (a protocol step: a fault point, and in unit tests a
//! third party's cue), `trash` (the root's `.trash/`, opened once per sweep).

mod acquire;
mod adopt;
mod claim;
mod clock;
mod expiry;
mod held;
mod joblock;
mod layout;
mod limits;
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
mod step;
#[cfg(test)]
mod tests;
mod trash;

pub(crate) use acquire::WaitTimedOut;
pub(crate) use claim::{Claim, claim, claim_unfinished, old_enough as unfinished_old_enough};
pub(crate) use clock::Now;
pub(crate) use expiry::{Expiry, classify};
pub(crate) use held::Held;
pub(crate) use joblock::{hold as hold_job_lock, record_in_released};
#[cfg(feature = "store")]
pub(crate) use layout::LEASE_FILE;
pub(crate) use layout::{
    BUILD_DIR, GUARD_LOCK, JOB_LOCK, NEW_PREFIX, TARGET, TOOLCHAIN_CACHE, job_size,
};
pub(crate) use limits::{
    DEFAULT_LINGER, DEFAULT_TTL, MAX_LEASE_DURATION, MIN_TTL, SANE_LEASE_CEILING,
};
pub(crate) use notice::{Level, Notice, Notices};
pub(crate) use probe::{Hold, Holder, probe};
pub(crate) use protected::{KeptAs, Protected};
pub(crate) use record::{Cold, Lease, Owner, State, Warmth, read};
pub(crate) use request::{Origin, Request};
pub(crate) use root::{NotAJobDir, Root};
pub(crate) use seed::{DEFAULT_SEED_MAX_SIZE, Seeding, describe as seed_words};
pub(crate) use session::Session;
pub(crate) use trash::Trash;

//! Seeding (docs/protocol.md#seed): a new job with no expired dir of its workspace to adopt
//! starts from a copy of the freshest *finished* dir of its workspace (released, lingering or
//! expired; its owner not running) instead of an empty one.
//!
//! The source keeps its lease, its linger and its owner's later steps: the copy is taken without
//! the source's lock and verified afterwards. What keeps the copy consistent:
//!
//! - Seeders hold a *shared* lock on the source's `seed.lock` for the whole copy; an adopter or a
//!   guard needs it *exclusively* (try-lock) before it renames the dir, so nobody adopts or
//!   deletes a dir mid-copy (they take another or keep it).
//! - The source's owner never waits for a copy: its next step resumes the dir as always, and its
//!   resume rewrites the lease (a new token) before it writes anything else. The seeder re-reads
//!   the lease after the copy: any change (token, state, renewal), or the dir's lock held, and
//!   the copy is discarded.
//! - The copy is built under `.new-*`, locked, and published by the same rename as a fresh dir.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::clone::{self, Copied, Stop};
use crate::fs;
use crate::locks::LockTrust;
use crate::quantity::Bytes;

use super::layout::{JOB_LOCK, LEASE_FILE, NEW_PREFIX, SEED_LOCK};
use super::notice::Notice;
use super::probe::{Holder, TREE_LOCK, probe};
use super::record::{Lease, read};
use super::reserve;
use super::root::Root;
use super::step::step;

/// The lock file seeders share while they copy a dir, and adopters and guards need alone.
pub(super) fn seed_lock(dir: &File) -> std::io::Result<File> {
    fs::create_shared_file(dir.as_fd(), OsStr::new(SEED_LOCK))
}

/// Whether `dir` can be renamed away now (adopted or claimed): no seed is being copied from it.
/// `Ok(lock)` holds it until the caller has moved the dir and rewritten its lease.
pub(super) fn no_seed_in_flight(dir: &File) -> Option<File> {
    let lock = seed_lock(dir).ok()?;
    lock.try_lock().ok()?;
    Some(lock)
}

/// `--seed-max-size`'s default, in bytes: a larger finished dir is not copied, the job builds
/// fresh (a reflink clone counts its full size too).
pub(crate) const DEFAULT_SEED_MAX_SIZE: u64 = 16 << 30;

/// What a job may seed with, decided by the caller once (`--no-seed`, the size cap, the room).
pub(crate) struct Seeding<'a> {
    /// Seeds larger than this are not taken (`--seed-max-size`).
    pub(crate) max_bytes: u64,
    /// How many bytes a real copy may write: free space above the pressure line.
    pub(crate) room: &'a dyn Fn() -> u64,
    /// Copy cargo's `incremental/` dirs too (off by default; see `skipped`).
    pub(crate) incremental: bool,
}

/// A finished dir of the job's workspace, as the scan saw it.
pub(super) struct Source {
    pub(super) name: OsString,
    pub(super) lease: Lease,
}

/// What a seed did: the copy, and its source.
#[derive(Debug)]
pub(crate) struct Seeded {
    pub(crate) from: String,
    pub(crate) copied: Copied,
    pub(crate) took: Duration,
}

/// Why a source (its dir) gave no seed.
pub(super) enum Miss {
    /// Someone moved, resumed or is adopting it: try the next source.
    Changed(PathBuf, String),
    /// Copied, but the source changed meanwhile: the copy was discarded; try the next source.
    Discarded(PathBuf, String),
    /// Not a source worth retrying (too big, no room, a copy error): build fresh.
    Stop(PathBuf, String),
}

/// Copy the source's tree into `new_dir` (our locked `.new-*` dir), and verify afterwards that
/// the source did not change meanwhile. On `Err`, the caller removes `new_dir`.
pub(super) fn copy_from(
    root: &Root,
    src: &Source,
    new_dir: &File,
    seeding: &Seeding<'_>,
    trust: LockTrust,
) -> Result<Seeded, Miss> {
    let path = root.join(&src.name);
    let changed = |why: &str| Miss::Changed(path.clone(), why.to_owned());
    let dir = root
        .open_job(&src.name)
        .map_err(|e| changed(&format!("{e}")))?;
    // Race closed: an adopter or a guard holds `seed.lock` alone while it renames the dir away.
    // Shared, we keep them off it for the whole copy; if they have it, take another source.
    let lock =
        seed_lock(&dir).map_err(|e| changed(&format!("cannot open its {SEED_LOCK} ({e})")))?;
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => {}
        Err(_) => return Err(changed("being adopted or reclaimed")),
    }
    // Race closed: resumed, adopted or claimed between the scan and our shared lock.
    if !root.still_names(&src.name, &dir) || !unchanged(&dir, &src.lease) {
        return Err(changed("changed since the scan"));
    }
    if !owner_gone(&dir, trust) {
        return Err(changed("its owner is running"));
    }
    step("seed-locked");
    let started = Instant::now();
    let copied = copy_reserved(root, src, &dir, new_dir, seeding)?;
    step("seed-copied");
    // Race closed: the owner resumed the dir mid-copy (its resume rewrites the lease before it
    // writes anything else), or holds its lock right now: what we copied may be half old, half
    // new. Discard it.
    if !unchanged(&dir, &src.lease)
        || !owner_gone(&dir, trust)
        || !root.still_names(&src.name, &dir)
    {
        return Err(Miss::Discarded(
            path,
            "its owner resumed it during the copy".to_owned(),
        ));
    }
    drop(lock);
    Ok(Seeded {
        from: src.lease.job_id.clone(),
        copied,
        took: started.elapsed(),
    })
}

/// The copy itself, within the room reserved for it (`reserve`), re-checking the free space as
/// it writes. The reservation ends with the copy.
fn copy_reserved(
    root: &Root,
    src: &Source,
    dir: &File,
    new_dir: &File,
    seeding: &Seeding<'_>,
) -> Result<Copied, Miss> {
    let path = root.join(&src.name);
    let changed = |why: &str| Miss::Changed(path.clone(), why.to_owned());
    let skip = |p: &Path| skipped(p, seeding.incremental);
    // What this copy may write: its source's recorded size (`target/` and `build/`) and a
    // margin (a sixteenth, and 1 MiB for the small files beside them: `prune.json`, …), out of
    // the room the seeders in flight left; held until the copy is over (`reserve`).
    let want = src.lease.size_bytes.map_or(u64::MAX, |s| {
        s.saturating_add(s / 16).saturating_add(1 << 20)
    });
    let reservation = reserve::reserve(root, seeding.room, want).map_err(|e| {
        Miss::Stop(
            path.clone(),
            format!("cannot reserve room for the copy ({e})"),
        )
    })?;
    let rechecked = std::cell::Cell::new(false);
    let still_room = || {
        if !rechecked.replace(true) {
            step("seed-rechecking");
        }
        (seeding.room)() > 0
    };
    let limits = clone::Limits {
        max_bytes: seeding.max_bytes,
        max_written: reservation.bytes,
        mount: root.mount,
        skip: &skip,
        still_room: &still_room,
    };
    let copied = clone::clone_tree(dir.as_fd(), new_dir.as_fd(), &limits).map_err(|e| match e {
        // A file that vanished or changed type mid-copy: the owner or a guard is at work.
        Stop::Io(_, ref io) if io.kind() == std::io::ErrorKind::NotFound => changed(&e.to_string()),
        e => Miss::Stop(path.clone(), e.to_string()),
    })?;
    Ok(copied)
}

/// The lease still reads as it did at the scan: same acquisition, state and last renewal.
fn unchanged(dir: &File, seen: &Lease) -> bool {
    read(dir.as_fd()).is_ok_and(|l| {
        l.token == seen.token && l.state == seen.state && l.renewed_at == seen.renewed_at
    })
}

/// The source check (`lease::probe`, docs/protocol.md#what-a-lock-means): nobody holds the dir
/// (no owner, adopter or guard; no process of its job's tree) and its locks could be tried.
/// Released at once: seeding never holds a source's lock, so its owner's next step never waits
/// for a copy.
///
/// Race closed: jobs seeding from one source at once probe it at once, and a probe takes the
/// dir's lock for a moment to see whether anyone holds it, so each can see the other's probe as
/// a holder. A probe holds the lock for microseconds, an owner for its whole step: a few tries
/// a few milliseconds apart tell them apart.
fn owner_gone(dir: &File, trust: LockTrust) -> bool {
    for attempt in 0..PROBE_TRIES {
        match probe(dir.as_fd(), trust) {
            Holder::Gone | Holder::Unseen => return true,
            Holder::Live(_) if attempt + 1 < PROBE_TRIES => {
                std::thread::sleep(Duration::from_millis(5 << attempt));
            }
            _ => return false,
        }
    }
    false
}

/// How many times `owner_gone` probes a source that looks held (5 ms, then 10, 20, 40 apart).
const PROBE_TRIES: u32 = 5;

/// What a seed leaves out: the source's lease and lock files (the new dir has its own), leftover
/// temp files of lease writes, cargo's `incremental/` dirs (they only speed up recompiling a
/// changed workspace crate, and are most of a debug target dir's size; see the fleet bench), and
/// coverage profiles (`*.profraw`, `*.profdata`: another job's results, not a build cache; a
/// `cargo llvm-cov report` in the seeded job would report the source job's coverage).
fn skipped(rel: &Path, incremental: bool) -> bool {
    let mut parts = rel.components();
    let first = parts.next().map(|c| c.as_os_str());
    if rel.components().count() == 1 {
        let name = first.unwrap_or_default().to_string_lossy();
        return name == LEASE_FILE
            || name == SEED_LOCK
            || name == TREE_LOCK
            || name == JOB_LOCK
            || name.starts_with(NEW_PREFIX)
            || (name.starts_with('.') && name.ends_with(".tmp"));
    }
    let profile = rel
        .extension()
        .is_some_and(|e| e == "profraw" || e == "profdata");
    profile || (!incremental && rel.file_name() == Some(OsStr::new("incremental")))
}

/// The status line's words for a seed: `reflink, 12.0 MiB in 0.04s` (to the hundredth of a
/// second: a reflink takes a fraction of one).
pub(crate) fn describe(s: &Seeded) -> String {
    format!(
        "{}, {} in {:.2}s",
        s.copied.method(),
        Bytes(s.copied.bytes),
        s.took.as_secs_f64()
    )
}

/// Why a job that missed this seed starts cold, for its `Using … (fresh dir: …)` line.
pub(super) fn cold(miss: &Miss) -> String {
    match miss {
        Miss::Changed(dir, why) | Miss::Stop(dir, why) => {
            format!("not seeding from {}: {why}", dir.display())
        }
        Miss::Discarded(dir, why) => {
            format!(
                "the seed copied from {}: {why} was discarded",
                dir.display()
            )
        }
    }
}

/// Why a source was passed over, to be said: `-v` for one skipped before any copy, always for a
/// copy that was made and thrown away, or a seed refused (too big, no room).
pub(super) fn notice(miss: Miss) -> Notice {
    match miss {
        Miss::Changed(dir, why) => Notice::SeedSkipped { dir, why },
        Miss::Discarded(dir, why) => Notice::SeedDiscarded { dir, why },
        Miss::Stop(dir, why) => Notice::SeedRefused { dir, why },
    }
}

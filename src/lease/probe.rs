//! What a lock means (docs/protocol.md#what-a-lock-means): the one place that asks whether
//! anyone holds a job dir. Status, the guard's claim, adoption, the nested-run check and seeding
//! all go through [`take`] (or [`probe`], which takes and releases at once); nothing else
//! try-locks a job dir on a reader's behalf.
//!
//! A job dir has two locks:
//! - the dir's own lock (`flock` on the dir), exclusive, held by the job's wrapper for its run
//!   and never inherited by its children (close-on-exec), so an orphan cannot make the job's
//!   next step wait;
//! - the tree lock (`tree.lock` in the dir), taken *shared* by the wrapper and inherited by the
//!   command it runs (not close-on-exec): the kernel keeps it while any process of the job's
//!   tree still has the file open, even after wrapper and reaper were SIGKILLed together. The
//!   job's own next step takes it shared too and is not blocked; a reader needs it exclusive.
//!
//! Lock order, always: the dir's lock, then the tree lock. Whoever holds the tree lock
//! exclusively therefore holds the dir's lock too, so a step that holds the dir's lock gets the
//! tree lock shared at once (unless someone breaks the order: then it polls, never blocks).

use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::locks::{self, LockTrust, Patience, Waited, try_shared};

/// The tree lock's name in a job dir.
pub(crate) const TREE_LOCK: &str = "tree.lock";

/// Who holds a job dir, as its locks say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A try-lock failed with EWOULDBLOCK: someone holds it.
    Live(Hold),
    /// Both locks were free (taken, and released again at once), where locks are trusted.
    Gone,
    /// Both locks were free, but on this filesystem a lock can "succeed" while another client
    /// holds it (NFS, …): no proof either way; the heartbeat decides, with its margin.
    Unseen,
    /// A lock could not be tried (any error but EWOULDBLOCK): never taken for live, never for
    /// gone; the dir is kept and the error reported.
    Unknown(String),
}

/// Which lock was held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// The dir's own lock: the job's wrapper (or `hold`), or a guard or adopter at work.
    Dir,
    /// Only the tree lock: processes the job started outlive its wrapper.
    Tree,
}

/// Why [`take`] could not take a dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Busy {
    Live(Hold),
    Unknown(String),
}

/// Both locks of a job dir, held exclusively: nobody else holds it, and no process of its job
/// can still be running with the tree lock open. The dir's lock is on the caller's fd (it goes
/// when that fd is closed); the tree lock goes when this value is dropped.
#[derive(Debug)]
pub(crate) struct Taken {
    /// `None`: the dir has no tree lock (laid out by an earlier version, which did not make one).
    tree: Option<File>,
}

fn try_flock(fd: BorrowedFd<'_>, op: FlockOperation) -> Result<(), Busy> {
    match rustix::fs::flock(fd, op) {
        Ok(()) => Ok(()),
        Err(Errno::WOULDBLOCK) => Err(Busy::Live(Hold::Dir)),
        Err(e) => Err(Busy::Unknown(format!("lock failed ({e})"))),
    }
}

/// Take both locks of the job dir open as `dir`, without blocking: the dir's lock, then the tree
/// lock. On `Err` nothing is held. `dir` must be an fd of the caller's own opening (the dir's
/// lock is taken on it).
pub(crate) fn take(dir: BorrowedFd<'_>) -> Result<Taken, Busy> {
    try_flock(dir, FlockOperation::NonBlockingLockExclusive)?;
    let release_dir = |busy: Busy| {
        let _ = rustix::fs::flock(dir, FlockOperation::Unlock);
        busy
    };
    let tree = match open_tree_lock(dir, false) {
        Ok(file) => file,
        Err(e) => return Err(release_dir(Busy::Unknown(e))),
    };
    if let Some(file) = &tree {
        // Race closed: the wrapper was SIGKILLed (its reaper too) while a process of its command
        // (a daemon, a `setsid` child) still runs and writes into `target/`. The dir's lock went
        // with the wrapper; the tree lock that process inherited did not.
        match try_flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Busy::Live(_)) => return Err(release_dir(Busy::Live(Hold::Tree))),
            Err(Busy::Unknown(e)) => {
                return Err(release_dir(Busy::Unknown(format!("{TREE_LOCK}: {e}"))));
            }
        }
    }
    Ok(Taken { tree })
}

/// One look at who holds the job dir open as `dir`: try both locks, release them at once.
/// While this runs, an adopter's or the job's own try-lock fails (the job polls; an adopter
/// starts cold); so `status` calls it once per dir.
pub(crate) fn probe(dir: BorrowedFd<'_>, trust: LockTrust) -> Holder {
    match take(dir) {
        Ok(taken) => {
            drop(taken);
            let _ = rustix::fs::flock(dir, FlockOperation::Unlock);
            match trust {
                LockTrust::Trusted => Holder::Gone,
                LockTrust::Untrusted(_) => Holder::Unseen,
            }
        }
        Err(Busy::Live(hold)) => Holder::Live(hold),
        Err(Busy::Unknown(e)) => Holder::Unknown(e),
    }
}

/// Open the tree lock of `dir`: read-only (`flock` works on any open file, so readers of other
/// uids can probe it), never following a symlink, never blocking on a FIFO, and only a regular
/// file. `create`: make it if missing (the job's side, holding the dir's lock). `Ok(None)`: there
/// is none.
fn open_tree_lock(dir: BorrowedFd<'_>, create: bool) -> Result<Option<File>, String> {
    let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if create {
        flags |= OFlags::CREATE;
    }
    let fd: OwnedFd = match rustix::fs::openat(dir, TREE_LOCK, flags, Mode::from_raw_mode(0o644)) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if !create => return Ok(None),
        Err(e) => return Err(format!("cannot open {TREE_LOCK} ({e})")),
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
        Ok(_) => return Err(format!("{TREE_LOCK} is not a regular file")),
        Err(e) => return Err(format!("cannot stat {TREE_LOCK} ({e})")),
    }
    Ok(Some(File::from(fd)))
}

impl Taken {
    /// The dir is now the job's (adopted under these locks): keep the tree lock, shared, for the
    /// job's command to inherit. Race closed: a downgrade in place, under the dir's lock, so no
    /// reader can take the tree lock between the adoption and the job's start.
    pub(super) fn into_shared(self, dir: BorrowedFd<'_>) -> Result<File> {
        match self.tree {
            Some(file) => {
                rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared)
                    .map_err(io::Error::from)
                    .with_context(|| format!("failed to lock {TREE_LOCK} shared"))?;
                Ok(file)
            }
            None => share(dir, &|| Ok(()), None),
        }
    }
}

/// The job's side, holding the dir's lock on `dir`: open (creating) its tree lock and take it
/// shared, for the command to inherit. Only a process that breaks the lock order can hold it
/// exclusively now: poll (never block, invariant 11), interruptibly, for at most `wait` (30 s
/// when unbounded).
pub(super) fn share(
    dir: BorrowedFd<'_>,
    interrupted: &dyn Fn() -> Result<()>,
    wait: Option<Duration>,
) -> Result<File> {
    let file = open_tree_lock(dir, true)
        .map_err(|e| anyhow::anyhow!(e))?
        .context("tree lock missing after create")?;
    // Readable by every uid whatever the umask: `status` and guards of other users probe it
    // (a lock they cannot open is an unknown, kept and reported). Only our own file.
    if rustix::fs::fstat(&file).is_ok_and(|st| st.st_uid == rustix::process::geteuid().as_raw()) {
        let _ = rustix::fs::fchmod(&file, Mode::from_raw_mode(0o644));
    }
    let limit = wait.unwrap_or(Duration::from_secs(30));
    let patience = Patience {
        since: Instant::now(),
        limit: Some(limit),
        poll: Duration::from_millis(100),
        interrupted,
    };
    let lock = || try_shared(&file).with_context(|| format!("failed to lock {TREE_LOCK}"));
    match locks::wait(&patience, lock, || Ok(ControlFlow::Continue(())))? {
        Waited::Taken => Ok(file),
        Waited::Stopped | Waited::TimedOut(_) => bail!(
            "{TREE_LOCK} is held exclusively by a process that does not hold the job dir's \
             lock (gave up after {}s)",
            limit.as_secs()
        ),
    }
}

/// At the end of a step, our own fd of the tree lock closed (never unlocked: the command's
/// processes share that open file and its lock): whether anyone still holds the tree lock of
/// `dir` (whose lock we hold). Killed processes drop it as they exit, so this waits a little (up
/// to 1 s) before saying yes. A fresh open file of our own: a lock conversion on the inherited
/// one would succeed however many processes share it.
pub(super) fn others_hold(dir: BorrowedFd<'_>) -> bool {
    let Ok(Some(file)) = open_tree_lock(dir, false) else {
        return false;
    };
    for _ in 0..20 {
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            // Released again when `file` closes.
            Ok(()) => return false,
            Err(Errno::WOULDBLOCK) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return false,
        }
    }
    true
}

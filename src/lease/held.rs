//! A job dir held under its lock, and step 3, release (docs/protocol.md#release).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use crate::fs::{self, Identity};

use super::clock::Now;
use super::record::{Lease, State, expiry, write};
use super::root::Root;
use super::{TARGET, step};

/// Size walks at release and adoption stop after this; the size is then reported as unknown.
pub(super) const SIZE_BUDGET: Duration = Duration::from_millis(500);
/// A size measured more recently than this is kept at release: repeated local builds (and the
/// steps of one CI job) do not pay for a walk of the whole target dir each time.
const SIZE_REFRESH: Duration = Duration::from_secs(600);

/// A job dir we hold: locked for as long as this value lives.
pub(crate) struct Held {
    pub(crate) path: PathBuf,
    name: OsString,
    root_fd: OwnedFd,
    pub(super) dir: File,
    /// The tree lock (`probe::TREE_LOCK`), held shared: the command inherits it, so the dir
    /// stays protected while any process of its tree lives (docs/protocol.md#what-a-lock-means).
    /// `None` once given up at the end of the step (`survivors`).
    tree: Mutex<Option<File>>,
    pub(super) ident: Identity,
    lease: Mutex<Lease>,
}

impl Held {
    pub(crate) fn target_dir(&self) -> PathBuf {
        self.path.join(TARGET)
    }

    /// The tree lock's fd, for the command to inherit (`ProcessBuilder::inherit_fd`); it stays
    /// open until the session ends.
    pub(crate) fn tree_fd(&self) -> Option<RawFd> {
        let tree = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        tree.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// After the release: close our fd of the tree lock, then say whether processes of the job
    /// still hold it (they escaped the step's tracking and keep the dir protected). Never an
    /// unlock: the command's processes share our open file and its lock; only closing our fd
    /// leaves the lock to them.
    pub(super) fn survivors(&self) -> bool {
        drop(self.tree.lock().unwrap_or_else(|e| e.into_inner()).take());
        super::probe::others_hold(self.dir.as_fd())
    }

    /// The job dir, open and locked: for work done under the lock (pruning at adoption).
    pub(crate) fn dir_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    pub(crate) fn job_id(&self) -> String {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .job_id
            .clone()
    }

    /// The random token of this acquisition: what a nested run recognises the lease by.
    pub(crate) fn token(&self) -> String {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .token
            .clone()
    }

    /// The dir's size changed (pruned at release): the release measures it again rather than
    /// keep a recent size.
    pub(crate) fn size_changed(&self) {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .size_measured_at = None;
    }

    pub(super) fn still_named(&self) -> bool {
        fs::identity_at(self.root_fd.as_fd(), &self.name).is_ok_and(|i| i == self.ident)
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut Lease)) -> io::Result<()> {
        let mut lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut lease);
        write(self.dir.as_fd(), &lease)
    }
}

pub(super) fn held(root: &Root, name: &OsStr, dir: File, tree: File, lease: Lease) -> Result<Held> {
    Ok(Held {
        tree: Mutex::new(Some(tree)),
        path: root.join(name),
        name: name.to_owned(),
        root_fd: root.fd().try_clone_to_owned()?,
        ident: fs::identity(dir.as_fd())?,
        dir,
        lease: Mutex::new(lease),
    })
}

impl Held {
    /// Mark the lease released, protected for `linger` so later steps of the job find the dir,
    /// and record its size (`job_size`: `target/` plus `build/`, each inode once; bounded walk). The lock drops with the `Held` (the
    /// session drops it right after; see `Session`).
    pub(super) fn release(&self, linger: Duration) -> Result<()> {
        let clocks = Now::read();
        let now = clocks.wall;
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
        };
        let measured_at = self
            .lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .size_measured_at;
        let stale =
            measured_at.is_none_or(|at| unix(now).saturating_sub(at) >= SIZE_REFRESH.as_secs());
        let size = if stale {
            super::job_size(self.dir.as_fd(), Some(Instant::now() + SIZE_BUDGET))
        } else {
            None
        };
        // A job-lifetime holder (docs/protocol.md#linger-ends-with-the-job) alive now: the
        // linger ends when it does. Checked now, not earlier: it may have started after us.
        let job_lock = super::joblock::held_by_job(self.dir.as_fd()).then_some(true);
        step("release");
        self.update(|l| {
            l.job_lock = job_lock;
            l.state = State::Released;
            clocks.stamp(l);
            l.expires_at = expiry(now, linger);
            match size {
                Some(size) => {
                    l.size_bytes = Some(size);
                    l.size_measured_at = Some(unix(now));
                }
                // Stale and not measurable within the budget: unknown rather than an old
                // number a later adoption would print as the dir's size.
                None if stale => l.size_bytes = None,
                None => {}
            }
        })
        .with_context(|| format!("failed to release lease in {}", self.path.display()))
    }
}

//! A job dir held under its lock: what the other steps of the protocol hand each other. Its
//! release is `release.rs`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;

use crate::fs::{self, Identity};

use super::layout::TARGET;
use super::record::{Cold, Lease, Warmth, write};
use super::root::Root;

/// Size walks at release and adoption stop after this; the size is then reported as unknown.
pub(super) const SIZE_BUDGET: Duration = Duration::from_millis(500);

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

    /// The root's fd and the dir's name in it.
    pub(super) fn in_root(&self) -> (BorrowedFd<'_>, &OsStr) {
        (self.root_fd.as_fd(), &self.name)
    }

    pub(super) fn still_named(&self) -> bool {
        fs::identity_at(self.root_fd.as_fd(), &self.name).is_ok_and(|i| i == self.ident)
    }

    /// When the lease last recorded the dir's size (unix seconds).
    pub(super) fn size_measured_at(&self) -> Option<u64> {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .size_measured_at
    }

    /// Look at the lease as held (not re-read).
    pub(super) fn with_lease<T>(&self, look: impl FnOnce(&Lease) -> T) -> T {
        look(&self.lease.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The lease as this job last wrote it: the workspace key and scopes a push records, the
    /// counts so far at release.
    pub(crate) fn lease(&self) -> Lease {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    /// Record how the job came by its dir when that was decided after the lease was taken
    /// (restored from a store into a fresh dir), for `status`.
    pub(crate) fn set_origin(&self, origin: &str) -> io::Result<()> {
        self.update(|l| l.origin = Some(origin.to_owned()))
    }

    /// Record what the job's units came to so far, and its line's cold build (`prune::saved`).
    pub(crate) fn record_warmth(&self, warmth: Warmth, cold: Option<Cold>) -> io::Result<()> {
        self.update(|l| {
            l.warmth = Some(warmth);
            l.cold = cold;
        })
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

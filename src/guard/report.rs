//! What one sweep decided: the dirs it removed, the dirs it kept and why, the disk before and
//! after (rendered by `report::sweep`).

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::fs::{Removal, Space};
use crate::lease::{KeptAs, Protected, Root};
use crate::quantity::Bytes;

use super::Sweep;

/// A dir one sweep reclaimed (or, in a dry run, would reclaim).
#[derive(Debug)]
pub(crate) enum Removed {
    /// An expired job dir.
    Expired {
        job_id: String,
        /// The dir's name under the root.
        name: String,
        dir: String,
        /// What deleting it freed (counted); in a dry run, its recorded or measured size.
        bytes: u64,
        expired_for: Duration,
        /// Released but not yet expired: taken by `gc --workspace` (`expired_for` is zero).
        lingering: bool,
        /// The root was over `--max-root-size` when it was chosen.
        over_cap: bool,
    },
    /// A `.new-*` dir whose job died while creating it (a half-made dir, or a seed's copy cut
    /// short), unlocked and at least `older_than` old.
    Unfinished {
        name: String,
        dir: String,
        older_than: Duration,
        /// What deleting it freed (counted); a seed's copy can be as large as its source.
        bytes: u64,
    },
}

impl Removed {
    /// What deleting it freed, as far as counted here.
    pub(crate) fn bytes(&self) -> u64 {
        match self {
            Removed::Expired { bytes, .. } | Removed::Unfinished { bytes, .. } => *bytes,
        }
    }

    /// The job it belonged to, when its lease said.
    pub(crate) fn job_id(&self) -> Option<&str> {
        match self {
            Removed::Expired { job_id, .. } => Some(job_id),
            Removed::Unfinished { .. } => None,
        }
    }
}

/// Why a sweep left a dir where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WhyKept {
    /// What the lease protocol says (live, lingering, unreadable, skipped, …).
    Lease(Protected),
    /// The running job's own dir, which it is about to resume.
    OwnDir,
    /// Expired, but among the `--keep-expired` most recently used of its workspace.
    Warm { keep_expired: usize },
    /// Expired, but the sweep ran under pressure and free space already reached the target.
    TargetReached,
    /// Expired, but the sweep's `--max-time` was up.
    MaxTime,
    /// Expired and claimed, but deleting it failed partway.
    PartlyDeleted {
        freed: u64,
        rest: PathBuf,
        error: String,
    },
}

impl WhyKept {
    pub(crate) fn kind(&self) -> KeptAs {
        match self {
            WhyKept::Lease(keep) => keep.kind(),
            WhyKept::OwnDir => KeptAs::Live,
            WhyKept::Warm { .. }
            | WhyKept::TargetReached
            | WhyKept::MaxTime
            | WhyKept::PartlyDeleted { .. } => KeptAs::Expired,
        }
    }

    /// The reason without its leading `kept: `, as it follows a dir's name: `Kept x (…)`.
    pub(crate) fn detail(&self) -> WhyKeptDetail<'_> {
        WhyKeptDetail(self)
    }
}

/// See [`WhyKept::detail`].
pub(crate) struct WhyKeptDetail<'a>(&'a WhyKept);

impl fmt::Display for WhyKeptDetail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            WhyKept::Lease(keep) => write!(f, "{}", keep.detail()),
            WhyKept::OwnDir => write!(f, "the running job's own dir"),
            WhyKept::Warm { keep_expired } => {
                write!(f, "expired, warm for reuse: --keep-expired {keep_expired}")
            }
            WhyKept::TargetReached => {
                write!(f, "expired, but free space already reached the target")
            }
            WhyKept::MaxTime => write!(f, "expired, but --max-time was reached"),
            WhyKept::PartlyDeleted { freed, rest, error } => write!(
                f,
                "expired, but only partly deleted ({} freed); the rest stays in {}: {error}",
                Bytes(*freed),
                rest.display()
            ),
        }
    }
}

/// The whole reason, as `gc --json` gives it: `kept: …` or `skipped: …`.
impl fmt::Display for WhyKept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WhyKept::Lease(keep) => write!(f, "{keep}"),
            _ => write!(f, "kept: {}", self.detail()),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Kept {
    /// `None` when its lease could not be read.
    pub(crate) job_id: Option<String>,
    /// The dir's name under the root.
    pub(crate) name: String,
    pub(crate) dir: String,
    pub(crate) reason: WhyKept,
}

impl Kept {
    pub(super) fn new(root: &Root, name: &OsStr, job_id: Option<String>, reason: WhyKept) -> Kept {
        Kept {
            job_id,
            name: name.to_string_lossy().into_owned(),
            dir: root.join(name).display().to_string(),
            reason,
        }
    }
}

/// Everything one sweep decided (rendered by `report::sweep`).
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) dry_run: bool,
    /// The disk as the sweep found it.
    pub(crate) before: Space,
    /// The disk as the sweep left it (in a dry run: as it would).
    pub(crate) after: Space,
    /// `--reclaim-below` in bytes: the sweep ran under pressure if `before.free` was below it.
    pub(crate) reclaim_below: u64,
    /// `--reclaim-to` in bytes.
    pub(crate) target_free: u64,
    pub(crate) removed: Vec<Removed>,
    pub(crate) kept: Vec<Kept>,
    pub(crate) errors: Vec<String>,
    /// Bytes freed outside `removed`: what earlier sweeps left in `.trash/`, and expired dirs that could only be partly deleted (listed in `kept`, with the error).
    pub(crate) other_freed: u64,
    /// The root's size against `--max-root-size`, when one is set.
    pub(crate) root_cap: Option<RootCap>,
}

/// The root's size against `--max-root-size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RootCap {
    pub(crate) cap: u64,
    /// What the root held when the sweep scanned it (each inode once).
    pub(crate) before: u64,
    /// What it holds once the claimed dirs are deleted (in a dry run: would hold).
    pub(crate) after: u64,
}

impl Report {
    pub(super) fn new(opts: &Sweep, before: Space) -> Report {
        Report {
            dry_run: opts.dry_run,
            before,
            after: before,
            reclaim_below: opts.reclaim_below,
            target_free: opts.reclaim_to,
            removed: Vec::new(),
            kept: Vec::new(),
            errors: Vec::new(),
            other_freed: 0,
            root_cap: None,
        }
    }

    pub(crate) fn freed(&self) -> u64 {
        self.removed.iter().map(Removed::bytes).sum::<u64>() + self.other_freed
    }

    /// What this sweep really reclaimed: nothing in a dry run.
    pub(crate) fn reclaimed(&self) -> u64 {
        if self.dry_run { 0 } else { self.freed() }
    }

    /// Whether the sweep ran with free space below `--reclaim-below`.
    pub(crate) fn under_pressure(&self) -> bool {
        self.before.free < self.reclaim_below
    }

    /// Record what deleting one claimed entry did: `removed` (what the claim said it was; `None`
    /// for a leftover of an earlier sweep) freed `removal.freed`; what an error left stays in
    /// `rest`, named with the error, never reported as removed.
    pub(super) fn deleted(&mut self, removed: Option<Removed>, removal: Removal, rest: PathBuf) {
        if let Some(e) = &removal.error {
            self.errors
                .push(format!("failed to delete {}: {e}", rest.display()));
        }
        match (removed, removal.error) {
            (
                Some(Removed::Expired {
                    job_id,
                    name,
                    dir,
                    expired_for,
                    lingering,
                    over_cap,
                    ..
                }),
                None,
            ) => self.removed.push(Removed::Expired {
                job_id,
                name,
                dir,
                bytes: removal.freed,
                expired_for,
                lingering,
                over_cap,
            }),
            // Never reported as removed: what stays is named, with the error.
            (
                Some(Removed::Expired {
                    job_id, name, dir, ..
                }),
                Some(e),
            ) => {
                self.other_freed += removal.freed;
                let reason = WhyKept::PartlyDeleted {
                    freed: removal.freed,
                    rest,
                    error: e.to_string(),
                };
                self.kept.push(Kept {
                    job_id: Some(job_id),
                    name,
                    dir,
                    reason,
                });
            }
            (Some(Removed::Unfinished { .. }), Some(_)) => self.other_freed += removal.freed,
            (
                Some(Removed::Unfinished {
                    name,
                    dir,
                    older_than,
                    ..
                }),
                None,
            ) => self.removed.push(Removed::Unfinished {
                name,
                dir,
                older_than,
                bytes: removal.freed,
            }),
            // A leftover of an earlier sweep (reported then).
            (None, _) => self.other_freed += removal.freed,
        }
    }
}

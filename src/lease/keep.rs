//! Why the guard's claim (docs/protocol.md#claim-the-guard) leaves a job dir where it is, as a
//! type: the guard decides with it, `report` renders it, and nothing parses it back.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::{Lease, Skip, TRASH, Verdict};
use crate::quantity::RoundDuration;

/// What the lease protocol says against reclaiming a dir.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Keep {
    /// Not a job dir we may touch (a symlink, another filesystem, …).
    Skipped(Skip),
    /// Its name pointed at another inode by the time its lock was held.
    Changed,
    /// The lease (or its lock) could not be read: kept until someone looks.
    Unknown(String),
    /// Expired by its heartbeat, but its lock is held: a stopped process.
    StillLocked { holder: String },
    /// The dir's lock is free (its wrapper is gone) but processes of its job's command still
    /// hold the tree lock they inherited: a daemon or `setsid` child that outlived its wrapper.
    TreeAlive { job_id: String },
    /// The lease is active with a fresh heartbeat.
    Live {
        holder: String,
        renewed_ago: Duration,
    },
    /// Released, still protected for the job's later steps.
    Lingering { expires_in: Duration },
    /// The rename into `.trash/` failed.
    NotMoved(String),
    /// Expired, but a new job is copying a seed from it (docs/protocol.md#seed).
    Seeding,
}

/// How a kept dir counts in the totals of a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Live,
    Lingering,
    Expired,
    Unknown,
}

impl Keep {
    /// `Ok(since)` if the verdict says the lease expired; else why the dir is kept.
    pub(crate) fn unless_expired(verdict: &Verdict, lease: &Lease) -> Result<SystemTime, Keep> {
        match *verdict {
            Verdict::Expired { since } => Ok(since),
            Verdict::Live { renewed_ago } => Err(Keep::Live {
                holder: lease.holder(),
                renewed_ago,
            }),
            Verdict::Lingering { expires_in } => Err(Keep::Lingering { expires_in }),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        match self {
            Keep::Live { .. } | Keep::TreeAlive { .. } => Kind::Live,
            Keep::Lingering { .. } => Kind::Lingering,
            _ => Kind::Unknown,
        }
    }

    /// Whether the dir was not looked at as a job dir at all (`skipped: …`, not `kept: …`).
    pub(crate) fn is_skip(&self) -> bool {
        matches!(self, Keep::Skipped(_) | Keep::Changed)
    }

    /// The reason without its leading `kept: `, as it follows a dir's name: `Kept x (…)`.
    pub(crate) fn detail(&self) -> Detail<'_> {
        Detail(self)
    }
}

/// See [`Keep::detail`].
pub(crate) struct Detail<'a>(&'a Keep);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Keep::Skipped(skip) => write!(f, "{skip}"),
            Keep::Changed => write!(f, "skipped: changed while being examined"),
            Keep::Unknown(why) => write!(f, "unknown – {why}"),
            Keep::StillLocked { holder } => {
                write!(
                    f,
                    "lease expired but still locked by {holder}, a stopped process?"
                )
            }
            Keep::TreeAlive { job_id } => write!(
                f,
                "processes of job `{}` still hold it (its wrapper has exited)",
                crate::term::escape(job_id)
            ),
            Keep::Live {
                holder,
                renewed_ago,
            } => write!(
                f,
                "lease held by {holder}, renewed {} ago",
                RoundDuration(*renewed_ago)
            ),
            Keep::Lingering { expires_in } => {
                write!(f, "released, expires in {}", RoundDuration(*expires_in))
            }
            Keep::NotMoved(e) => write!(f, "could not move into {TRASH}/ ({e})"),
            Keep::Seeding => write!(f, "expired, but a new job is copying a seed from it"),
        }
    }
}

/// The whole reason, as `gc --json` gives it: `kept: …` or `skipped: …`.
impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_skip() {
            write!(f, "{}", self.detail())
        } else {
            write!(f, "kept: {}", self.detail())
        }
    }
}

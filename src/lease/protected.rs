//! Why the guard's claim (docs/protocol.md#claim-the-guard) leaves a job dir where it is, as a
//! type: the guard decides with it, `report` renders it, and nothing parses it back.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::time::{Duration, SystemTime};

use super::layout::TRASH;
use super::probe::{Hold, Holder};
use super::{Expiry, Lease, NotAJobDir, Now};
use crate::locks::LockTrust;
use crate::quantity::RoundDuration;

/// What the lease protocol says against reclaiming a dir.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Protected {
    /// Not a job dir we may touch (a symlink, another filesystem, …).
    Skipped(NotAJobDir),
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
    /// The lease is active with a fresh heartbeat, but nobody holds its locks: its job was
    /// killed (`kill -9`) a moment ago. Reclaimable once the heartbeat is older than the TTL.
    Gone { reclaimable_in: Duration },
    /// Released, still protected for the job's later steps.
    Lingering { expires_in: Duration },
    /// The rename into `.trash/` failed.
    NotMoved(String),
    /// Expired, but a new job is copying a seed from it (docs/protocol.md#seed).
    Seeding,
}

/// How a kept dir counts in the totals of a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeptAs {
    Live,
    Lingering,
    Expired,
    Unknown,
}

impl Protected {
    /// `Ok(since)` if the lease expired; else why the dir is kept.
    pub(crate) fn unless_expired(expiry: &Expiry, lease: &Lease) -> Result<SystemTime, Protected> {
        match *expiry {
            Expiry::Expired { since } => Ok(since),
            Expiry::Live { renewed_ago } => Err(Protected::Live {
                holder: lease.holder(),
                renewed_ago,
            }),
            Expiry::Lingering { expires_in } => Err(Protected::Lingering { expires_in }),
        }
    }

    /// What the lease and the locks of an open job dir say, read once the same way for `status`
    /// and the guard, so the two never disagree (a killed job's dir is "holder gone" in both):
    /// `Ok(since)` if it expired and nobody holds it, else why it is kept. The guard claims an
    /// expired dir under its lock afterwards, which checks again.
    pub(crate) fn of_dir(
        dir: BorrowedFd<'_>,
        lease: &Lease,
        now: &Now,
        trust: LockTrust,
    ) -> Result<SystemTime, Protected> {
        let expiry = super::joblock::expiry(dir, lease, now, trust);
        let holder = super::probe(dir, trust);
        Protected::of_reading(&expiry, &holder, lease)
    }

    /// [`Protected::of_dir`] once the lease's expiry and the holder of its locks are known.
    pub(crate) fn of_reading(
        expiry: &Expiry,
        holder: &Holder,
        lease: &Lease,
    ) -> Result<SystemTime, Protected> {
        let tree_alive = || Protected::TreeAlive {
            job_id: lease.job_id.clone(),
        };
        match (expiry, holder) {
            // A lock that cannot be tried: kept and reported, never live, never gone.
            (_, Holder::Unknown(why)) => Err(Protected::Unknown(why.clone())),
            (Expiry::Lingering { expires_in }, _) => Err(Protected::Lingering {
                expires_in: *expires_in,
            }),
            (Expiry::Live { renewed_ago }, Holder::Gone) => Err(Protected::Gone {
                reclaimable_in: lease.ttl().saturating_sub(*renewed_ago),
            }),
            (Expiry::Live { .. }, Holder::Live(Hold::Tree)) => Err(tree_alive()),
            // Held, or untrusted locks that prove nothing: the fresh heartbeat decides.
            (Expiry::Live { renewed_ago }, _) => Err(Protected::Live {
                holder: lease.holder(),
                renewed_ago: *renewed_ago,
            }),
            // A stale heartbeat but a held lock: a stopped build, or its orphans, still alive.
            (Expiry::Expired { .. }, Holder::Live(Hold::Dir)) => Err(Protected::StillLocked {
                holder: lease.holder(),
            }),
            (Expiry::Expired { .. }, Holder::Live(Hold::Tree)) => Err(tree_alive()),
            (Expiry::Expired { since }, Holder::Gone | Holder::Unseen) => Ok(*since),
        }
    }

    pub(crate) fn kind(&self) -> KeptAs {
        match self {
            Protected::Live { .. } | Protected::TreeAlive { .. } => KeptAs::Live,
            Protected::Lingering { .. } | Protected::Gone { .. } => KeptAs::Lingering,
            _ => KeptAs::Unknown,
        }
    }

    /// Whether the dir was not looked at as a job dir at all (`skipped: …`, not `kept: …`).
    pub(crate) fn is_skip(&self) -> bool {
        matches!(self, Protected::Skipped(_) | Protected::Changed)
    }

    /// The reason without its leading `kept: `, as it follows a dir's name: `Kept x (…)`.
    pub(crate) fn detail(&self) -> Detail<'_> {
        Detail(self)
    }
}

/// See [`Protected::detail`].
pub(crate) struct Detail<'a>(&'a Protected);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Protected::Skipped(skip) => write!(f, "{skip}"),
            Protected::Changed => write!(f, "skipped: changed while being examined"),
            Protected::Unknown(why) => write!(f, "unknown – {why}"),
            Protected::StillLocked { holder } => {
                write!(
                    f,
                    "lease expired but still locked by {holder}, a stopped process?"
                )
            }
            Protected::TreeAlive { job_id } => write!(
                f,
                "processes of job `{}` still hold it (its wrapper has exited)",
                crate::term::escape(job_id)
            ),
            Protected::Live {
                holder,
                renewed_ago,
            } => write!(
                f,
                "lease held by {holder}, renewed {} ago",
                RoundDuration(*renewed_ago)
            ),
            Protected::Gone { reclaimable_in } => write!(
                f,
                "holder gone; reclaimable in {}",
                RoundDuration(*reclaimable_in)
            ),
            Protected::Lingering { expires_in } => {
                write!(f, "released, expires in {}", RoundDuration(*expires_in))
            }
            Protected::NotMoved(e) => write!(f, "could not move into {TRASH}/ ({e})"),
            Protected::Seeding => write!(f, "expired, but a new job is copying a seed from it"),
        }
    }
}

/// The whole reason, as `gc --json` gives it: `kept: …` or `skipped: …`.
impl fmt::Display for Protected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_skip() {
            write!(f, "{}", self.detail())
        } else {
            write!(f, "kept: {}", self.detail())
        }
    }
}

impl Expiry {
    /// The reason a non-expired dir is kept, as the guard prints it (`Protected`'s words; the unit
    /// tests read expiries through it).
    #[cfg(test)]
    pub(crate) fn reason(&self, lease: &Lease) -> String {
        match Protected::unless_expired(self, lease) {
            Ok(_) => "expired".into(),
            Err(keep) => keep.detail().to_string(),
        }
    }
}

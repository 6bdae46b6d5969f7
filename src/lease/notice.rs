//! What the protocol says on the way without stopping: warnings (a heartbeat that cannot write,
//! a release that failed) and notes on its decisions (why a finished dir was passed over, a seed
//! discarded), as plain data told to the `Notices` the caller gave (`Request::notices`). The
//! protocol knows no reporter: the app hands them on as events, so the terminal, `--events` and
//! GitHub annotations all see them (docs/architecture.md#the-event-seam).

use std::path::{Path, PathBuf};

/// Where a job's notices go: told from the thread that acquires and releases the lease, and
/// from the heartbeat's.
pub(crate) trait Notices: Send + Sync {
    fn notice(&self, notice: Notice);
}

/// Notices nobody hears (the lease layer's own tests).
#[cfg(test)]
pub(crate) struct Unheard;

#[cfg(test)]
impl Notices for Unheard {
    fn notice(&self, _: Notice) {}
}

/// How loud a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Something went wrong without stopping the work: always said.
    Warning,
    /// A decision the job's output should show (a seed refused or thrown away): always said.
    Note,
    /// A decision said only with `-v` on the terminal (why a dir was passed over).
    Detail,
}

/// One thing the protocol says: what, about which dir, and why.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    /// The job's own dir had an unreadable lease (`why`); the job takes it over.
    TakenOver {
        dir: PathBuf,
        why: String,
        job_id: String,
    },
    /// `--warm-from any`: the scope rule is off for this job's warm start.
    WarmFromAny,
    /// A finished dir of the workspace is not the job's to adopt or seed from (another user's,
    /// or swapped since the scan).
    NotAdopting { dir: PathBuf, why: String },
    /// A finished dir of the workspace that jobs of another scope wrote: passed over by the
    /// scope rule (docs/protocol.md#scopes).
    OtherScope { dir: PathBuf, why: String },
    /// The released lease of another job from this same runner ended early: that job is over.
    Ended { dir: PathBuf, job_id: String },
    /// An adoption undone after its rename: the dir is not the one that was locked.
    NotAdopted { dir: PathBuf, why: String },
    /// A seed source skipped before any copy (moved, resumed, being adopted, its owner
    /// running, or handed out by `env`).
    SeedSkipped { dir: PathBuf, why: String },
    /// A seed source refused (too big, no room, a copy error): the job builds fresh.
    SeedRefused { dir: PathBuf, why: String },
    /// A seed copied and thrown away: its source changed during the copy.
    SeedDiscarded { dir: PathBuf, why: String },
    /// The heartbeat cannot renew the lease (`error`); the lock still protects the dir.
    RenewalFailing { dir: PathBuf, error: String },
    /// Renewing works again after failing.
    RenewalRecovered { dir: PathBuf },
    /// Releasing the lease failed; it ends with the process, protected by its last heartbeat.
    ReleaseFailed { dir: PathBuf, error: String },
    /// Processes of the job outlived the step; the dir stays protected until they exit.
    Survivors { dir: PathBuf },
    /// The session ended on a path that did not finish it, with the heartbeat's error (the dir
    /// was moved away).
    Lost { dir: PathBuf, error: String },
}

impl Notice {
    pub(crate) fn level(&self) -> Level {
        match self {
            Notice::TakenOver { .. }
            | Notice::WarmFromAny
            | Notice::NotAdopted { .. }
            | Notice::RenewalFailing { .. }
            | Notice::RenewalRecovered { .. }
            | Notice::ReleaseFailed { .. }
            | Notice::Survivors { .. }
            | Notice::Lost { .. } => Level::Warning,
            Notice::SeedRefused { .. } | Notice::SeedDiscarded { .. } => Level::Note,
            Notice::NotAdopting { .. }
            | Notice::OtherScope { .. }
            | Notice::Ended { .. }
            | Notice::SeedSkipped { .. } => Level::Detail,
        }
    }

    /// Its name in `--events` (`what`).
    pub(crate) fn what(&self) -> &'static str {
        match self {
            Notice::TakenOver { .. } => "taken_over",
            Notice::WarmFromAny => "warm_from_any",
            Notice::NotAdopting { .. } => "not_adopting",
            Notice::OtherScope { .. } => "other_scope",
            Notice::Ended { .. } => "ended",
            Notice::NotAdopted { .. } => "not_adopted",
            Notice::SeedSkipped { .. } => "seed_skipped",
            Notice::SeedRefused { .. } => "seed_refused",
            Notice::SeedDiscarded { .. } => "seed_discarded",
            Notice::RenewalFailing { .. } => "renewal_failing",
            Notice::RenewalRecovered { .. } => "renewal_recovered",
            Notice::ReleaseFailed { .. } => "release_failed",
            Notice::Survivors { .. } => "survivors",
            Notice::Lost { .. } => "lost",
        }
    }

    /// The dir it is about, if any.
    pub(crate) fn dir(&self) -> Option<&Path> {
        match self {
            Notice::WarmFromAny => None,
            Notice::TakenOver { dir, .. }
            | Notice::NotAdopting { dir, .. }
            | Notice::OtherScope { dir, .. }
            | Notice::Ended { dir, .. }
            | Notice::NotAdopted { dir, .. }
            | Notice::SeedSkipped { dir, .. }
            | Notice::SeedRefused { dir, .. }
            | Notice::SeedDiscarded { dir, .. }
            | Notice::RenewalFailing { dir, .. }
            | Notice::RenewalRecovered { dir }
            | Notice::ReleaseFailed { dir, .. }
            | Notice::Survivors { dir }
            | Notice::Lost { dir, .. } => Some(dir),
        }
    }

    /// Why, or what failed, if it says.
    pub(crate) fn why(&self) -> Option<&str> {
        match self {
            Notice::TakenOver { why, .. }
            | Notice::NotAdopting { why, .. }
            | Notice::OtherScope { why, .. }
            | Notice::NotAdopted { why, .. }
            | Notice::SeedSkipped { why, .. }
            | Notice::SeedRefused { why, .. }
            | Notice::SeedDiscarded { why, .. } => Some(why),
            Notice::RenewalFailing { error, .. }
            | Notice::ReleaseFailed { error, .. }
            | Notice::Lost { error, .. } => Some(error),
            Notice::WarmFromAny
            | Notice::Ended { .. }
            | Notice::RenewalRecovered { .. }
            | Notice::Survivors { .. } => None,
        }
    }
}

//! A job's life as typed events: `run` says what happens, in order, to the reporters `main`
//! chose once (the terminal always; GitHub when under Actions; JSON lines with `--events`), and
//! knows none of them. A reporter renders what it is told and hands nothing back
//! (docs/architecture.md#the-event-seam).
//!
//! The order of one wrapped command: `Nested` (inside a parent's lease: nothing is acquired), or
//! `Starting`, `Swept` (when the disk was low), `Acquired`, `Pruned` (of an adopted dir), `Verified` (a dir built elsewhere),
//! `Swept` (pressure, or a new job's retention), then `Ready`, or `Refused` and `GaveUp`
//! (`GaveUp` for any failure before the command started); once the command ran, `Counted`,
//! `Pruned` (at release) and `Exited`. `gc` tells `Collected`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use anyhow::Result;

use crate::exit::Exit;
use crate::guard;
use crate::lease::{self, Held, Notice, Origin};
use crate::precheck::{Checked, NoSpace};
use crate::prune::{self, Outcome, Pruned};
use crate::scope::Scope;
use crate::warm;

/// What happened.
pub(crate) enum Event<'a> {
    /// The job `job_id` asks for its dir. `warning`: something about its id to say first (its
    /// CI's id variables were not UTF-8).
    Starting {
        job_id: &'a str,
        warning: Option<&'a str>,
    },
    /// The run is inside the live lease a parent run (or the action's `hold`) of this same job
    /// holds on `dir`: it takes no lease of its own.
    Nested { dir: &'a Path, job_id: &'a str },
    /// The disk precheck swept the root: before the lease when free space was low, or after it
    /// (pressure, or a new job's retention).
    Swept {
        root: &'a Path,
        report: &'a guard::Report,
    },
    /// The job holds its dir's lease; `origin` says how it came by it. `adopt` and `seed`: what
    /// it was allowed to start from (a fresh dir says why it is fresh).
    Acquired {
        job: &'a JobDir,
        origin: &'a Origin,
        adopt: bool,
        seed: bool,
        /// The job's scope, and the finished dirs of its workspace the scope rule passed over
        /// (docs/protocol.md#scopes).
        scope: &'a Scope,
        passed_over: usize,
    },
    /// Pruning ran on the job's dir: right after adopting it, or as the job released it. An
    /// error is a warning: pruning never fails a job.
    Pruned {
        moment: prune::Moment<'a>,
        outcome: &'a Result<Outcome>,
        settings: &'a prune::Settings,
    },
    /// The job's dir was built elsewhere (another checkout, another job's path): what content
    /// verification kept warm and made stale.
    Verified { verdict: &'a warm::Verdict },
    /// The precheck passed: the job's command starts now.
    Ready {
        root: &'a Path,
        job: &'a JobDir,
        origin: &'a Origin,
        /// What pruning removed from an adopted dir.
        pruned: &'a Pruned,
        /// What runs: `cargo`, `nextest`, `llvm-cov`, `exec`, or `env` / `hold`.
        tool: &'a str,
        command: &'a str,
        checked: &'a Checked,
    },
    /// The precheck refused to start: too little disk even after reclaiming (exit 75).
    Refused {
        job: &'a JobDir,
        origin: &'a Origin,
        command: &'a str,
        no_space: &'a NoSpace,
    },
    /// The run failed before its command started (a refusal included; the error is the run's
    /// own, said by `main`).
    GaveUp { job_id: &'a str },
    /// At release, before pruning: what the job's units came to so far (reused, compiled), and
    /// the cold build its estimate of time saved is made from.
    Counted { counted: &'a prune::saved::Counted },
    /// The wrapped command ended and the lease is released; `exit` is how it ended, and what
    /// `run` returns.
    Exited { exit: Exit },
    /// The lease layer said something on the way without stopping: a warning (a heartbeat that
    /// cannot write, a release that failed), or a note on a decision (a finished dir passed
    /// over, a seed discarded); `Level` says which. Told as it is said, from the heartbeat's
    /// thread too.
    Notice(&'a Notice),
    /// `gc` swept the root. `hook`: for a runner's hook (`gc --hook`).
    Collected {
        root: &'a Path,
        report: &'a guard::Report,
        hook: bool,
    },
}

/// The job's dir as plain data, what `Acquired`, `Ready` and `Refused` say of it: read once
/// from the held lease, so no reporter reaches into it.
pub(crate) struct JobDir {
    pub(crate) job_id: String,
    /// The job dir under the root.
    pub(crate) dir: PathBuf,
    /// Its `CARGO_TARGET_DIR`.
    pub(crate) target_dir: PathBuf,
}

impl JobDir {
    pub(crate) fn of(held: &Held) -> JobDir {
        JobDir {
            job_id: held.job_id(),
            dir: held.path.clone(),
            target_dir: held.target_dir(),
        }
    }
}

/// Where events go. Every event is told with the time it happened.
pub(crate) trait Reporter {
    /// Tell `event`, which happened `at`.
    fn report_at(&mut self, at: SystemTime, event: &Event<'_>);

    /// Tell `event`, happening now: every reporter of a `Reporters` is told the same time.
    fn report(&mut self, event: &Event<'_>) {
        self.report_at(SystemTime::now(), event);
    }
}

/// Every reporter `main` chose, each told every event, in the order they were added. Shared
/// with the lease layer's `notices`, which may tell from the heartbeat's thread: one event at a
/// time reaches them.
#[derive(Default)]
pub(crate) struct Reporters(Shared);

type Shared = Arc<Mutex<Vec<Box<dyn Reporter + Send>>>>;

impl Reporters {
    pub(crate) fn add(&mut self, reporter: impl Reporter + Send + 'static) {
        lock(&self.0).push(Box::new(reporter));
    }

    /// Where the lease layer says its warnings and notes (`lease::Request::notices`): each is
    /// told to every reporter as an `Event::Notice` the moment it is said, whichever thread says
    /// it (a heartbeat failing while the command runs is said then, not after).
    pub(crate) fn notices(&self) -> Arc<dyn lease::Notices> {
        Arc::new(Told(Arc::clone(&self.0)))
    }
}

impl Reporter for Reporters {
    fn report_at(&mut self, at: SystemTime, event: &Event<'_>) {
        tell(&self.0, at, event);
    }
}

/// The reporters, as the lease layer's `Notices`.
struct Told(Shared);

impl lease::Notices for Told {
    fn notice(&self, notice: Notice) {
        tell(&self.0, SystemTime::now(), &Event::Notice(&notice));
    }
}

fn tell(reporters: &Shared, at: SystemTime, event: &Event<'_>) {
    for r in lock(reporters).iter_mut() {
        r.report_at(at, event);
    }
}

/// A reporter that panicked (a bug) must not silence the others.
fn lock(reporters: &Shared) -> MutexGuard<'_, Vec<Box<dyn Reporter + Send>>> {
    reporters.lock().unwrap_or_else(|e| e.into_inner())
}

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

use std::path::Path;

use anyhow::Result;

use crate::exit::Exit;
use crate::guard;
use crate::lease::{Held, Origin, Root};
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
        root: &'a Root,
        report: &'a guard::Report,
    },
    /// The job holds its dir's lease; `origin` says how it came by it. `adopt` and `seed`: what
    /// it was allowed to start from (a fresh dir says why it is fresh).
    Acquired {
        held: &'a Held,
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
        root: &'a Root,
        held: &'a Held,
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
        held: &'a Held,
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
    /// `gc` swept the root. `hook`: for a runner's hook (`gc --hook`).
    Collected {
        root: &'a Root,
        report: &'a guard::Report,
        hook: bool,
    },
}

/// Where events go.
pub(crate) trait Reporter {
    fn report(&mut self, event: &Event<'_>);
}

/// Every reporter `main` chose, each told every event, in the order they were added.
#[derive(Default)]
pub(crate) struct Reporters(Vec<Box<dyn Reporter>>);

impl Reporters {
    pub(crate) fn add(&mut self, reporter: impl Reporter + 'static) {
        self.0.push(Box::new(reporter));
    }
}

impl Reporter for Reporters {
    fn report(&mut self, event: &Event<'_>) {
        for r in &mut self.0 {
            r.report(event);
        }
    }
}

//! What a job does as it releases its lease, under its lock: count what warmth saved, prune its
//! dir, record what its path-package units were built from, push it to the store (`--store-push`).

use crate::config::Config;
use crate::lease::Session;
use crate::prune::{self, Moment};
use crate::report::{Event, Reporter};
#[cfg(feature = "store")]
use crate::store;
use crate::term;
use crate::warm;

use super::job::here;

/// Count the job's units reused and compiled so far (`prune::saved`), its step's command having
/// run for `took` (`None`: not known, as for `hold`), and tell the reporters; before pruning,
/// which would remove what the count reads.
pub(super) fn count_at_release(
    session: &Session,
    took: Option<std::time::Duration>,
    out: &mut dyn Reporter,
) {
    if let Some(counted) = prune::saved::at_release(session, took) {
        out.report(&Event::Counted { counted: &counted });
    }
}

/// Prune the job's own dir as it releases (`prune::at_release`): under its lock, its command
/// over. Whatever the command's exit: a failed step (a red test run) built and used its units,
/// and its shape counts in the working set (added to what its shape used before: a step stopped
/// early may have read only part of its graph). Not when the dir was moved away meanwhile: it
/// is no longer ours.
pub(super) fn prune_at_release(
    cfg: &Config,
    session: &Session,
    shape: &str,
    succeeded: bool,
    out: &mut dyn Reporter,
) {
    if !cfg.prune.enabled || session.check().is_err() {
        return;
    }
    let held = session.held();
    let job = held.job_id();
    let outcome = prune::at_release(held.dir_fd(), &job, shape, succeeded, &cfg.prune);
    out.report(&Event::Pruned {
        moment: Moment::Release {
            job: &job,
            shape,
            succeeded,
        },
        outcome: &outcome,
        settings: &cfg.prune,
    });
    if outcome.is_ok_and(|o| o.pruned().bytes > 0) {
        held.size_changed();
    }
}

/// At release: record what the dir's path-package units were built from, for the next job
/// that starts from this dir elsewhere. A failure only means that job rebuilds them.
pub(super) fn record_warm(cfg: &Config, session: &Session) {
    if session.check().is_err() {
        return;
    }
    let held = session.held();
    let checkout = warm::Checkout::of(&cfg.workspace_root);
    let Some(here) = here(cfg, held, &checkout) else {
        return;
    };
    match warm::record(held.dir_fd(), &here) {
        Ok(r) => term::verbose(
            "Recorded",
            format_args!(
                "the inputs of {} path-package units ({} left out, {} files read)",
                r.units, r.left_out, r.files_read
            ),
        ),
        Err(e) => term::warn(format_args!(
            "failed to record the inputs of {}: {e}; a job starting from it elsewhere rebuilds its path packages",
            held.path.join(warm::RECORD).display()
        )),
    }
}

/// `--store-push`: at release, after a command that succeeded, push the job's dir (its
/// `inputs.json` just recorded). A failure is a warning: the job's result stands.
#[cfg(feature = "store")]
pub(super) fn push_at_release(cfg: &Config, session: &Session) {
    let Some(url) = cfg.store.as_deref().filter(|_| cfg.store_push) else {
        return;
    };
    if session.check().is_err() {
        return;
    }
    let held = session.held();
    let lease = held.lease();
    let source = store::Source {
        dir: &held.path,
        lease: &lease,
        writer: &cfg.scope.scope,
        cargo_home: cfg.cargo_home.as_deref(),
    };
    match store::Store::open(url).and_then(|s| store::push(&s, &source).map(|p| (s, p))) {
        Ok((s, pushed)) => crate::report::store::pushed(&held.path, s.url(), &pushed),
        Err(e) => term::warn(format_args!(
            "failed to push {} to the store {url}: {e:#}",
            held.path.display()
        )),
    }
}

#[cfg(not(feature = "store"))]
pub(super) fn push_at_release(_: &Config, _: &Session) {}

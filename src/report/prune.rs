//! What pruning did to an adopted dir (`prune::at_adoption`) or to a job's own at its release
//! (`prune::at_release`), said on the terminal: the `Pruned …` line with why each unit went
//! (window, replaced, budget), the backstop's `Emptied …`, the fallback where access times are
//! not recorded, and warnings. (The step summary says it too: `report::github`.)

use anyhow::Result;

use crate::prune::{BudgetState, Outcome, Pruned, Settings, WarmLimit};
use crate::quantity::Bytes;
use crate::term;

/// Say what pruning the dir adopted from `from` did (a failure is a warning, never the job's
/// end).
pub(crate) fn adoption(result: &Result<Outcome>, from: &str, s: &Settings) {
    match result {
        Ok(outcome) => say(outcome, from, s),
        Err(e) => term::warn(format_args!("pruning the dir adopted from {from}: {e:#}")),
    }
}

/// Say what pruning the job `job`'s own dir at its release did.
pub(crate) fn release(result: &Result<Outcome>, job: &str) {
    match result {
        Ok(Outcome::Ran {
            pruned,
            first_error,
            said_before,
            ..
        }) => {
            if pruned.units > 0 || pruned.incremental > 0 {
                term::status(
                    "Pruned",
                    format_args!("{} of {job} at release", what(pruned)),
                );
            }
            over_budget(pruned.state.as_ref());
            left_in_place(first_error.as_deref(), *said_before);
        }
        // Off, or not possible here: said at adoption already.
        Ok(_) => {}
        Err(e) => term::warn(format_args!("pruning {job}'s dir at release: {e:#}")),
    }
}

/// `3 dead units (1 replaced, 2 over budget) and 1 stale incremental dir, 12.0 MiB`.
pub(crate) fn what(pruned: &Pruned) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let window = pruned.units - pruned.superseded - pruned.budget;
    let why: Vec<String> = [
        (window, "unused in --prune-after jobs"),
        (pruned.superseded, "replaced"),
        (pruned.budget, "over budget"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    format!(
        "{} dead unit{}{}{}, {}",
        pruned.units,
        plural(pruned.units),
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join(", "))
        },
        match pruned.incremental {
            0 => String::new(),
            n => format!(" and {n} stale incremental dir{}", plural(n)),
        },
        Bytes(pruned.bytes)
    )
}

/// A dir still over its budget once pruning is done: what the recent jobs used stays.
fn over_budget(state: Option<&BudgetState>) {
    if let Some(b) = state
        && b.over()
    {
        term::status(
            "Keeping",
            format_args!(
                "{} (over its budget of {}): what recent jobs used ({}) is never pruned",
                Bytes(b.size),
                Bytes(b.budget),
                Bytes(b.working_set)
            ),
        );
    }
}

fn say(outcome: &Outcome, from: &str, s: &Settings) {
    match outcome {
        Outcome::Off => {}
        Outcome::Emptied { size, limit } => {
            term::status(
                "Emptied",
                format_args!(
                    "the dir adopted from {from}: it is {}, over --max-warm-size ({}{}); this \
                     job builds fresh",
                    Bytes(*size),
                    Bytes(*limit),
                    match s.max_warm {
                        WarmLimit::Times(_) => format!(", {}", s.max_warm),
                        _ => String::new(),
                    }
                ),
            );
        }
        Outcome::Unobservable(why) => {
            term::status(
                "Not",
                format_args!(
                    "pruning the dir adopted from {from}: access times are not recorded on its \
                     filesystem ({why}); only the --max-warm-size backstop ({}) applies",
                    s.max_warm
                ),
            );
        }
        Outcome::Ran {
            pruned,
            generation,
            first_error,
            said_before,
        } => {
            if pruned.units > 0 || pruned.incremental > 0 {
                term::status("Pruned", format_args!("{} of {from} (warm)", what(pruned)));
                over_budget(pruned.state.as_ref());
            } else {
                term::verbose(
                    "Nothing",
                    format_args!(
                        "to prune in the dir adopted from {from} (generation {generation})"
                    ),
                );
            }
            left_in_place(first_error.as_deref(), *said_before);
        }
    }
}

/// What pruning could not remove, said once: the same failure at every later prune (a unit
/// behind a bind mount) is said at -v only, and `status` shows it while it lasts.
fn left_in_place(first_error: Option<&str>, said_before: bool) {
    match first_error {
        Some(e) if said_before => term::verbose(
            "Note",
            format_args!("pruning still leaves something in place: {e}"),
        ),
        Some(e) => term::warn(format_args!(
            "pruning left something in place: {e} (said once; `cargo guarded status` shows it \
             while it lasts)"
        )),
        None => {}
    }
}

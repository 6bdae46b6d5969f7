//! What pruning did to an adopted dir (`prune::at_adoption`), said on the terminal: the
//! `Pruned …` line, the backstop's `Emptied …`, the fallback where access times are not
//! recorded, and warnings. (The step summary says it too: `report::github`.)

use anyhow::Result;

use crate::prune::{Outcome, Pruned, Settings, WarmLimit};
use crate::term;
use crate::units::Bytes;

/// Say what pruning the dir adopted from `from` did; returns what it removed (nothing when it
/// was off, not possible here, or failed: a failure is a warning, never the job's end).
pub(crate) fn adoption(result: Result<Outcome>, from: &str, s: &Settings) -> Pruned {
    match result {
        Ok(outcome) => say(outcome, from, s),
        Err(e) => {
            term::warn(format_args!("pruning the dir adopted from {from}: {e:#}"));
            Pruned::default()
        }
    }
}

fn say(outcome: Outcome, from: &str, s: &Settings) -> Pruned {
    match outcome {
        Outcome::Off => Pruned::default(),
        Outcome::Emptied { size, limit } => {
            term::status(
                "Emptied",
                format_args!(
                    "the dir adopted from {from}: it is {}, over --max-warm-size ({}{}); this \
                     job builds fresh",
                    Bytes(size),
                    Bytes(limit),
                    match s.max_warm {
                        WarmLimit::Times(_) => format!(", {}", s.max_warm),
                        _ => String::new(),
                    }
                ),
            );
            Pruned::default()
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
            Pruned::default()
        }
        Outcome::Ran {
            pruned,
            generation,
            first_error,
            said_before,
        } => {
            if pruned.units > 0 || pruned.incremental > 0 {
                let plural = |n: usize| if n == 1 { "" } else { "s" };
                term::status(
                    "Pruned",
                    format_args!(
                        "{} dead unit{}{}, {}, of {from} (warm)",
                        pruned.units,
                        plural(pruned.units),
                        match pruned.incremental {
                            0 => String::new(),
                            n => format!(" and {n} stale incremental dir{}", plural(n)),
                        },
                        Bytes(pruned.bytes)
                    ),
                );
            } else {
                term::verbose(
                    "Nothing",
                    format_args!(
                        "to prune in the dir adopted from {from} (generation {generation})"
                    ),
                );
            }
            // Once: the same failure at every later adoption (a unit behind a bind mount) is
            // said at -v only, and `status` shows it while it lasts.
            match first_error {
                Some(e) if said_before => term::verbose(
                    "Note",
                    format_args!("pruning still leaves something in place: {e}"),
                ),
                Some(e) => term::warn(format_args!(
                    "pruning left something in place: {e} (said once; `cargo guarded status` \
                     shows it while it lasts)"
                )),
                None => {}
            }
            pruned
        }
    }
}

//! The terminal reporter: a job's events as cargo-style status lines on stderr (`Using`,
//! `Adopted`, `Seeded`, the precheck's sweep, `Pruned`), and `gc`'s report. Under GitHub Actions
//! each sweep's lines are folded into a log group.

use std::time::SystemTime;

use super::event::{Event, JobDir, Reporter};
use super::sweep::Style;
use crate::lease::{self, Level, Origin};
use crate::prune::Moment;
use crate::quantity::{Bytes, RoundDuration};
use crate::term;

/// Says events on stderr, at the verbosity `term` was set up with.
pub(crate) struct Terminal {
    /// Fold each sweep's lines into a collapsed log group (GitHub Actions).
    pub(crate) groups: bool,
}

impl Reporter for Terminal {
    fn report_at(&mut self, _: SystemTime, event: &Event<'_>) {
        match event {
            Event::Starting { warning, .. } => {
                if let Some(warning) = warning {
                    term::warn(warning);
                }
            }
            Event::Nested { dir, .. } => term::verbose(
                "Running",
                format_args!(
                    "inside the lease already held on {} by this job",
                    dir.display()
                ),
            ),
            Event::Swept { root, report } => {
                super::sweep::show(self.groups, report, root, Style::Precheck);
            }
            Event::Acquired {
                job,
                origin,
                adopt,
                seed,
                scope,
                passed_over,
            } => {
                announce(job, origin, *adopt, *seed);
                if *passed_over > 0 {
                    term::status(
                        "Passed",
                        format_args!(
                            "over {passed_over} finished dir{} of this workspace that jobs of \
                             other scopes wrote (this job: {scope}; -v says which and why)",
                            if *passed_over == 1 { "" } else { "s" }
                        ),
                    );
                }
            }
            Event::Pruned {
                moment,
                outcome,
                settings,
            } => match moment {
                Moment::Adoption { from, .. } => super::prune::adoption(outcome, from, settings),
                Moment::Release { job, .. } => super::prune::release(outcome, job),
            },
            Event::Verified { verdict } => super::warm::show(verdict),
            Event::Counted { counted } => super::saved::show(counted),
            Event::Notice(notice) => {
                let words = super::notice::words(notice);
                match notice.level() {
                    Level::Warning => term::warn(words),
                    Level::Note => term::status(super::notice::verb(notice), words),
                    Level::Detail => term::verbose(super::notice::verb(notice), words),
                }
            }
            Event::Collected { root, report, hook } => {
                let style = if *hook { Style::Hook } else { Style::Gc };
                super::sweep::show(self.groups, report, root, style);
            }
            // Said by `main` (the error) or by the command itself.
            Event::Ready { .. } | Event::Refused { .. } | Event::GaveUp { .. } => {}
            Event::Exited { .. } => {}
        }
    }
}

/// Say which dir the job got, and how.
fn announce(job: &JobDir, origin: &Origin, adopt: bool, seed: bool) {
    match origin {
        Origin::Resumed => term::verbose(
            "Using",
            format_args!("job dir {} (resumed)", job.dir.display()),
        ),
        Origin::Fresh { cold: Some(why) } => term::status(
            "Using",
            format_args!("job dir {} (fresh dir: {why})", job.dir.display()),
        ),
        Origin::Fresh { cold: None } => term::status(
            "Using",
            format_args!(
                "job dir {} (fresh dir{})",
                job.dir.display(),
                match (adopt, seed) {
                    (true, true) => ": no finished dir of this workspace to adopt or seed from",
                    (true, false) => ": no expired dir of this workspace to adopt; seeding is off",
                    (false, true) => {
                        "; adoption is off and no finished dir of this workspace to seed from"
                    }
                    (false, false) => "; adoption is off and seeding is off",
                }
            ),
        ),
        Origin::Adopted {
            from,
            size,
            last_used,
        } => term::status(
            "Adopted",
            format_args!(
                "{from} (warm, {}, last used {} ago) as {}",
                size.map_or_else(|| "size unknown".into(), |s| Bytes(s).to_string()),
                RoundDuration(
                    SystemTime::now()
                        .duration_since(*last_used)
                        .unwrap_or_default()
                ),
                job.dir.display()
            ),
        ),
        Origin::Seeded(seeded) => term::status(
            "Seeded",
            format_args!(
                "{} from finished job `{}` ({})",
                job.dir.display(),
                seeded.from,
                lease::seed_words(seeded)
            ),
        ),
        Origin::Restored {
            from,
            files,
            bytes,
            left_out,
            took,
        } => term::status(
            "Restored",
            format_args!(
                "{} from the store: job `{from}`'s dir ({files} files, {} in {:.1}s{})",
                job.dir.display(),
                Bytes(*bytes),
                took.as_secs_f64(),
                if *left_out > 0 {
                    format!("; {left_out} files left out, their units build")
                } else {
                    String::new()
                }
            ),
        ),
    }
}

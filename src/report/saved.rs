//! What warmth saved, in words (docs/protocol.md#what-warmth-saved): a job's counts at release
//! (the terminal's `-v` line, the step summary) and `status`'s lines per workspace and in
//! total. The time saved is always said to be an estimate.

use crate::prune::saved::Counted;
use crate::quantity::RoundDuration;
use crate::status::{Saved, Starts};
use crate::term;

/// `1.3s`, `42s`, `12m`: tenths under a minute. Counts from leases can be absurd: whatever no
/// `Duration` holds is said in seconds.
fn secs(s: f64) -> String {
    match std::time::Duration::try_from_secs_f64(s) {
        Ok(_) if s < 60.0 => format!("{s:.1}s"),
        Ok(d) => RoundDuration(d).to_string(),
        Err(_) => format!("{s:.0}s"),
    }
}

/// `96% reused`, of the units counted.
fn share(reused: u64, compiled: u64) -> String {
    let all = reused + compiled;
    if all == 0 {
        return "no units used".to_owned();
    }
    format!("{}% reused", reused * 100 / all)
}

/// The job's units so far, as a sentence: `job `x` so far: 130 units reused warm, 3 compiled
/// (97% reused); time saved ~1m (estimate: 0.7s per compiled unit, from cold build `y`).`
/// `code` quotes a job id for where it goes. `None` when the job used no unit (`exec -- true`).
fn job(c: &Counted, code: &dyn Fn(&str) -> String) -> Option<String> {
    let w = &c.warmth;
    let compiled = w.units_compiled.unwrap_or(0);
    if c.cold_now {
        let took = match (w.command_secs, &c.cold) {
            (Some(t), Some(cold)) => format!(
                " in {} ({} per unit), on record for the estimates of this workspace's warm jobs",
                secs(t),
                secs(cold.secs / cold.units as f64)
            ),
            _ => " (its time is not known: no estimate is made from it)".to_owned(),
        };
        return Some(format!(
            "job `{}` built cold: {compiled} units compiled{took}",
            code(&c.job_id)
        ));
    }
    let reused = match w.units_reused {
        Some(0) if compiled == 0 => return None,
        Some(r) => format!(
            "{r} units reused warm, {compiled} compiled ({})",
            share(r, compiled)
        ),
        None => format!(
            "{compiled} units compiled, units reused unknown (reads of the units could not be told here)"
        ),
    };
    let saved = match (c.saved_secs(), &c.cold) {
        (Some(s), Some(cold)) => format!(
            "time saved ~{} (estimate: {} per compiled unit, from cold build `{}`)",
            secs(s),
            secs(cold.secs / cold.units as f64),
            code(&cold.job_id)
        ),
        _ if w.units_reused.is_none() => "time saved unknown".to_owned(),
        _ => "time saved unknown (estimate: no cold build of this workspace on record)".to_owned(),
    };
    Some(format!(
        "job `{}` so far: {reused}; {saved}",
        code(&c.job_id)
    ))
}

/// The step summary's paragraph: the sentence, capitalised.
pub(super) fn summary(c: &Counted, code: &dyn Fn(&str) -> String) -> Option<String> {
    let sentence = job(c, code)?;
    Some(format!("J{}.\n\n", &sentence[1..]))
}

/// The terminal's line at release, with `-v`: `Counted job `x` so far: …`.
pub(super) fn show(c: &Counted) {
    if let Some(sentence) = job(c, &|s| term::escape(s).into_owned()) {
        term::verbose("Counted", format_args!("{sentence}"));
    }
}

/// `saved ~12m (estimate: 2 cold builds, 0.5s per compiled unit)`, or why it is unknown.
fn estimate(saved: Option<f64>, cold_builds: usize, rate: Option<f64>) -> String {
    match (saved, rate) {
        (Some(s), Some(r)) => format!(
            "saved ~{} (estimate: {cold_builds} cold build{}, {} per compiled unit)",
            secs(s),
            if cold_builds == 1 { "" } else { "s" },
            secs(r)
        ),
        _ => "saved unknown (estimate: no cold build on record)".to_owned(),
    }
}

/// `status`'s line for one workspace: `units: acme/widgets: 130 reused, 3 compiled (97%
/// reused); saved ~1m (estimate: …)`.
pub(super) fn workspace(s: &Starts, ws: &str) -> String {
    format!(
        "units: {ws}: {} reused, {} compiled ({}){}; {}",
        s.units_reused,
        s.units_compiled,
        share(s.units_reused, s.units_compiled),
        not_counted(s.dirs_not_counted),
        estimate(s.saved_secs_estimate, s.cold_builds, s.cold_secs_per_unit)
    )
}

/// `status`'s line over every workspace.
pub(super) fn total(t: &Saved) -> String {
    let saved = match t.saved_secs_estimate {
        Some(s) => format!("saved ~{} (estimate)", secs(s)),
        None => "saved unknown (estimate: a workspace has no cold build on record)".to_owned(),
    };
    format!(
        "units in total: {} reused, {} compiled ({}){}; {saved}",
        t.units_reused,
        t.units_compiled,
        share(t.units_reused, t.units_compiled),
        not_counted(t.dirs_not_counted)
    )
}

fn not_counted(dirs: usize) -> String {
    match dirs {
        0 => String::new(),
        1 => ", 1 dir not counted".to_owned(),
        n => format!(", {n} dirs not counted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_said_whatever_the_leases_summed_to() {
        assert_eq!(secs(1.25), "1.2s");
        assert_eq!(secs(720.0), "12m");
        assert_eq!(secs(1e30), format!("{:.0}s", 1e30));
        assert_eq!(share(3, 1), "75% reused");
        assert_eq!(share(0, 0), "no units used");
    }
}

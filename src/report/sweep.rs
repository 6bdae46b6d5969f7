//! A sweep's report (`guard::Report`) for people and programs: cargo-style status lines on
//! stderr (`     Removed old (expired 1h ago, …)`), and the shape `gc --json` prints.

use serde::Serialize;
use serde::ser::Serializer;

use super::github::{self, GitHub};
use crate::guard::{Kept, Removed, Report};
use crate::lease::{KeepKind, Root};
use crate::term::{self, Verbosity};
use crate::units::{Bytes, Short};

/// How much of a report to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `cargo guarded gc`: every decision.
    Gc,
    /// `gc --hook`: every decision plus a header and a footer with the disk's state.
    Hook,
    /// Before a wrapped command: what was removed; what was kept only with `-v`.
    Precheck,
}

/// Print a sweep's report, inside a collapsed log group when on GitHub and there is anything
/// to print.
pub(crate) fn show(github: Option<&GitHub>, report: &Report, root: &Root, style: Style) {
    let prints_anything = !report.errors.is_empty()
        || match term::verbosity() {
            Verbosity::Quiet => false,
            Verbosity::Verbose => true,
            Verbosity::Normal => style != Style::Precheck || !report.removed.is_empty(),
        };
    let grouped = github.is_some() && prints_anything;
    if grouped {
        let title = match style {
            Style::Precheck => "cargo-guarded: disk precheck",
            Style::Gc | Style::Hook => "cargo-guarded: gc",
        };
        github::command_line(&format!("::group::{title}"));
    }
    print(report, root, style);
    if grouped {
        github::command_line("::endgroup::");
    }
}

/// Every decision with its reason, in cargo's shape, between a header and a footer.
fn print(report: &Report, root: &Root, style: Style) {
    let before = report.before;
    if style == Style::Hook || !report.removed.is_empty() {
        term::status_verb(
            "Reclaiming",
            format_args!(
                "expired target dirs in {}: {}% used ({} free)",
                root.path.display(),
                before.used_pct(),
                Bytes(before.free)
            ),
        );
    }
    let removed_verb = if report.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    for r in &report.removed {
        let (name, ago) = expired_for(r);
        let line = format!("{name} (expired {} ago, {})", Short(ago), Bytes(r.bytes()));
        term::status_verb(removed_verb, line);
    }
    for k in &report.kept {
        let line = format!("{} ({})", k.name, k.reason.detail());
        if style == Style::Precheck {
            term::verbose(format_args!("kept {line}"));
        } else {
            term::status_verb("Kept", line);
        }
    }
    for e in &report.errors {
        term::warn(e);
    }
    if !report.removed.is_empty() {
        print_reclaimed(report);
    } else if style != Style::Precheck {
        print_nothing(report);
    }
}

/// The dir's name and how long ago it expired, as the report shows it. An unfinished dir shows
/// the age past which it counts as abandoned (its job never wrote a lease).
fn expired_for(r: &Removed) -> (&str, std::time::Duration) {
    match r {
        Removed::Expired {
            name, expired_for, ..
        } => (name, *expired_for),
        Removed::Unfinished {
            name, older_than, ..
        } => (name, *older_than),
    }
}

/// The footer of a sweep that removed something: the total and the disk now.
fn print_reclaimed(report: &Report) {
    let n = report.removed.len();
    let after = report.after;
    term::status_verb(
        if report.dry_run {
            "Would free"
        } else {
            "Reclaimed"
        },
        format_args!(
            "{} in {n} dir{}; {} {}% used ({} free)",
            Bytes(report.freed()),
            if n == 1 { "" } else { "s" },
            if report.dry_run { "would be" } else { "now" },
            after.used_pct(),
            Bytes(after.free)
        ),
    );
}

/// The footer of a sweep that removed nothing: why, not a "now X% used" that suggests something
/// went.
fn print_nothing(report: &Report) {
    let before = report.before;
    let expired_kept = report
        .kept
        .iter()
        .any(|k| k.reason.kind() == KeepKind::Expired);
    let why = if !expired_kept {
        format!(
            "no job dir has expired ({}% used, {} free)",
            before.used_pct(),
            Bytes(before.free)
        )
    } else if before.free >= report.target_free {
        format!(
            "{} free ({}% used) is above the reclaim target of {}; `--all-expired` reclaims \
             every expired dir anyway",
            Bytes(before.free),
            before.used_pct(),
            Bytes(report.target_free)
        )
    } else {
        format!(
            "every expired dir is kept for the reason shown ({}% used, {} free)",
            before.used_pct(),
            Bytes(before.free)
        )
    };
    term::status_verb("Nothing", format_args!("to reclaim: {why}"));
}

/// The job id an unfinished dir is listed under in `gc --json` (it has no lease to name one).
const UNFINISHED_JOB: &str = "(unfinished: its job died while creating it)";

/// `gc --json`: every decision, in the shape README's "JSON output" documents.
impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            dry_run: bool,
            free_before: u64,
            free_after: u64,
            total_bytes: u64,
            target_free: u64,
            removed: Vec<JsonRemoved<'a>>,
            kept: Vec<JsonKept<'a>>,
            errors: &'a [String],
            other_freed: u64,
        }
        #[derive(Serialize)]
        struct JsonRemoved<'a> {
            job_id: &'a str,
            dir: &'a str,
            bytes: u64,
            expired_for_secs: u64,
        }
        #[derive(Serialize)]
        struct JsonKept<'a> {
            job_id: Option<&'a str>,
            dir: &'a str,
            reason: String,
        }
        fn removed(r: &Removed) -> JsonRemoved<'_> {
            let dir = match r {
                Removed::Expired { dir, .. } | Removed::Unfinished { dir, .. } => dir,
            };
            JsonRemoved {
                job_id: r.job_id().unwrap_or(UNFINISHED_JOB),
                dir,
                bytes: r.bytes(),
                expired_for_secs: expired_for(r).1.as_secs(),
            }
        }
        fn kept(k: &Kept) -> JsonKept<'_> {
            JsonKept {
                job_id: k.job_id.as_deref(),
                dir: &k.dir,
                reason: k.reason.to_string(),
            }
        }
        Json {
            dry_run: self.dry_run,
            free_before: self.before.free,
            free_after: self.after.free,
            total_bytes: self.before.total,
            target_free: self.target_free,
            removed: self.removed.iter().map(removed).collect(),
            kept: self.kept.iter().map(kept).collect(),
            errors: &self.errors,
            other_freed: self.other_freed,
        }
        .serialize(s)
    }
}

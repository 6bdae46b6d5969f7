//! A sweep's report (`guard::Report`) for people and programs: cargo-style status lines on
//! stderr (`     Removed old (expired 1h ago, …)`), and the shape `gc --json` prints.

use std::path::Path;

use serde::Serialize;
use serde::ser::Serializer;

use super::github;
use crate::guard::{Kept, Removed, Report, RootCap};
use crate::lease::KeptAs;
use crate::quantity::{Bytes, RoundDuration};
use crate::term::{self, Verbosity};

/// How much of a report to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `cargo guarded gc`: every decision.
    Gc,
    /// `gc --hook`, in the setup log of every job on the host: one line per removal, warnings,
    /// then one summary line (the disk, and the kept dirs counted by kind).
    Hook,
    /// Before a wrapped command: what was removed; what was kept only with `-v`.
    Precheck,
}

/// Print a sweep's report, inside a collapsed log group when `groups` (on GitHub) and there is
/// anything to print.
pub(crate) fn show(groups: bool, report: &Report, root: &Path, style: Style) {
    let prints_anything = !report.errors.is_empty()
        || match term::verbosity() {
            Verbosity::Quiet => false,
            Verbosity::Verbose => true,
            Verbosity::Normal => style != Style::Precheck || !report.removed.is_empty(),
        };
    let grouped = groups && prints_anything;
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
fn print(report: &Report, root: &Path, style: Style) {
    if style == Style::Hook {
        return print_hook(report, root);
    }
    let before = report.before;
    if !report.removed.is_empty() {
        term::status(
            "Reclaiming",
            format_args!(
                "expired target dirs in {}: {}% used ({} free)",
                root.display(),
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
    if let Some(c) = report.root_cap
        && (c.before > c.cap || style != Style::Precheck)
    {
        root_cap(c, report.dry_run);
    }
    for r in &report.removed {
        term::status(removed_verb, removed_line(r));
    }
    for k in &report.kept {
        let line = format!("{} ({})", k.name, k.reason.detail());
        if style == Style::Precheck {
            term::verbose("Kept", format_args!("{line}"));
        } else {
            term::status("Kept", line);
        }
    }
    for e in &report.errors {
        term::warn(e);
    }
    if !report.removed.is_empty() {
        print_reclaimed(report, "", "");
    } else if style != Style::Precheck {
        print_nothing(report);
    }
}

/// `gc --hook`: each removal, each error, and one summary line.
fn print_hook(report: &Report, root: &Path) {
    let verb = if report.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    for r in &report.removed {
        term::status(verb, removed_line(r));
    }
    for e in &report.errors {
        term::warn(e);
    }
    let kept = kept_by_kind(report);
    let after = report.after;
    if report.removed.is_empty() {
        term::status(
            "Nothing",
            format_args!(
                "to reclaim in {}: {}% used ({} free){kept}",
                root.display(),
                after.used_pct(),
                Bytes(after.free)
            ),
        );
    } else {
        print_reclaimed(report, &format!(" of {}", root.display()), &kept);
    }
}

/// `; kept 11 dirs: 3 live, 7 lingering, 1 expired` (empty when none was kept).
fn kept_by_kind(report: &Report) -> String {
    if report.kept.is_empty() {
        return String::new();
    }
    let kinds = [
        (KeptAs::Live, "live"),
        (KeptAs::Lingering, "lingering"),
        (KeptAs::Expired, "expired"),
        (KeptAs::Unknown, "unreadable or skipped"),
    ];
    let counts: Vec<String> = kinds
        .iter()
        .filter_map(|(kind, word)| {
            let n = report
                .kept
                .iter()
                .filter(|k| k.reason.kind() == *kind)
                .count();
            (n > 0).then(|| format!("{n} {word}"))
        })
        .collect();
    let n = report.kept.len();
    format!(
        "; kept {n} dir{}: {}",
        if n == 1 { "" } else { "s" },
        counts.join(", ")
    )
}

/// `old (expired 1h ago, 1.2 GiB)`; a lingering dir `gc --workspace` took: `old (released,
/// lingering, 1.2 GiB)`.
fn removed_line(r: &Removed) -> String {
    let (name, ago) = expired_for(r);
    if matches!(
        r,
        Removed::Expired {
            lingering: true,
            ..
        }
    ) {
        format!("{name} (released, lingering, {})", Bytes(r.bytes()))
    } else {
        let why = match r {
            Removed::Expired { over_cap: true, .. } => "; the root is over --max-root-size",
            _ => "",
        };
        format!(
            "{name} (expired {} ago, {}{why})",
            RoundDuration(ago),
            Bytes(r.bytes())
        )
    }
}

/// The root's size against `--max-root-size`: within it, over it and brought under it, or over
/// it still (what is left is live, lingering or kept for another reason, listed with it).
fn root_cap(c: RootCap, dry_run: bool) {
    let (verb, now) = if dry_run {
        ("Would hold", "would hold")
    } else {
        ("Holds", "holds")
    };
    let line = if c.before <= c.cap {
        format!(
            "{} in the root, within --max-root-size {}",
            Bytes(c.before),
            Bytes(c.cap)
        )
    } else if c.after <= c.cap {
        format!(
            "{} in the root, over --max-root-size {}: expired dirs go, oldest first; it {now} {} \
             after",
            Bytes(c.before),
            Bytes(c.cap),
            Bytes(c.after)
        )
    } else {
        format!(
            "{} in the root, over --max-root-size {}; it {now} {} after reclaiming every expired \
             dir it may: the rest is live, lingering or kept (see below)",
            Bytes(c.before),
            Bytes(c.cap),
            Bytes(c.after)
        )
    };
    term::status(if c.before <= c.cap { "Holds" } else { verb }, line);
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

/// The footer of a sweep that removed something: the total and the disk now; `place` names the
/// root (`gc --hook`'s one line), `tail` adds what was kept.
fn print_reclaimed(report: &Report, place: &str, tail: &str) {
    let n = report.removed.len();
    let after = report.after;
    term::status(
        if report.dry_run {
            "Would free"
        } else {
            "Reclaimed"
        },
        format_args!(
            "{} in {n} dir{}{place}; {} {}% used ({} free){tail}",
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
        .any(|k| k.reason.kind() == KeptAs::Expired);
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
    term::status("Nothing", format_args!("to reclaim: {why}"));
}

/// The job id an unfinished dir is listed under in `gc --json` (it has no lease to name one).
const UNFINISHED_JOB: &str = "(unfinished: its job died while creating it)";

/// `gc --json`: every decision, in the shape docs/json.md's "JSON output" documents.
impl Serialize for Report {
    // Long: one JSON object's whole field list, each field documented in docs/json.md's schema.
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
            /// `--max-root-size` and the root's size before and after; absent without a cap.
            #[serde(skip_serializing_if = "Option::is_none")]
            root_cap: Option<JsonCap>,
        }
        #[derive(Serialize)]
        struct JsonCap {
            max_root_size: u64,
            root_before: u64,
            root_after: u64,
        }
        #[derive(Serialize)]
        struct JsonRemoved<'a> {
            job_id: &'a str,
            dir: &'a str,
            bytes: u64,
            expired_for_secs: u64,
            /// A `.new-*` dir left by a job that died creating it: no lease, so `job_id` is a
            /// placeholder, `bytes` 0 (counted in `other_freed`) and `expired_for_secs` the
            /// age it was at least.
            unfinished: bool,
            /// Released but still inside its linger: taken by `gc --workspace`.
            lingering: bool,
            /// The root was over `--max-root-size` when it was chosen.
            over_root_cap: bool,
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
                unfinished: matches!(r, Removed::Unfinished { .. }),
                lingering: matches!(
                    r,
                    Removed::Expired {
                        lingering: true,
                        ..
                    }
                ),
                over_root_cap: matches!(r, Removed::Expired { over_cap: true, .. }),
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
            root_cap: self.root_cap.map(|c| JsonCap {
                max_root_size: c.cap,
                root_before: c.before,
                root_after: c.after,
            }),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::fs::Space;
    use crate::guard::WhyKept;
    use crate::lease::{NotAJobDir, Protected};

    fn report(removed: Vec<Removed>, kept: Vec<Kept>) -> Report {
        let space = Space {
            free: 10,
            total: 100,
            used: 90,
        };
        Report {
            dry_run: false,
            before: space,
            after: space,
            reclaim_below: 20,
            target_free: 30,
            removed,
            kept,
            errors: Vec::new(),
            other_freed: 7,
            root_cap: None,
        }
    }

    /// A dir whose wrapper was killed while its command's processes still run is live (they
    /// still write into it), and says whose processes keep it.
    #[test]
    fn a_dir_held_by_its_jobs_orphans_reads_as_live() {
        let reason = WhyKept::Lease(Protected::TreeAlive { job_id: "j".into() });
        assert_eq!(
            reason.to_string(),
            "kept: processes of job `j` still hold it (its wrapper has exited)"
        );
        assert_eq!(reason.kind(), KeptAs::Live);
    }

    /// The words `gc --json` and the terminal used when reasons were strings, and the totals'
    /// kinds the summary used to find by prefix (a dir still locked after its lease expired is
    /// not an "expired" one: the old prefix test said so by `lease expired` ≠ `expired`).
    #[test]
    fn reasons_read_as_before() {
        let cases = [
            (
                WhyKept::Lease(Protected::Unknown("bad json".into())),
                "kept: unknown – bad json",
                "unknown – bad json",
                KeptAs::Unknown,
            ),
            (
                WhyKept::Lease(Protected::Skipped(NotAJobDir::Symlink)),
                "skipped: symlink",
                "skipped: symlink",
                KeptAs::Unknown,
            ),
            (
                WhyKept::Lease(Protected::Changed),
                "skipped: changed while being examined",
                "skipped: changed while being examined",
                KeptAs::Unknown,
            ),
            (
                WhyKept::Lease(Protected::StillLocked {
                    holder: "h (pid 1)".into(),
                }),
                "kept: lease expired but still locked by h (pid 1), a stopped process?",
                "lease expired but still locked by h (pid 1), a stopped process?",
                KeptAs::Unknown,
            ),
            (
                WhyKept::Lease(Protected::Live {
                    holder: "h".into(),
                    renewed_ago: Duration::from_secs(4),
                }),
                "kept: lease held by h, renewed 4s ago",
                "lease held by h, renewed 4s ago",
                KeptAs::Live,
            ),
            (
                WhyKept::Lease(Protected::Lingering {
                    expires_in: Duration::from_secs(120),
                }),
                "kept: released, expires in 2m",
                "released, expires in 2m",
                KeptAs::Lingering,
            ),
            (
                WhyKept::OwnDir,
                "kept: the running job's own dir",
                "the running job's own dir",
                KeptAs::Live,
            ),
            (
                WhyKept::Warm { keep_expired: 1 },
                "kept: expired, warm for reuse: --keep-expired 1",
                "expired, warm for reuse: --keep-expired 1",
                KeptAs::Expired,
            ),
            (
                WhyKept::PartlyDeleted {
                    freed: 0,
                    rest: PathBuf::from("/r/.trash/x"),
                    error: "EIO".into(),
                },
                "kept: expired, but only partly deleted (0 B freed); the rest stays in \
                 /r/.trash/x: EIO",
                "expired, but only partly deleted (0 B freed); the rest stays in /r/.trash/x: EIO",
                KeptAs::Expired,
            ),
        ];
        for (reason, full, detail, kind) in cases {
            assert_eq!(reason.to_string(), full);
            assert_eq!(reason.detail().to_string(), detail);
            assert_eq!(reason.kind(), kind, "{full}");
        }
    }

    /// `gc --json` keeps its shape: an unfinished dir is listed as before (a placeholder job
    /// id, what deleting it freed, the age past which it counted as abandoned).
    #[test]
    fn json_keeps_its_shape() {
        let r = report(
            vec![
                Removed::Unfinished {
                    name: ".new-x".into(),
                    dir: "/r/.new-x".into(),
                    older_than: Duration::from_secs(60),
                    bytes: 3,
                },
                Removed::Expired {
                    job_id: "old".into(),
                    name: "old".into(),
                    dir: "/r/old".into(),
                    bytes: 5,
                    expired_for: Duration::from_millis(3_900),
                    lingering: false,
                    over_cap: false,
                },
            ],
            vec![Kept {
                job_id: None,
                name: "odd".into(),
                dir: "/r/odd".into(),
                reason: WhyKept::Lease(Protected::Unknown("no lease".into())),
            }],
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "dry_run": false, "free_before": 10, "free_after": 10, "total_bytes": 100,
                "target_free": 30,
                "removed": [
                    {"job_id": UNFINISHED_JOB, "dir": "/r/.new-x", "bytes": 3,
                     "expired_for_secs": 60, "unfinished": true, "lingering": false,
                     "over_root_cap": false},
                    {"job_id": "old", "dir": "/r/old", "bytes": 5, "expired_for_secs": 3,
                     "unfinished": false, "lingering": false,
                     "over_root_cap": false},
                ],
                "kept": [{"job_id": null, "dir": "/r/odd", "reason": "kept: unknown – no lease"}],
                "errors": [], "other_freed": 7,
            })
        );
        assert_eq!(r.freed(), 15);
    }
}

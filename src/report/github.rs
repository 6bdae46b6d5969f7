//! GitHub Actions output, produced by the binary itself when `GITHUB_ACTIONS=true`: step outputs
//! (`$GITHUB_OUTPUT`), a step summary (`$GITHUB_STEP_SUMMARY`), log groups around the guard's
//! lines, and annotations for a disk that stays low, a precheck that refuses to start, and each
//! warning the lease layer says (`Event::Notice`).
//!
//! Workflow commands (`::group::`, `::warning::`, `::error::`) go to stderr. The runner reads
//! them from both streams (actions/runner's `ScriptHandler` puts a command-parsing
//! `OutputManager` on stdout and on stderr alike), stderr is where every other line of ours goes
//! (so a group wraps exactly the lines it should, in order), and stdout stays machine-readable
//! for `env`, `status --json` and `gc --json`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::event::{Event, JobDir, Reporter};
use crate::env_file::{self, append};
use crate::fs::Space;
use crate::guard::{Kept, Removed, Report};
use crate::lease::{KeptAs, Level, Origin, TARGET};
use crate::precheck::{Checked, NoSpace};
use crate::prune::{Moment, Outcome, Pruned};
use crate::quantity::{Bytes, RoundDuration};
use crate::term;

/// The GitHub Actions reporter: the runner's files for this step, and the repository whose jobs
/// a summary may name. `main` adds it to the reporters only inside GitHub Actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitHub {
    /// `$GITHUB_OUTPUT`: step outputs, appended as `name=value` records.
    pub(crate) output: Option<PathBuf>,
    /// `$GITHUB_STEP_SUMMARY`: markdown appended to the job's summary page.
    pub(crate) step_summary: Option<PathBuf>,
    /// `$GITHUB_REPOSITORY`: rows of the summary name only this repository's jobs.
    pub(crate) repository: Option<String>,
    /// The job this step runs, as its events told it so far.
    job: JobSoFar,
}

/// What a run that gives up before its command starts still writes as outputs: the dir it got,
/// if it got one, and what the sweep before its lease reclaimed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct JobSoFar {
    /// `(target dir, job id, origin)` once the job holds its dir.
    dir: Option<(PathBuf, String, &'static str)>,
    /// What the precheck's sweep before the lease reclaimed.
    reclaimed_before: u64,
    /// The job's outputs are written.
    outputs_set: bool,
    /// What content verification decided, for a dir built elsewhere.
    verified: Option<String>,
}

impl GitHub {
    /// `Some` only inside GitHub Actions. `var` reads one variable (empty counts as unset).
    pub(crate) fn from_env(var: &dyn Fn(&str) -> Option<String>) -> Option<GitHub> {
        if var("GITHUB_ACTIONS").as_deref() != Some("true") {
            return None;
        }
        Some(GitHub {
            output: var("GITHUB_OUTPUT").map(PathBuf::from),
            step_summary: var("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            repository: var("GITHUB_REPOSITORY"),
            job: JobSoFar::default(),
        })
    }

    /// A wrapped command (or `env`, `hold`) has its lease and passed the precheck: set the step's
    /// outputs and summarise the disk and the job dir: how the job came by it, and what pruning
    /// removed from it if it was adopted.
    fn job_ready(
        &mut self,
        root: &Path,
        job: &JobDir,
        (origin, pruned): (&Origin, &Pruned),
        command: &str,
        checked: &Checked,
    ) {
        let report = checked.report.as_ref();
        let target = &job.target_dir;
        let reclaimed = report.map_or(0, Report::reclaimed);
        self.set_job_outputs(target, &job.job_id, reclaimed, origin.name());
        if let Some(r) = report {
            self.warn_if_still_low(root, r);
        }
        let mut md = format!("### cargo guarded `{}`\n\n", code(command));
        let _ = writeln!(
            md,
            "Job `{}` builds in `{}` ({}).\n",
            code(&job.job_id),
            code(&target.display().to_string()),
            how_it_came(origin, pruned)
        );
        if let Some(verified) = &self.job.verified {
            let _ = writeln!(md, "Built elsewhere: {verified}.\n");
        }
        let own = job
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        match report {
            Some(r) => disk_report(&mut md, root, r, own.as_deref(), self.repo()),
            None => no_sweep(&mut md, root, checked.space),
        }
        self.append_summary(&md);
    }

    /// The job's own dir was pruned as it released: what went and why (replaced, over budget),
    /// and the dir's size against its budget.
    fn pruned_at_release(&self, job_id: &str, pruned: &Pruned) {
        let mut md = String::new();
        if pruned.units + pruned.incremental > 0 {
            let _ = write!(
                md,
                "At release, job `{}` pruned {} from its dir",
                code(job_id),
                super::prune::what(pruned)
            );
        }
        if let Some(b) = pruned.state {
            let _ = write!(
                md,
                "{}the dir is {} against its budget of {} ({} used by recent jobs){}",
                if md.is_empty() { "At release, " } else { "; " },
                Bytes(b.size),
                Bytes(b.budget),
                Bytes(b.working_set),
                if b.over() {
                    ": over it, as what recent jobs used is never pruned"
                } else {
                    ""
                }
            );
        }
        if !md.is_empty() {
            md.push_str(".\n\n");
            self.append_summary(&md);
        }
    }

    /// The step outputs of a wrapped command, written on every path that got as far as a job
    /// dir (exit 75 included): `target-dir`, `job-id`, `reclaimed-bytes`, `origin` (`fresh`,
    /// `resumed` or `adopted`) and `warm` (`true` unless fresh, like rust-cache's `cache-hit`).
    fn set_job_outputs(&mut self, target: &Path, job_id: &str, reclaimed: u64, origin: &str) {
        self.job.outputs_set = true;
        self.set_outputs(&[
            ("target-dir", &target.display().to_string()),
            ("job-id", job_id),
            ("reclaimed-bytes", &reclaimed.to_string()),
            ("origin", origin),
            ("warm", if origin == "fresh" { "false" } else { "true" }),
        ]);
    }

    /// A run that failed before it had a job dir: the job id it asked for, nothing reclaimed.
    fn set_early_outputs(&self, job_id: &str) {
        self.set_outputs(&[("job-id", job_id), ("reclaimed-bytes", "0")]);
    }

    /// The precheck refused to start (exit 75): an error annotation with the numbers, and the
    /// same in the step summary.
    fn refused(&self, no_space: &NoSpace, job_id: &str, command: &str) {
        annotate(
            "error",
            "cargo-guarded: not enough disk space",
            &format!(
                "{} free on {}, {} required by min-free ({} < {} bytes); {}; {}; exit 75",
                Bytes(no_space.free),
                no_space.root,
                Bytes(no_space.required),
                no_space.free,
                no_space.required,
                super::no_space::reclaimed(no_space),
                super::no_space::holding(no_space, false)
            ),
        );
        let mut md = format!(
            "### cargo guarded `{}`: refused to start\n\n\
             Not enough free disk space on `{}`: **{} free, {} required** by min-free \
             ({} < {} bytes); {}. Exit status 75.\n\n",
            code(command),
            code(&no_space.root),
            Bytes(no_space.free),
            Bytes(no_space.required),
            no_space.free,
            no_space.required,
            super::no_space::reclaimed(no_space)
        );
        // The refused job still held its own lease while the precheck looked. Other
        // repositories' jobs are counted, never named.
        let others: Vec<_> = no_space
            .biggest_live
            .iter()
            .filter(|(job, _, _)| job != job_id)
            .collect();
        let (ours, theirs): (Vec<_>, Vec<_>) = others
            .into_iter()
            .partition(|(job, _, _)| same_repository(Some(job), self.repo()));
        if ours.is_empty() && theirs.is_empty() {
            md.push_str("No other live lease holds space in the root.\n\n");
        }
        if !ours.is_empty() {
            md.push_str(
                "Live leases holding the most space:\n\n| job | size | held by |\n|---|---:|---|\n",
            );
            for (job, size, holder) in ours {
                let size = size.map_or_else(|| "unknown".into(), |s| Bytes(s).to_string());
                let _ = writeln!(md, "| `{}` | {size} | {} |", code(job), cell(holder));
            }
            md.push('\n');
        }
        if !theirs.is_empty() {
            let bytes: u64 = theirs.iter().filter_map(|(_, s, _)| *s).sum();
            let _ = writeln!(
                md,
                "{} live lease(s) of other repositories' jobs hold at least {}.\n",
                theirs.len(),
                Bytes(bytes)
            );
        }
        self.append_summary(&md);
    }

    /// `cargo guarded gc`: the summary, the `reclaimed-bytes` output and the low-disk warning.
    fn gc_done(&self, root: &Path, report: &Report) {
        self.set_outputs(&[("reclaimed-bytes", &report.reclaimed().to_string())]);
        self.warn_if_still_low(root, report);
        let mut md = format!(
            "### cargo guarded gc{}\n\n",
            if report.dry_run { " (dry run)" } else { "" }
        );
        disk_report(&mut md, root, report, None, self.repo());
        self.append_summary(&md);
    }

    fn repo(&self) -> Option<&str> {
        self.repository.as_deref()
    }

    /// `::warning::` when a sweep that ran under pressure could not bring free space up to the
    /// reclaim target: what is left is held by live leases (or is not ours).
    fn warn_if_still_low(&self, root: &Path, report: &Report) {
        let free_after = report.after.free;
        if report.dry_run || !report.under_pressure() || free_after >= report.target_free {
            return;
        }
        annotate(
            "warning",
            "cargo-guarded: disk still low",
            &format!(
                "{} free on {} after reclaiming {} from {} expired job dir(s), below the reclaim \
                 target of {} ({} < {} bytes); {} job dir(s) kept (live leases or warm dirs)",
                Bytes(free_after),
                root.display(),
                Bytes(report.freed()),
                report.removed.len(),
                Bytes(report.target_free),
                free_after,
                report.target_free,
                report.kept.len()
            ),
        );
    }

    fn set_outputs(&self, pairs: &[(&str, &str)]) {
        let Some(path) = &self.output else {
            return;
        };
        let text: String = pairs.iter().map(|(n, v)| env_file::record(n, v)).collect();
        if let Err(e) = append(path, &text) {
            // Not worth failing a build over.
            term::warn(format_args!("{e:#}; the step's outputs are missing"));
        }
    }

    fn append_summary(&self, markdown: &str) {
        let Some(path) = &self.step_summary else {
            return;
        };
        if let Err(e) = append(path, markdown) {
            term::warn(format_args!("{e:#}; the step summary is missing"));
        }
    }
}

impl Reporter for GitHub {
    fn report_at(&mut self, _: SystemTime, event: &Event<'_>) {
        match event {
            Event::Starting { .. } => self.job = JobSoFar::default(),
            Event::Nested { dir, job_id } => {
                self.set_job_outputs(&dir.join(TARGET), job_id, 0, Origin::RESUMED);
            }
            Event::Swept { report, .. } if self.job.dir.is_none() => {
                self.job.reclaimed_before = report.freed();
            }
            Event::Acquired { job, origin, .. } => {
                self.job.dir = Some((job.target_dir.clone(), job.job_id.clone(), origin.name()));
            }
            Event::Ready {
                root,
                job,
                origin,
                pruned,
                command,
                checked,
                ..
            } => self.job_ready(root, job, (origin, pruned), command, checked),
            Event::Refused {
                job,
                origin,
                command,
                no_space,
            } => {
                let reclaimed = self.job.reclaimed_before;
                self.set_job_outputs(&job.target_dir, &job.job_id, reclaimed, origin.name());
                self.refused(no_space, &job.job_id, command);
            }
            // Gave up before the command started: the outputs that are known.
            Event::GaveUp { job_id } if !self.job.outputs_set => match self.job.dir.clone() {
                Some((target, job_id, origin)) => {
                    let reclaimed = self.job.reclaimed_before;
                    self.set_job_outputs(&target, &job_id, reclaimed, origin);
                }
                None => self.set_early_outputs(job_id),
            },
            Event::Pruned {
                moment: Moment::Release { job, .. },
                outcome,
                ..
            } => {
                let pruned = outcome.as_ref().map(Outcome::pruned).unwrap_or_default();
                self.pruned_at_release(job, &pruned);
            }
            Event::Collected { root, report, .. } => self.gc_done(root, report),
            Event::Verified { verdict } => {
                self.job.verified = Some(super::warm::sentence(verdict));
            }
            // Each warning on the run's page; notes stay in the log.
            Event::Notice(notice) if notice.level() == Level::Warning => annotate(
                "warning",
                &format!("cargo-guarded: {}", notice.what().replace('_', " ")),
                &super::notice::words(notice),
            ),
            Event::Counted { counted } => {
                if let Some(md) = super::saved::summary(counted, &code) {
                    self.append_summary(&md);
                }
            }
            Event::Notice(_)
            | Event::GaveUp { .. }
            | Event::Swept { .. }
            | Event::Pruned { .. }
            | Event::Exited { .. } => {}
        }
    }
}

/// Whether a job id belongs to a job of `repo`: derived GitHub ids are `gh-<owner>/<repo>-…`.
/// An id set by hand or unreadable counts as another repository's: a summary never names a job
/// it cannot prove is this repository's (the root may be shared by several).
fn same_repository(job_id: Option<&str>, repo: Option<&str>) -> bool {
    match (job_id, repo) {
        (Some(id), Some(repo)) => id
            .strip_prefix("gh-")
            .and_then(|rest| rest.strip_prefix(repo))
            .is_some_and(|rest| rest.starts_with('-')),
        _ => false,
    }
}

/// How a kind of kept dir is counted in the summary's totals.
fn kind_label(kind: KeptAs) -> &'static str {
    match kind {
        KeptAs::Live => "live",
        KeptAs::Lingering => "lingering",
        KeptAs::Expired => "expired (warm or not needed)",
        KeptAs::Unknown => "unknown",
    }
}

/// How the job came by its dir, for the summary's first line.
fn how_it_came(origin: &Origin, pruned: &Pruned) -> String {
    match origin {
        Origin::Fresh { .. } => "a fresh dir".to_owned(),
        Origin::Resumed => "resumed from an earlier step of this job".to_owned(),
        Origin::Seeded(seeded) => format!(
            "seeded warm from finished job `{}` ({})",
            code(&seeded.from),
            crate::lease::seed_words(seeded)
        ),
        Origin::Restored {
            from,
            files,
            bytes,
            took,
            ..
        } => format!(
            "restored warm from the store (job `{}`'s dir: {files} files, {} in {:.1}s)",
            code(from),
            Bytes(*bytes),
            took.as_secs_f64()
        ),
        Origin::Adopted { from, size, .. } => format!(
            "adopted warm from expired job `{}`{}{}",
            code(from),
            size.map_or_else(String::new, |s| format!(" ({})", Bytes(s))),
            if pruned.units + pruned.incremental > 0 {
                format!("; pruned {}", super::prune::what(pruned))
            } else {
                String::new()
            }
        ),
    }
}

/// The disk when no sweep ran, as the precheck read it.
fn no_sweep(md: &mut String, root: &Path, s: Space) {
    let _ = writeln!(
        md,
        "Free space on `{}`: {} of {} ({}% used); no sweep was needed.\n",
        code(&root.display().to_string()),
        Bytes(s.free),
        Bytes(s.total),
        s.used_pct()
    );
}

/// Disk before/after, what was reclaimed and what was kept, as markdown. `own`: the job dir of
/// the job that ran the sweep (kept because its own lease is live). Rows name only this job and
/// jobs of this repository (`repo`); other jobs in a shared root are counted, never named.
fn disk_report(md: &mut String, root: &Path, r: &Report, own: Option<&str>, repo: Option<&str>) {
    let (before, after) = (r.before, r.after);
    let _ = write!(
        md,
        "Disk of `{}` ({} total):\n\n\
         | | free | used |\n|---|---:|---:|\n\
         | before | {} | {}% |\n| after | {} | {}% |\n\n",
        code(&root.display().to_string()),
        Bytes(before.total),
        Bytes(before.free),
        before.used_pct(),
        Bytes(after.free),
        after.used_pct()
    );
    removed_rows(md, r, repo);
    if !r.kept.is_empty() {
        kept_rows(md, &r.kept, own, repo);
    }
    for e in &r.errors {
        let _ = writeln!(md, "> **error:** {}\n", cell(e));
    }
}

/// What was reclaimed: the total, a row per dir of this repository's jobs, the rest counted.
fn removed_rows(md: &mut String, r: &Report, repo: Option<&str>) {
    let verb = if r.dry_run {
        "Would reclaim"
    } else {
        "Reclaimed"
    };
    if r.removed.is_empty() {
        let _ = writeln!(md, "{verb} nothing: no expired job dir had to go.\n");
        return;
    }
    let _ = writeln!(
        md,
        "**{verb} {}** from {} expired job dir(s).\n",
        Bytes(r.freed()),
        r.removed.len()
    );
    let (ours, others): (Vec<&Removed>, Vec<&Removed>) = r
        .removed
        .iter()
        .partition(|x| same_repository(x.job_id(), repo));
    if !ours.is_empty() {
        md.push_str("| job | size | expired |\n|---|---:|---:|\n");
        for x in &ours {
            if let Removed::Expired {
                job_id,
                bytes,
                expired_for,
                ..
            } = x
            {
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {} ago |",
                    code(job_id),
                    Bytes(*bytes),
                    RoundDuration(*expired_for)
                );
            }
        }
        md.push('\n');
    }
    if !others.is_empty() {
        let bytes: u64 = others.iter().map(|x| x.bytes()).sum();
        let _ = writeln!(
            md,
            "{} of them ({}) belonged to other repositories' jobs.\n",
            others.len(),
            Bytes(bytes)
        );
    }
}

/// Totals of everything kept, by kind; rows only for this job (`own`) and this repository's.
fn kept_rows(md: &mut String, kept: &[Kept], own: Option<&str>, repo: Option<&str>) {
    let mut kinds: Vec<(KeptAs, usize)> = Vec::new();
    for k in kept {
        let kind = k.reason.kind();
        match kinds.iter_mut().find(|(n, _)| *n == kind) {
            Some((_, c)) => *c += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let totals: Vec<String> = kinds
        .iter()
        .map(|(k, n)| format!("{n} {}", kind_label(*k)))
        .collect();
    let _ = writeln!(
        md,
        "Kept {} job dir(s): {}.\n",
        kept.len(),
        totals.join(", ")
    );
    let shown: Vec<_> = kept
        .iter()
        .filter(|k| own == Some(k.name.as_str()) || same_repository(k.job_id.as_deref(), repo))
        .collect();
    if shown.is_empty() {
        return;
    }
    md.push_str("| job dir | why |\n|---|---|\n");
    for k in shown {
        let this = if own == Some(k.name.as_str()) {
            " (this job)"
        } else {
            ""
        };
        let why = k.reason.detail().to_string();
        let _ = writeln!(md, "| `{}`{this} | {} |", code(&k.name), cell(&why));
    }
    md.push('\n');
}

/// Text inside a markdown code span in a table cell: no backticks, no pipes, one line.
fn code(s: &str) -> String {
    s.replace('`', "'")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// Plain text in a markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `::error title=…::message` / `::warning …`: shown on the run's page, not just in the log.
fn annotate(level: &str, title: &str, message: &str) {
    command_line(&format!(
        "::{level} title={}::{}",
        escape_property(title),
        escape_data(message)
    ));
}

/// One workflow command on its own line on stderr.
pub(crate) fn command_line(line: &str) {
    let mut err = std::io::stderr().lock();
    // Nothing sensible to do if stderr is gone.
    let _ = writeln!(err, "{line}");
}

/// Workflow-command message escaping (as in @actions/core's `escapeData`).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Workflow-command property escaping (as in @actions/core's `escapeProperty`).
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_derived_for_this_repository_are_its_own() {
        let repo = Some("octo/app");
        assert!(same_repository(Some("gh-octo/app-7-1-build-r1"), repo));
        assert!(!same_repository(Some("gh-octo/app2-7-1-build-r1"), repo));
        assert!(!same_repository(Some("gh-other/app-7-1-build"), repo));
        assert!(!same_repository(Some("old"), repo));
        assert!(!same_repository(None, repo));
        assert!(!same_repository(Some("gh-octo/app-7"), None));
    }
    use std::collections::HashMap;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<_, _> = pairs.iter().copied().collect();
        move |k| map.get(k).map(|v| v.to_string())
    }

    #[test]
    fn only_inside_github_actions() {
        assert_eq!(GitHub::from_env(&vars(&[])), None);
        assert_eq!(
            GitHub::from_env(&vars(&[
                ("GITHUB_ACTIONS", "false"),
                ("GITHUB_OUTPUT", "/o")
            ])),
            None
        );
        assert_eq!(
            GitHub::from_env(&vars(&[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_OUTPUT", "/o"),
                ("GITHUB_STEP_SUMMARY", "/s")
            ])),
            Some(GitHub {
                output: Some("/o".into()),
                step_summary: Some("/s".into()),
                repository: None,
                job: JobSoFar::default(),
            })
        );
    }

    #[test]
    fn workflow_command_escaping() {
        assert_eq!(escape_data("50% of a\r\nb"), "50%25 of a%0D%0Ab");
        assert_eq!(escape_property("a: b, c"), "a%3A b%2C c");
    }

    #[test]
    fn multi_line_outputs_use_a_delimiter() {
        let t = tempfile::tempdir().unwrap();
        let gh = GitHub {
            output: Some(t.path().join("out")),
            step_summary: None,
            repository: None,
            job: JobSoFar::default(),
        };
        gh.set_outputs(&[("a", "one"), ("b", "two\nlines")]);
        let text = std::fs::read_to_string(t.path().join("out")).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("a=one"));
        let (name, delim) = lines.next().unwrap().split_once("<<").unwrap();
        assert_eq!(name, "b");
        assert_eq!(lines.next(), Some("two"));
        assert_eq!(lines.next(), Some("lines"));
        assert_eq!(lines.next(), Some(delim));
    }

    #[test]
    fn table_cells_cannot_break_the_table() {
        assert_eq!(code("a|b`c\nd"), "a\\|b'c d");
        assert_eq!(cell("x|y"), "x\\|y");
    }
}

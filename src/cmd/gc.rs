//! `cargo guarded gc`: the disk guard's sweep of a root, reported as the `Collected` event (and
//! as JSON with `--json`).

use anyhow::Context;

use crate::cli::GcArgs;
use crate::config::Config;
use crate::exit::{CliResult, Exit};
use crate::fs;
use crate::guard;
use crate::lease::Root;
use crate::locks;
use crate::report::{Event, Reporter};
use crate::term;
use crate::workspace;

use super::job::missing_root;

pub(crate) fn run(cfg: &Config, args: &GcArgs, out: &mut dyn Reporter) -> CliResult {
    if !cfg.root.exists() {
        // A hook never fails the job it runs before: it warns in the job's log instead.
        if args.hook {
            term::warn(format_args!("{:#}", missing_root(cfg)));
            return Ok(Exit::SUCCESS);
        }
        return Err(missing_root(cfg).into());
    }
    let root = Root::open(&cfg.root)?;
    let trust = locks::assess(root.fd(), cfg.locks_forced);
    let space = fs::Space::of(&root.path)?;
    let mut sweep = cfg.guard.sweep(space.base(), trust);
    sweep.dry_run = args.dry_run;
    sweep.all_expired = args.all_expired;
    sweep.max_time = args.max_time;
    sweep.workspace = args.workspace.as_deref().map(|w| workspace_key(cfg, w));
    // A sweep that deletes a big tree takes seconds: show it is at work while it is.
    let working = (!args.json).then(|| {
        term::Activity::start_after(
            std::time::Duration::from_secs(1),
            "Sweeping",
            format_args!("{} for expired job dirs", root.path.display()),
        )
    });
    let report = guard::sweep(&root, &sweep);
    drop(working);
    let report = report?;
    if args.json {
        term::out(&term::json(&report)?).context("failed to write to stdout")?;
    }
    out.report(&Event::Collected {
        root: &root.path,
        report: &report,
        hook: args.hook,
    });
    // A hook never fails the job for disk reasons; errors were printed above.
    if report.errors.is_empty() || args.hook {
        Ok(Exit::SUCCESS)
    } else {
        Ok(Exit::ERROR)
    }
}

/// `gc --workspace`: the key a workspace's leases record. A path that is a directory is
/// resolved as a job would resolve it (its workspace root, its repository); anything else is
/// taken as the key itself, as `status` shows it (a deleted project has no path left).
fn workspace_key(cfg: &Config, given: &std::ffi::OsStr) -> String {
    // Canonical, as a job's current directory is.
    if let Ok(path) = std::fs::canonicalize(given)
        && path.is_dir()
    {
        let root = workspace::find_root(&path);
        workspace::key(&root, cfg.repository.as_deref(), None).workspace
    } else {
        given.to_string_lossy().into_owned()
    }
}

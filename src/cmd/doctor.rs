//! `cargo guarded doctor`: the checks run, their report printed.

use anyhow::Context;

use crate::config::Config;
use crate::doctor;
use crate::exit::{CliResult, Exit};
use crate::report;
use crate::term;
use crate::workspace;

/// Run the checks, print the report; exit 1 if any problem is an error.
pub(crate) fn run(cfg: &Config, json: bool) -> CliResult {
    let report = doctor::collect(&doctor::Inputs {
        root: &cfg.root,
        locks_forced: cfg.locks_forced,
        guard: &cfg.guard,
        min_free: cfg.min_free,
        cargo: &cfg.cargo,
        rustc: &cfg.rustc,
        llvm: &cfg.llvm,
        ci: cfg.ci,
        ci_unrecognised: cfg.ci == Some(crate::job_id::UNRECOGNISED_CI),
        job_id: &cfg.job_id,
        job_dir: cfg.root.join(&cfg.job_name),
        store: cfg.store.as_deref().map(|url| doctor::StoreInputs {
            url,
            push: cfg.store_push,
            scope: &cfg.scope.scope,
            cargo_home: cfg.cargo_home.as_deref(),
            workspace: Some(
                workspace::key(&cfg.workspace_root, cfg.repository.as_deref(), None).workspace,
            ),
        }),
    });
    let text = if json {
        term::json(&report)?
    } else {
        report::doctor::render(&report)
    };
    // A reader that left early is not an error, as for `status`.
    term::out(&text).context("failed to write to stdout")?;
    Ok(if report.has_errors() {
        Exit::ERROR
    } else {
        Exit::SUCCESS
    })
}

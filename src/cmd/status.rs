//! `cargo guarded status`: the root's free space and every job dir, as a table or JSON.

use anyhow::Context;

use crate::cli::StatusArgs;
use crate::config::Config;
use crate::exit::{CliResult, Exit};
use crate::lease::Root;
use crate::locks;
use crate::report;
use crate::status;
use crate::term;

use super::job::missing_root;

pub(crate) fn run(cfg: &Config, args: &StatusArgs) -> CliResult {
    // `status` never creates the root: one that is not there is a misconfiguration to report.
    if !cfg.root.exists() {
        return Err(missing_root(cfg).into());
    }
    let root = Root::open(&cfg.root)?;
    let trust = locks::assess(root.fd(), cfg.locks_forced);
    let status = status::collect(&root, trust, args.sizes)?;
    let text = if args.json {
        term::json(&status)?
    } else {
        report::status::render(&status, term::width())
    };
    // A reader that left early (`status | head -1`) is not an error.
    term::out(&text).context("failed to write to stdout")?;
    Ok(Exit::SUCCESS)
}

//! Before any lease is taken: the wrapped command is one cargo would run, in a project when it
//! needs one.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cargo_words;
use crate::cli::Cli;
use crate::config;
use crate::workspace;

/// Before any lease is taken, the command must be one cargo would run: a typo would otherwise
/// leave a job dir that lingers for an hour.
pub(crate) fn check_command(args: &[std::ffi::OsString]) -> Result<(), clap::Error> {
    let Some(name) = args.first().map(|a| a.to_string_lossy().into_owned()) else {
        return Ok(());
    };
    let env = config::CargoEnv::read();
    let search = cargo_words::Search {
        path: env.path.as_deref(),
        cargo_home: env.cargo_home.as_deref(),
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    // The config files' `[alias]` tables and `CARGO_ALIAS_*`, as cargo merges them (`include`d
    // files and `--config` are not read: see cargo_words.rs).
    let aliases = || {
        let mut aliases = workspace::cargo_config(&cwd, env.cargo_home.as_deref()).aliases;
        aliases.extend(env.aliases.iter().cloned());
        aliases
    };
    if !cargo_words::is_known(&name, &search, aliases) {
        return Err(cargo_words::unknown(
            Cli::command(),
            &name,
            &search,
            aliases(),
        ));
    }
    Ok(())
}

/// Before any lease is taken, a cargo command that needs a project must have one (cargo's own
/// words for it), rather than take a job dir and fail in cargo.
pub(crate) fn check_project(args: &[std::ffi::OsString]) -> Result<()> {
    let Some(name) = args.first().map(|a| a.to_string_lossy().into_owned()) else {
        return Ok(());
    };
    let cwd = std::env::current_dir().context("failed to read the current directory")?;
    // `cargo build --help` works anywhere; so does a command cargo will point elsewhere.
    let mut rest = args.iter().skip(1).take_while(|a| *a != "--");
    let elsewhere = rest.any(|a| {
        let a = a.to_string_lossy();
        a == "-h" || a == "--help" || a.starts_with("--manifest-path")
    });
    let start = workspace::start_dir(args, &cwd);
    if cargo_words::needs_manifest(&name) && !elsewhere && !workspace::has_manifest(&start) {
        anyhow::bail!(
            "could not find `Cargo.toml` in `{}` or any parent directory",
            start.display()
        );
    }
    Ok(())
}

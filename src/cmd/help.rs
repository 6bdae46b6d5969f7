//! What prints without a configuration: help, version and usage errors as clap renders them,
//! cargo's own help for a command we only wrap, the man pages, the completion scripts, and the
//! action's word splitting.

use anyhow::{Context, anyhow};

use crate::completion;
use crate::config;
use crate::exit::{CliResult, Exit};
use crate::manual;
use crate::term;

/// `cargo guarded help build`: cargo's own help for a command we only wrap. cargo takes over the
/// process (its pager, its exit code); nothing of ours runs after. Returns only if it failed.
pub(crate) fn cargo_help(topic: &std::ffi::OsStr) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let cargo = config::cargo();
    let err = std::process::Command::new(&cargo)
        .arg("help")
        .arg(topic)
        .exec();
    anyhow::Error::new(err).context(format!(
        "failed to run `{} help {}`",
        cargo.to_string_lossy(),
        topic.to_string_lossy()
    ))
}

/// `man [COMMAND]`: a page on stdout; `man --out-dir DIR`: every page written there, each path
/// said.
pub(crate) fn man(page: Option<&str>, out_dir: Option<&std::path::Path>) -> CliResult {
    if let Some(dir) = out_dir {
        for path in manual::write_all(dir)? {
            term::status("Wrote", path.display());
        }
        return Ok(Exit::SUCCESS);
    }
    let text = manual::page(page)?;
    term::out(&text).context("failed to write to stdout")?;
    Ok(Exit::SUCCESS)
}

/// `completions SHELL`: the script (`completion`).
pub(crate) fn completions(shell: clap_complete::Shell) -> CliResult {
    term::out(&completion::script(shell)).context("failed to write to stdout")?;
    Ok(Exit::SUCCESS)
}

/// `__split-words LINE`: the action's `command` input as words, each ended by a NUL, split by
/// POSIX shell rules (shlex) with nothing expanded, so `'$HOME *'` stays one literal word. The
/// line itself is not repeated in the error: it may hold a line break that a CI log would read
/// as a command of its own.
pub(crate) fn split_words(line: &str) -> CliResult {
    let words = shlex::split(line).ok_or_else(|| {
        anyhow!("cannot split the command into words: a quote is not closed or a backslash ends it")
    })?;
    let text: String = words.iter().map(|w| format!("{w}\0")).collect();
    term::out(&text).context("failed to write to stdout")?;
    Ok(Exit::SUCCESS)
}

/// Help and version go to stdout with exit 0; any other parse error is printed as clap renders
/// it (its `tip:` lines and `[possible values: …]` included), exit 1 as for cargo's own (see
/// `exit::USAGE`). For `gc --hook` (`hook`) it is an error returned, which `main` turns into
/// a warning.
pub(crate) fn parse_error(e: clap::Error, hook: bool) -> CliResult {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            Ok(Exit::SUCCESS)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Err(anyhow!(
            "no command given: try `cargo guarded build`, or see `cargo guarded --help`"
        )
        .into()),
        _ if hook => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(anyhow!("{}", first.strip_prefix("error: ").unwrap_or(first)).into())
        }
        _ => {
            term::write_styled(&e.render().ansi().to_string());
            Ok(Exit::USAGE)
        }
    }
}

//! The man pages: `cargo-guarded(1)` and one page per command (`cargo-guarded-gc(1)`, …), each
//! rendered by clap_mangen from the clap definitions, so a page never drifts from `--help`. The
//! main page adds what `--help` has no room for: an ENVIRONMENT section naming every
//! `CARGO_GUARDED_*` variable and an EXIT STATUS section.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use roff::{Roff, bold, roman};

use crate::cli::Cli;
use crate::exit;

/// The section of every page.
const SECTION: &str = "1";

/// Variables read without a flag of their own, and those set for the wrapped command.
const OTHER_VARIABLES: &[(&str, &str)] = &[
    (
        "CARGO_GUARDED_LOCKS",
        "`trusted` or `untrusted`: override the self-test that decides whether file locks on \
         the root's filesystem can be trusted (for filesystems that lie about flock).",
    ),
    (
        "CARGO_GUARDED_LLVM_SEARCH_DIRS",
        "`:`-separated directories searched for llvm-profdata and llvm-cov before PATH, instead \
         of the built-in list.",
    ),
    (
        "CARGO_GUARDED_SEED_INCREMENTAL",
        "`1`: copy cargo's incremental/ dirs into a seed too (they only speed up recompiling a \
         changed workspace crate); default `0`.",
    ),
    (
        "CARGO_GUARDED_LEASE",
        "Set for the wrapped command to its lease's token; a cargo guarded run that finds it \
         runs inside that lease, in the same dir, instead of waiting for it.",
    ),
    (
        "CARGO_GUARDED_TARGET_DIR",
        "Set for the wrapped command: the job's target dir (as CARGO_TARGET_DIR).",
    ),
    (
        "CARGO_GUARDED_HOLD_PID",
        "Set by `hold` in the environment it exports: the holder's process id.",
    ),
    (
        "CARGO_GUARDED_EXPORT_ENV",
        "A file `hold` appends the job's environment to (the action points it at GITHUB_ENV).",
    ),
    (
        "_CARGO_GUARDED_RUN_TOKEN",
        "Set for the wrapped command: a per-run token by which its processes are found when \
         cgroups cannot be used.",
    ),
    (
        "CARGO_GUARDED_FAULT, CARGO_GUARDED_PAUSE, CARGO_GUARDED_CLOCK_OFFSET",
        "For the crash, race and clock tests of this project's own suite; never set them \
         otherwise. They are removed from the wrapped command's environment.",
    ),
];

/// A page's renderer, its footer naming this version.
fn man(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd).source(format!("cargo-guarded {}", env!("CARGO_PKG_VERSION")))
}

/// The command with its pages' names settled: built (so each command's page is named
/// `cargo-guarded-<command>` and its global options are there), no `help` page.
fn command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The commands that have a page of their own.
fn commands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|c| !c.is_hide_set())
}

/// The page of `name` (`None`: the main page), as roff.
pub(crate) fn page(name: Option<&str>) -> Result<String> {
    let cmd = command();
    let mut text = Vec::new();
    match name {
        None => {
            man(cmd.clone()).render(&mut text)?;
            main_sections(&cmd).to_writer(&mut text)?;
        }
        Some(name) => {
            let Some(sub) = commands(&cmd).find(|c| c.get_name() == name) else {
                let names: Vec<&str> = commands(&cmd).map(clap::Command::get_name).collect();
                bail!(
                    "no man page for `{name}`: pages are cargo-guarded(1) and one per command \
                     ({})",
                    names.join(", ")
                );
            };
            man(sub.clone()).render(&mut text)?;
            see_also().to_writer(&mut text)?;
        }
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Write every page into `dir` (`cargo-guarded.1`, `cargo-guarded-gc.1`, …): the paths written.
pub(crate) fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let cmd = command();
    let names = std::iter::once(None).chain(commands(&cmd).map(|c| Some(c.get_name())));
    let mut written = Vec::new();
    for name in names {
        let file = match name {
            None => format!("cargo-guarded.{SECTION}"),
            Some(n) => format!("cargo-guarded-{n}.{SECTION}"),
        };
        let path = dir.join(file);
        let text = page(name)?;
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("failed to write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// ENVIRONMENT (each option's variable, then the others) and EXIT STATUS.
fn main_sections(cmd: &clap::Command) -> Roff {
    let mut roff = Roff::default();
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Each option below can be set through its variable; the flag wins. An empty variable \
         counts as unset.",
    )]);
    let mut seen = Vec::new();
    for arg in all_args(cmd) {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let var = var.to_string_lossy().into_owned();
        if seen.contains(&var) || arg.is_hide_set() {
            continue;
        }
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        roff.control("TP", []);
        roff.text([bold(var.clone())]);
        roff.text([roman(format!("--{long}: {help}"))]);
        seen.push(var);
    }
    for (var, what) in OTHER_VARIABLES {
        roff.control("TP", []);
        roff.text([bold(*var)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    let codes = [
        (
            "0".to_owned(),
            "Success (gc, status, env, doctor with no error, help, --version).",
        ),
        (
            exit::ERROR.to_string(),
            "cargo guarded's own error, printed once on stderr (a missing or unusable root, an I/O \
             failure, a gc deletion that failed, a problem doctor reports), or a usage error.",
        ),
        (
            exit::TRY_LATER.to_string(),
            "Try again later (EX_TEMPFAIL): the disk is too full to start even after reclaiming, \
             or --wait ran out while another run of the same job held the lease.",
        ),
        (
            "128+N".to_owned(),
            "The wrapped command died of signal N (cargo guarded then dies of it too).",
        ),
    ];
    roff.text([roman(
        "A wrapped command's own exit status is passed through; otherwise:",
    )]);
    for (code, what) in codes {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("cargo(1)")]);
    roff
}

/// A command's page points back at the main one.
fn see_also() -> Roff {
    let mut roff = Roff::default();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "cargo-guarded(1), for the environment variables and exit status",
    )]);
    roff
}

/// Every argument of `cmd` and of its commands.
fn all_args(cmd: &clap::Command) -> Vec<&clap::Arg> {
    cmd.get_arguments()
        .chain(commands(cmd).flat_map(clap::Command::get_arguments))
        .collect()
}

//! `cargo guarded`: run cargo in a leased, job-scoped target dir, and reclaim only target dirs
//! whose lease has expired. See README.md and docs/protocol.md.

// Unsafe code only where a system interface has no safe wrapper; each such file allows it at its
// top and says why.
#![deny(unsafe_code)]

// The lease protocol and the guard rest on Linux interfaces that other kernels lack or spell
// differently; one sentence naming them beats a wall of rustix errors on another target.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "cargo-guarded supports Linux only: it needs statx mount ids (STATX_MNT_ID) and O_PATH fds, \
     renameat2 (RENAME_EXCHANGE, RENAME_NOREPLACE), /proc (self/fdinfo mount ids, self/mountinfo, \
     self/cgroup, the boot id), cgroup v2 and clone3 with CLONE_INTO_CGROUP for supervising \
     the build, PR_SET_PDEATHSIG, fstatfs magic numbers \
     and Linux flock semantics"
);

mod cargo_words;
mod cli;
mod clone;
mod cmd;
mod completion;
mod config;
mod doctor;
mod env_file;
mod exit;
mod fault;
mod fs;
mod guard;
mod job_id;
mod lease;
mod llvm;
mod locks;
mod manual;
mod precheck;
mod process;
mod prune;
mod quantity;
mod report;
mod rustc;
mod scope;
mod status;
#[cfg(feature = "store")]
mod store;
mod term;
mod tool;
mod warm;
mod workspace;

use std::process::ExitCode;

use crate::cli::{GcArgs, Mode, Parsed, StoreAction};
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use crate::report::Reporters;
use crate::report::github::GitHub;
use crate::report::json::Json;
use crate::report::terminal::Terminal;

fn main() -> ExitCode {
    let exit = match run() {
        Ok(exit) => exit,
        // The one place errors are printed.
        Err(CliError { error, exit, notes }) => {
            term::error(format_args!("{error:#}"));
            for note in notes {
                term::note(note);
            }
            exit
        }
    };
    // Every lease is released: end the way the child ended, so a shell loop around us stops on
    // Ctrl-C (only death by SIGINT, not exit 130, tells bash the user interrupted).
    if let Exit::Signal { signal, to_group } = exit {
        process::die_of(signal, to_group);
    }
    ExitCode::from(exit.code())
}

/// Parse once, resolve the configuration once, choose the reporters once, then dispatch.
fn run() -> CliResult {
    let args = cli::normalize(std::env::args_os().collect());
    // `gc --hook` never fails the job it runs before, whatever went wrong (an invalid variable,
    // a root that is no root, an unwritable one): each problem is a warning, and it exits 0.
    if cli::is_gc_hook(&args) {
        return Ok(match dispatch(args, true) {
            Ok(_) => Exit::SUCCESS,
            Err(CliError { error, .. }) => {
                term::warn(format_args!("{error:#}; gc --hook did nothing"));
                Exit::SUCCESS
            }
        });
    }
    dispatch(args, false)
}

/// [`run`] for `args`; `hook`: the command is `gc --hook`, whose usage errors are warnings.
fn dispatch(args: Vec<std::ffi::OsString>, hook: bool) -> CliResult {
    if let Some(topic) = cli::cargo_help_topic(&args) {
        return Err(cmd::help::cargo_help(topic).into());
    }
    let color_flag = term::color_flag(&args);
    let Parsed { options, mode } = match cli::parse(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            term::init(term::Verbosity::Normal, color_flag);
            return cmd::help::parse_error(e, hook);
        }
    };
    let (verbosity, _) = config::output(&options);
    term::init(verbosity, options.global.color);
    if let Mode::Wrapped(args) = &mode {
        if let Err(e) = cmd::preflight::check_command(args) {
            return cmd::help::parse_error(e, false);
        }
        cmd::preflight::check_project(args)?;
    }
    if !mode.needs_config() {
        return match mode {
            Mode::Completions(shell) => cmd::help::completions(shell),
            Mode::SplitWords(line) => cmd::help::split_words(&line),
            Mode::Man { page, out_dir } => cmd::help::man(page.as_deref(), out_dir.as_deref()),
            _ => unreachable!("needs the configuration"),
        };
    }
    let cfg = Config::resolve(&options, mode.command_args())?;
    let mut out = reporters(&cfg, &mode)?;
    match mode {
        Mode::Wrapped(args) => cmd::run::wrapped(&cfg, &tool::Tool::from_external(args), &mut out),
        Mode::Exec(command) => cmd::run::wrapped(&cfg, &tool::Tool::Exec(command), &mut out),
        Mode::Env { shell } => cmd::env::run(&cfg, shell, &mut out),
        Mode::Hold { job_only: true } => cmd::hold::job_only(&cfg),
        Mode::Hold { job_only: false } => cmd::hold::run(&cfg, &mut out),
        Mode::Status(args) => cmd::status::run(&cfg, &args),
        Mode::Gc(args) => cmd::gc::run(&cfg, &args, &mut out),
        Mode::Doctor { json } => cmd::doctor::run(&cfg, json),
        Mode::Store(StoreAction::Push, gc) if gc.given() => Err(anyhow::anyhow!(
            "--dry-run, --max-size and --grace are `store gc`'s options, not `store push`'s"
        )
        .into()),
        Mode::Store(StoreAction::Push, _) => cmd::store::push(&cfg, &mut out),
        Mode::Store(StoreAction::Gc, gc) => cmd::store::gc(&cfg, &gc),
        Mode::Completions(_) | Mode::Man { .. } | Mode::SplitWords(_) => {
            unreachable!("needs no configuration")
        }
    }
}

/// The reporters `mode` tells what happens: the terminal always, but for a command's JSON (on
/// stdout, where a program reads it); GitHub inside Actions; `--events`' file for the commands
/// that tell events.
fn reporters(cfg: &Config, mode: &Mode) -> Result<Reporters, CliError> {
    let github = GitHub::from_env(&config::var);
    let mut out = Reporters::default();
    if !matches!(mode, Mode::Gc(GcArgs { json: true, .. })) {
        out.add(Terminal {
            groups: github.is_some(),
        });
    }
    if let Some(github) = github {
        out.add(github);
    }
    // A file that cannot be opened is an error before anything is done, but for a hook, which
    // never fails the job it runs before.
    if let Some(path) = &cfg.events
        && mode.tells_events()
    {
        match Json::append(path) {
            Ok(json) => out.add(json),
            Err(e) if matches!(mode, Mode::Gc(GcArgs { hook: true, .. })) => {
                term::warn(format_args!("{e:#}; no events are written"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

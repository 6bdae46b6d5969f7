//! `cargo guarded`: run cargo in a leased, job-scoped target dir, and reclaim only target dirs
//! whose lease has expired. See README.md and docs/protocol.md.

mod cli;
mod config;
mod doctor;
mod exit_codes;
mod fault;
mod fs;
mod github;
mod guard;
mod job_id;
mod lease;
mod llvm;
mod locks;
mod precheck;
mod process;
mod prune;
mod run;
mod rustc;
mod status;
mod term;
mod units;
mod workspace;

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::Parser;

use crate::cli::{Cli, Command, GcArgs, StatusArgs};
use crate::config::Config;
use crate::lease::Root;
use crate::precheck::NoSpace;

fn main() -> ExitCode {
    let code = match run() {
        Ok(code) => code,
        // The one place errors are printed.
        Err(err) => {
            term::error(format_args!("{err:#}"));
            if err.downcast_ref::<NoSpace>().is_some() {
                return ExitCode::from(exit_codes::NO_SPACE);
            } else if let Some(process::Interrupted(sig)) = err.downcast_ref() {
                process::die_of(*sig);
                ExitCode::from(exit_codes::for_signal(*sig))
            } else {
                return ExitCode::from(exit_codes::ERROR);
            }
        }
    };
    // The lease is released: end the way the child ended, so a shell loop around us stops on
    // Ctrl-C (only death by SIGINT, not exit 130, tells bash the user interrupted).
    if let Some(sig) = process::child_signal() {
        process::die_of(sig);
    }
    code
}

fn run() -> Result<ExitCode> {
    let args = cli::normalize(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    let (verbosity, color) = config::output(&cli.global);
    term::init(verbosity, color);

    match cli.command {
        Command::External(args) => {
            let tool = run::Tool::from_external(args);
            let cfg = Config::resolve(&cli.global, tool.args())?;
            run::wrapped(&cfg, &tool)
        }
        Command::Exec { command } => {
            let tool = run::Tool::Exec(command);
            run::wrapped(&Config::resolve(&cli.global, &[])?, &tool)
        }
        Command::Env { shell } => run::env(&Config::resolve(&cli.global, &[])?, shell),
        Command::Hold => run::hold(&Config::resolve(&cli.global, &[])?),
        Command::Status(args) => status(&Config::resolve(&cli.global, &[])?, &args),
        Command::Gc(args) => gc(&Config::resolve(&cli.global, &[])?, &args),
        Command::Doctor { json } => doctor::run(&Config::resolve(&cli.global, &[])?, json),
    }
}

/// Help and version go to stdout with exit 0; any other parse error becomes one line, exit 1.
fn clap_error(e: clap::Error) -> Result<ExitCode> {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            Ok(ExitCode::SUCCESS)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Err(anyhow!(
            "no command given: try `cargo guarded build`, or see `cargo guarded --help`"
        )),
        _ => {
            let rendered = e.render().to_string();
            let mut lines = rendered.lines().skip_while(|l| l.trim().is_empty());
            let first = lines.next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            // "the following required arguments were not provided:" names them on the indented
            // lines below; keep them on the one line.
            let listed: Vec<&str> = if first.ends_with(':') {
                lines
                    .take_while(|l| l.starts_with("  "))
                    .map(str::trim)
                    .collect()
            } else {
                Vec::new()
            };
            let sep = if listed.is_empty() { "" } else { " " };
            Err(anyhow!(
                "{first}{sep}{} (see `cargo guarded --help`)",
                listed.join(", ")
            ))
        }
    }
}

fn status(cfg: &Config, args: &StatusArgs) -> Result<ExitCode> {
    // A root nobody has used yet is an empty one, not an error (and `status` never creates it).
    let status = if cfg.root.exists() {
        let root = Root::open(&cfg.root)?;
        let trust = locks::assess(&root, cfg.locks_forced);
        status::collect(&root, trust, args.sizes)?
    } else {
        status::empty(&cfg.root)?
    };
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&status)?)
    } else {
        status::render(&status)
    };
    // A reader that left early (`status | head -1`) is not an error.
    term::out(&text).context("failed to write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn gc(cfg: &Config, args: &GcArgs) -> Result<ExitCode> {
    if !cfg.root.exists() {
        term::status(format_args!(
            "root {} does not exist: nothing to reclaim",
            cfg.root.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let root = Root::open(&cfg.root)?;
    let trust = locks::assess(&root, cfg.locks_forced);
    let space = fs::Space::of(&root.path)?;
    let mut sweep = cfg.sweep(space.total, trust);
    sweep.dry_run = args.dry_run;
    sweep.all_expired = args.all_expired;
    sweep.max_time = args.max_time;
    let report = guard::sweep(&root, &sweep)?;
    if args.json {
        term::out(&format!("{}\n", serde_json::to_string_pretty(&report)?))
            .context("failed to write to stdout")?;
    } else {
        let style = if args.hook {
            guard::Style::Hook
        } else {
            guard::Style::Gc
        };
        github::print_report(cfg.github.as_ref(), &report, &root, style);
    }
    if let Some(gh) = &cfg.github {
        gh.gc_done(cfg, &root, &report);
    }
    // A hook never fails the job for disk reasons; errors were printed above.
    if report.errors.is_empty() || args.hook {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(exit_codes::ERROR))
    }
}

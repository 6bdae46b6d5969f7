//! `cargo guarded`: run cargo in a leased, job-scoped target dir, and reclaim only target dirs
//! whose lease has expired. See README.md and docs/protocol.md.

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

mod cli;
mod commands;
mod config;
mod doctor;
mod exit_codes;
mod fault;
mod fs;
mod guard;
mod job_id;
mod lease;
mod llvm;
mod locks;
mod precheck;
mod process;
mod prune;
mod report;
mod run;
mod rustc;
mod status;
mod term;
mod units;
mod workspace;

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::CommandFactory;

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
    let color_flag = term::color_flag(&args);
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            term::init(term::Verbosity::Normal, color_flag);
            return clap_error(e);
        }
    };
    let Cli {
        mut global,
        job,
        command,
    } = cli;
    job.apply(&mut global);
    let (verbosity, _) = config::output(&global);
    term::init(verbosity, global.color);

    match command {
        Command::External(args) => {
            if let Err(e) = check_command(&args) {
                return clap_error(e);
            }
            check_project(&args)?;
            let tool = run::Tool::from_external(args);
            let cfg = Config::resolve(&global, tool.args())?;
            run::wrapped(&cfg, &tool)
        }
        Command::Exec { job, command } => {
            job.apply(&mut global);
            let tool = run::Tool::Exec(command);
            run::wrapped(&Config::resolve(&global, &[])?, &tool)
        }
        Command::Env { job, shell } => {
            job.apply(&mut global);
            run::env(&Config::resolve(&global, &[])?, shell)
        }
        Command::Hold { job } => {
            job.apply(&mut global);
            run::hold(&Config::resolve(&global, &[])?)
        }
        Command::Status(args) => status(&Config::resolve(&global, &[])?, &args),
        Command::Gc(args) => gc(&Config::resolve(&global, &[])?, &args),
        Command::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cargo-guarded", &mut text);
            term::out(&String::from_utf8_lossy(&text)).context("failed to write to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut text)
                .context("failed to render the man page")?;
            term::out(&String::from_utf8_lossy(&text)).context("failed to write to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { job, json } => {
            job.apply(&mut global);
            doctor(&Config::resolve(&global, &[])?, json)
        }
    }
}

/// Help and version go to stdout with exit 0; any other parse error is printed as clap renders
/// it (its `tip:` lines and `[possible values: …]` included), exit 1 as for cargo's own.
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
            term::write_styled(&e.render().ansi().to_string());
            Ok(ExitCode::from(exit_codes::ERROR))
        }
    }
}

/// Before any lease is taken, the command must be one cargo would run: a typo would otherwise
/// leave a job dir that lingers for an hour.
fn check_command(args: &[std::ffi::OsString]) -> Result<(), clap::Error> {
    let Some(name) = args.first().map(|a| a.to_string_lossy().into_owned()) else {
        return Ok(());
    };
    let path = std::env::var_os("PATH");
    let cargo_home = commands::cargo_home();
    let search = commands::Search {
        path: path.as_deref(),
        cargo_home: cargo_home.as_deref(),
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let aliases = || workspace::cargo_config(&cwd, cargo_home.as_deref()).aliases;
    if !commands::is_known(&name, &search, aliases) {
        return Err(commands::unknown(
            Cli::command(),
            &name,
            &search,
            workspace::cargo_config(&cwd, cargo_home.as_deref()).aliases,
        ));
    }
    Ok(())
}

/// Before any lease is taken, a cargo command that needs a project must have one (cargo's own
/// words for it), rather than take a job dir and fail in cargo.
fn check_project(args: &[std::ffi::OsString]) -> Result<()> {
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
    if commands::needs_manifest(&name) && !elsewhere && !workspace::has_manifest(&start) {
        anyhow::bail!(
            "could not find `Cargo.toml` in `{}` or any parent directory",
            start.display()
        );
    }
    Ok(())
}

fn status(cfg: &Config, args: &StatusArgs) -> Result<ExitCode> {
    // A root nobody has used yet is an empty one, not an error (and `status` never creates it).
    let status = if cfg.root.exists() {
        let root = Root::open(&cfg.root)?;
        let trust = locks::assess(root.fd(), cfg.locks_forced);
        status::collect(&root, trust, args.sizes)?
    } else {
        status::empty(&cfg.root)?
    };
    let text = if args.json {
        term::json(&status)?
    } else {
        report::status::render(&status)
    };
    // A reader that left early (`status | head -1`) is not an error.
    term::out(&text).context("failed to write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn gc(cfg: &Config, args: &GcArgs) -> Result<ExitCode> {
    if !cfg.root.exists() {
        term::status(
            "Nothing",
            format_args!("to reclaim: root {} does not exist", cfg.root.display()),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let root = Root::open(&cfg.root)?;
    let trust = locks::assess(root.fd(), cfg.locks_forced);
    let space = fs::Space::of(&root.path)?;
    let mut sweep = cfg.sweep(space.base(), trust);
    sweep.dry_run = args.dry_run;
    sweep.all_expired = args.all_expired;
    sweep.max_time = args.max_time;
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
    } else {
        let style = if args.hook {
            report::sweep::Style::Hook
        } else {
            report::sweep::Style::Gc
        };
        report::sweep::show(cfg.github.as_ref(), &report, &root, style);
    }
    if let Some(gh) = &cfg.github {
        gh.gc_done(cfg.repository.as_deref(), &root, &report);
    }
    // A hook never fails the job for disk reasons; errors were printed above.
    if report.errors.is_empty() || args.hook {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(exit_codes::ERROR))
    }
}

/// Run the checks, print the report; exit 1 if any problem is an error.
fn doctor(cfg: &Config, json: bool) -> Result<ExitCode> {
    let sweep = |total| cfg.sweep(total, locks::LockTrust::Trusted);
    let report = doctor::collect(&doctor::Inputs {
        root: &cfg.root,
        locks_forced: cfg.locks_forced,
        sweep: &sweep,
        min_free: cfg.min_free,
        reclaim_below: cfg.reclaim_below,
        cargo: &cfg.cargo,
        rustc: &cfg.rustc,
        llvm: &cfg.llvm,
        ci: cfg.ci,
        ci_unrecognised: cfg.ci == Some(crate::job_id::UNRECOGNISED_CI),
        job_id: &cfg.job_id,
        job_dir: cfg.root.join(&cfg.job_name),
    });
    let text = if json {
        term::json(&report)?
    } else {
        report::doctor::render(&report)
    };
    // A reader that left early is not an error, as for `status`.
    term::out(&text).context("failed to write to stdout")?;
    Ok(if report.has_errors() {
        ExitCode::from(exit_codes::ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

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

mod cli;
mod clone;
mod commands;
mod completion;
mod config;
mod doctor;
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
mod run;
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

use anyhow::{Context, Result, anyhow};
use clap::CommandFactory;

use crate::cli::{Cli, GcArgs, Mode, Parsed, StatusArgs, StoreAction};
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use crate::lease::Root;
use crate::report::github::GitHub;
use crate::report::json::Json;
use crate::report::terminal::Terminal;
use crate::report::{Event, Reporter, Reporters};

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
        return Err(cargo_help(topic).into());
    }
    let color_flag = term::color_flag(&args);
    let Parsed { options, mode } = match cli::parse(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            term::init(term::Verbosity::Normal, color_flag);
            return clap_error(e, hook);
        }
    };
    let (verbosity, _) = config::output(&options);
    term::init(verbosity, options.color);
    if let Mode::Wrapped(args) = &mode {
        if let Err(e) = check_command(args) {
            return clap_error(e, false);
        }
        check_project(args)?;
    }
    if !mode.needs_config() {
        return match mode {
            Mode::Completions(shell) => completions(shell),
            Mode::SplitWords(line) => split_words(&line),
            Mode::Man { page, out_dir } => man(page.as_deref(), out_dir.as_deref()),
            _ => unreachable!("needs the configuration"),
        };
    }
    let cfg = Config::resolve(&options, mode.command_args())?;
    let github = GitHub::from_env(&config::var);
    // The terminal says everything but a command's JSON (on stdout, where a program reads it).
    let json = matches!(mode, Mode::Gc(GcArgs { json: true, .. }));
    let mut out = Reporters::default();
    if !json {
        out.add(Terminal {
            groups: github.is_some(),
        });
    }
    if let Some(github) = github {
        out.add(github);
    }
    // `--events`: opened only by the commands that tell events. A file that cannot be opened is
    // an error before anything is done, but for a hook, which never fails the job it runs before.
    if let Some(path) = &cfg.events
        && tells_events(&mode)
    {
        match Json::append(path) {
            Ok(json) => out.add(json),
            Err(e) if matches!(mode, Mode::Gc(GcArgs { hook: true, .. })) => {
                term::warn(format_args!("{e:#}; no events are written"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    match mode {
        Mode::Wrapped(args) => run::wrapped(&cfg, &tool::Tool::from_external(args), &mut out),
        Mode::Exec(command) => run::wrapped(&cfg, &tool::Tool::Exec(command), &mut out),
        Mode::Env { shell } => run::env(&cfg, shell, &mut out),
        Mode::Hold { job_only: true } => run::hold_job(&cfg),
        Mode::Hold { job_only: false } => run::hold(&cfg, &mut out),
        Mode::Status(args) => status(&cfg, &args),
        Mode::Gc(args) => gc(&cfg, &args, &mut out),
        Mode::Doctor { json } => doctor(&cfg, json),
        Mode::Store(StoreAction::Push) => run::store_push(&cfg, &mut out),
        Mode::Completions(_) | Mode::Man { .. } | Mode::SplitWords(_) => {
            unreachable!("needs no configuration")
        }
    }
}

/// Whether `mode` tells its reporters events: a job's life (a wrapped command, `exec`, `env`,
/// `hold`) or `gc`'s sweep.
fn tells_events(mode: &Mode) -> bool {
    match mode {
        Mode::Wrapped(_) | Mode::Exec(_) | Mode::Env { .. } | Mode::Gc(_) | Mode::Store(_) => true,
        Mode::Hold { job_only } => !job_only,
        Mode::Status(_)
        | Mode::Doctor { .. }
        | Mode::Completions(_)
        | Mode::Man { .. }
        | Mode::SplitWords(_) => false,
    }
}

/// `man [COMMAND]`: a page on stdout; `man --out-dir DIR`: every page written there, each path
/// said.
fn man(page: Option<&str>, out_dir: Option<&std::path::Path>) -> CliResult {
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

/// `__split-words LINE`: the action's `command` input as words, each ended by a NUL, split by
/// POSIX shell rules (shlex) with nothing expanded, so `'$HOME *'` stays one literal word. The
/// line itself is not repeated in the error: it may hold a line break that a CI log would read
/// as a command of its own.
fn split_words(line: &str) -> CliResult {
    let words = shlex::split(line).ok_or_else(|| {
        anyhow!("cannot split the command into words: a quote is not closed or a backslash ends it")
    })?;
    let text: String = words.iter().map(|w| format!("{w}\0")).collect();
    term::out(&text).context("failed to write to stdout")?;
    Ok(Exit::SUCCESS)
}

/// `completions SHELL`: the script (`completion`).
fn completions(shell: clap_complete::Shell) -> CliResult {
    term::out(&completion::script(shell)).context("failed to write to stdout")?;
    Ok(Exit::SUCCESS)
}

/// `cargo guarded help build`: cargo's own help for a command we only wrap. cargo takes over the
/// process (its pager, its exit code); nothing of ours runs after. Returns only if it failed.
fn cargo_help(topic: &std::ffi::OsStr) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
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

/// Help and version go to stdout with exit 0; any other parse error is printed as clap renders
/// it (its `tip:` lines and `[possible values: …]` included), exit 1 as for cargo's own (see
/// `exit::USAGE`). For `gc --hook` (`hook`) it is an error returned, which `run` turns into
/// a warning.
fn clap_error(e: clap::Error, hook: bool) -> CliResult {
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
    // The config files' `[alias]` tables and `CARGO_ALIAS_*`, as cargo merges them (`include`d
    // files and `--config` are not read: see commands.rs).
    let aliases = || {
        let mut aliases = workspace::cargo_config(&cwd, cargo_home.as_deref()).aliases;
        aliases.extend(commands::env_aliases(std::env::vars_os()));
        aliases
    };
    if !commands::is_known(&name, &search, aliases) {
        return Err(commands::unknown(Cli::command(), &name, &search, aliases()));
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

/// A root that is not there: a timer and the runners pointed at different paths would
/// otherwise never be noticed (`gc` reclaiming nothing forever, `status` showing no dirs).
fn missing_root(cfg: &Config) -> anyhow::Error {
    anyhow!(
        "root {} does not exist: no job has run under it; point --root (or CARGO_GUARDED_ROOT) \
         at the root your jobs use (`cargo guarded env` in a job prints its dir)",
        cfg.root.display()
    )
}

fn status(cfg: &Config, args: &StatusArgs) -> CliResult {
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

fn gc(cfg: &Config, args: &GcArgs, out: &mut dyn Reporter) -> CliResult {
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
        root: &root,
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

/// Run the checks, print the report; exit 1 if any problem is an error.
fn doctor(cfg: &Config, json: bool) -> CliResult {
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

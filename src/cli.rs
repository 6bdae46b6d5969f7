//! Command-line arguments, parsed into plain values. No I/O happens here: environment variables,
//! defaults and workspace facts are resolved afterwards, once, in `config.rs`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::term::ColorChoice;
use crate::units::{self, Threshold};

const AFTER_HELP: &str = "\
Commands not listed above run under the job's lease with CARGO_TARGET_DIR set to the job's dir:
  llvm-cov [ARGS]...   cargo-llvm-cov (its llvm-cov-target/ lands in the job dir)
  nextest [ARGS]...    cargo nextest
  <cargo command>      build, test, check, clippy, run, doc, bench, clean, ...

Every option can also be set through the environment variable named in its help; the flag wins.

Exit status: the wrapped command's own; 128+N when it died of signal N; 75 when the disk is too
full even after reclaiming expired job dirs; 1 for cargo-guarded's own errors.

Examples:
  cargo guarded build --release
  cargo guarded llvm-cov --lcov --output-path lcov.info
  cargo guarded --root /srv/cargo-guarded gc --hook
  eval \"$(cargo guarded env --shell)\"; cargo doc";

/// Run cargo in a leased, job-scoped target dir, and reclaim only dirs whose lease has expired.
///
/// Every job gets its own target dir under a shared root. A lease file, a kernel lock and a
/// heartbeat tell other jobs and the disk guard (`cargo guarded gc`) that the dir is in use, so a
/// guard never deletes a live build's files. Before starting, free space is checked and expired
/// dirs are reclaimed, oldest first; a new job can adopt an expired dir of the same workspace so
/// isolation does not cost a cold build.
#[derive(Debug, Parser)]
#[command(
    name = "cargo-guarded",
    bin_name = "cargo guarded",
    version,
    after_help = AFTER_HELP,
    allow_external_subcommands = true,
    subcommand_value_name = "COMMAND",
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    #[command(flatten)]
    pub(crate) job: JobArgs,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args, Default)]
pub(crate) struct GlobalArgs {
    /// Shared root that holds every job dir [env: CARGO_GUARDED_ROOT]
    /// [default: $XDG_CACHE_HOME/cargo-guarded or ~/.cache/cargo-guarded]
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) root: Option<PathBuf>,

    // The job's options are parsed into `JobArgs` (before a wrapped command, or after `exec`,
    // `env`, `hold`, `doctor`), not offered to `gc` or `status`, whose help would otherwise list
    // options that do nothing there; `JobArgs::apply` copies them here.
    #[arg(skip)]
    pub(crate) job_id: Option<String>,

    /// An active lease whose heartbeat stopped this long ago is expired [env: CARGO_GUARDED_TTL]
    /// [default: 10m]
    #[arg(long, value_name = "DURATION", value_parser = lease_duration, global = true)]
    pub(crate) ttl: Option<Duration>,

    #[arg(skip)]
    pub(crate) linger: Option<Duration>,

    /// Reclaim expired dirs when free space is below this size or share of the disk
    /// [env: CARGO_GUARDED_RECLAIM_BELOW] [default: 15%]
    #[arg(long, value_name = "SIZE|PCT", value_parser = Threshold::parse, global = true)]
    pub(crate) reclaim_below: Option<Threshold>,

    /// Once reclaiming, keep going until free space reaches this
    /// [env: CARGO_GUARDED_RECLAIM_TO] [default: --reclaim-below plus 5 points]
    #[arg(long, value_name = "SIZE|PCT", value_parser = Threshold::parse, global = true)]
    pub(crate) reclaim_to: Option<Threshold>,

    #[arg(skip)]
    pub(crate) min_free: Option<Threshold>,

    /// Expired dirs kept per workspace for warm reuse, even without disk pressure
    /// [env: CARGO_GUARDED_KEEP_EXPIRED] [default: 1]
    // A negative number is a value to reject with clap's `invalid value`, not an unknown flag.
    #[arg(long, value_name = "N", global = true, allow_negative_numbers = true)]
    pub(crate) keep_expired: Option<usize>,

    #[arg(skip)]
    pub(crate) no_adopt: bool,

    #[arg(skip)]
    pub(crate) no_prune: bool,

    #[arg(skip)]
    pub(crate) prune_after: Option<u64>,

    #[arg(skip)]
    pub(crate) max_warm_size: Option<crate::prune::WarmLimit>,

    #[arg(skip)]
    pub(crate) wait: Option<Duration>,

    /// Print only warnings and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    /// Explain each decision (environment overrides, lock trust, tools found)
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,

    /// When to use colours [default: auto; NO_COLOR is honoured]
    #[arg(long, value_name = "WHEN", global = true)]
    pub(crate) color: Option<ColorChoice>,
}

const JOB: &str = "Job options";

/// Options of the job a command runs in: given before a wrapped command (`cargo guarded --job-id
/// x build`) or after `exec`, `env`, `hold` and `doctor`; `gc` and `status` take none.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct JobArgs {
    /// Job id; steps with the same id share one dir [env: CARGO_GUARDED_JOB_ID]
    /// [default: derived from GitHub Actions, GitLab CI or Buildkite; locally, from the workspace]
    // Empty is an error, not one shared dir for every job whose id variable was unset.
    #[arg(
        long,
        value_name = "ID",
        help_heading = JOB,
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    pub(crate) job_id: Option<String>,

    /// How long a released lease stays protected so later steps of the job find their dir; `0s`
    /// expires it at release [env: CARGO_GUARDED_LINGER] [default: 1h]
    #[arg(long, value_name = "DURATION", value_parser = lease_duration, help_heading = JOB)]
    pub(crate) linger: Option<Duration>,

    /// Refuse to start (exit 75) when free space is still below this after reclaiming
    /// [env: CARGO_GUARDED_MIN_FREE] [default: 2GiB]
    #[arg(long, value_name = "SIZE|PCT", value_parser = Threshold::parse, help_heading = JOB)]
    pub(crate) min_free: Option<Threshold>,

    /// Never adopt another job's expired dir; start cold instead [env: CARGO_GUARDED_ADOPT=0]
    #[arg(long, help_heading = JOB)]
    pub(crate) no_adopt: bool,

    /// Never prune dead units from an adopted dir [env: CARGO_GUARDED_PRUNE=0]
    #[arg(long, help_heading = JOB)]
    pub(crate) no_prune: bool,

    /// At adoption, prune units no job used in this many jobs [env: CARGO_GUARDED_PRUNE_AFTER]
    /// [default: 3]
    #[arg(
        long,
        value_name = "K",
        help_heading = JOB,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) prune_after: Option<u64>,

    /// Do not adopt warm a dir larger than this (a size, a multiple like `3x` of its largest size
    /// over its first --prune-after jobs, or `off`); it is emptied and the job builds fresh
    /// [env: CARGO_GUARDED_MAX_WARM_SIZE] [default: 3x]
    #[arg(
        long,
        value_name = "SIZE|Nx",
        help_heading = JOB,
        value_parser = crate::prune::WarmLimit::parse
    )]
    pub(crate) max_warm_size: Option<crate::prune::WarmLimit>,

    /// Give up waiting for a lease held by another run of the same job after this long
    /// [env: CARGO_GUARDED_WAIT] [default: wait as long as it takes, like cargo's own lock]
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration, help_heading = JOB)]
    pub(crate) wait: Option<Duration>,
}

impl JobArgs {
    /// Copy into `g` what was given; `self` wins over what `g` already holds.
    pub(crate) fn apply(self, g: &mut GlobalArgs) {
        g.job_id = self.job_id.or(g.job_id.take());
        g.linger = self.linger.or(g.linger);
        g.min_free = self.min_free.or(g.min_free);
        g.no_adopt |= self.no_adopt;
        g.wait = self.wait.or(g.wait);
        g.no_prune |= self.no_prune;
        g.prune_after = self.prune_after.or(g.prune_after);
        g.max_warm_size = self.max_warm_size.or(g.max_warm_size);
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print the job's environment (CARGO_TARGET_DIR=...), one per line, for scripts
    Env {
        #[command(flatten)]
        job: JobArgs,
        /// Print `export NAME='value'` lines instead, for `eval "$(cargo guarded env --shell)"`
        #[arg(long)]
        shell: bool,
    },
    /// Show the root's free space and every job dir with its lease state
    Status(StatusArgs),
    /// Reclaim job dirs whose lease has expired (the disk guard)
    Gc(GcArgs),
    /// Run any program under the job's lease and environment: `exec -- PROGRAM [ARGS]...`
    Exec {
        #[command(flatten)]
        job: JobArgs,
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PROGRAM"
        )]
        command: Vec<OsString>,
    },
    /// Hold the job's lease (heartbeat included) until this process is stopped
    Hold {
        #[command(flatten)]
        job: JobArgs,
    },
    /// Check the root, disk, locks, toolchain and coverage tools; print each problem with its fix
    /// (exit 1 if one would make wrapped commands fail)
    Doctor {
        #[command(flatten)]
        job: JobArgs,
        /// Print the report as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `cargo guarded completions bash > /etc/bash_completion.d/cargo-guarded`
    Completions {
        /// The shell to complete in
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `cargo guarded man | man -l -`
    Man,
    /// A cargo command, `llvm-cov` or `nextest`, run with the job's target dir
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

#[derive(Debug, Args, Default, Clone)]
pub(crate) struct StatusArgs {
    /// Print JSON on stdout
    #[arg(long)]
    pub(crate) json: bool,
    /// Measure each job dir's size now (walks every dir)
    #[arg(long)]
    pub(crate) sizes: bool,
}

#[derive(Debug, Args, Default, Clone)]
pub(crate) struct GcArgs {
    /// Report what would be removed, remove nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub(crate) json: bool,
    /// Reclaim every expired dir, whatever the free space
    #[arg(long)]
    pub(crate) all_expired: bool,
    /// Runner-hook mode: compact log lines, never fail the job for disk reasons
    #[arg(long)]
    pub(crate) hook: bool,
    /// Start no new deletion after this long
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub(crate) max_time: Option<Duration>,
}

/// `cargo guarded build` reaches us as `cargo-guarded guarded build`; a direct
/// `cargo-guarded build` works too. Drop the word cargo inserts.
/// `--ttl` and `--linger`: at most `lease::MAX_LEASE_DURATION` (10 years; see there why).
pub(crate) fn lease_duration(s: &str) -> Result<Duration, String> {
    units::parse_duration_at_most(s, crate::lease::MAX_LEASE_DURATION)
}

pub(crate) fn normalize(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.get(1).is_some_and(|a| a == "guarded") {
        args.remove(1);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = normalize(args.iter().map(OsString::from).collect());
        Cli::try_parse_from(args)
    }

    #[test]
    fn cargo_style_invocation_is_accepted() {
        let cli = parse(&["cargo-guarded", "guarded", "build", "--release"]).unwrap();
        match cli.command {
            Command::External(a) => assert_eq!(a, ["build", "--release"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn args_after_the_command_pass_through_untouched() {
        let cli = parse(&["cargo-guarded", "-v", "test", "-v", "--", "--exact", "x"]).unwrap();
        assert!(cli.global.verbose);
        match cli.command {
            Command::External(a) => assert_eq!(a, ["test", "-v", "--", "--exact", "x"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn exec_takes_everything_after_double_dash() {
        let cli = parse(&["cargo-guarded", "exec", "--", "sh", "-c", "exit 7"]).unwrap();
        match cli.command {
            Command::Exec { command, .. } => assert_eq!(command, ["sh", "-c", "exit 7"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn global_options_after_gc() {
        let cli = parse(&[
            "cargo-guarded",
            "gc",
            "--dry-run",
            "--reclaim-below",
            "100%",
        ])
        .unwrap();
        assert_eq!(cli.global.reclaim_below, Some(Threshold::Percent(100.0)));
        assert!(matches!(
            cli.command,
            Command::Gc(GcArgs { dry_run: true, .. })
        ));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse(&["cargo-guarded", "--ttl", "soon", "build"]).is_err());
        assert!(parse(&["cargo-guarded", "--min-free", "lots", "build"]).is_err());
        assert!(parse(&["cargo-guarded", "--frobnicate", "build"]).is_err());
    }
}

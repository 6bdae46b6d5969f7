//! Command-line arguments, parsed into plain values. Each option is defined once, in the struct of
//! its kind (`GlobalArgs`, `JobArgs`, `EventsArg`), attached to the commands that take it; its
//! variable is named there (`env =`, so `--help` names it) and read after parsing, in one place
//! (`Options::read`): flag, then variable. No other I/O happens here: other variables, computed
//! defaults and workspace facts are resolved afterwards, once, in `config.rs`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::Resettable;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::prune::{self, WarmLimitArg};
use crate::quantity::{self, DurationArg, SizeArg, Threshold, ThresholdArg};
use crate::term::ColorChoice;
use crate::{guard, lease, precheck};

const AFTER_HELP: &str = "\
Commands not listed above run under the job's lease with CARGO_TARGET_DIR set to the job's dir:
  llvm-cov [ARGS]...   cargo-llvm-cov (its llvm-cov-target/ lands in the job dir)
  nextest [ARGS]...    cargo nextest
  <cargo command>      build, test, check, clippy, run, doc, bench, clean, ...

Every option can also be set through the environment variable named in its help; the flag wins.
Sizes take a unit: `2GiB` (or `2Gi`) is 2 x 1024^3 bytes, `2GB` (or `2G`) is 2 x 1000^3; case
does not matter; sizes cannot be negative.

Exit status: the wrapped command's own; 128+N when it died of signal N; 75 (try again later)
when the disk is too full even after reclaiming expired job dirs or --wait ran out; 1 for
cargo-guarded's own errors and usage errors.

Examples:
  cargo guarded build --release
  cargo guarded llvm-cov --lcov --output-path lcov.info
  cargo guarded --root /srv/cargo-guarded gc --hook
  cargo guarded exec -- ./ci.sh   (a script's plain cargo runs stay under the lease)";

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
    options: Takes<GlobalArgs>,

    #[command(flatten)]
    job: Takes<JobArgs>,

    #[command(flatten)]
    events: Takes<EventsArg>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The options every command takes, given before the command or after it (`global`), under their
/// own heading in each command's `--help`.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Shared root that holds every job dir
    /// [default: $XDG_CACHE_HOME/cargo-guarded or ~/.cache/cargo-guarded]
    #[arg(
        long,
        value_name = "DIR",
        global = true, help_heading = GLOBAL,
        env = "CARGO_GUARDED_ROOT",
        hide_env_values = true
    )]
    pub(crate) root: Option<PathBuf>,

    #[arg(long, value_name = "DURATION", value_parser = ttl, global = true, help_heading = GLOBAL,
          env = "CARGO_GUARDED_TTL", hide_env_values = true, allow_hyphen_values = true,
          help = with_default(
              "An active lease whose heartbeat stopped this long ago is expired (at least 1s)",
              DurationArg(lease::DEFAULT_TTL),
          ))]
    pub(crate) ttl: Option<Duration>,

    #[arg(long, value_name = "SIZE|PCT", value_parser = Threshold::parse, global = true, help_heading = GLOBAL,
          env = "CARGO_GUARDED_RECLAIM_BELOW", hide_env_values = true, allow_hyphen_values = true,
          help = with_default(
              "Reclaim expired dirs when free space is below this size or share of the disk, as \
               df counts it (15% is df's 85% used)",
              ThresholdArg(guard::DEFAULT_RECLAIM_BELOW),
          ))]
    pub(crate) reclaim_below: Option<Threshold>,

    #[arg(long, value_name = "SIZE|PCT", value_parser = Threshold::parse, global = true, help_heading = GLOBAL,
          env = "CARGO_GUARDED_RECLAIM_TO", hide_env_values = true, allow_hyphen_values = true,
          help = with_default(
              "Once reclaiming, keep going until free space reaches this",
              format_args!("--reclaim-below plus {} points", guard::DEFAULT_RECLAIM_TO_POINTS),
          ))]
    pub(crate) reclaim_to: Option<Threshold>,

    /// Reclaim expired dirs, oldest first, until the root holds at most this, whatever the free
    /// space (for a root given a fixed share of a large disk; live and lingering dirs are never
    /// touched) [default: no cap]
    #[arg(long, value_name = "SIZE", value_parser = root_size, global = true, help_heading = GLOBAL,
          env = "CARGO_GUARDED_MAX_ROOT_SIZE", hide_env_values = true, allow_hyphen_values = true)]
    pub(crate) max_root_size: Option<u64>,

    // A negative number is a value to reject with clap's `invalid value`, not an unknown flag.
    #[arg(long, value_name = "N", global = true, help_heading = GLOBAL, allow_negative_numbers = true,
          value_parser = whole_number, env = "CARGO_GUARDED_KEEP_EXPIRED", hide_env_values = true,
          help = with_default(
              "Expired dirs kept per workspace for warm reuse, even without disk pressure",
              guard::DEFAULT_KEEP_EXPIRED,
          ))]
    pub(crate) keep_expired: Option<usize>,

    /// Print only warnings and errors
    #[arg(short, long, global = true, help_heading = GLOBAL, conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    /// Explain each decision (environment overrides, lock trust, tools found)
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub(crate) verbose: bool,

    /// When to use colours [default: auto; NO_COLOR is honoured]
    #[arg(long, value_name = "WHEN", global = true, help_heading = GLOBAL)]
    pub(crate) color: Option<ColorChoice>,
}

const JOB: &str = "Job options";

/// `--events`, offered where events are told: before a wrapped command and after `env`, `exec`,
/// `hold` and `gc` (not `status` or `doctor`, which tell none).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct EventsArg {
    /// Append each event of the job's life (and of `gc`) to this file as one line of JSON, for CI
    /// tooling to read as it happens (stdout stays the wrapped command's)
    #[arg(long, value_name = "PATH", help_heading = GLOBAL,
          env = "CARGO_GUARDED_EVENTS", hide_env_values = true)]
    pub(crate) events: Option<PathBuf>,
}

/// The job options `doctor` reads: whose dir it checks (`--job-id`) and the free space a job
/// needs (`--min-free`). The others change nothing it checks, so they are not offered there.
/// Like [`Takes`], it holds no value: `Options::read` reads them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DoctorJobArgs;

impl DoctorJobArgs {
    const IDS: [&str; 2] = ["job_id", "min_free"];
}

impl Args for DoctorJobArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        JobArgs::augment_args(clap::Command::new("job"))
            .get_arguments()
            .filter(|a| Self::IDS.contains(&a.get_id().as_str()))
            .cloned()
            .fold(cmd, clap::Command::arg)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for DoctorJobArgs {
    fn from_arg_matches(_: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(DoctorJobArgs)
    }

    fn update_from_arg_matches(&mut self, _: &clap::ArgMatches) -> Result<(), clap::Error> {
        Ok(())
    }
}

/// Attaches a set of options (`GlobalArgs`, `JobArgs`, `EventsArg`) to a command, for its
/// `--help` and its parsing, without holding their values: `Options::read` reads those once,
/// for the command given (its flag, else the top level's, else its variable).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Takes<T>(std::marker::PhantomData<T>);

impl<T> Default for Takes<T> {
    fn default() -> Self {
        Takes(std::marker::PhantomData)
    }
}

impl<T: Args> Args for Takes<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        T::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        T::augment_args_for_update(cmd)
    }
}

impl<T> FromArgMatches for Takes<T> {
    fn from_arg_matches(_: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(Takes::default())
    }

    fn update_from_arg_matches(&mut self, _: &clap::ArgMatches) -> Result<(), clap::Error> {
        Ok(())
    }
}

/// The options every command takes, under their own heading in each command's `--help`, apart
/// from the command's own (`gc --dry-run`).
const GLOBAL: &str = "Global options";

/// Options of the job a command runs in: given before a wrapped command (`cargo guarded --job-id
/// x build`) or after `exec`, `env` and `hold`; `doctor` takes `--job-id` and `--min-free`
/// (`DoctorJobArgs`), `gc` and `status` none.
#[derive(Debug, Args, Clone)]
pub(crate) struct JobArgs {
    /// Job id; steps with the same id share one dir
    /// [default: derived from GitHub Actions, GitLab CI or Buildkite; locally, from the workspace]
    // Empty is an error, not one shared dir for every job whose id variable was unset (an empty
    // variable counts as unset: see `command`).
    #[arg(
        long,
        value_name = "ID",
        help_heading = JOB,
        value_parser = clap::builder::NonEmptyStringValueParser::new(),
        env = "CARGO_GUARDED_JOB_ID",
        hide_env_values = true
    )]
    pub(crate) job_id: Option<String>,

    #[arg(long, value_name = "DURATION", value_parser = lease_duration, help_heading = JOB,
          env = "CARGO_GUARDED_LINGER", hide_env_values = true, allow_hyphen_values = true,
          help = with_default(
              "How long a released lease stays protected so later steps of the job find their \
               dir; `0s` expires it at release",
              DurationArg(lease::DEFAULT_LINGER),
          ))]
    pub(crate) linger: Option<Duration>,

    #[arg(long, value_name = "SIZE|PCT", value_parser = Threshold::parse, help_heading = JOB,
          env = "CARGO_GUARDED_MIN_FREE", hide_env_values = true, allow_hyphen_values = true,
          help = with_default(
              "Refuse to start (exit 75) when free space is still below this after reclaiming",
              ThresholdArg(precheck::DEFAULT_MIN_FREE),
          ))]
    pub(crate) min_free: Option<Threshold>,

    /// Never adopt another job's expired dir; start cold instead (the variable: `0` not to adopt)
    // The flag stores `false`; the variable says `1`/`0` (or true/false, yes/no, on/off) whether
    // to adopt, so the field is the positive one.
    #[arg(long = "no-adopt", action = ArgAction::SetFalse, value_parser = switch,
          help_heading = JOB, env = "CARGO_GUARDED_ADOPT", hide_env_values = true)]
    pub(crate) adopt: bool,

    /// Never prune dead units from an adopted dir (the variable: `0` not to prune)
    #[arg(long = "no-prune", action = ArgAction::SetFalse, value_parser = switch,
          help_heading = JOB, env = "CARGO_GUARDED_PRUNE", hide_env_values = true)]
    pub(crate) prune: bool,

    #[arg(
        long,
        value_name = "K",
        help_heading = JOB,
        value_parser = jobs,
        env = "CARGO_GUARDED_PRUNE_AFTER",
        hide_env_values = true,
        help = with_default(
            "At adoption, prune units no job used in this many jobs",
            prune::DEFAULT_AFTER,
        )
    )]
    pub(crate) prune_after: Option<u64>,

    #[arg(
        long,
        value_name = "SIZE|Nx",
        help_heading = JOB,
        value_parser = prune::WarmLimit::parse,
        env = "CARGO_GUARDED_MAX_WARM_SIZE",
        hide_env_values = true,
        help = with_default(
            "Do not adopt warm a dir still larger than this once pruned (a size, a multiple like \
             `3x` of its largest size over its first --prune-after jobs, or `off`); it is emptied \
             and the job builds fresh",
            WarmLimitArg(prune::DEFAULT_MAX_WARM),
        )
    )]
    pub(crate) max_warm_size: Option<prune::WarmLimit>,

    /// Never seed a new job's dir from a copy of a finished dir of its workspace when there is
    /// none to adopt; start cold instead (the variable: `0` not to seed)
    #[arg(long = "no-seed", action = ArgAction::SetFalse, value_parser = switch,
          help_heading = JOB, env = "CARGO_GUARDED_SEED", hide_env_values = true)]
    pub(crate) seed: bool,

    #[arg(long, value_name = "SIZE", value_parser = seed_size, help_heading = JOB,
          env = "CARGO_GUARDED_SEED_MAX_SIZE", hide_env_values = true, allow_hyphen_values = true,
          help = with_default(
              "Build fresh instead of seeding from a finished dir larger than this; a reflink \
               clone counts its full size too",
              SizeArg(lease::DEFAULT_SEED_MAX_SIZE),
          ))]
    pub(crate) seed_max_size: Option<u64>,

    /// Copy cargo's incremental/ dirs into a seed too (they only speed up recompiling a changed
    /// workspace crate)
    #[arg(long, hide = true, value_parser = switch, default_value = "0",
          env = "CARGO_GUARDED_SEED_INCREMENTAL", hide_env_values = true)]
    pub(crate) seed_incremental: bool,

    #[arg(
        long,
        value_name = "FACTOR",
        help_heading = JOB,
        value_parser = prune::WarmBudget::parse,
        env = "CARGO_GUARDED_WARM_BUDGET",
        hide_env_values = true,
        help = with_default(
            "Keep a warm dir within this multiple of its working set (what the last job of each \
             recent command used): above it, units no recent job used go, least recently used \
             first, at each release and adoption; what the last job used always stays (`off`: \
             the K rule alone)",
            prune::DEFAULT_BUDGET,
        )
    )]
    pub(crate) warm_budget: Option<prune::WarmBudget>,

    /// At a warm start from a dir built elsewhere, give the checkout's files whose content the
    /// dir's units were verified against the mtimes they had when those units were built, so
    /// cargo sees them as fresh on a fresh clone; a developer's files are not touched unless
    /// asked [default: on under CI, off elsewhere] (the variable: `1` or `0`)
    #[arg(long, value_name = "BOOL", value_parser = switch, num_args = 0..=1, require_equals = true,
          default_missing_value = "1", help_heading = JOB,
          env = "CARGO_GUARDED_RESTORE_MTIMES", hide_env_values = true)]
    pub(crate) restore_mtimes: Option<bool>,

    /// Give up waiting for a lease held by another run of the same job after this long
    /// [default: wait as long as it takes, like cargo's own lock]
    #[arg(long, value_name = "DURATION", value_parser = quantity::parse_duration, help_heading = JOB,
          env = "CARGO_GUARDED_WAIT", hide_env_values = true)]
    pub(crate) wait: Option<Duration>,

    #[arg(long, value_name = "FROM", help_heading = JOB,
          env = "CARGO_GUARDED_WARM_FROM", hide_env_values = true,
          help = with_default(
              "Which finished dirs a new job may adopt or seed from: `scope`, those that only jobs \
               of its own ref, its pull request's base branch or the default branch wrote; `any`, \
               any of its workspace, whatever ref or pull request wrote it (warned once per job)",
              "scope",
          ))]
    pub(crate) warm_from: Option<WarmFrom>,

    /// The repository's default branch, for CIs that do not tell it (GitHub Actions without an
    /// event payload); unknown, a job warms only from dirs of its own ref
    /// [default: from the CI]
    #[arg(
        long,
        value_name = "NAME",
        help_heading = JOB,
        value_parser = clap::builder::NonEmptyStringValueParser::new(),
        env = "CARGO_GUARDED_DEFAULT_BRANCH",
        hide_env_values = true
    )]
    pub(crate) default_branch: Option<String>,

    /// An object store that warms a job with nothing local to adopt or seed (a fresh host), and
    /// that `cargo guarded store push` fills: `s3://BUCKET[/PREFIX]` (credentials, AWS_REGION
    /// and AWS_ENDPOINT_URL as AWS's tools read them) or `fs:///PATH`; unreachable or slow, the
    /// job builds cold with a warning. Needs a build with the `store` feature [default: none]
    #[arg(
        long,
        value_name = "URL",
        help_heading = JOB,
        value_parser = clap::builder::NonEmptyStringValueParser::new(),
        env = "CARGO_GUARDED_STORE",
        hide_env_values = true
    )]
    pub(crate) store: Option<String>,

    /// At release, after a command that succeeded, push the job's dir to `--store` (as `cargo
    /// guarded store push` would): the job's time pays for the upload; a push that fails is a
    /// warning [default: off] (the variable: `1` or `0`)
    #[arg(long, value_name = "BOOL", value_parser = switch, num_args = 0..=1, require_equals = true,
          default_missing_value = "1", help_heading = JOB,
          env = "CARGO_GUARDED_STORE_PUSH", hide_env_values = true)]
    pub(crate) store_push: Option<bool>,

    #[arg(long, value_name = "DURATION", value_parser = quantity::parse_duration, help_heading = JOB,
          env = "CARGO_GUARDED_STORE_TIMEOUT", hide_env_values = true,
          help = with_default(
              "Give up restoring from `--store` after this long: what was laid out is removed and \
               the job builds cold, with a warning",
              DurationArg(DEFAULT_STORE_TIMEOUT),
          ))]
    pub(crate) store_timeout: Option<Duration>,
}

/// `store ACTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreAction {
    /// Upload the job's dir: each file the store lacks, by its content digest, then a manifest
    Push,
    /// Keep the store under --max-size: least recently used manifests first, then the objects no
    /// manifest names (those younger than --grace are kept: a push may be about to name them)
    Gc,
}

/// `store gc`'s own options.
#[derive(Debug, Args, Default, Clone, PartialEq)]
pub(crate) struct StoreGcArgs {
    /// (store gc) Report what would be removed, remove nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// (store gc) Remove least recently used manifests (a pull records its use) until the store
    /// holds at most this, e.g. `500GiB` [default: no cap: only objects no manifest names]
    #[arg(long, value_name = "SIZE", value_parser = store_size)]
    pub(crate) max_size: Option<u64>,
    #[arg(long, value_name = "DURATION", value_parser = quantity::parse_duration,
          help = with_default(
              "(store gc) Keep an object no manifest names while it is younger than this: a \
               push writes its objects first and its manifest last",
              DurationArg(DEFAULT_STORE_GC_GRACE),
          ))]
    pub(crate) grace: Option<Duration>,
}

impl StoreGcArgs {
    /// Whether any of them was given (they mean nothing to `store push`).
    pub(crate) fn given(&self) -> bool {
        *self != StoreGcArgs::default()
    }
}

/// `--warm-from`: whether the scope rule decides which dirs a new job may start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum WarmFrom {
    /// Dirs that only jobs of its own ref, its base branch or the default branch wrote
    Scope,
    /// Any dir of the workspace, whatever wrote it
    Any,
}

impl std::fmt::Display for WarmFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WarmFrom::Scope => "scope",
            WarmFrom::Any => "any",
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print where the job's dir is (CARGO_TARGET_DIR=...), one variable per line
    ///
    /// The lease is released when `env` exits: what runs afterwards is protected for `--linger`
    /// only. To keep the dir protected for a whole script, run it with
    /// `cargo guarded exec -- SCRIPT` (or `exec -- "$SHELL"`).
    Env {
        #[command(flatten)]
        job: Takes<JobArgs>,
        #[command(flatten)]
        events: Takes<EventsArg>,
        /// Print `export NAME=VALUE` lines instead, quoted for a POSIX shell, for `eval "$(cargo
        /// guarded env --shell)"`
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
        job: Takes<JobArgs>,
        #[command(flatten)]
        events: Takes<EventsArg>,
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PROGRAM"
        )]
        /// The program to run and its arguments, after `--` (`exec -- make check`); it gets the
        /// job's environment (CARGO_TARGET_DIR, ...) and runs under the lease
        command: Vec<OsString>,
    },
    /// Hold the job's lease (heartbeat included) until this process is stopped
    Hold {
        #[command(flatten)]
        job: Takes<JobArgs>,
        #[command(flatten)]
        events: Takes<EventsArg>,
        /// Hold only the job lock of the job's existing dir, not its lease: each step's dir then
        /// lingers only until this process ends (stopped by the CI's end-of-job cleanup), not
        /// for the whole --linger
        #[arg(long)]
        job_only: bool,
    },
    /// Check the root, disk, locks, toolchain and coverage tools; print each problem with its fix
    /// (exit 1 if one would make wrapped commands fail)
    Doctor {
        #[command(flatten)]
        job: DoctorJobArgs,
        /// Print the report as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Push the job's dir (its finished steps' units) to the object store `--store` names, for
    /// jobs on fresh hosts to start warm from: e.g. a workflow's last step; or keep the store
    /// under a size cap (gc)
    Store {
        #[command(flatten)]
        job: Takes<JobArgs>,
        /// What to do with the store
        #[arg(value_enum)]
        action: StoreAction,
        #[command(flatten)]
        gc: StoreGcArgs,
    },
    /// Print a shell completion script: `cargo guarded completions bash > ~/.local/share/bash-completion/completions/cargo-guarded`
    Completions {
        /// The shell to complete in
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `cargo guarded man | man -l -`; `man gc` for a command's
    Man {
        /// The command whose page to print [default: the main page, cargo-guarded(1)]
        #[arg(value_name = "COMMAND")]
        page: Option<String>,
        /// Write every page into this directory (cargo-guarded.1, cargo-guarded-gc.1, ...)
        /// instead, e.g. /usr/local/share/man/man1
        #[arg(long, value_name = "DIR", conflicts_with = "page")]
        out_dir: Option<PathBuf>,
    },
    /// Split LINE into words as a POSIX shell would, quotes and backslashes honoured, nothing
    /// expanded; print each word followed by a NUL (the action's `command` input)
    #[command(name = "__split-words", hide = true)]
    SplitWords {
        #[arg(allow_hyphen_values = true)]
        line: String,
    },
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
    /// Empty this root of every expired dir, whatever the free space, warm ones included (the
    /// next job of each workspace builds cold). Scheduled sweeps run plain `gc`, which keeps the
    /// newest expired dir of each workspace (--keep-expired) and reclaims it only under pressure
    #[arg(long)]
    pub(crate) all_expired: bool,
    /// Runner-hook mode: one line per removal and one summary line; always exits 0 (a problem
    /// is a warning), so the job goes on
    #[arg(long)]
    pub(crate) hook: bool,
    /// Start no new deletion after this long
    #[arg(long, value_name = "DURATION", value_parser = quantity::parse_duration)]
    pub(crate) max_time: Option<Duration>,
    #[command(flatten)]
    events: Takes<EventsArg>,
    /// Reclaim only this workspace's dirs, every expired and every lingering one (a clean
    /// slate, or a deleted project); live ones are reported and never touched. A path to the
    /// workspace, or its key as `status` shows it
    #[arg(long, value_name = "PATH|KEY")]
    pub(crate) workspace: Option<OsString>,
}

/// How long `store gc` keeps an object no manifest names: longer than a push takes from its
/// first object to its manifest.
pub(crate) const DEFAULT_STORE_GC_GRACE: Duration = Duration::from_secs(3600);

/// How long a job waits for a restore from `--store` before it builds cold.
pub(crate) const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(60);

/// An option's help, then its default as clap would print a `default_value`'s. The options stay
/// `Option`s, not `default_value`s: one not given must stay distinguishable, as the job's options
/// given after a command, the top level's and their variables are read in turn (`layered`), and
/// `Config::resolve` applies the same const where none was given.
fn with_default(help: &str, default: impl std::fmt::Display) -> String {
    format!("{help} [default: {default}]")
}

/// `--max-root-size`.
fn root_size(s: &str) -> Result<u64, String> {
    quantity::parse_size(s, "`200GiB`, `500MB`")
}

/// `--ttl` and `--linger`: at most `lease::MAX_LEASE_DURATION` (10 years; see there why).
pub(crate) fn lease_duration(s: &str) -> Result<Duration, String> {
    quantity::parse_duration_at_most(s, crate::lease::MAX_LEASE_DURATION)
}

/// `--ttl`: a lease duration the heartbeat can keep, at least `lease::MIN_TTL`.
fn ttl(s: &str) -> Result<Duration, String> {
    let d = lease_duration(s)?;
    if d < lease::MIN_TTL {
        return Err(format!(
            "a TTL of `{s}` is below the floor of {}: the heartbeat renews a lease every TTL/5, \
             at most every 100ms, so a live job's dir would expire under it",
            DurationArg(lease::MIN_TTL)
        ));
    }
    Ok(d)
}

/// `--keep-expired`.
/// `store gc --max-size`.
fn store_size(s: &str) -> Result<u64, String> {
    quantity::parse_size(s, "`500GiB` or `800MB`")
}

/// A size with its unit (`--seed-max-size`).
fn seed_size(s: &str) -> Result<u64, String> {
    quantity::parse_size(s, "`16GiB` or `500MB`")
}

fn whole_number(s: &str) -> Result<usize, String> {
    s.parse()
        .map_err(|_| format!("expected a whole number, got `{s}`"))
}

/// `--prune-after`.
fn jobs(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(k) if k >= 1 => Ok(k),
        _ => Err(format!(
            "expected a whole number of jobs (at least 1), got `{s}`"
        )),
    }
}

/// `--no-adopt`/`--no-prune` store `false`; their variables say whether to do it. A typo must
/// not silently leave the feature on.
fn switch(s: &str) -> Result<bool, String> {
    match s {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected `1` or `0`, got `{other}`")),
    }
}

/// What `cargo guarded` was asked to do, parsed once: the options, each read from wherever it
/// was given, and the command with only its own arguments. `Config::resolve` turns the options
/// into the configuration (ripgrep's `LowArgs` → `HiArgs`).
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) options: Options,
    pub(crate) mode: Mode,
}

/// The options, each from its flag (typed after the subcommand, else before it), else its
/// variable; what is still unset (`None`) takes its default in `Config::resolve`. The wrapped
/// cargo's `-q`/`-v` are ours too unless ours were given.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) global: GlobalArgs,
    pub(crate) job: JobArgs,
    /// `--events`.
    pub(crate) events: Option<PathBuf>,
}

/// The command, with only its own arguments.
#[derive(Debug)]
pub(crate) enum Mode {
    /// A cargo command, `llvm-cov` or `nextest`: its words.
    Wrapped(Vec<OsString>),
    /// `exec -- PROGRAM ARGS`
    Exec(Vec<OsString>),
    Env {
        shell: bool,
    },
    Hold {
        job_only: bool,
    },
    Status(StatusArgs),
    Gc(GcArgs),
    Doctor {
        json: bool,
    },
    Store(StoreAction, StoreGcArgs),
    Completions(clap_complete::Shell),
    Man {
        page: Option<String>,
        out_dir: Option<PathBuf>,
    },
    /// `__split-words LINE`
    SplitWords(String),
}

impl Mode {
    /// Whether the command needs the configuration (the root, the job, the workspace): every one
    /// but printing completions or the man page and splitting words, which must work anywhere.
    pub(crate) fn needs_config(&self) -> bool {
        !matches!(
            self,
            Mode::Completions(_) | Mode::Man { .. } | Mode::SplitWords(_)
        )
    }

    /// Whether the command tells its reporters events: a job's life (a wrapped command, `exec`,
    /// `env`, `hold`, `store push`) or `gc`'s sweep.
    pub(crate) fn tells_events(&self) -> bool {
        match self {
            Mode::Wrapped(_) | Mode::Exec(_) | Mode::Env { .. } | Mode::Gc(_) | Mode::Store(..) => {
                true
            }
            Mode::Hold { job_only } => !job_only,
            Mode::Status(_)
            | Mode::Doctor { .. }
            | Mode::Completions(_)
            | Mode::Man { .. }
            | Mode::SplitWords(_) => false,
        }
    }

    /// The arguments that may say where the workspace is (`--manifest-path`).
    pub(crate) fn command_args(&self) -> &[OsString] {
        match self {
            Mode::Wrapped(args) => args,
            _ => &[],
        }
    }
}

impl Mode {
    /// The command clap parsed, with only its own arguments.
    fn of(command: Command) -> Mode {
        match command {
            Command::External(args) => Mode::Wrapped(args),
            Command::Exec { command, .. } => Mode::Exec(command),
            Command::Env { shell, .. } => Mode::Env { shell },
            Command::Hold { job_only, .. } => Mode::Hold { job_only },
            Command::Doctor { json, .. } => Mode::Doctor { json },
            Command::Store { action, gc, .. } => Mode::Store(action, gc),
            Command::Status(args) => Mode::Status(args),
            Command::Gc(args) => Mode::Gc(args),
            Command::Completions { shell } => Mode::Completions(shell),
            Command::Man { page, out_dir } => Mode::Man { page, out_dir },
            Command::SplitWords { line } => Mode::SplitWords(line),
        }
    }
}

/// The command line parsed (no variable read), then the options read (`Options::read`): an
/// error on the command line comes before one in a variable, a flag wins over its variable
/// whatever the variable holds, and `man` and `completions` read none.
pub(crate) fn parse(args: Vec<OsString>) -> Result<Parsed, clap::Error> {
    let mut cmd = without_variables(Cli::command());
    let matches = match cmd.try_get_matches_from_mut(&args) {
        Ok(matches) => matches,
        // Help names each option's variable: rendered by the command that knows them. Clap
        // tells help before it reads any variable, so none can stand in its way.
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            return Err(Cli::command()
                .try_get_matches_from(&args)
                .err()
                .unwrap_or(e));
        }
        Err(e) => return Err(e),
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    let mode = Mode::of(cli.command);
    let mut options = Options::read(&matches, mode.needs_config())?;
    // `cargo guarded build -q`: cargo's own -q/-v set ours too, unless ours were given.
    if let Mode::Wrapped(args) = &mode {
        let g = &mut options.global;
        if !g.quiet && !g.verbose {
            (g.quiet, g.verbose) = wrapped_verbosity(args);
            g.verbose &= !g.quiet;
        }
    }
    Ok(Parsed { options, mode })
}

/// `cmd` with no option reading its variable: the command line alone.
fn without_variables(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| a.env(Resettable::Reset))
        .mut_subcommands(without_variables)
}

impl Options {
    /// Every option, read in this one place: its flag as typed after the subcommand, else before
    /// it, else its variable. `variables`: false for the commands that read no option (`man`,
    /// `completions`), which an invalid variable must not stop.
    fn read(matches: &clap::ArgMatches, variables: bool) -> Result<Options, clap::Error> {
        let sub = matches.subcommand().map(|(_, sub)| sub);
        let levels: Vec<&clap::ArgMatches> = sub.into_iter().chain([matches]).collect();
        let global = layered::<GlobalArgs>(&levels, variables)?;
        let job = layered::<JobArgs>(&levels, variables)?;
        let events = layered::<EventsArg>(&levels, variables)?.events;
        Ok(Options {
            global,
            job,
            events,
        })
    }
}

/// `T`'s options, each from the first of `levels` where it was typed, else from its variable
/// (an empty one counts as unset, as a CI template that passes an empty input through means
/// "the default"), else clap's default. The words typed are given to `T`'s arguments once more,
/// with the variables of the options not typed, so that clap checks and converts both alike, and
/// an error can only be a variable's.
fn layered<T: Args + FromArgMatches>(
    levels: &[&clap::ArgMatches],
    variables: bool,
) -> Result<T, clap::Error> {
    let mut words = vec![OsString::from("cargo-guarded")];
    let mut cmd = T::augment_args(clap::Command::new("cargo-guarded")).mut_args(|a| {
        let id = a.get_id().as_str();
        // An id a level does not know (`doctor` takes two job options) was not typed there.
        let typed = levels.iter().find_map(|m| {
            let raw = m.try_get_raw(id).ok().flatten()?;
            (m.value_source(id) == Some(ValueSource::CommandLine)).then_some(raw)
        });
        let long = format!("--{}", a.get_long().unwrap_or(id));
        let is_typed = typed.is_some();
        if let Some(raw) = typed {
            if a.get_action().takes_values() {
                for value in raw {
                    let mut word = OsString::from(format!("{long}="));
                    word.push(value);
                    words.push(word);
                }
            } else {
                words.push(long.into());
            }
        }
        let empty = a
            .get_env()
            .and_then(std::env::var_os)
            .is_some_and(|v| v.is_empty());
        if is_typed || empty || !variables {
            a.env(Resettable::Reset)
        } else {
            a
        }
    });
    let matches = cmd
        .try_get_matches_from_mut(&words)
        .map_err(|e| from_environment(&e, &cmd).unwrap_or(e))?;
    T::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// When `e` is about an invalid value that an option's variable holds: the error naming the
/// variable and what is wrong with the value. Then clap's own message would name the flag, which
/// the user may never have typed, and its usage lines would not help.
fn from_environment(e: &clap::Error, cmd: &clap::Command) -> Option<clap::Error> {
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    // `--ttl <DURATION>` names the flag.
    let flag = arg.split([' ', '=']).next().unwrap_or_default();
    let name = all_args(cmd)
        .filter(|a| a.get_long().is_some_and(|l| flag == format!("--{l}")))
        .find_map(|a| a.get_env())
        .filter(|var| std::env::var_os(var).is_some_and(|v| v.to_string_lossy() == *value))?;
    let why = match std::error::Error::source(e) {
        Some(source) => source.to_string(),
        None => format!("invalid value `{value}`"),
    };
    let line = format!("{}: {why}\n", name.to_string_lossy());
    Some(clap::Error::raw(e.kind(), line))
}

/// Every argument of `cmd` and of its subcommands.
fn all_args(cmd: &clap::Command) -> Box<dyn Iterator<Item = &clap::Arg> + '_> {
    Box::new(
        cmd.get_arguments()
            .chain(cmd.get_subcommands().flat_map(all_args)),
    )
}

/// `-q`/`--quiet` and `-v`/`-vv`/`--verbose` given to the wrapped cargo command (before its
/// `--`): `(quiet, verbose)`. A user who quiets cargo expects our lines quiet too.
pub(crate) fn wrapped_verbosity(args: &[OsString]) -> (bool, bool) {
    let (mut quiet, mut verbose) = (false, false);
    for a in args.iter().skip(1).take_while(|a| *a != "--") {
        let Some(a) = a.to_str() else { continue };
        match a {
            "--quiet" => quiet = true,
            "--verbose" => verbose = true,
            // A cluster of short flags (`-q`, `-vv`, `-qv`); nothing else, so a value that
            // happens to start with `-` is not taken for one.
            _ if a.len() > 1
                && a.starts_with('-')
                && a[1..].chars().all(|c| c == 'q' || c == 'v') =>
            {
                quiet |= a.contains('q');
                verbose |= a.contains('v');
            }
            _ => {}
        }
    }
    (quiet, verbose)
}

/// `help WORD` where WORD is none of our commands (`help build`, `help nextest`): the topic to
/// ask cargo about (`cargo help build`), since every other word is a command we hand to cargo.
/// Our own commands (`help gc`) and `help` alone stay with clap.
pub(crate) fn cargo_help_topic(args: &[OsString]) -> Option<&OsString> {
    match args {
        [_, help, topic, ..] if help == "help" => {
            let name = topic.to_str()?;
            let ours = name == "help" || Cli::command().find_subcommand(name).is_some();
            (!ours && !name.starts_with('-')).then_some(topic)
        }
        _ => None,
    }
}

/// Whether `args` ask for `gc --hook`: the `gc` command with `--hook` after it. Decided on the
/// words alone, before parsing, so that a parse error (an invalid variable) is a hook's warning
/// too.
pub(crate) fn is_gc_hook(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .position(|a| a == "gc")
        .is_some_and(|gc| {
            args[gc + 2..]
                .iter()
                .take_while(|a| *a != "--")
                .any(|a| a == "--hook")
        })
}

/// `cargo guarded build` reaches us as `cargo-guarded guarded build`; a direct
/// `cargo-guarded build` works too. Drop the word cargo inserts.
pub(crate) fn normalize(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.get(1).is_some_and(|a| a == "guarded") {
        args.remove(1);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--job-id`'s help lists by hand the CI systems `job_id` derives ids from: it must name
    /// every one of them.
    #[test]
    fn job_id_help_names_every_ci_system() {
        let cmd = Cli::command();
        let build = cmd.find_subcommand("exec").expect("exec exists");
        let arg = build
            .get_arguments()
            .find(|a| a.get_id() == "job_id")
            .expect("exec takes --job-id");
        let help = arg.get_help().expect("--job-id has help").to_string();
        for name in crate::job_id::ci_names() {
            assert!(help.contains(name), "--job-id's help lacks {name}: {help}");
        }
    }

    #[test]
    fn gc_hook_is_told_from_the_words() {
        let words = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(is_gc_hook(&words(&["cargo-guarded", "gc", "--hook"])));
        assert!(is_gc_hook(&words(&[
            "cargo-guarded",
            "--ttl",
            "x",
            "gc",
            "--dry-run",
            "--hook"
        ])));
        assert!(!is_gc_hook(&words(&["cargo-guarded", "gc"])));
        assert!(!is_gc_hook(&words(&["cargo-guarded", "--hook", "gc"])));
        assert!(!is_gc_hook(&words(&[
            "cargo-guarded",
            "exec",
            "--",
            "gc",
            "--hook"
        ])));
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = normalize(args.iter().map(OsString::from).collect());
        Cli::try_parse_from(args)
    }

    fn parsed(args: &[&str]) -> Result<Parsed, clap::Error> {
        super::parse(normalize(args.iter().map(OsString::from).collect()))
    }

    /// Each default `--help` states is its const's, spelled so that typing it gives the const
    /// back. (tests/testsuite/documented_defaults.rs keeps the README and action.yml equal to `--help`.)
    #[test]
    fn help_states_each_default_from_its_const() {
        let cmd = Cli::command();
        let check = |long: &str, default: String, given: &dyn Fn(&Options) -> bool| {
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(long));
            let help = arg.and_then(|a| a.get_help()).expect(long).to_string();
            assert!(
                help.ends_with(&format!("[default: {default}]")),
                "--{long}: {help}"
            );
            let flag = format!("--{long}");
            let p = parsed(&["cargo-guarded", &flag, &default, "build"]).expect(long);
            assert!(given(&p.options), "--{long} {default} is not the default");
        };
        let ttl = DurationArg(lease::DEFAULT_TTL).to_string();
        check("ttl", ttl, &|c| c.global.ttl == Some(lease::DEFAULT_TTL));
        let below = ThresholdArg(guard::DEFAULT_RECLAIM_BELOW).to_string();
        check("reclaim-below", below, &|c| {
            c.global.reclaim_below == Some(guard::DEFAULT_RECLAIM_BELOW)
        });
        let keep = guard::DEFAULT_KEEP_EXPIRED;
        check("keep-expired", keep.to_string(), &|c| {
            c.global.keep_expired == Some(keep)
        });
        let linger = DurationArg(lease::DEFAULT_LINGER).to_string();
        check("linger", linger, &|c| {
            c.job.linger == Some(lease::DEFAULT_LINGER)
        });
        let min_free = ThresholdArg(precheck::DEFAULT_MIN_FREE).to_string();
        check("min-free", min_free, &|c| {
            c.job.min_free == Some(precheck::DEFAULT_MIN_FREE)
        });
        let after = prune::DEFAULT_AFTER;
        check("prune-after", after.to_string(), &|c| {
            c.job.prune_after == Some(after)
        });
        let max_warm = WarmLimitArg(prune::DEFAULT_MAX_WARM).to_string();
        check("max-warm-size", max_warm, &|c| {
            c.job.max_warm_size == Some(prune::DEFAULT_MAX_WARM)
        });
        let seed = SizeArg(lease::DEFAULT_SEED_MAX_SIZE).to_string();
        check("seed-max-size", seed, &|c| {
            c.job.seed_max_size == Some(lease::DEFAULT_SEED_MAX_SIZE)
        });
        let budget = prune::DEFAULT_BUDGET;
        check("warm-budget", budget.to_string(), &|c| {
            c.job.warm_budget == Some(prune::WarmBudget(Some(budget)))
        });
        check("warm-from", WarmFrom::Scope.to_string(), &|c| {
            c.job.warm_from == Some(WarmFrom::Scope)
        });
    }

    #[test]
    fn quiet_and_verbose_of_the_wrapped_command_are_found() {
        let of = |args: &[&str]| {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            wrapped_verbosity(&args)
        };
        assert_eq!(of(&["build", "-q"]), (true, false));
        assert_eq!(of(&["build", "--quiet", "--release"]), (true, false));
        assert_eq!(of(&["test", "-vv"]), (false, true));
        assert_eq!(of(&["check", "--verbose"]), (false, true));
        assert_eq!(of(&["test", "--", "-q"]), (false, false));
        assert_eq!(of(&["run", "-p", "-quux"]), (false, false));
        assert_eq!(of(&["-q"]), (false, false), "the command word itself");
    }

    #[test]
    fn help_for_a_cargo_command_is_cargo_s() {
        let topic = |args: &[&str]| {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            cargo_help_topic(&args).cloned()
        };
        assert_eq!(topic(&["cg", "help", "build"]), Some("build".into()));
        assert_eq!(topic(&["cg", "help", "nextest"]), Some("nextest".into()));
        assert_eq!(topic(&["cg", "help", "gc"]), None);
        assert_eq!(topic(&["cg", "help", "help"]), None);
        assert_eq!(topic(&["cg", "help"]), None);
        assert_eq!(topic(&["cg", "build", "help"]), None);
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
        let args = ["cargo-guarded", "-v", "test", "-v", "--", "--exact", "x"];
        assert!(parsed(&args).unwrap().options.global.verbose);
        let cli = parse(&args).unwrap();
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
        let p = parsed(&[
            "cargo-guarded",
            "gc",
            "--dry-run",
            "--reclaim-below",
            "100%",
        ])
        .unwrap();
        assert_eq!(
            p.options.global.reclaim_below,
            Some(Threshold::Percent(100.0))
        );
        assert!(matches!(p.mode, Mode::Gc(GcArgs { dry_run: true, .. })));
    }

    #[test]
    fn switches_take_the_usual_spellings_and_nothing_else() {
        for on in ["1", "true", "yes", "on"] {
            assert_eq!(switch(on), Ok(true));
        }
        for off in ["0", "false", "no", "off"] {
            assert_eq!(switch(off), Ok(false));
        }
        assert!(switch("maybe").unwrap_err().contains("`maybe`"));
    }

    #[test]
    fn options_are_read_once() {
        let parsed = |args: &[&str]| parsed(args).unwrap();
        let p = parsed(&[
            "cargo-guarded",
            "--wait",
            "1m",
            "exec",
            "--wait",
            "5s",
            "--",
            "x",
        ]);
        assert_eq!(
            p.options.job.wait,
            Some(Duration::from_secs(5)),
            "the subcommand's wins"
        );
        assert!(matches!(p.mode, Mode::Exec(ref c) if c == &["x"]));
        let p = parsed(&["cargo-guarded", "--no-adopt", "env", "--no-seed"]);
        assert!(!p.options.job.adopt && !p.options.job.seed, "both apply");
        let p = parsed(&["cargo-guarded", "build", "-q"]);
        assert!(
            p.options.global.quiet && !p.options.global.verbose,
            "cargo's -q is ours"
        );
        let p = parsed(&["cargo-guarded", "-v", "build", "-q"]);
        assert!(
            !p.options.global.quiet && p.options.global.verbose,
            "ours was given"
        );
        assert!(matches!(p.mode, Mode::Wrapped(ref a) if a == &["build", "-q"]));
        // `--events` before the command, after it, or both: the subcommand's wins.
        let p = parsed(&["cargo-guarded", "--events", "a", "gc", "--events", "b"]);
        assert_eq!(p.options.events, Some(PathBuf::from("b")));
        let p = parsed(&["cargo-guarded", "--events", "a", "exec", "--", "x"]);
        assert_eq!(p.options.events, Some(PathBuf::from("a")));
        assert!(parse(&["cargo-guarded", "status", "--events", "a"]).is_err());
        // doctor takes the job options it reads, and only those.
        let p = parsed(&[
            "cargo-guarded",
            "doctor",
            "--job-id",
            "d",
            "--min-free",
            "1GiB",
        ]);
        assert_eq!(p.options.job.job_id.as_deref(), Some("d"));
        assert!(p.options.job.min_free.is_some() && p.options.job.adopt && p.options.job.seed);
        assert!(parse(&["cargo-guarded", "doctor", "--warm-budget", "2"]).is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse(&["cargo-guarded", "--ttl", "soon", "build"]).is_err());
        assert!(parse(&["cargo-guarded", "--min-free", "lots", "build"]).is_err());
        assert!(parse(&["cargo-guarded", "--frobnicate", "build"]).is_err());
    }
}

//! Everything resolved once from the arguments, the environment and the workspace. Code below
//! `main` takes `&Config` and never reads the environment itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cargo_words;
use crate::cli::{Options, WarmFrom};
use crate::guard;
use crate::job_id;
use crate::lease::{self, Owner};
use crate::llvm;
use crate::precheck;
use crate::quantity::{DurationArg, Threshold};
use crate::scope::{self, JobScope};
use crate::term::{self, ColorChoice, Verbosity};
use crate::workspace;

#[derive(Debug)]
pub(crate) struct Config {
    /// The shared root holding every job dir.
    pub(crate) root: PathBuf,
    /// The job id as given or derived; recorded in the lease.
    pub(crate) job_id: String,
    /// The job dir's name under the root: the job id sanitized into one path component.
    pub(crate) job_name: String,
    /// An active lease whose heartbeat stopped this long ago is expired.
    pub(crate) ttl: Duration,
    /// How long a released lease stays protected.
    pub(crate) linger: Duration,
    /// The guard's thresholds, retention and cap.
    pub(crate) guard: guard::Policy,
    /// Refuse to start below this.
    pub(crate) min_free: Threshold,
    /// Whether a new job may adopt an expired dir of its workspace.
    pub(crate) adopt: bool,
    /// Whether a new job with nothing to adopt may start from a copy of a finished dir.
    pub(crate) seed: bool,
    /// Seeds larger than this are not taken; the job builds fresh.
    pub(crate) seed_max_size: u64,
    /// Copy cargo's `incremental/` dirs into a seed (off: they only speed up a changed crate).
    pub(crate) seed_incremental: bool,
    /// Give verified checkout files their recorded mtimes at a warm start from elsewhere
    /// (`--restore-mtimes`; by default under CI only).
    pub(crate) restore_mtimes: bool,
    /// `--store`: the object store a fresh job is warmed from and `store push` fills.
    pub(crate) store: Option<String>,
    /// `--store-push`: push the job's dir to the store at a successful release.
    pub(crate) store_push: bool,
    /// `--store-timeout`: a restore taking longer is given up.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) store_timeout: Duration,
    /// `CARGO_HOME` (else `~/.cargo`): registry units' fingerprints hash paths under it, so a
    /// store's manifest records it.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) cargo_home: Option<PathBuf>,
    /// Pruning of adopted dirs (`prune.rs`).
    pub(crate) prune: crate::prune::Settings,
    /// How long to wait for another run of the same job; `None` is "as long as it takes".
    pub(crate) wait: Option<Duration>,
    /// This process, as its lease will name it.
    pub(crate) owner: Owner,
    /// The workspace the wrapped command builds (or the current dir outside a Rust project).
    pub(crate) workspace_root: PathBuf,
    /// The CI's repository (host and full path, `workspace::ci_repository`), part of the
    /// warm-reuse key.
    pub(crate) repository: Option<String>,
    /// `CARGO_GUARDED_LOCKS=trusted|untrusted`: overrides the lock self-test.
    pub(crate) locks_forced: Option<bool>,
    /// The cargo that invoked us (`$CARGO`), else `cargo` on PATH.
    pub(crate) cargo: OsString,
    /// `$RUSTC`, else `rustc` on PATH.
    pub(crate) rustc: PathBuf,
    /// What rustup would pick a toolchain by when `rustc` is its proxy (`RUSTUP_TOOLCHAIN`,
    /// `RUSTUP_HOME`): part of the toolchain cache's key.
    pub(crate) rustup: workspace::Rustup,
    /// An inherited `CARGO_TARGET_DIR`, which the job's dir overrides.
    pub(crate) inherited_target_dir: Option<OsString>,
    /// A separate build dir is configured (env or cargo config): scope it to the job too.
    pub(crate) build_dir_configured: bool,
    /// A user-set `CARGO_LLVM_COV_TARGET_DIR`, made job-scoped.
    pub(crate) llvm_cov_target_dir: Option<OsString>,
    /// Where cargo-llvm-cov's LLVM tools are looked for (`LLVM_COV`, `LLVM_PROFDATA`,
    /// `CARGO_GUARDED_LLVM_SEARCH_DIRS`, `PATH`); only read for `llvm-cov` and `doctor`.
    pub(crate) llvm: llvm::Search,
    /// The CI system detected from its variables, for `doctor`.
    pub(crate) ci: Option<&'static str>,
    /// `CARGO_GUARDED_LEASE`: the lease a parent `cargo guarded` (or the action's `hold`) holds
    /// for this job, so a nested run works inside it instead of waiting for it forever.
    pub(crate) parent_lease: Option<String>,
    /// `CARGO_GUARDED_EXPORT_ENV` (set by the action for `hold`): the `GITHUB_ENV` file to write
    /// the job's environment to once the lease is held.
    pub(crate) export_env: Option<PathBuf>,
    /// Said before a lease is taken: the CI's job id variables were not UTF-8
    /// (`job_id::unreadable_vars`).
    pub(crate) job_id_warning: Option<String>,
    /// `--events`: the file each event is appended to as a line of JSON (`report::json`).
    pub(crate) events: Option<PathBuf>,
    /// The job's trust scope and the default branch, from the CI (docs/protocol.md#scopes).
    pub(crate) scope: JobScope,
    /// `--warm-from any`: the scope rule is off.
    pub(crate) warm_from_any: bool,
}

/// An environment variable; empty counts as unset.
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn var_os(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The cargo that invoked us (`$CARGO`), else `cargo` on PATH.
pub(crate) fn cargo() -> OsString {
    var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// What the checks before a wrapped run read of the environment (`cmd::preflight`), before
/// the configuration is resolved: where cargo finds a third-party command, and the aliases its
/// variables define.
#[derive(Debug)]
pub(crate) struct CargoEnv {
    /// `PATH`, which cargo searches for `cargo-<word>`.
    pub(crate) path: Option<OsString>,
    /// `$CARGO_HOME`, or cargo's default `~/.cargo`.
    pub(crate) cargo_home: Option<PathBuf>,
    /// The aliases of `CARGO_ALIAS_<NAME>` variables (cargo's environment spelling of
    /// `alias.<name>`).
    pub(crate) aliases: Vec<String>,
}

impl CargoEnv {
    pub(crate) fn read() -> CargoEnv {
        CargoEnv {
            path: std::env::var_os("PATH"),
            cargo_home: var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo"))),
            aliases: cargo_words::env_aliases(std::env::vars_os()),
        }
    }
}

/// Output settings, which must be known before anything else can be said.
pub(crate) fn output(g: &Options) -> (Verbosity, ColorChoice) {
    let verbosity = match (g.global.quiet, g.global.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    (verbosity, g.global.color.unwrap_or(ColorChoice::Auto))
}

impl Config {
    /// `g` holds the options, from their flags or variables (`cli::Options::read`); what is still
    /// unset takes its default here, and the rest comes from the environment and the workspace.
    /// `command_args` are the wrapped command's arguments (for `--manifest-path`).
    // Long: one line per field of `Config`, each resolved once here (flag, variable, default).
    pub(crate) fn resolve(g: &Options, command_args: &[OsString]) -> Result<Config> {
        let cwd = std::env::current_dir().context("failed to read the current directory")?;
        let root = match &g.global.root {
            Some(r) => cwd.join(r),
            None => default_root()?,
        };
        check_root_path(&root)?;
        let workspace_root = workspace::find_root(&workspace::start_dir(command_args, &cwd));
        check_root_outside(g.global.root.as_deref(), &root, &workspace_root)?;
        let (job_id, job_id_warning) = match &g.job.job_id {
            Some(id) => (id.clone(), None),
            None => {
                let id = job_id::derive(&var, &workspace_root);
                let not_utf8 =
                    |name: &str| std::env::var_os(name).is_some_and(|v| v.to_str().is_none());
                let warning = job_id::unreadable_vars(&var, &not_utf8, &id);
                (id, warning)
            }
        };
        let cargo_home = var_os("CARGO_HOME").map(PathBuf::from);
        let ttl = g.global.ttl.unwrap_or(lease::DEFAULT_TTL);
        warn_long_leases(g);
        Ok(Config {
            job_name: job_id::sanitize(&job_id),
            job_id,
            ttl,
            linger: g.job.linger.unwrap_or(lease::DEFAULT_LINGER),
            guard: guard::Policy {
                reclaim_below: g
                    .global
                    .reclaim_below
                    .unwrap_or(guard::DEFAULT_RECLAIM_BELOW),
                reclaim_to: g.global.reclaim_to,
                keep_expired: g.global.keep_expired.unwrap_or(guard::DEFAULT_KEEP_EXPIRED),
                max_root_size: g.global.max_root_size,
                unfinished_age: guard::unfinished_age(ttl),
            },
            min_free: g.job.min_free.unwrap_or(precheck::DEFAULT_MIN_FREE),
            adopt: g.job.adopt,
            seed: g.job.seed,
            seed_max_size: g.job.seed_max_size.unwrap_or(lease::DEFAULT_SEED_MAX_SIZE),
            seed_incremental: g.job.seed_incremental,
            restore_mtimes: g
                .job
                .restore_mtimes
                .unwrap_or(job_id::ci_name(&var).is_some()),
            store: g.job.store.clone(),
            store_push: g.job.store_push.unwrap_or(false),
            store_timeout: g
                .job
                .store_timeout
                .unwrap_or(crate::cli::DEFAULT_STORE_TIMEOUT),
            cargo_home: cargo_home
                .clone()
                .or_else(|| var_os("HOME").map(|h| Path::new(&h).join(".cargo"))),
            prune: crate::prune::Settings {
                enabled: g.job.prune,
                after: g.job.prune_after.unwrap_or(crate::prune::DEFAULT_AFTER),
                max_warm: g
                    .job
                    .max_warm_size
                    .unwrap_or(crate::prune::DEFAULT_MAX_WARM),
                budget: g
                    .job
                    .warm_budget
                    .map_or(Some(crate::prune::DEFAULT_BUDGET), |b| b.0),
            },
            wait: g.job.wait,
            owner: Owner::this_process(var("RUNNER_NAME")),
            build_dir_configured: var_os("CARGO_BUILD_BUILD_DIR").is_some()
                || workspace::build_dir_configured(&cwd, cargo_home.as_deref()),
            workspace_root,
            repository: workspace::ci_repository(&var),
            locks_forced: locks_forced()?,
            cargo: cargo(),
            rustc: var_os("RUSTC").map_or_else(|| PathBuf::from("rustc"), PathBuf::from),
            rustup: workspace::Rustup {
                toolchain: var_os("RUSTUP_TOOLCHAIN"),
                home: var_os("RUSTUP_HOME")
                    .map(PathBuf::from)
                    .or_else(|| var_os("HOME").map(|h| Path::new(&h).join(".rustup"))),
            },
            inherited_target_dir: var_os("CARGO_TARGET_DIR"),
            llvm_cov_target_dir: var_os("CARGO_LLVM_COV_TARGET_DIR"),
            llvm: llvm::Search {
                llvm_cov: var_os("LLVM_COV").map(PathBuf::from),
                llvm_profdata: var_os("LLVM_PROFDATA").map(PathBuf::from),
                dirs: var_os("CARGO_GUARDED_LLVM_SEARCH_DIRS")
                    .map(|d| std::env::split_paths(&d).collect()),
                path: var_os("PATH"),
            },
            ci: job_id::ci_name(&var),
            parent_lease: var("CARGO_GUARDED_LEASE"),
            export_env: var_os("CARGO_GUARDED_EXPORT_ENV").map(PathBuf::from),
            job_id_warning,
            events: g.events.as_ref().map(|p| cwd.join(p)),
            scope: scope::detect(&var, &github_event, g.job.default_branch.as_deref()),
            warm_from_any: g.job.warm_from == Some(WarmFrom::Any),
            root,
        })
    }
}

/// GitHub's event payloads are at most 25 MB; a larger file is not one.
const MAX_EVENT_BYTES: u64 = 25 * 1024 * 1024;

/// GitHub's event payload (`$GITHUB_EVENT_PATH`), read for the default branch and the pull
/// request it is for; missing, too large or unreadable, it says nothing.
fn github_event() -> scope::Event {
    use std::io::Read;
    let Some(path) = var_os(scope::GITHUB_EVENT_PATH) else {
        return scope::Event::default();
    };
    let mut bytes = Vec::new();
    match std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_EVENT_BYTES + 1).read_to_end(&mut bytes))
    {
        Ok(n) if n as u64 <= MAX_EVENT_BYTES => scope::Event::parse(&bytes),
        _ => {
            term::verbose(
                "Note",
                format_args!(
                    "cannot read the event payload {}: the default branch is unknown unless \
                     --default-branch names it",
                    Path::new(&path).display()
                ),
            );
            scope::Event::default()
        }
    }
}

/// A `--ttl` or `--linger` beyond [`lease::SANE_LEASE_CEILING`] is accepted (up to
/// `MAX_LEASE_DURATION`), with a warning: it keeps dirs from the guard for that long.
fn warn_long_leases(g: &Options) {
    let ceiling = DurationArg(lease::SANE_LEASE_CEILING);
    let long = |d: Option<Duration>| {
        d.filter(|d| *d > lease::SANE_LEASE_CEILING)
            .map(DurationArg)
    };
    if let Some(ttl) = long(g.global.ttl) {
        term::warn(format_args!(
            "--ttl (CARGO_GUARDED_TTL) of {ttl} is beyond {ceiling}: a dir whose job died stays \
             out of the guard's reach that long"
        ));
    }
    if let Some(linger) = long(g.job.linger) {
        term::warn(format_args!(
            "--linger (CARGO_GUARDED_LINGER) of {linger} is beyond {ceiling}: a released dir \
             stays out of the guard's reach that long (warm reuse needs no linger: \
             --keep-expired keeps expired dirs)"
        ));
    }
}

/// `CARGO_GUARDED_LOCKS=trusted|untrusted` overrides the lock self-test (no flag: it is for
/// the rare machine whose filesystem lies about locks, set once in its environment).
fn locks_forced() -> Result<Option<bool>> {
    match var("CARGO_GUARDED_LOCKS").as_deref() {
        None => Ok(None),
        Some("trusted") => Ok(Some(true)),
        Some("untrusted") => Ok(Some(false)),
        Some(other) => {
            bail!("CARGO_GUARDED_LOCKS: expected `trusted` or `untrusted`, got `{other}`")
        }
    }
}

/// The longest path a job hands its child is `<root>/<job>/llvm-cov-target` (`cmd::job::dir_env`).
const LONGEST_JOB_SUBDIR: &str = "llvm-cov-target";
/// Linux's `PATH_MAX` is 4096 bytes with the terminating NUL: no path a child is given may be
/// longer than this.
const PATH_MAX_BYTES: usize = 4095;

/// Refuse, for every command, a root whose path a child could not use:
/// - not UTF-8: the variables a child gets (`CARGO_TARGET_DIR`, `GITHUB_ENV` records, the nested
///   run's `CARGO_GUARDED_LEASE`) and the JSON outputs would carry U+FFFD in place of the byte and
///   name another path (a later plain `cargo build` then builds outside the root, unguarded);
/// - so long that `<root>/<job>/llvm-cov-target`, with the longest job dir name, would exceed
///   `PATH_MAX`: cargo would fail later, with the lease already taken.
fn check_root_path(root: &Path) -> Result<()> {
    let bytes = root.as_os_str().as_encoded_bytes();
    if root.to_str().is_none() {
        bail!(
            "the root {} is not valid UTF-8: cargo-guarded hands the root's path to cargo and \
             scripts as text, which cannot name it; choose a root whose path is UTF-8 (--root or \
             CARGO_GUARDED_ROOT)",
            term::escape_bytes(bytes)
        );
    }
    let limit = PATH_MAX_BYTES - job_id::MAX_NAME_LEN - LONGEST_JOB_SUBDIR.len() - 2;
    if bytes.len() > limit {
        let start: String = root.to_string_lossy().chars().take(48).collect();
        bail!(
            "the root {}… is {} bytes long, over the limit of {limit}: a job's dirs under it \
             (`<root>/<job>/{LONGEST_JOB_SUBDIR}`, with job dir names of up to {} bytes) would \
             exceed Linux's {PATH_MAX_BYTES}-byte limit on a path (PATH_MAX), and cargo would \
             fail; choose a shorter root (--root or CARGO_GUARDED_ROOT)",
            term::escape(&start),
            bytes.len(),
            job_id::MAX_NAME_LEN
        );
    }
    Ok(())
}

/// Refuse a relative root that lands inside the workspace (`--root .cache/cg` run from the
/// project): the leases' heartbeats then change files under the package, and a build script
/// without `rerun-if-changed` (cargo then watches the whole package) reruns on every job.
/// `given`: the root as typed (`--root` or its variable), if it was.
fn check_root_outside(given: Option<&Path>, root: &Path, workspace_root: &Path) -> Result<()> {
    let Some(given) = given.filter(|r| r.is_relative()) else {
        return Ok(());
    };
    let root = lexical(root);
    if workspace::has_manifest(workspace_root) && root.starts_with(workspace_root) {
        bail!(
            "the root {} (relative: {}) lies inside the workspace {}: its lease files change \
             while cargo builds, and build scripts without rerun-if-changed would rerun on every \
             job; give a root outside the workspace, e.g. an absolute path (--root or \
             CARGO_GUARDED_ROOT)",
            root.display(),
            given.display(),
            workspace_root.display()
        );
    }
    Ok(())
}

/// `path` with `.` and `..` resolved by name (no symlinks followed: the root may not exist yet).
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn default_root() -> Result<PathBuf> {
    if let Some(cache) = var_os("XDG_CACHE_HOME") {
        return Ok(Path::new(&cache).join("cargo-guarded"));
    }
    match var_os("HOME") {
        Some(home) => Ok(Path::new(&home).join(".cache").join("cargo-guarded")),
        None => bail!(
            "no default root: neither XDG_CACHE_HOME nor HOME is set; pass --root or set CARGO_GUARDED_ROOT"
        ),
    }
}

//! `cargo guarded doctor`: what cargo-guarded would find and do on this machine — the root and
//! its filesystem, lock trust, free space against the thresholds, the toolchain, the coverage
//! and test tools, the LLVM tools cargo-llvm-cov would get, the CI and the job id — with every
//! problem and its fix. Reads only: a root that does not exist yet is reported, not created.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::fs::Space;
use crate::guard;
use crate::lease::{self, Root};
use crate::llvm::{self, Missing, Source};
use crate::locks::{self, LockTrust};
use crate::quantity::{Bytes, Threshold};
use crate::rustc::Rustc;
use crate::scope::{Kind, Scope};

/// What `doctor` checks, from the configuration.
pub(crate) struct Inputs<'a> {
    pub(crate) root: &'a Path,
    /// `CARGO_GUARDED_LOCKS`, if set.
    pub(crate) locks_forced: Option<bool>,
    /// The guard's settings.
    pub(crate) guard: &'a guard::Policy,
    pub(crate) min_free: Threshold,
    pub(crate) cargo: &'a OsStr,
    pub(crate) rustc: &'a Path,
    pub(crate) llvm: &'a llvm::Search,
    /// `GitHub Actions`, `GitLab CI`, `Buildkite`, …; `None` locally.
    pub(crate) ci: Option<&'static str>,
    /// `CI` is set, but by no CI whose job ids cargo-guarded can derive.
    pub(crate) ci_unrecognised: bool,
    pub(crate) job_id: &'a str,
    pub(crate) job_dir: PathBuf,
    /// `--store`, with what is pushed and who the job is.
    pub(crate) store: Option<StoreInputs<'a>>,
}

/// What the store check needs (without the `store` feature, only the URL is read).
#[cfg_attr(not(feature = "store"), allow(dead_code))]
pub(crate) struct StoreInputs<'a> {
    pub(crate) url: &'a str,
    /// `--store-push`: the job writes to the store.
    pub(crate) push: bool,
    pub(crate) scope: &'a Scope,
    pub(crate) cargo_home: Option<&'a Path>,
    /// The workspace key, for the newest manifest's `CARGO_HOME`.
    pub(crate) workspace: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) root: RootReport,
    pub(crate) toolchain: Toolchain,
    pub(crate) cargo_llvm_cov: Option<Installed>,
    pub(crate) cargo_nextest: Option<Installed>,
    /// The LLVM tools cargo-llvm-cov would use; `None` when there are none (see `problems`).
    pub(crate) llvm_tools: Option<llvm::Tools>,
    pub(crate) ci: Ci,
    pub(crate) problems: Vec<Problem>,
}

impl Report {
    /// Whether wrapped commands will fail here.
    pub(crate) fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

#[derive(Debug)]
pub(crate) struct RootReport {
    pub(crate) path: PathBuf,
    pub(crate) exists: bool,
    /// The existing dir the filesystem facts are about: the root, else its nearest ancestor.
    pub(crate) checked: PathBuf,
    /// `statfs`'s filesystem type (a magic number, see `fs::FS_KINDS`).
    pub(crate) filesystem: Option<i64>,
    /// `None` until the root exists (the self-test runs in it).
    pub(crate) lock_trust: Option<LockTrust>,
    /// Lock trust was set by `CARGO_GUARDED_LOCKS`, not tested.
    pub(crate) locks_forced: bool,
    pub(crate) space: Option<Space>,
    pub(crate) limits: Option<Limits>,
}

/// The thresholds in bytes, for the filesystem `RootReport::checked` is on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Expired dirs are reclaimed below this much free space…
    pub(crate) reclaim_below: u64,
    /// …up to this much.
    pub(crate) reclaim_to: u64,
    /// Wrapped commands refuse to start (exit 75) below this.
    pub(crate) min_free: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Toolchain {
    /// `cargo -V`.
    pub(crate) cargo: Option<String>,
    pub(crate) rustc: Option<Rustc>,
    pub(crate) llvm_major: Option<u32>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Installed {
    pub(crate) path: PathBuf,
    /// Its `--version`, first line, without the program name.
    pub(crate) version: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Ci {
    /// `GitHub Actions`, `GitLab CI`, `Buildkite`, …; `None` locally.
    pub(crate) detected: Option<&'static str>,
    pub(crate) job_id: String,
    pub(crate) job_dir: PathBuf,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// Wrapped commands will fail.
    Error,
    /// Something will not work, or is at risk.
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) severity: Severity,
    pub(crate) problem: String,
    pub(crate) fix: String,
}

/// The problems found so far, in the order the checks ran.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, severity: Severity, problem: String, fix: impl Into<String>) {
        self.0.push(Problem {
            severity,
            problem,
            fix: fix.into(),
        });
    }

    fn error(&mut self, problem: String, fix: impl Into<String>) {
        self.add(Severity::Error, problem, fix);
    }

    fn warning(&mut self, problem: String, fix: impl Into<String>) {
        self.add(Severity::Warning, problem, fix);
    }
}

/// Run every check; reads only.
pub(crate) fn collect(inputs: &Inputs<'_>) -> Report {
    let mut problems = Problems::default();
    let root = check_root(inputs, &mut problems);
    let toolchain = check_toolchain(inputs, &mut problems);
    let cargo_llvm_cov = check_tool(
        "cargo-llvm-cov",
        &["llvm-cov", "--version"],
        "llvm-cov",
        &mut problems,
    );
    let cargo_nextest = check_tool(
        "cargo-nextest",
        &["nextest", "--version"],
        "nextest",
        &mut problems,
    );
    let llvm_tools = check_llvm_tools(inputs, &toolchain, &mut problems);
    let ci = check_ci(inputs, &mut problems);
    if let Some(store) = &inputs.store {
        check_store(store, &mut problems);
    }
    Report {
        root,
        toolchain,
        cargo_llvm_cov,
        cargo_nextest,
        llvm_tools,
        ci,
        problems: problems.0,
    }
}

/// The store: reachable and listable; writable when this job pushes; not writable by a pull
/// request's job (scopes in a store are only as strong as its credentials); built with the
/// `CARGO_HOME` this host has.
#[cfg(feature = "store")]
fn check_store(s: &StoreInputs<'_>, problems: &mut Problems) {
    let store = match crate::store::Store::open(s.url) {
        Ok(store) => store,
        Err(e) => {
            problems.error(format!("{e:#}"), "fix --store (CARGO_GUARDED_STORE)");
            return;
        }
    };
    let pr = s.scope.kind == Kind::Pr;
    let probe = crate::store::probe(&store, s.push || pr, s.workspace.as_deref());
    if let Err(e) = &probe.listed {
        problems.warning(
            format!("cannot list the store {}: {e}", s.url),
            "check the endpoint and credentials (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...); jobs \
             build cold until it can be reached",
        );
    }
    match &probe.writable {
        Some(Err(e)) if s.push => problems.warning(
            format!("cannot write to the store {}: {e}", s.url),
            "give this job credentials that can write, or drop --store-push",
        ),
        Some(Ok(())) if pr => problems.warning(
            format!("this pull-request job can write to the store {}", s.url),
            "give pull-request jobs read-only credentials (or none): what they write, jobs of \
             other scopes could restore",
        ),
        _ => {}
    }
    if let Some(theirs) = &probe.cargo_home
        && theirs.as_deref().map(Path::new) != s.cargo_home
    {
        problems.warning(
            format!(
                "the store's newest dir of this workspace was built with CARGO_HOME={}, this \
                 host has {}: registry units rebuild",
                theirs.as_deref().unwrap_or("unknown"),
                s.cargo_home
                    .map_or("none".into(), |p| p.display().to_string())
            ),
            "use the same CARGO_HOME path on every host that shares the store",
        );
    }
}

#[cfg(not(feature = "store"))]
fn check_store(s: &StoreInputs<'_>, problems: &mut Problems) {
    problems.error(
        format!("--store `{}`: this build has no `store` feature", s.url),
        "install with `cargo install cargo-guarded --features store`, or unset CARGO_GUARDED_STORE",
    );
}

/// The root, or the dir it would be created in: its filesystem, lock trust and free space.
fn check_root(inputs: &Inputs<'_>, problems: &mut Problems) -> RootReport {
    let root = inputs.root;
    let exists = root.exists();
    let checked = root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_owned();
    check_writable(root, exists, &checked, problems);
    check_sticky(root, exists, problems);
    // `f_type`'s width differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let filesystem = rustix::fs::statfs(&checked).ok().map(|st| st.f_type as i64);
    let lock_trust = (exists && root.is_dir())
        .then(|| check_locks(inputs, problems))
        .flatten();
    if exists && root.is_dir() {
        check_scopes(root, problems);
    }
    let space = Space::of(&checked).ok();
    let limits = space.map(|space| check_space(inputs, space, &checked, problems));
    RootReport {
        path: root.to_owned(),
        exists,
        checked,
        filesystem,
        lock_trust,
        locks_forced: inputs.locks_forced.is_some(),
        space,
        limits,
    }
}

/// The root must be a directory, or creatable.
fn check_writable(root: &Path, exists: bool, checked: &Path, problems: &mut Problems) {
    if exists && !root.is_dir() {
        problems.error(
            format!("root {} exists but is not a directory", root.display()),
            "pass another --root (or CARGO_GUARDED_ROOT), or remove the file",
        );
    } else if rustix::fs::access(checked, rustix::fs::Access::WRITE_OK).is_err() {
        problems.error(
            format!(
                "{} is not writable{}",
                checked.display(),
                if exists {
                    String::new()
                } else {
                    format!(", so root {} cannot be created", root.display())
                }
            ),
            "pass a writable --root (or CARGO_GUARDED_ROOT), e.g. under $XDG_CACHE_HOME",
        );
    }
}

/// Writable by others without the sticky bit: any user may rename or replace anyone's job dirs
/// (the lease protocol checks owners, but cannot stop renames in such a directory).
fn check_sticky(root: &Path, exists: bool, problems: &mut Problems) {
    if exists
        && let Ok(st) = rustix::fs::stat(root)
        && st.st_mode & 0o022 != 0
        && st.st_mode & 0o1000 == 0
    {
        problems.warning(
            format!(
                "root {} is writable by other users ({:o}) but lacks the sticky bit: any of them \
                 can rename or remove every job's dir",
                root.display(),
                st.st_mode & 0o7777
            ),
            format!("chmod +t {}", root.display()),
        );
    }
}

/// One root holding dirs of untrusted scopes (pull requests) beside trusted ones (branches,
/// tags): the scope rule keeps a branch's job from starting from a pull request's dir, but a job
/// of the same uid can write into any dir of the root directly.
fn check_scopes(root: &Path, problems: &mut Problems) {
    let Ok(r) = Root::open(root) else {
        return;
    };
    let (mut untrusted, mut trusted): (Option<Scope>, Option<Scope>) = (None, None);
    for (name, _) in r.job_names().unwrap_or_default() {
        let Ok(dir) = r.open_job(&name) else {
            continue;
        };
        let Ok(l) = lease::read(std::os::fd::AsFd::as_fd(&dir)) else {
            continue;
        };
        for s in l.scopes.unwrap_or_default() {
            match s.kind {
                Kind::Pr => untrusted = untrusted.or(Some(s)),
                Kind::Branch | Kind::Tag => trusted = trusted.or(Some(s)),
                _ => {}
            }
        }
    }
    if let (Some(u), Some(t)) = (untrusted, trusted) {
        problems.warning(
            format!(
                "root {} holds dirs of pull requests ({u}) beside those of branches ({t}): a job \
                 never starts from a dir of a scope it does not trust, but any job running as \
                 the same user can write into another job's dir in the root",
                root.display()
            ),
            "give untrusted events (fork pull requests) their own root and user (docs/warmth.md: \
             \"Trust\")",
        );
    }
}

/// Lock trust of an existing root (the self-test runs in it).
fn check_locks(inputs: &Inputs<'_>, problems: &mut Problems) -> Option<LockTrust> {
    let root = inputs.root;
    match Root::open(root) {
        Ok(r) => {
            let trust = locks::assess(r.fd(), inputs.locks_forced);
            if let LockTrust::Untrusted(why) = trust {
                problems.warning(
                    format!(
                        "locks on {} cannot be trusted ({why}): a guard tells live jobs from \
                         dead ones by the heartbeat alone, with a safety margin, so expired \
                         dirs are reclaimed later",
                        root.display()
                    ),
                    "put the root on a local filesystem (ext4, xfs, btrfs, tmpfs) with --root",
                );
            }
            Some(trust)
        }
        Err(e) => {
            problems.error(
                format!("{e:#}"),
                "fix the root's permissions, or pass another --root",
            );
            None
        }
    }
}

/// Free space against the thresholds.
fn check_space(
    inputs: &Inputs<'_>,
    space: Space,
    checked: &Path,
    problems: &mut Problems,
) -> Limits {
    let sweep = inputs.guard.sweep(space.base(), LockTrust::Trusted);
    let limits = Limits {
        reclaim_below: sweep.reclaim_below,
        reclaim_to: sweep.reclaim_to,
        min_free: inputs.min_free.bytes(space.base()),
    };
    if space.free < limits.min_free {
        problems.error(
            format!(
                "{} free on {}, below --min-free {} ({}): wrapped commands refuse to start \
                 (exit 75) unless reclaiming expired dirs frees enough",
                Bytes(space.free),
                checked.display(),
                inputs.min_free,
                Bytes(limits.min_free)
            ),
            "free disk space (`cargo guarded gc --all-expired` reclaims every expired job \
             dir), or lower --min-free",
        );
    } else if space.free < limits.reclaim_below {
        problems.warning(
            format!(
                "{} free on {}, below --reclaim-below {} ({}): every wrapped command first \
                 reclaims expired job dirs, which costs their warm builds",
                Bytes(space.free),
                checked.display(),
                inputs.guard.reclaim_below,
                Bytes(limits.reclaim_below)
            ),
            "run `cargo guarded gc` from a runner hook, free disk space, or lower \
             --reclaim-below",
        );
    }
    limits
}

/// cargo and rustc must run.
fn check_toolchain(inputs: &Inputs<'_>, problems: &mut Problems) -> Toolchain {
    let cargo = first_line(inputs.cargo, &["-V"]);
    if cargo.is_none() {
        problems.error(
            format!("`{} -V` did not run", inputs.cargo.to_string_lossy()),
            "install Rust with rustup (https://rustup.rs), or set CARGO to cargo's path",
        );
    }
    let rustc = match Rustc::query(inputs.rustc) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.error(
                format!("{e:#}"),
                "install Rust with rustup (https://rustup.rs), or set RUSTC to rustc's path",
            );
            None
        }
    };
    let llvm_major = rustc.as_ref().and_then(Rustc::llvm_major);
    Toolchain {
        cargo,
        rustc,
        llvm_major,
    }
}

/// A coverage or test tool that `cargo guarded <command>` runs.
fn check_tool(
    exe: &str,
    version_args: &[&str],
    command: &str,
    problems: &mut Problems,
) -> Option<Installed> {
    let found = installed(exe, version_args);
    if found.is_none() {
        problems.warning(
            format!("{exe} is not installed: `cargo guarded {command}` will fail"),
            format!("cargo install {exe} --locked"),
        );
    }
    found
}

/// The LLVM tools cargo-llvm-cov would get, for rustc's LLVM.
fn check_llvm_tools(
    inputs: &Inputs<'_>,
    toolchain: &Toolchain,
    problems: &mut Problems,
) -> Option<llvm::Tools> {
    match llvm::find_for(toolchain.rustc.as_ref()?, inputs.llvm) {
        Ok(tools) => {
            check_major(&tools, toolchain.llvm_major, problems);
            Some(tools)
        }
        Err(e) => {
            let (what, fix) = match e.downcast_ref::<Missing>() {
                Some(m) => (m.describe(), m.fix()),
                None => (format!("{e:#}"), "set LLVM_COV and LLVM_PROFDATA".into()),
            };
            problems.warning(what, fix);
            None
        }
    }
}

/// The CI and the job.
fn check_ci(inputs: &Inputs<'_>, problems: &mut Problems) -> Ci {
    if inputs.ci_unrecognised && inputs.job_id.starts_with("local-") {
        problems.warning(
            format!(
                "CI is set but not a CI whose job ids cargo-guarded knows, so the job id is \
                 derived from the workspace path ({}): concurrent jobs checked out at the same \
                 path would share one dir and take turns",
                inputs.job_id
            ),
            "set CARGO_GUARDED_JOB_ID (or pass --job-id) to the CI's job id",
        );
    }
    Ci {
        detected: inputs.ci,
        job_id: inputs.job_id.to_owned(),
        job_dir: inputs.job_dir.clone(),
    }
}

/// Tools the user chose (`LLVM_COV`/`LLVM_PROFDATA`) are used as given; say so if their major is
/// not rustc's, since cargo-llvm-cov will then fail to read the profiles.
fn check_major(tools: &llvm::Tools, major: Option<u32>, problems: &mut Problems) {
    let Some(major) = major else { return };
    if tools.source == Source::Component {
        return;
    }
    for (var, tool) in [
        ("LLVM_COV", &tools.llvm_cov),
        ("LLVM_PROFDATA", &tools.llvm_profdata),
    ] {
        let found = llvm::tool_major(tool);
        if found != Some(major) {
            problems.warning(
                format!(
                    "{var}={} is {}, but rustc uses LLVM {major}: coverage reports will fail",
                    tool.display(),
                    found.map_or_else(|| "not a working LLVM tool".into(), |m| format!("LLVM {m}"))
                ),
                format!(
                    "point {var} at LLVM {major}'s tool, or unset it to let cargo-guarded find one"
                ),
            );
        }
    }
}

fn installed(exe: &str, version_args: &[&str]) -> Option<Installed> {
    let path = which::which(exe).ok()?;
    // `cargo-llvm-cov 0.9.1` → `0.9.1`; `cargo-nextest 0.9.143 (60fa45f63 2026-08-04)` →
    // `0.9.143` (the build's commit and date would nest parentheses in doctor's line).
    let version = first_line(path.as_os_str(), version_args).map(|v| {
        let rest = v.strip_prefix(exe).unwrap_or(&v).trim();
        rest.split_whitespace().next().unwrap_or(rest).to_owned()
    });
    Some(Installed { path, version })
}

/// The first line of a command's stdout, if it ran and succeeded.
fn first_line(program: &std::ffi::OsStr, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

//! `cargo guarded doctor`: what cargo-guarded would find and do on this machine — the root and
//! its filesystem, lock trust, free space against the thresholds, the toolchain, the coverage
//! and test tools, the LLVM tools cargo-llvm-cov would get, the CI and the job id — with every
//! problem and its fix. Reads only: a root that does not exist yet is reported, not created.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::{self, Config};
use crate::exit_codes;
use crate::fs::Space;
use crate::lease::Root;
use crate::llvm::{self, Missing, Rustc, Source};
use crate::locks::{self, LockTrust};
use crate::units::Bytes;

#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
pub(crate) struct RootReport {
    pub(crate) path: PathBuf,
    pub(crate) exists: bool,
    /// The existing dir the filesystem facts are about: the root, else its nearest ancestor.
    pub(crate) checked: PathBuf,
    /// From `statfs`: `ext2/3/4`, `xfs`, `nfs`, … or the magic number in hex.
    pub(crate) filesystem: Option<String>,
    /// `trusted`, `untrusted (<why>)`; `None` until the root exists (the self-test runs in it).
    pub(crate) lock_trust: Option<String>,
    pub(crate) free_bytes: Option<u64>,
    pub(crate) total_bytes: Option<u64>,
    /// Expired dirs are reclaimed below this much free space…
    pub(crate) reclaim_below_bytes: Option<u64>,
    /// …up to this much.
    pub(crate) reclaim_to_bytes: Option<u64>,
    /// Wrapped commands refuse to start (exit 75) below this.
    pub(crate) min_free_bytes: Option<u64>,
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

#[derive(Debug, Serialize)]
pub(crate) struct Problem {
    /// `error`: wrapped commands will fail; `warning`: something will not work or is at risk.
    pub(crate) severity: &'static str,
    pub(crate) problem: String,
    pub(crate) fix: String,
}

/// Run the checks, print the report; exit 1 if any problem is an error.
pub(crate) fn run(cfg: &Config, json: bool) -> Result<ExitCode> {
    let report = collect(cfg);
    if json {
        // A reader that left early is not an error, as for `status`.
        crate::term::out(&crate::term::json(&report)?).context("failed to write to stdout")?;
    } else {
        print(&report);
    }
    Ok(if report.problems.iter().any(|p| p.severity == "error") {
        ExitCode::from(exit_codes::ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

fn collect(cfg: &Config) -> Report {
    let mut problems = Vec::new();
    let mut problem = |severity, problem: String, fix: String| {
        problems.push(Problem {
            severity,
            problem,
            fix,
        })
    };

    // The root, or the dir it would be created in.
    let root = &cfg.root;
    let exists = root.exists();
    let checked = root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_owned();
    if exists && !root.is_dir() {
        problem(
            "error",
            format!("root {} exists but is not a directory", root.display()),
            "pass another --root (or CARGO_GUARDED_ROOT), or remove the file".into(),
        );
    } else if rustix::fs::access(&checked, rustix::fs::Access::WRITE_OK).is_err() {
        problem(
            "error",
            format!(
                "{} is not writable{}",
                checked.display(),
                if exists {
                    String::new()
                } else {
                    format!(", so root {} cannot be created", root.display())
                }
            ),
            "pass a writable --root (or CARGO_GUARDED_ROOT), e.g. under $XDG_CACHE_HOME".into(),
        );
    }
    // Writable by others without the sticky bit: any user may rename or replace anyone's job
    // dirs (the lease protocol checks owners, but cannot stop renames in such a directory).
    if exists
        && let Ok(st) = rustix::fs::stat(root)
        && st.st_mode & 0o022 != 0
        && st.st_mode & 0o1000 == 0
    {
        problem(
            "warning",
            format!(
                "root {} is writable by other users ({:o}) but lacks the sticky bit: any of them \
                 can rename or remove every job's dir",
                root.display(),
                st.st_mode & 0o7777
            ),
            format!("chmod +t {}", root.display()),
        );
    }
    let filesystem = rustix::fs::statfs(&checked).ok().map(|st| {
        // `f_type`'s width differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        fs_name(st.f_type as i64)
    });
    let lock_trust = if exists && root.is_dir() {
        match Root::open(root) {
            Ok(r) => {
                let trust = locks::assess(r.fd(), cfg.locks_forced);
                if let LockTrust::Untrusted(why) = trust {
                    problem(
                        "warning",
                        format!(
                            "locks on {} cannot be trusted ({why}): a guard tells live jobs from \
                             dead ones by the heartbeat alone, with a safety margin, so expired \
                             dirs are reclaimed later",
                            root.display()
                        ),
                        "put the root on a local filesystem (ext4, xfs, btrfs, tmpfs) with --root"
                            .into(),
                    );
                }
                Some(match (trust, cfg.locks_forced) {
                    (LockTrust::Trusted, Some(_)) => {
                        "trusted (forced by CARGO_GUARDED_LOCKS)".to_owned()
                    }
                    (LockTrust::Trusted, None) => "trusted (self-test passed)".to_owned(),
                    (t, _) => t.to_string(),
                })
            }
            Err(e) => {
                problem(
                    "error",
                    format!("{e:#}"),
                    "fix the root's permissions, or pass another --root".into(),
                );
                None
            }
        }
    } else {
        None
    };
    let space = Space::of(&checked).ok();
    let (mut reclaim_below, mut reclaim_to, mut min_free) = (None, None, None);
    if let Some(space) = space {
        let sweep = cfg.sweep(space.total, LockTrust::Trusted);
        let min = cfg.min_free.bytes(space.total);
        (reclaim_below, reclaim_to, min_free) =
            (Some(sweep.reclaim_below), Some(sweep.reclaim_to), Some(min));
        if space.free < min {
            problem(
                "error",
                format!(
                    "{} free on {}, below --min-free {} ({}): wrapped commands refuse to start \
                     (exit 75) unless reclaiming expired dirs frees enough",
                    Bytes(space.free),
                    checked.display(),
                    cfg.min_free,
                    Bytes(min)
                ),
                "free disk space (`cargo guarded gc --all-expired` reclaims every expired job \
                 dir), or lower --min-free"
                    .into(),
            );
        } else if space.free < sweep.reclaim_below {
            problem(
                "warning",
                format!(
                    "{} free on {}, below --reclaim-below {} ({}): every wrapped command first \
                     reclaims expired job dirs, which costs their warm builds",
                    Bytes(space.free),
                    checked.display(),
                    cfg.reclaim_below,
                    Bytes(sweep.reclaim_below)
                ),
                "run `cargo guarded gc` from a runner hook, free disk space, or lower \
                 --reclaim-below"
                    .into(),
            );
        }
    }

    // The toolchain.
    let cargo = first_line(&cfg.cargo, &["-V"]);
    if cargo.is_none() {
        problem(
            "error",
            format!("`{} -V` did not run", cfg.cargo.to_string_lossy()),
            "install Rust with rustup (https://rustup.rs), or set CARGO to cargo's path".into(),
        );
    }
    let rustc = match Rustc::query(&cfg.rustc) {
        Ok(r) => Some(r),
        Err(e) => {
            problem(
                "error",
                format!("{e:#}"),
                "install Rust with rustup (https://rustup.rs), or set RUSTC to rustc's path".into(),
            );
            None
        }
    };
    let llvm_major = rustc.as_ref().and_then(Rustc::llvm_major);

    // Coverage and test tools.
    let cargo_llvm_cov = installed("cargo-llvm-cov", &["llvm-cov", "--version"]);
    if cargo_llvm_cov.is_none() {
        problem(
            "warning",
            "cargo-llvm-cov is not installed: `cargo guarded llvm-cov` will fail".into(),
            "cargo install cargo-llvm-cov --locked".into(),
        );
    }
    let cargo_nextest = installed("cargo-nextest", &["nextest", "--version"]);
    if cargo_nextest.is_none() {
        problem(
            "warning",
            "cargo-nextest is not installed: `cargo guarded nextest` will fail".into(),
            "cargo install cargo-nextest --locked".into(),
        );
    }
    let llvm_tools = match rustc.as_ref().map(|r| llvm::find_for(r, &cfg.llvm)) {
        None => None,
        Some(Ok(tools)) => {
            check_major(&tools, llvm_major, &mut problem);
            Some(tools)
        }
        Some(Err(e)) => {
            let (what, fix) = match e.downcast_ref::<Missing>() {
                Some(m) => (m.describe(), m.fix()),
                None => (format!("{e:#}"), "set LLVM_COV and LLVM_PROFDATA".into()),
            };
            problem("warning", what, fix);
            None
        }
    };

    // The CI and the job.
    if cfg.ci == Some(config::UNRECOGNISED_CI) && cfg.job_id.starts_with("local-") {
        problem(
            "warning",
            format!(
                "CI is set but not a CI whose job ids cargo-guarded knows, so the job id is \
                 derived from the workspace path ({}): concurrent jobs checked out at the same \
                 path would share one dir and take turns",
                cfg.job_id
            ),
            "set CARGO_GUARDED_JOB_ID (or pass --job-id) to the CI's job id".into(),
        );
    }
    let ci = Ci {
        detected: cfg.ci,
        job_id: cfg.job_id.clone(),
        job_dir: cfg.root.join(&cfg.job_name),
    };

    Report {
        root: RootReport {
            path: root.clone(),
            exists,
            checked,
            filesystem,
            lock_trust,
            free_bytes: space.map(|s| s.free),
            total_bytes: space.map(|s| s.total),
            reclaim_below_bytes: reclaim_below,
            reclaim_to_bytes: reclaim_to,
            min_free_bytes: min_free,
        },
        toolchain: Toolchain {
            cargo,
            rustc,
            llvm_major,
        },
        cargo_llvm_cov,
        cargo_nextest,
        llvm_tools,
        ci,
        problems,
    }
}

/// Tools the user chose (`LLVM_COV`/`LLVM_PROFDATA`) are used as given; say so if their major is
/// not rustc's, since cargo-llvm-cov will then fail to read the profiles.
fn check_major(
    tools: &llvm::Tools,
    major: Option<u32>,
    problem: &mut impl FnMut(&'static str, String, String),
) {
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
            problem(
                "warning",
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
    // `cargo-llvm-cov 0.9.1` → `0.9.1`
    let version = first_line(path.as_os_str(), version_args).map(|v| {
        v.strip_prefix(exe)
            .map_or(v.clone(), |r| r.trim().to_owned())
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

/// `statfs` magic numbers (linux/magic.h) of filesystems a root is likely to be on.
fn fs_name(magic: i64) -> String {
    let name = match magic {
        0xEF53 => "ext2/3/4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x0102_1994 => "tmpfs",
        0x8584_58F6 => "ramfs",
        0x794C_7630 => "overlayfs",
        0x6969 => "nfs",
        0x517B => "smb",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x6573_5546 => "fuse",
        0x0102_1997 => "9p",
        0x00C3_6400 => "ceph",
        0x6B41_4653 => "afs",
        _ => return format!("unknown (statfs type {magic:#x})"),
    };
    name.to_owned()
}

fn print(r: &Report) {
    let label = |l: &str| format!("{l:<16}");
    let root = &r.root;
    let fs = root.filesystem.as_deref().unwrap_or("unknown filesystem");
    if root.exists {
        println!("{}{} ({fs})", label("root"), root.path.display());
    } else {
        println!(
            "{}{} (does not exist yet: created on first use; {} is {fs})",
            label("root"),
            root.path.display(),
            root.checked.display()
        );
    }
    println!(
        "{}{}",
        label("locks"),
        root.lock_trust
            .as_deref()
            .unwrap_or("not tested (the self-test runs in the root, which does not exist yet)")
    );
    match (root.free_bytes, root.total_bytes) {
        (Some(free), Some(total)) => println!(
            "{}{} free of {}; reclaims expired dirs below {} up to {}; refuses to start below {}",
            label("free space"),
            Bytes(free),
            Bytes(total),
            Bytes(root.reclaim_below_bytes.unwrap_or_default()),
            Bytes(root.reclaim_to_bytes.unwrap_or_default()),
            Bytes(root.min_free_bytes.unwrap_or_default()),
        ),
        _ => println!("{}unknown", label("free space")),
    }
    println!(
        "{}{}",
        label("cargo"),
        r.toolchain.cargo.as_deref().unwrap_or("not found")
    );
    match &r.toolchain.rustc {
        Some(rustc) => println!(
            "{}{} {}, LLVM {}",
            label("rustc"),
            rustc.release,
            rustc.host,
            rustc.llvm_version.as_deref().unwrap_or("unknown")
        ),
        None => println!("{}not found", label("rustc")),
    }
    for (name, tool) in [
        ("cargo-llvm-cov", &r.cargo_llvm_cov),
        ("cargo-nextest", &r.cargo_nextest),
    ] {
        match tool {
            Some(t) => println!(
                "{}{} ({})",
                label(name),
                t.version.as_deref().unwrap_or("version unknown"),
                t.path.display()
            ),
            None => println!("{}not installed", label(name)),
        }
    }
    match &r.llvm_tools {
        Some(t) => println!(
            "{}{}, {} ({})",
            label("LLVM tools"),
            t.llvm_cov.display(),
            t.llvm_profdata.display(),
            match t.source {
                Source::Env => "from LLVM_COV and LLVM_PROFDATA",
                Source::Component => "the rustup llvm-tools component",
                Source::Found => "found by cargo-guarded and passed to cargo-llvm-cov",
            }
        ),
        None => println!("{}none usable", label("LLVM tools")),
    }
    println!(
        "{}{}",
        label("CI"),
        r.ci.detected.unwrap_or("none detected (local)")
    );
    println!(
        "{}{} (dir {})",
        label("job id"),
        r.ci.job_id,
        r.ci.job_dir.display()
    );
    if r.problems.is_empty() {
        println!("\nno problems found");
        return;
    }
    println!("\n{} problem(s):", r.problems.len());
    for p in &r.problems {
        println!("  {}: {}", p.severity, p.problem);
        println!("    fix: {}", p.fix);
    }
}

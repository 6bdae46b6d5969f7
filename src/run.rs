//! A wrapped command's life: acquire the job's lease, run the disk precheck, run the tool with
//! the job's environment under a heartbeat, release — on success, failure and signals alike.
//! Also `env` and `hold`, which hold the same lease without running a tool.

use std::ffi::{OsStr, OsString};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::lease::{self, Heartbeat, Held, Origin, Request, Root};
use crate::llvm;
use crate::locks::{self, LockTrust};
use crate::precheck;
use crate::process::{self, Interrupts, ProcessBuilder};
use crate::term;
use crate::units::{Bytes, Short};
use crate::workspace;

/// What runs under the lease.
#[derive(Debug)]
pub(crate) enum Tool {
    /// `cargo <args>`: build, test, clippy, …
    Cargo(Vec<OsString>),
    /// `cargo-llvm-cov llvm-cov <args>`
    LlvmCov(Vec<OsString>),
    /// `cargo nextest <args>`
    Nextest(Vec<OsString>),
    /// `exec -- PROGRAM ARGS`
    Exec(Vec<OsString>),
}

impl Tool {
    /// Dispatch an external subcommand by its first word.
    pub(crate) fn from_external(mut args: Vec<OsString>) -> Tool {
        match args.first().and_then(|a| a.to_str()) {
            Some("llvm-cov") => Tool::LlvmCov(args.split_off(1)),
            Some("nextest") => Tool::Nextest(args.split_off(1)),
            _ => Tool::Cargo(args),
        }
    }

    pub(crate) fn args(&self) -> &[OsString] {
        match self {
            Tool::Cargo(a) | Tool::LlvmCov(a) | Tool::Nextest(a) | Tool::Exec(a) => a,
        }
    }

    /// A cargo-driven tool given its own `--target-dir` would build outside the lease.
    fn check_args(&self) -> Result<()> {
        if matches!(self, Tool::Exec(_)) {
            return Ok(());
        }
        let args: Vec<&[u8]> = self
            .args()
            .iter()
            .map(|a| a.as_encoded_bytes())
            .take_while(|a| *a != b"--")
            .collect();
        let names_a_dir = |v: &[u8]| {
            v.windows(10).any(|w| w == b"target-dir") || v.windows(9).any(|w| w == b"build-dir")
        };
        // `--config build.target-dir=…` / `build.build-dir=…` would move the build out too.
        let config_moves_dir = args.iter().enumerate().any(|(i, a)| {
            let value = match a.strip_prefix(b"--config=") {
                Some(v) => Some(v),
                None if *a == b"--config" => args.get(i + 1).copied(),
                None => None,
            };
            value.is_some_and(|v| v.contains(&b'=') && names_a_dir(v))
        });
        let explicit = args
            .iter()
            .any(|a| *a == b"--target-dir" || a.starts_with(b"--target-dir="));
        if explicit || config_moves_dir {
            bail!(
                "`--target-dir` (or a `--config` that sets the target or build dir) cannot be used \
                 with cargo guarded: every job builds in its own leased dir under the root, so a guard never deletes a live build; drop the flag (run \
                 `cargo guarded env` to see the job's dir)"
            );
        }
        Ok(())
    }

    fn process(&self, cfg: &Config) -> Result<ProcessBuilder> {
        Ok(match self {
            Tool::Cargo(args) => {
                let mut pb = ProcessBuilder::new(&cfg.cargo);
                pb.args(args);
                pb
            }
            Tool::Nextest(args) => {
                let mut pb = ProcessBuilder::new(&cfg.cargo);
                pb.args(["nextest"]).args(args);
                pb
            }
            Tool::LlvmCov(args) => {
                let exe = which::which("cargo-llvm-cov").map_err(|_| {
                    anyhow::anyhow!(
                        "cargo-llvm-cov is not installed (not found on PATH); install it with \
                         `cargo install cargo-llvm-cov --locked`"
                    )
                })?;
                // Cargo runs subcommands as `cargo-llvm-cov llvm-cov ARGS`; so do we.
                let mut pb = ProcessBuilder::new(exe);
                pb.args(["llvm-cov"]).args(args);
                if llvm::needs_tools(args) {
                    for (var, path) in llvm::child_env(&cfg.rustc, &cfg.llvm)? {
                        pb.env(var, path);
                    }
                }
                pb
            }
            Tool::Exec(args) => {
                let (program, rest) = args.split_first().context("exec needs a program to run")?;
                let mut pb = ProcessBuilder::new(program);
                pb.args(rest);
                pb
            }
        })
    }
}

/// Run `tool` under the job's lease and return its exit code.
pub(crate) fn wrapped(cfg: &Config, tool: &Tool) -> Result<ExitCode> {
    tool.check_args()?;
    let mut pb = tool.process(cfg)?;
    let command: Vec<String> = tool
        .args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let interrupts = Interrupts::install()?;
    let held = acquire(cfg, command, &|| interrupts.check())?;
    let held = Arc::new(held);
    job_env(cfg, &held, matches!(tool, Tool::LlvmCov(_)), &mut pb);
    // Stopped while sweeping: release without starting the command.
    if let Err(e) = interrupts.check() {
        release(cfg, held)?;
        return Err(e);
    }

    let child = match process::spawn(&pb) {
        Ok(child) => child,
        Err(e) => {
            release(cfg, held)?;
            return Err(e);
        }
    };
    let pgid = child.pgid();
    let heartbeat = Heartbeat::start(Arc::clone(&held), cfg.ttl, move || {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
    });
    let status = child.wait();
    // The heartbeat's error (the dir was moved away) outranks the child's status.
    heartbeat.stop()?;
    release(cfg, held)?;
    Ok(ExitCode::from(process::exit_code(status?)))
}

/// `cargo guarded env`: take the job's lease, print its environment, release it (protected for
/// `--linger`, so plain cargo steps that follow find the dir).
pub(crate) fn env(cfg: &Config, shell: bool) -> Result<ExitCode> {
    let held = acquire(cfg, vec!["env".into()], &|| Ok(()))?;
    let mut pb = ProcessBuilder::new("env");
    job_env(cfg, &held, false, &mut pb);
    for (k, v) in pb.get_envs() {
        let (k, Some(v)) = (k.to_string_lossy(), v.map(|v| v.to_string_lossy())) else {
            continue;
        };
        if shell {
            // Single quotes keep every byte literal; a quote itself is closed, escaped, reopened.
            println!("export {k}='{}'", v.replace('\'', "'\\''"));
        } else {
            println!("{k}={v}");
        }
    }
    release(cfg, Arc::new(held))?;
    Ok(ExitCode::SUCCESS)
}

/// `cargo guarded hold`: keep the job's lease live (lock and heartbeat) until SIGTERM, SIGINT or
/// SIGHUP, then release it. For workflows whose later steps run plain cargo in the job's dir.
pub(crate) fn hold(cfg: &Config) -> Result<ExitCode> {
    let interrupts = Interrupts::install()?;
    let held = acquire(cfg, vec!["hold".into()], &|| interrupts.check())?;
    let held = Arc::new(held);
    term::status(format_args!(
        "holding the lease on {} until stopped",
        held.path.display()
    ));
    let heartbeat = Heartbeat::start(Arc::clone(&held), cfg.ttl, || {
        // Nothing to stop but ourselves: exit with the heartbeat's error.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
    });
    while interrupts.check().is_ok() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    heartbeat.stop()?;
    release(cfg, held)?;
    Ok(ExitCode::SUCCESS)
}

/// Open (or create) the root, take the job's lease and run the disk precheck.
fn acquire(
    cfg: &Config,
    command: Vec<String>,
    interrupted: &dyn Fn() -> Result<()>,
) -> Result<Held> {
    let root = Root::create(&cfg.root)?;
    let trust = locks::assess(&root, cfg.locks_forced);
    if trust != LockTrust::Trusted {
        term::verbose(format_args!(
            "locks on {} are {trust}: expiry uses the heartbeat alone, with a margin",
            root.path.display()
        ));
    }
    let key = || {
        let toolchain = workspace::toolchain(
            &cfg.rustc,
            &cfg.cargo,
            &cfg.rustup,
            &cfg.workspace_root,
            &root.join(lease::TOOLCHAIN_CACHE),
        );
        workspace::key(&cfg.workspace_root, cfg.repository.as_deref(), toolchain)
    };
    let command_line = command.join(" ");
    let req = Request {
        job_id: &cfg.job_id,
        name: &cfg.job_name,
        owner: &cfg.owner,
        ttl: cfg.ttl,
        command,
        wait: cfg.wait,
        key: &key,
        adopt: cfg.adopt,
        trust,
        interrupted,
    };
    let (held, origin) = lease::acquire(&root, &req)?;
    let new_job = !matches!(origin, Origin::Resumed);
    match &origin {
        Origin::Resumed => term::verbose(format_args!("job dir {} (resumed)", held.path.display())),
        Origin::Fresh => term::status(format_args!(
            "job dir {} (fresh dir{})",
            held.path.display(),
            if cfg.adopt {
                ": no expired dir of this workspace to adopt"
            } else {
                "; adoption is off"
            }
        )),
        Origin::Adopted {
            from,
            size,
            last_used,
        } => term::status(format_args!(
            "adopted {from} (warm, {}, last used {} ago) as {}",
            size.map_or_else(|| "size unknown".into(), |s| Bytes(s).to_string()),
            Short(
                SystemTime::now()
                    .duration_since(*last_used)
                    .unwrap_or_default()
            ),
            held.path.display()
        )),
    }
    if let Origin::Adopted { from, size, .. } = &origin {
        // Under the adopter's lock: the previous job is over and no one else can build here.
        crate::prune::at_adoption(held.dir_fd(), from, *size, &cfg.prune);
    }
    let report = match precheck::run(&root, cfg, trust, new_job) {
        Ok(report) => report,
        Err(e) => {
            if let (Some(gh), Some(no_space)) = (&cfg.github, e.downcast_ref::<precheck::NoSpace>())
            {
                gh.refused(no_space, &cfg.job_id, &command_line);
            }
            release(cfg, Arc::new(held))?;
            return Err(e);
        }
    };
    if let Some(gh) = &cfg.github {
        gh.job_ready(cfg, &root, &held, &origin, &command_line, report.as_ref());
    }
    Ok(held)
}

fn release(cfg: &Config, held: Arc<Held>) -> Result<()> {
    match Arc::try_unwrap(held) {
        Ok(held) => held.release(cfg.linger),
        Err(_) => bail!("internal error: the lease is still shared at release"),
    }
}

/// The child's environment: the job's target dir, and job-scoped versions of every other dir a
/// configuration could point at something shared.
fn job_env(cfg: &Config, held: &Held, llvm_cov: bool, pb: &mut ProcessBuilder) {
    let target = held.target_dir();
    if let Some(inherited) = &cfg.inherited_target_dir
        && *inherited != target
    {
        term::verbose(format_args!(
            "overriding inherited CARGO_TARGET_DIR={} with the job's dir (a shared target dir is \
             what lets one job's cleanup break another's build)",
            inherited.to_string_lossy()
        ));
    }
    pb.env("CARGO_TARGET_DIR", &target);
    if cfg.build_dir_configured {
        pb.env("CARGO_BUILD_BUILD_DIR", held.path.join("build"));
    }
    if llvm_cov && cfg.llvm_cov_target_dir.is_some() {
        pb.env(
            "CARGO_LLVM_COV_TARGET_DIR",
            held.path.join("llvm-cov-target"),
        );
    }
    pb.env("CARGO_GUARDED_JOB_ID", held.job_id());
    // Test-only fault points are meant for this process, not for a cargo-guarded the child runs.
    pb.env_remove("CARGO_GUARDED_FAULT")
        .env_remove("CARGO_GUARDED_PAUSE");
    pb.env("CARGO_GUARDED_TARGET_DIR", OsStr::new(&target));
}

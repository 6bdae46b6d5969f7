//! `cargo guarded hold`: the job's lease kept live until the process is stopped; `hold
//! --job-only`: only the job lock, which ends the linger of the job's dirs with the job.

use std::ffi::OsStr;
use std::os::fd::AsFd;

use anyhow::{Context, anyhow};

use crate::config::Config;
use crate::env_file;
use crate::exit::{CliResult, Exit};
use crate::lease::{self, Root};
use crate::process::Interrupts;
use crate::report::Reporters;
use crate::term;

use super::job::{acquire, nested, stopped_by};
use super::job_env::JobEnv;
use super::release::{count_at_release, prune_at_release, record_warm};

/// `cargo guarded hold`: keep the job's lease live (lock and heartbeat) until SIGTERM, SIGINT or
/// SIGHUP, then release it. For workflows whose later steps run plain cargo in the job's dir.
///
/// With `CARGO_GUARDED_EXPORT_ENV` (the action sets it to `GITHUB_ENV`), the job's environment
/// is written there once the lease is held, including `CARGO_GUARDED_LEASE`: a later
/// `cargo guarded` step of the job then runs inside this lease instead of waiting for it.
pub(crate) fn run(cfg: &Config, out: &mut Reporters) -> CliResult {
    if let Some(parent) = nested(cfg)? {
        return Err(anyhow!(
            "the lease on {} is already held by this job (pid {}); nothing to hold",
            parent.path.display(),
            parent.pid
        )
        .into());
    }
    let interrupts = Interrupts::install()?;
    let (session, lease_env) = acquire(
        cfg,
        "hold",
        vec!["hold".into()],
        &|| interrupts.check(),
        out,
    )
    .map_err(|e| stopped_by(&interrupts, e))?;
    if let Some(file) = &cfg.export_env {
        let mut env = JobEnv::locating(cfg, &lease_env, false);
        env.set("CARGO_GUARDED_ROOT", &cfg.root)
            .set("CARGO_GUARDED_HOLD_PID", std::process::id().to_string());
        env_file::append(file, &env.records())?;
    }
    // The job lock too: each step's release records it, and the linger ends with this process
    // (docs/protocol.md#linger-ends-with-the-job). Without it the linger just runs its course.
    let job_lock = lease::hold_job_lock(session.held().dir_fd());
    if let Err(e) = &job_lock {
        term::verbose(
            "Note",
            format_args!("no job lock ({e}): the dir lingers the whole --linger after the job"),
        );
    }
    term::status(
        "Holding",
        format_args!(
            "the lease on {} until stopped",
            session.held().path.display()
        ),
    );
    session.on_lost(|| {
        // Nothing to stop but ourselves: exit with the heartbeat's error.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
    });
    while interrupts.check().is_ok() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    count_at_release(&session, None, out);
    prune_at_release(cfg, &session, "hold", true, out);
    // What the job's plain cargo steps built under this lease, for the next job elsewhere.
    record_warm(cfg, &session);
    session.finish()?;
    Ok(Exit::SUCCESS)
}

/// `cargo guarded hold --job-only`: hold the job lock of the job's dir (which an earlier step
/// created) until SIGTERM, SIGINT or SIGHUP, so that its steps' dir lingers only until then
/// (docs/protocol.md#linger-ends-with-the-job). No lease, no heartbeat: the steps hold those.
pub(crate) fn job_only(cfg: &Config) -> CliResult {
    let interrupts = Interrupts::install()?;
    let root = Root::open(&cfg.root)?;
    let path = root.join(&cfg.job_name);
    let dir = root.open_job(OsStr::new(&cfg.job_name)).map_err(|skip| {
        anyhow::anyhow!(
            "cannot hold the job lock of {}: {skip}; run a step of the job first",
            path.display()
        )
    })?;
    let _job_lock = lease::hold_job_lock(dir.as_fd())
        .with_context(|| format!("failed to lock {}", path.join(lease::JOB_LOCK).display()))?;
    // The step that ran before us released without a holder to record.
    lease::record_in_released(&dir);
    drop(dir);
    term::status(
        "Holding",
        format_args!(
            "the job lock on {} until stopped (the dir lingers only until then)",
            path.display()
        ),
    );
    while interrupts.check().is_ok() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(Exit::SUCCESS)
}

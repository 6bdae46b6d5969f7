//! A wrapped command's life, in the order of docs/protocol.md#a-jobs-life: a nested run takes
//! nothing; else open the root, reclaim if low, take the job's lease, prune an adopted dir, check
//! there is room, run the tool with the job's environment under the heartbeat, prune at release,
//! release — on success, failure and signals alike, each step told to the reporters as an event.

use crate::config::Config;
use crate::exit::{CliResult, Exit};
use crate::process::{self, Interrupts};
use crate::report::{Event, Reporter, Reporters};
use crate::tool::Tool;

use super::job::{acquire, nested, stopped_by};
use super::job_env::JobEnv;
use super::release::{count_at_release, prune_at_release, push_at_release, record_warm};

/// Run `tool` under the job's lease and return how it exited, telling `out` what happens
/// (docs/protocol.md#a-jobs-life).
pub(crate) fn wrapped(cfg: &Config, tool: &Tool, out: &mut Reporters) -> CliResult {
    tool.check_args()?;
    let mut pb = tool.process(cfg)?;
    let llvm_cov = matches!(tool, Tool::LlvmCov(_));
    if let Some(parent) = nested(cfg)? {
        // Inside a parent run's (or the action's `hold`'s) live lease for this same job: it holds
        // the lock and beats the heart; taking the lease again would wait for it forever.
        out.report(&Event::Nested {
            dir: &parent.path,
            job_id: &parent.job_id,
        });
        JobEnv::for_child(cfg, &parent, llvm_cov).apply(&mut pb);
        let exit = process::spawn(&pb)?.wait()?;
        out.report(&Event::Exited { exit });
        return Ok(exit);
    }
    let command: Vec<String> = tool
        .args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The job's shape, for the size budget: what this step ran, tool first (`nextest run` and
    // `cargo run` are different shapes).
    let shape = format!("{} {}", tool.name(), command.join(" "));
    let interrupts = Interrupts::install()?;
    let stopped = |e| stopped_by(&interrupts, e);
    let (session, lease_env) =
        acquire(cfg, tool.name(), command, &|| interrupts.check(), out).map_err(stopped)?;
    JobEnv::for_child(cfg, &lease_env, llvm_cov).apply(&mut pb);
    // The command's tree inherits the tree lock: the dir stays protected while any process of
    // it lives, even if wrapper and reaper are SIGKILLed together (docs/protocol.md#what-a-lock-means).
    pb.inherit_fd(session.held().tree_fd());
    // Stopped while sweeping, or the dir lost meanwhile: the session releases (on drop)
    // without starting the command.
    interrupts.check().map_err(|e| stopped(e.into()))?;
    session.check()?;

    let started = std::time::Instant::now();
    let child = process::spawn(&pb)?;
    let pgid = child.pgid();
    session.on_lost(move || {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
    });
    let exit = child.wait();
    count_at_release(&session, Some(started.elapsed()), out);
    if let Ok(e) = &exit {
        prune_at_release(cfg, &session, &shape, *e == Exit::SUCCESS, out);
    }
    // Whatever the command's exit: the units it built are what the next job starts from.
    record_warm(cfg, &session);
    if exit.as_ref().is_ok_and(|e| *e == Exit::SUCCESS) {
        push_at_release(cfg, &session);
    }
    // The heartbeat's error (the dir was moved away) outranks the child's status; a failed
    // release is only a warning (`Session::finish`).
    session.finish()?;
    let exit = exit?;
    out.report(&Event::Exited { exit });
    Ok(exit)
}

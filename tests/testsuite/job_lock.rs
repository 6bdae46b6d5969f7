//! Linger ends with the job (docs/protocol.md#linger-ends-with-the-job): a
//! job-lifetime holder of the job's `job.lock` (`hold`, `hold --job-only`), killed by the CI's
//! end-of-job cleanup, ends its steps' linger; while it lives the linger protects the dir.

use std::path::Path;

use crate::common::*;

fn removed(env: &Env) -> Vec<String> {
    let out = env.ok(env.path(), ["gc", "--json", "--all-expired"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    removed_names(&report)
}

fn wait_holding(run: &Spawned) {
    assert!(
        wait_for(30, || run.stderr_so_far().contains("Holding")),
        "the holder never held:\n{}",
        run.stderr_so_far()
    );
}

fn step(env: &Env, ws: &Path, job: &str) {
    env.ok(ws, ["--job-id", job, "exec", "--", "true"]);
}

#[test]
fn a_job_only_holder_killed_at_the_end_of_the_job_ends_the_linger() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "job-a");
    // Started after the job's first step (as the action starts it): recorded in its lease.
    let holder = env.spawn(&ws, "holder", ["--job-id", "job-a", "hold", "--job-only"]);
    wait_holding(&holder);
    assert_eq!(env.lease("job-a")["job_lock"], true);
    assert!(removed(&env).is_empty());
    // A later step of the job, released while the holder lives, records it itself.
    step(&env, &ws, "job-a");
    assert_eq!(env.lease("job-a")["job_lock"], true);
    // The job is not over: its dir lingers (a sweep of every expired dir keeps it).
    assert!(removed(&env).is_empty());
    assert_eq!(env.job_dirs(), ["job-a"]);
    // The runner's end-of-job cleanup: SIGKILL, no chance to say anything.
    send_signal(holder.pid(), libc::SIGKILL);
    let _ = holder.finish(30);
    assert_eq!(removed(&env), ["job-a"]);
}

#[test]
fn the_actions_holder_ends_the_linger_when_it_is_stopped() {
    let env = Env::new();
    let ws = env.fixture("small");
    let holder = env.spawn(&ws, "holder", ["--job-id", "job-b", "hold"]);
    wait_holding(&holder);
    send_signal(holder.pid(), libc::SIGTERM);
    let out = holder.finish(30);
    assert_success(&out);
    assert_eq!(env.lease("job-b")["state"], "released");
    assert_eq!(env.lease("job-b")["job_lock"], true);
    let status = env.status();
    assert_eq!(status["leases"][0]["state"], "expired", "{status:#}");
    assert_eq!(removed(&env), ["job-b"]);
}

#[test]
fn without_a_job_holder_the_linger_runs_its_course() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "job-c");
    assert!(env.lease("job-c").get("job_lock").is_none());
    assert!(removed(&env).is_empty());
    assert_eq!(env.job_dirs(), ["job-c"]);
}

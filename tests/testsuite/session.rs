//! The lease session (`lease::Session`) with real processes and real locks: a lease taken and then
//! left by an error path is released (a program that does not exist: `bad_input.rs`), and a lease is renewed from the moment it is taken, so a
//! precheck sweep that outlasts the TTL cannot let it expire under the job.

use std::time::{Duration, SystemTime};

use crate::common::*;

/// The job dir `job` is released (state `released`) and nobody holds its lock.
fn assert_released(env: &Env, job: &str, out: &std::process::Output) {
    assert_eq!(env.lease(job)["state"], "released", "{}", describe(out));
    assert!(
        !is_locked(&env.root.join(job)),
        "{job} still locked after the run ended\n{}",
        describe(out)
    );
}

/// `exec` with no disk pressure, stopped (paused) in the precheck sweep a new job runs once it
/// holds its lease: the sweep after the lease is the only one.
fn paused_in_precheck(env: &Env, ws: &std::path::Path, job: &str, args: &[&str]) -> Paused {
    let mut cmd = env.cmd(ws);
    cmd.args(["guarded", "--reclaim-below", "0%", "--job-id", job])
        .args(args);
    env.paused(cmd, job, "guard-scanned")
}

#[test]
fn a_signal_during_the_precheck_leaves_the_lease_released_and_the_command_unstarted() {
    let env = Env::new();
    let ws = env.fixture("small");
    let paused = paused_in_precheck(&env, &ws, "stopped", &["exec", "--", "touch", "ran"]);
    let lease = env.lease("stopped");
    assert_eq!(lease["state"], "active");
    // The lease names its holder: the wrapper, stopped in the sweep.
    send_signal(lease["pid"].as_i64().unwrap() as i32, libc::SIGTERM);
    let out = paused.resume(60);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(!ws.join("ran").exists(), "the command ran after the signal");
    assert_released(&env, "stopped", &out);
}

#[test]
fn a_hold_that_cannot_export_its_environment_leaves_its_lease_released() {
    let env = Env::new();
    let ws = env.fixture("small");
    let mut cmd = env.cmd(&ws);
    // A file in a directory that does not exist: the export fails after the lease is taken.
    cmd.env(
        "CARGO_GUARDED_EXPORT_ENV",
        env.path().join("missing-dir/github_env"),
    )
    .args(["guarded", "--job-id", "held", "hold"]);
    let out = output(&mut cmd);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_released(&env, "held", &out);
}

/// RFC 3339 from a lease, as a `SystemTime`.
fn time(lease: &serde_json::Value, field: &str) -> SystemTime {
    humantime::parse_rfc3339_weak(lease[field].as_str().unwrap()).unwrap()
}

#[test]
fn a_precheck_longer_than_the_ttl_keeps_the_lease_renewed() {
    let env = Env::new();
    let ws = env.fixture("small");
    let paused = paused_in_precheck(&env, &ws, "slow", &["--ttl", "1s", "exec", "--", "true"]);
    let created = time(&env.lease("slow"), "created_at");
    // Well past the 1 s TTL, the lease must have been renewed meanwhile (by the heartbeat, since
    // the precheck is stopped).
    assert!(
        wait_for(20, || {
            let lease = env.lease("slow");
            time(&lease, "renewed_at")
                .duration_since(created)
                .is_ok_and(|d| d > Duration::from_secs(2))
        }),
        "the lease was not renewed while the precheck ran: {:#}",
        env.lease("slow")
    );
    // Another process's guard sees a live lease, not an expired one kept only by its lock.
    let out = env.ok(env.path(), ["gc", "--dry-run", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reason = kept_reason(&report, "slow");
    assert!(
        reason.starts_with("kept: lease held by"),
        "gc did not call the dir live: {reason}"
    );
    let out = paused.resume(60);
    assert_success(&out);
    assert_released(&env, "slow", &out);
}

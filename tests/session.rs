//! The lease session (`lease::Session`) with real processes and real locks: a lease taken and then
//! left by an error path is released, and a lease is renewed from the moment it is taken, so a
//! precheck sweep that outlasts the TTL cannot let it expire under the job.

mod common;

use std::time::{Duration, SystemTime};

use common::*;

/// The job dir `job` is released (state `released`) and nobody holds its lock.
fn assert_released(env: &Env, job: &str, out: &std::process::Output) {
    assert_eq!(env.lease(job)["state"], "released", "{}", describe(out));
    assert!(
        !is_locked(&env.root.join(job)),
        "{job} still locked after the run ended\n{}",
        describe(out)
    );
}

#[test]
fn a_command_that_cannot_start_leaves_its_lease_released() {
    let env = Env::new();
    let ws = env.fixture("small");
    let out = env.run(
        &ws,
        [
            "--job-id",
            "nostart",
            "exec",
            "--",
            "/nonexistent/program",
        ],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("/nonexistent/program"),
        "{}",
        describe(&out)
    );
    assert_released(&env, "nostart", &out);
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
    let mut cmd = env.cmd(&ws);
    // No disk pressure: the only sweep is the one a new job runs once it holds its lease, and
    // it stops (paused) after its scan, holding the lease for as long as the test likes.
    cmd.args([
        "guarded",
        "--ttl",
        "1s",
        "--reclaim-below",
        "0%",
        "--job-id",
        "slow",
        "exec",
        "--",
        "true",
    ]);
    let paused = env.paused(cmd, "slow", "guard-scanned");
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

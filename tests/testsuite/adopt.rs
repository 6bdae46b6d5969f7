//! Warm reuse and bounded disk: new jobs adopt expired dirs of their workspace, never
//! another's, and adoption races the guard only through the dir's lock.
//!
//! Seeding is off here (`CARGO_GUARDED_SEED=0`): these are adoption's own scenarios. With seeding
//! on, the freshest finished dir of a workspace is kept as the seed source instead of being
//! adopted (tests/seed.rs).

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

/// A CI-like step on `runner` for job `job`.
fn step(env: &Env, ws: &Path, runner: &str, job: &str, args: &[&str]) -> Output {
    let mut cmd = env.cmd(ws);
    cmd.env("CARGO_GUARDED_SEED", "0")
        .env("RUNNER_NAME", runner)
        .args(["guarded", "--job-id", job])
        .args(args);
    let out = output(&mut cmd);
    assert_success(&out);
    out
}

/// A fixture workspace whose root holds one expired dir, `donor`, ready to be adopted.
fn with_expired_donor() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let ws = env.fixture("small");
    step(
        &env,
        &ws,
        "r",
        "donor",
        &["--linger", "0s", "exec", "--", "true"],
    );
    (env, ws)
}

fn compiled_a_dependency(out: &Output) -> bool {
    stderr(out)
        .lines()
        .any(|l| l.trim_start().starts_with("Compiling util"))
}

#[test]
fn consecutive_jobs_on_one_runner_reuse_one_warm_dir() {
    let env = Env::new();
    let ws = env.fixture("small");
    let first = step(&env, &ws, "runner-1", "run-1", &["build"]);
    assert!(compiled_a_dependency(&first));
    for i in 2..=20 {
        let out = step(&env, &ws, "runner-1", &format!("run-{i}"), &["build"]);
        assert!(
            !compiled_a_dependency(&out),
            "run {i} started cold:\n{}",
            describe(&out)
        );
        assert!(
            stderr(&out).contains(&format!("Adopted run-{}", i - 1)),
            "run {i}:\n{}",
            describe(&out)
        );
        let dirs = env.job_dirs();
        assert_eq!(dirs, [format!("run-{i}")], "after run {i}");
    }
}

#[test]
fn alternating_runners_keep_two_warm_dirs() {
    let env = Env::new();
    let ws = env.fixture("small");
    for i in 1..=8 {
        let runner = if i % 2 == 0 { "runner-b" } else { "runner-a" };
        let out = step(&env, &ws, runner, &format!("alt-{i}"), &["build"]);
        if i > 2 {
            assert!(
                !compiled_a_dependency(&out),
                "run {i} on {runner} started cold:\n{}",
                describe(&out)
            );
        }
        assert!(
            env.job_dirs().len() <= 2,
            "after run {i}: {:?}",
            env.job_dirs()
        );
    }
}

#[test]
fn a_released_lease_of_another_runner_is_never_adopted() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "runner-a", "a-1", &["exec", "--", "true"]);
    let out = step(&env, &ws, "runner-b", "b-1", &["exec", "--", "true"]);
    assert!(stderr(&out).contains("fresh dir"), "{}", describe(&out));
    assert_eq!(env.job_dirs(), ["a-1", "b-1"]);
    assert_eq!(env.lease("a-1")["state"], "released");
}

#[test]
fn another_workspace_or_toolchain_never_adopts() {
    let env = Env::new();
    let one = env.fixture_as("small", "one");
    let two = env.fixture_as("small", "two");
    step(
        &env,
        &one,
        "r",
        "one-1",
        &["--linger", "0s", "exec", "--", "true"],
    );
    let out = step(&env, &two, "r2", "two-1", &["exec", "--", "true"]);
    assert!(stderr(&out).contains("fresh dir"), "{}", describe(&out));

    // A rustc that reports another release: same workspace, different toolchain.
    let fake = env.path().join("rustc-other");
    std::fs::write(
        &fake,
        "#!/bin/sh\nif [ \"$1\" = -vV ]; then rustc -vV | sed 's/^release: .*/release: 0.0.1/'; else exec rustc \"$@\"; fi\n",
    )
    .unwrap();
    assert!(
        Command::new("chmod")
            .arg("+x")
            .arg(&fake)
            .status()
            .unwrap()
            .success()
    );
    let mut cmd = env.cmd(&one);
    cmd.env("CARGO_GUARDED_SEED", "0")
        .env("RUSTC", &fake)
        .env("RUNNER_NAME", "r3")
        .args(["guarded", "--job-id", "one-2", "exec", "--", "true"]);
    let out = output(&mut cmd);
    assert_success(&out);
    assert!(stderr(&out).contains("fresh dir"), "{}", describe(&out));
    assert!(env.job_dirs().contains(&"one-1".to_owned()));

    // With the same toolchain, it is adopted.
    let out = step(&env, &one, "r4", "one-3", &["exec", "--", "true"]);
    assert!(stderr(&out).contains("Adopted one-1"), "{}", describe(&out));
}

#[test]
fn no_adopt_starts_cold() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(
        &env,
        &ws,
        "r",
        "a",
        &["--linger", "0s", "exec", "--", "true"],
    );
    let out = step(&env, &ws, "r2", "b", &["--no-adopt", "exec", "--", "true"]);
    assert!(
        stderr(&out).contains("fresh dir; adoption is off"),
        "{}",
        describe(&out)
    );
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_GUARDED_ADOPT", "0")
        .env("CARGO_GUARDED_SEED", "0")
        .args(["guarded", "--job-id", "c", "exec", "--", "true"]);
    let out = output(&mut cmd);
    assert!(
        stderr(&out).contains("adoption is off"),
        "{}",
        describe(&out)
    );
}

/// Two jobs and a guard race for one expired dir. The first job is paused holding the dir's
/// lock (after its expiry re-check, before the rename); the other job and the guard must lose
/// cleanly: the job starts fresh, the guard keeps the dir.
#[test]
fn adoption_and_the_guard_race_only_through_the_lock() {
    let (env, ws) = with_expired_donor();
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_GUARDED_SEED", "0")
        .env("RUNNER_NAME", "r1")
        .args(["guarded", "--job-id", "first", "exec", "--", "true"]);
    let first = env.paused(cmd, "first", "adopt-locked");

    let second = step(&env, &ws, "r2", "second", &["exec", "--", "true"]);
    assert!(
        stderr(&second).contains("fresh dir"),
        "{}",
        describe(&second)
    );
    let out = env.ok(env.path(), ["gc", "--json", "--all-expired"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["removed"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert!(env.root.join("donor/target").exists());

    let first = first.resume(60);
    assert_success(&first);
    assert!(
        stderr(&first).contains("Adopted donor"),
        "{}",
        describe(&first)
    );
    let mut dirs = env.job_dirs();
    dirs.sort();
    assert_eq!(dirs, ["first", "second"]);
}

/// The guard holds the expired dir's lock (paused after locking it): a new job must not adopt
/// it, and starts fresh; the guard then removes it.
#[test]
fn a_dir_the_guard_is_claiming_is_not_adopted() {
    let (env, ws) = with_expired_donor();
    let mut cmd = env.cmd(env.path());
    cmd.args(["guarded", "gc", "--all-expired"]);
    let guard = env.paused(cmd, "guard", "guard-locked");
    let job = step(&env, &ws, "r2", "newcomer", &["exec", "--", "true"]);
    assert!(stderr(&job).contains("fresh dir"), "{}", describe(&job));
    let guard = guard.resume(60);
    assert_success(&guard);
    assert!(
        stderr(&guard).contains("Removed donor"),
        "{}",
        describe(&guard)
    );
    assert_eq!(env.job_dirs(), ["newcomer"]);
}

#[test]
fn retention_keeps_n_expired_dirs_per_workspace() {
    let env = Env::new();
    let ws = env.fixture("small");
    for i in 1..=4 {
        step(
            &env,
            &ws,
            &format!("r{i}"),
            &format!("k-{i}"),
            &["--no-adopt", "--linger", "0s", "exec", "--", "true"],
        );
    }
    // Each new job's precheck applied retention (keep 1) to the jobs before it, so k-3 and k-4
    // remain; a sweep keeping 2 leaves both, the default keeps the most recently used.
    assert_eq!(env.job_dirs(), ["k-3", "k-4"]);
    let out = env.ok(
        env.path(),
        ["gc", "--reclaim-below", "0%", "--keep-expired", "2"],
    );
    assert_eq!(env.job_dirs(), ["k-3", "k-4"], "{}", describe(&out));
    env.ok(env.path(), ["gc", "--reclaim-below", "0%"]);
    assert_eq!(env.job_dirs(), ["k-4"]);
}

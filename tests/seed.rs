//! Seeding (issue 18, docs/protocol.md#seed): a job with no expired dir of its workspace to adopt
//! starts from a copy of the freshest finished dir of its workspace, on every filesystem, at any
//! concurrency, and a copy its source's owner overtook is discarded.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// A CI-like step on `runner` (an ephemeral runner: a new name per job) for job `job`.
fn job_cmd(env: &Env, ws: &Path, runner: &str, job: &str, args: &[&str]) -> Command {
    let mut cmd = env.cmd(ws);
    cmd.env("RUNNER_NAME", runner)
        .args(["guarded", "--job-id", job])
        .args(args);
    cmd
}

fn step(env: &Env, ws: &Path, runner: &str, job: &str, args: &[&str]) -> Output {
    let out = output(&mut job_cmd(env, ws, runner, job, args));
    assert_success(&out);
    out
}

/// Cargo found every unit fresh: nothing compiled, and the build did run.
fn assert_warm(out: &Output) {
    assert!(
        !compiled_anything(out) && stderr(out).contains("Finished"),
        "the job started cold:\n{}",
        describe(out)
    );
}

#[test]
fn a_second_job_right_after_a_finished_one_compiles_nothing() {
    let env = Env::new();
    let ws = env.fixture("small");
    let first = step(&env, &ws, "arc-runner-1", "job-1", &["build"]);
    assert!(compiled_anything(&first), "{}", describe(&first));
    // job-1's dir lingers (released, protected for an hour): not adoptable, but a seed source.
    let second = step(&env, &ws, "arc-runner-2", "job-2", &["build"]);
    assert_warm(&second);
    let err = stderr(&second);
    assert!(
        err.contains("Seeded") && err.contains("from finished job `job-1`"),
        "{err}"
    );
    assert_eq!(env.lease("job-2")["origin"], "seeded");
    assert_eq!(env.lease("job-1")["state"], "released");
    assert_eq!(env.job_dirs(), ["job-1", "job-2"]);
}

//! Warm reuse respects trust (docs/protocol.md#scopes): a job adopts or seeds only from dirs that
//! jobs of its own ref, its pull request's base branch or the default branch wrote, so a pull
//! request's job cannot plant a file that main's next job runs. Real cargo on a fixture crate;
//! each CI's variables as the CI sets them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

/// GitHub Actions' variables for an event (`GITHUB_RUN_ID` marks GitHub without turning on its
/// reporter), with its event payload at `GITHUB_EVENT_PATH` when given.
fn github(
    env: &Env,
    event: &str,
    git_ref: &str,
    base: Option<&str>,
    payload: Option<&str>,
) -> Vars {
    let mut vars = vec![
        ("GITHUB_RUN_ID".to_owned(), "100".to_owned()),
        ("GITHUB_EVENT_NAME".to_owned(), event.to_owned()),
        ("GITHUB_REF".to_owned(), git_ref.to_owned()),
    ];
    if let Some(b) = base {
        vars.push(("GITHUB_BASE_REF".to_owned(), b.to_owned()));
    }
    if let Some(json) = payload {
        let path = env
            .path()
            .join(format!("event-{event}-{}.json", git_ref.replace('/', "_")));
        std::fs::write(&path, json).unwrap();
        vars.push((
            "GITHUB_EVENT_PATH".to_owned(),
            path.to_string_lossy().into_owned(),
        ));
    }
    vars
}

type Vars = Vec<(String, String)>;

const DEFAULT_MAIN: &str = r#"{"repository": {"default_branch": "main"}}"#;

fn push_main(env: &Env) -> Vars {
    github(env, "push", "refs/heads/main", None, Some(DEFAULT_MAIN))
}

fn pull_request(env: &Env, n: u32) -> Vars {
    github(
        env,
        "pull_request",
        &format!("refs/pull/{n}/merge"),
        Some("main"),
        Some(DEFAULT_MAIN),
    )
}

/// Job `job` (on its own runner) with the CI variables `vars`, running `args`, verbose.
fn job_cmd(env: &Env, ws: &Path, vars: &Vars, job: &str, args: &[&str]) -> Command {
    let mut cmd = env.cmd(ws);
    cmd.env("RUNNER_NAME", format!("runner-{job}"))
        .env("CARGO_GUARDED_MIN_FREE", "0")
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .args(["guarded", "-v", "--job-id", job])
        .args(args);
    cmd
}

fn step(env: &Env, ws: &Path, vars: &Vars, job: &str, args: &[&str]) -> Output {
    let out = output(&mut job_cmd(env, ws, vars, job, args));
    assert_success(&out);
    out
}

fn build(env: &Env, ws: &Path, vars: &Vars, job: &str) -> Output {
    step(env, ws, vars, job, &["build"])
}

/// A file only this job's dir has.
fn plant(env: &Env, job: &str) -> PathBuf {
    let marker = env.root.join(job).join("target/debug/planted");
    std::fs::write(&marker, "a pull request's file").unwrap();
    marker
}

fn planted_in(env: &Env, job: &str) -> bool {
    env.root.join(job).join("target/debug/planted").exists()
}

/// The job started from nothing: fresh, and cargo compiled.
fn assert_fresh(env: &Env, job: &str, out: &Output) {
    assert_eq!(env.lease(job)["origin"], "fresh", "{}", describe(out));
    assert!(compiled_anything(out), "{}", describe(out));
    assert!(!planted_in(env, job), "{}", describe(out));
}

/// The job started warm from another dir: cargo compiled nothing.
fn assert_warm(env: &Env, job: &str, out: &Output) {
    let origin = env.lease(job)["origin"].clone();
    assert!(
        origin == "seeded" || origin == "adopted",
        "{origin}: {}",
        describe(out)
    );
    assert!(!compiled_anything(out), "{}", describe(out));
}

/// The scopes `status --json` lists for a job dir.
fn scopes(env: &Env, job: &str) -> Vec<String> {
    let status = env.status();
    let entry = status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["job_id"] == job)
        .unwrap_or_else(|| panic!("no {job} in {status:#}"))
        .clone();
    serde_json::from_value(entry["scopes"].clone()).unwrap_or_else(|e| panic!("{e}: {entry:#}"))
}

/// The verbose note that passed over `job`'s dir for its scope.
fn passed_over(out: &Output, job: &str) -> bool {
    stderr(out).lines().any(|l| {
        l.contains("not adopting or seeding from") && l.contains(&format!("/{job}: scope: "))
    })
}

#[test]
fn main_never_starts_from_what_a_pull_request_built() {
    let env = Env::new();
    let ws = env.fixture("small");
    build(&env, &ws, &pull_request(&env, 5), "pr-5");
    // A build script or a test of the pull request's code can write anything in its own dir.
    plant(&env, "pr-5");
    let main = build(&env, &ws, &push_main(&env), "main-1");
    assert_fresh(&env, "main-1", &main);
    assert!(passed_over(&main, "pr-5"), "{}", describe(&main));
    assert!(
        stderr(&main).contains("Passed over 1 finished dir of this workspace"),
        "{}",
        describe(&main)
    );
    assert_eq!(scopes(&env, "pr-5"), ["pr:pull/5->main"]);
    assert_eq!(scopes(&env, "main-1"), ["branch:main"]);
    // Main's next job starts from main's dir, never the pull request's.
    let next = build(&env, &ws, &push_main(&env), "main-2");
    assert_warm(&env, "main-2", &next);
    assert!(!planted_in(&env, "main-2"));
    assert!(
        stderr(&next).contains("from finished job `main-1`"),
        "{}",
        describe(&next)
    );
}

#[test]
fn a_pull_request_warms_from_main_and_its_dir_keeps_both_scopes() {
    let env = Env::new();
    let ws = env.fixture("small");
    build(&env, &ws, &push_main(&env), "main-1");
    let pr = build(&env, &ws, &pull_request(&env, 5), "pr-5");
    assert_warm(&env, "pr-5", &pr);
    // Sticky: the seeded dir is as trusted as its least trusted writer.
    assert_eq!(scopes(&env, "pr-5"), ["branch:main", "pr:pull/5->main"]);
    let text = stdout(&env.ok(env.path(), ["status"]));
    assert!(text.contains("SCOPE"), "{text}");
    assert!(text.contains("branch:main + pr:pull/5->main"), "{text}");
}

#[test]
fn a_pull_request_never_warms_from_another_pull_request() {
    let env = Env::new();
    let ws = env.fixture("small");
    build(&env, &ws, &pull_request(&env, 5), "pr-5");
    plant(&env, "pr-5");
    let other = build(&env, &ws, &pull_request(&env, 6), "pr-6");
    assert_fresh(&env, "pr-6", &other);
    assert!(passed_over(&other, "pr-5"), "{}", describe(&other));
    // Its own later job (a re-run, another workflow) may.
    let again = build(&env, &ws, &pull_request(&env, 5), "pr-5-again");
    assert_warm(&env, "pr-5-again", &again);
}

#[test]
fn a_dir_a_pull_request_adopted_is_no_longer_main_s() {
    let env = Env::new();
    let ws = env.fixture("small");
    // Adoption's own scenario: seeding off, dirs expire at release.
    let no_seed = |mut v: Vars| {
        v.push(("CARGO_GUARDED_SEED".into(), "0".into()));
        v.push(("CARGO_GUARDED_LINGER".into(), "0s".into()));
        v
    };
    build(&env, &ws, &no_seed(push_main(&env)), "main-1");
    let pr = build(&env, &ws, &no_seed(pull_request(&env, 5)), "pr-5");
    assert_eq!(env.lease("pr-5")["origin"], "adopted", "{}", describe(&pr));
    assert_eq!(env.job_dirs(), ["pr-5"]);
    plant(&env, "pr-5");
    let main = build(&env, &ws, &no_seed(push_main(&env)), "main-2");
    assert_fresh(&env, "main-2", &main);
    assert!(passed_over(&main, "pr-5"), "{}", describe(&main));
    assert_eq!(env.job_dirs(), ["main-2", "pr-5"]);
}

#[test]
fn pull_request_target_counts_as_the_pull_request() {
    let env = Env::new();
    let ws = env.fixture("small");
    // Runs with main's ref and secrets, and checks out the pull request's code.
    let target = github(
        &env,
        "pull_request_target",
        "refs/heads/main",
        Some("main"),
        Some(r#"{"repository": {"default_branch": "main"}, "pull_request": {"number": 7}}"#),
    );
    build(&env, &ws, &target, "prt-7");
    plant(&env, "prt-7");
    assert_eq!(scopes(&env, "prt-7"), ["pr:pull/7->main"]);
    let main = build(&env, &ws, &push_main(&env), "main-1");
    assert_fresh(&env, "main-1", &main);
}

#[test]
fn gitlab_merge_requests_and_protected_refs() {
    let env = Env::new();
    let ws = env.fixture("small");
    let gitlab = |pairs: &[(&str, &str)]| -> Vars {
        [
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_ID", "10"),
            ("CI_DEFAULT_BRANCH", "main"),
        ]
        .iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    // A fork's merge request from its own `main`: still a merge request, not main.
    let fork_mr = gitlab(&[
        ("CI_COMMIT_REF_NAME", "main"),
        ("CI_COMMIT_REF_PROTECTED", "false"),
        ("CI_MERGE_REQUEST_IID", "3"),
        ("CI_MERGE_REQUEST_PROJECT_ID", "10"),
        ("CI_MERGE_REQUEST_SOURCE_PROJECT_ID", "99"),
        ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "main"),
        ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main"),
    ]);
    build(&env, &ws, &fork_mr, "gl-mr");
    plant(&env, "gl-mr");
    assert_eq!(scopes(&env, "gl-mr"), ["pr:99:main->main,unprotected"]);
    let main = gitlab(&[
        ("CI_COMMIT_REF_NAME", "main"),
        ("CI_COMMIT_REF_PROTECTED", "true"),
    ]);
    let out = build(&env, &ws, &main, "gl-main");
    assert_fresh(&env, "gl-main", &out);
    // An unprotected branch may warm from the protected default branch.
    let feature = gitlab(&[
        ("CI_COMMIT_REF_NAME", "feature"),
        ("CI_COMMIT_REF_PROTECTED", "false"),
    ]);
    let out = build(&env, &ws, &feature, "gl-feature");
    assert_warm(&env, "gl-feature", &out);
    assert!(!planted_in(&env, "gl-feature"));
}

#[test]
fn buildkite_pull_request_false_is_a_branch_build() {
    let env = Env::new();
    let ws = env.fixture("small");
    let buildkite = |branch: &str, pr: &str| -> Vars {
        [
            ("BUILDKITE", "true"),
            ("BUILDKITE_BRANCH", branch),
            ("BUILDKITE_PULL_REQUEST", pr),
            ("BUILDKITE_PULL_REQUEST_BASE_BRANCH", "main"),
            ("BUILDKITE_PIPELINE_DEFAULT_BRANCH", "main"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    build(&env, &ws, &buildkite("feature", "12"), "bk-pr");
    plant(&env, "bk-pr");
    assert_eq!(scopes(&env, "bk-pr"), ["pr:pull/12->main"]);
    let main = build(&env, &ws, &buildkite("main", "false"), "bk-main");
    assert_fresh(&env, "bk-main", &main);
    assert_eq!(scopes(&env, "bk-main"), ["branch:main"]);
    // The next pull request warms from main's dir, not the other pull request's.
    let pr = build(&env, &ws, &buildkite("other", "13"), "bk-pr-13");
    assert_warm(&env, "bk-pr-13", &pr);
    assert!(!planted_in(&env, "bk-pr-13"));
    assert!(stderr(&pr).contains("`bk-main`"), "{}", describe(&pr));
}

#[test]
fn with_the_default_branch_unknown_only_the_job_s_own_ref_warms_it() {
    let env = Env::new();
    let ws = env.fixture("small");
    // No event payload: GitHub does not say which branch is the default.
    let main = github(&env, "push", "refs/heads/main", None, None);
    let pr = github(
        &env,
        "pull_request",
        "refs/pull/5/merge",
        Some("main"),
        None,
    );
    build(&env, &ws, &main, "main-1");
    let out = build(&env, &ws, &pr, "pr-5");
    assert_fresh(&env, "pr-5", &out);
    assert!(
        stderr(&out).contains("the default branch is unknown"),
        "{}",
        describe(&out)
    );
    // `--default-branch` tells it (another pull request: pr-5's dir is not its own).
    let pr = github(
        &env,
        "pull_request",
        "refs/pull/6/merge",
        Some("main"),
        None,
    );
    let out = step(
        &env,
        &ws,
        &pr,
        "pr-6",
        &["--default-branch", "main", "build"],
    );
    assert_warm(&env, "pr-6", &out);
    assert!(stderr(&out).contains("`main-1`"), "{}", describe(&out));
}

#[test]
fn warm_from_any_restores_the_old_behaviour_and_says_so() {
    let env = Env::new();
    let ws = env.fixture("small");
    build(&env, &ws, &pull_request(&env, 5), "pr-5");
    plant(&env, "pr-5");
    let out = step(
        &env,
        &ws,
        &push_main(&env),
        "main-1",
        &["--warm-from", "any", "build"],
    );
    assert_warm(&env, "main-1", &out);
    let warnings = stderr(&out).matches("warning: --warm-from any").count();
    assert_eq!(warnings, 1, "{}", describe(&out));
    // The dir keeps what it came from.
    assert_eq!(scopes(&env, "main-1"), ["pr:pull/5->main", "branch:main"]);
    // The variable (the action's input) does the same; a later step of the job says nothing.
    let mut vars = push_main(&env);
    vars.push(("CARGO_GUARDED_WARM_FROM".into(), "any".into()));
    let out = build(&env, &ws, &vars, "main-2");
    assert_warm(&env, "main-2", &out);
    let again = build(&env, &ws, &vars, "main-2");
    assert!(
        !stderr(&again).contains("--warm-from any"),
        "{}",
        describe(&again)
    );
}

#[test]
fn leases_without_scopes_are_for_local_jobs_only() {
    let env = Env::new();
    let ws = env.fixture("small");
    build(&env, &ws, &vec![], "old");
    // As a version before scopes wrote it.
    let path = env.root.join("old/lease.json");
    let mut lease = env.lease("old");
    lease.as_object_mut().unwrap().remove("scopes").unwrap();
    std::fs::write(&path, serde_json::to_vec_pretty(&lease).unwrap()).unwrap();
    plant(&env, "old");
    let ci = build(&env, &ws, &push_main(&env), "main-1");
    assert_fresh(&env, "main-1", &ci);
    assert!(
        stderr(&ci).contains("written before scopes were recorded"),
        "{}",
        describe(&ci)
    );
    // A local run takes it (and never main's: local runs and CI are kept apart).
    let local = build(&env, &ws, &vec![], "local-2");
    assert_warm(&env, "local-2", &local);
    assert!(planted_in(&env, "local-2"));
    assert_eq!(scopes(&env, "local-2"), ["unknown", "local"]);
}

#[test]
fn doctor_warns_when_one_root_holds_pull_requests_and_branches() {
    let env = Env::new();
    let ws = env.fixture("small");
    let doctor = |env: &Env| {
        let out = env.run(&ws, ["doctor"]);
        stdout(&out) + &stderr(&out)
    };
    build(&env, &ws, &push_main(&env), "main-1");
    let text = doctor(&env);
    assert!(!text.contains("holds dirs of pull requests"), "{text}");
    build(&env, &ws, &pull_request(&env, 5), "pr-5");
    let text = doctor(&env);
    assert!(
        text.contains("holds dirs of pull requests (pr:pull/5->main) beside those of branches"),
        "{text}"
    );
    assert!(text.contains("their own root and user"), "{text}");
}

//! The core capability with real cargo: builds land in the job's leased dir under the root, exit
//! codes pass through, the child's environment is job-scoped, job ids come from CI and are
//! sanitized, and two runs of one job take turns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

/// `KEY=VALUE` lines of `cargo guarded env`.
fn env_lines(out: &Output) -> HashMap<String, String> {
    stdout(out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The job dir (under the root) a `CARGO_TARGET_DIR=<root>/<job>/target` value names.
fn job_of(env: &Env, target_dir: &str) -> String {
    let p = Path::new(target_dir);
    assert_eq!(p.file_name().unwrap(), "target", "{target_dir}");
    let job = p.parent().unwrap();
    assert_eq!(
        job.parent().unwrap(),
        env.root,
        "{target_dir} is not in the root"
    );
    job.file_name().unwrap().to_str().unwrap().to_owned()
}

/// A crate that does not compile.
fn broken_crate(env: &Env) -> PathBuf {
    let dir = env.path().join("broken");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        "fn main() {\n    let x: u32 = \"not a number\";\n}\n",
    )
    .unwrap();
    dir
}

#[test]
fn build_lands_under_the_root_is_released_and_warm() {
    let env = Env::new();
    let ws = env.fixture("small");
    let first = env.ok(&ws, ["build"]);
    assert!(compiled_anything(&first), "{}", describe(&first));
    assert!(!ws.join("target").exists(), "./target must not be created");
    for member in ["app", "util"] {
        assert!(!ws.join(member).join("target").exists());
    }
    let dirs = env.job_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let target = env.root.join(&dirs[0]).join("target");
    assert!(target.join("debug/app").is_file(), "{}", describe(&first));
    let lease = env.lease(&dirs[0]);
    assert_eq!(lease["state"], "released", "{lease}");
    assert!(!is_locked(&env.root.join(&dirs[0])), "lock held after exit");

    let second = env.ok(&ws, ["build"]);
    assert!(!compiled_anything(&second), "{}", describe(&second));
    assert_eq!(env.job_dirs(), dirs, "same job, same dir");
    assert_eq!(env.lease(&dirs[0])["state"], "released");
}

#[test]
fn two_job_ids_at_once_get_separate_dirs() {
    let env = Env::new();
    let ws = env.fixture("small");
    // The root exists already (see `first_runs_on_a_new_root_at_once` for creating it at once).
    env.ok(&ws, ["--job-id", "setup", "env"]);
    let a = env.spawn(&ws, "a", ["--job-id", "job-a", "build"]);
    let b = env.spawn(&ws, "b", ["--job-id", "job-b", "build"]);
    let (a, b) = (a.finish(300), b.finish(300));
    for out in [&a, &b] {
        assert_success(out);
        assert!(compiled_anything(out), "{}", describe(out));
        assert!(
            !stderr(out).contains("Waiting for lease"),
            "different jobs must not wait for each other\n{}",
            describe(out)
        );
    }
    assert_eq!(env.job_dirs(), ["job-a", "job-b", "setup"]);
    for job in ["job-a", "job-b"] {
        assert!(env.root.join(job).join("target/debug/app").is_file());
        assert_eq!(env.lease(job)["state"], "released");
        assert_eq!(env.lease(job)["job_id"], job);
    }
    assert!(!ws.join("target").exists());
}

/// Runners sharing a host start their first jobs on a new root at the same moment.
#[test]
fn first_runs_on_a_new_root_at_once() {
    let env = Env::new();
    for round in 0..10 {
        let root = env.path().join(format!("root-{round}"));
        let runs: Vec<Spawned> = (0..6)
            .map(|i| {
                let mut cmd = env.cmd(env.path());
                cmd.env("CARGO_GUARDED_ROOT", &root).args([
                    "guarded",
                    "--job-id",
                    &format!("job-{i}"),
                    "exec",
                    "--",
                    "true",
                ]);
                spawn_logged(&mut cmd, &env.path().join(format!("run-{round}-{i}")))
            })
            .collect();
        for run in runs {
            assert_success(&run.finish(60));
        }
        assert!(root.join("CACHEDIR.TAG").is_file());
    }
}

#[test]
fn compile_error_exits_101_and_releases() {
    let env = Env::new();
    let dir = broken_crate(&env);
    let out = env.run(&dir, ["build"]);
    assert_eq!(out.status.code(), Some(101), "{}", describe(&out));
    assert!(
        stderr(&out).contains("mismatched types"),
        "{}",
        describe(&out)
    );
    let dirs = env.job_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert_eq!(env.lease(&dirs[0])["state"], "released");
    assert!(!dir.join("target").exists());
}

#[test]
fn test_arguments_pass_through_to_the_test_binary() {
    let env = Env::new();
    let ws = env.fixture("small");
    let out = env.ok(&ws, ["test", "--", "--exact", "tests::greets"]);
    let text = stdout(&out);
    assert!(
        text.contains("test tests::greets ... ok"),
        "{}",
        describe(&out)
    );
    for filtered in ["tests::other", "tests::doubles"] {
        assert!(
            !text.contains(filtered),
            "{filtered} ran despite --exact\n{}",
            describe(&out)
        );
    }
}

#[test]
fn exec_passes_the_exit_code_through() {
    let env = Env::new();
    let out = env.run(env.path(), ["exec", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let dirs = env.job_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert_eq!(env.lease(&dirs[0])["state"], "released");
}

#[test]
fn min_free_of_the_whole_disk_exits_75_before_cargo_starts() {
    let env = Env::new();
    let ws = env.fixture("small");
    let out = env.run(&ws, ["--min-free", "100%", "build"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(!compiled_anything(&out), "{}", describe(&out));
    assert!(!ws.join("target").exists());
    for job in env.job_dirs() {
        let target = env.root.join(&job).join("target");
        let built: Vec<_> = std::fs::read_dir(&target)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            built.is_empty(),
            "cargo ran in {target:?}: {built:?}\n{}",
            describe(&out)
        );
        assert_eq!(env.lease(&job)["state"], "released");
    }

    // The message names free and required bytes; required is the whole filesystem as df's Use%
    // counts it: used plus available, without the blocks reserved for root.
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line\n{}", describe(&out)));
    let numbers: Vec<u64> = line
        .split('(')
        .filter_map(|s| s.split_once(" bytes)"))
        .filter_map(|(n, _)| n.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "free and required bytes in: {line}");
    let (free, required) = (numbers[0], numbers[1]);
    assert!(line.contains("free") && line.contains("required"), "{line}");
    assert!(free < required, "{line}");
    let stat = std::process::Command::new("stat")
        .args(["-f", "-c", "%b %f %a %S"])
        .arg(&env.root)
        .output()
        .unwrap();
    let n: Vec<u64> = String::from_utf8_lossy(&stat.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (blocks, bfree, bavail, frsize) = (n[0], n[1], n[2], n[3]);
    assert_eq!(required, (blocks - bfree + bavail) * frsize, "{line}");
}

#[test]
fn inherited_cargo_target_dir_is_overridden() {
    let env = Env::new();
    let ws = env.fixture("small");
    let shared = env.path().join("shared-target");
    std::fs::create_dir(&shared).unwrap();
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_TARGET_DIR", &shared)
        .args(["guarded", "build"]);
    let out = output(&mut cmd);
    assert_success(&out);
    assert!(compiled_anything(&out), "{}", describe(&out));
    assert_eq!(
        std::fs::read_dir(&shared).unwrap().count(),
        0,
        "the inherited target dir was used\n{}",
        describe(&out)
    );
    let dirs = env.job_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(env.root.join(&dirs[0]).join("target/debug/app").is_file());
    // Said once, at normal verbosity: a user who set it will look for
    // their binaries there.
    let target = env.root.join(&dirs[0]).join("target");
    let said: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.contains("Overriding"))
        .map(str::to_owned)
        .collect();
    assert_eq!(said.len(), 1, "{}", describe(&out));
    assert!(
        said[0].trim_start().starts_with(&format!(
            "Overriding inherited CARGO_TARGET_DIR={} with the job's dir {}",
            shared.display(),
            target.display()
        )),
        "{}",
        describe(&out)
    );
}

#[test]
fn explicit_target_dir_is_rejected() {
    let env = Env::new();
    let ws = env.fixture("small");
    let before = env.outside_root();
    for args in [
        &["build", "--target-dir", "elsewhere"][..],
        &["build", "--target-dir=elsewhere"][..],
        &["test", "--release", "--target-dir", "elsewhere"][..],
        &["build", "--config", "build.target-dir='elsewhere'"][..],
        &["build", "--config=build.build-dir='elsewhere'"][..],
    ] {
        let out = env.run(&ws, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{}", describe(&out));
        let line = one_line_error(&out);
        assert!(line.contains("--target-dir"), "{line}");
        assert!(!compiled_anything(&out));
    }
    assert_eq!(
        env.outside_root(),
        before,
        "nothing created outside the root"
    );
    assert!(
        env.job_dirs().is_empty(),
        "no lease taken for a rejected command"
    );

    // After `--`, the arguments belong to the test binary or the exec'd program: not ours.
    let out = env.ok(
        &ws,
        [
            "exec",
            "--",
            "sh",
            "-c",
            "echo \"$1\"",
            "sh",
            "--target-dir=x",
        ],
    );
    assert_eq!(stdout(&out).trim(), "--target-dir=x");
}

#[test]
fn build_dir_is_made_job_scoped() {
    let env = Env::new();
    let ws = env.fixture("small");
    let shared = env.path().join("shared-build");
    std::fs::create_dir(&shared).unwrap();
    let show = [
        "exec",
        "--",
        "sh",
        "-c",
        "echo \"[$CARGO_BUILD_BUILD_DIR]\"",
    ];

    // Not configured: not set for the child.
    let out = env.ok(&ws, show);
    assert_eq!(stdout(&out).trim(), "[]", "{}", describe(&out));

    // Configured through the environment: made job-scoped, for `exec`, `env` and a real build.
    let run = |args: &[&str]| {
        let mut cmd = env.cmd(&ws);
        cmd.env("CARGO_BUILD_BUILD_DIR", &shared)
            .arg("guarded")
            .args(args);
        let out = output(&mut cmd);
        assert_success(&out);
        out
    };
    let out = run(&show);
    let dirs = env.job_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let job_build = env.root.join(&dirs[0]).join("build");
    assert_eq!(
        stdout(&out).trim(),
        format!("[{}]", job_build.display()),
        "{}",
        describe(&out)
    );
    let vars = env_lines(&run(&["env"]));
    assert_eq!(
        vars.get("CARGO_BUILD_BUILD_DIR").map(String::as_str),
        Some(job_build.to_str().unwrap())
    );
    let out = run(&["build"]);
    assert!(compiled_anything(&out), "{}", describe(&out));
    assert_eq!(
        std::fs::read_dir(&shared).unwrap().count(),
        0,
        "the configured build dir was used\n{}",
        describe(&out)
    );
    assert!(job_build.is_dir(), "cargo did not use the job's build dir");
    assert!(env.root.join(&dirs[0]).join("target/debug/app").is_file());

    // Configured through a cargo config file (`build.build-dir`): also job-scoped.
    let env2 = Env::new();
    let ws2 = env2.fixture("small");
    std::fs::create_dir(ws2.join(".cargo")).unwrap();
    std::fs::write(
        ws2.join(".cargo/config.toml"),
        format!("[build]\nbuild-dir = \"{}\"\n", shared.display()),
    )
    .unwrap();
    let out = env2.ok(&ws2, show);
    let dirs = env2.job_dirs();
    assert_eq!(
        stdout(&out).trim(),
        format!("[{}]", env2.root.join(&dirs[0]).join("build").display()),
        "{}",
        describe(&out)
    );
}

#[test]
fn env_prints_the_jobs_target_dir_and_id_for_scripts() {
    let env = Env::new();
    let ws = env.fixture("small");
    let out = env.ok(&ws, ["--job-id", "scripted", "env"]);
    let vars = env_lines(&out);
    let target = env.root.join("scripted").join("target");
    assert_eq!(
        vars.get("CARGO_TARGET_DIR").map(String::as_str),
        Some(target.to_str().unwrap()),
        "{}",
        describe(&out)
    );
    assert_eq!(
        vars.get("CARGO_GUARDED_JOB_ID").map(String::as_str),
        Some("scripted")
    );
    assert!(
        stdout(&out).lines().all(|l| l.contains('=')),
        "only KEY=VALUE lines on stdout\n{}",
        describe(&out)
    );
    assert_eq!(env.lease("scripted")["state"], "released");

    // A script that calls cargo itself builds in the job's dir, so a later wrapped build of the
    // same job is warm. (`--shell` prints `export NAME=VALUE`, quoted for a POSIX shell where needed.)
    let script =
        format!("eval \"$('{BIN}' guarded --job-id scripted env --shell)\" && cargo build");
    let out = env.shell(&ws, &script);
    assert_success(&out);
    assert!(compiled_anything(&out), "{}", describe(&out));
    assert!(!ws.join("target").exists());
    assert!(target.join("debug/app").is_file(), "{}", describe(&out));
    let wrapped = env.ok(&ws, ["--job-id", "scripted", "build"]);
    assert!(!compiled_anything(&wrapped), "{}", describe(&wrapped));
}

#[test]
fn status_of_a_root_not_created_yet_is_an_error_and_creates_nothing() {
    // Not an empty root (a timer pointed at the wrong path would never tell).
    let env = Env::new();
    let out = env.run(env.path(), ["status", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stdout(&out).is_empty(), "{}", describe(&out));
    assert!(!env.root.exists(), "status created the root");
}

#[test]
fn status_json_has_the_documented_shape() {
    let env = Env::new();
    let ws = env.fixture("small");
    env.ok(&ws, ["--job-id", "shaped", "build"]);
    let status = env.status();
    assert_eq!(status["root"], env.root.to_str().unwrap(), "{status:#}");
    let free = status["free_bytes"].as_u64().expect("free_bytes: u64");
    let total = status["total_bytes"].as_u64().expect("total_bytes: u64");
    assert!(free <= total && total > 0, "{status:#}");
    let leases = status["leases"].as_array().expect("leases: array");
    assert_eq!(leases.len(), 1, "{status:#}");
    let l = &leases[0];
    assert_eq!(l["job_id"], "shaped");
    assert_eq!(l["state"], "released");
    let dir = env.root.join("shaped");
    assert_eq!(l["dir"], dir.to_str().unwrap());
    assert_eq!(l["target_dir"], dir.join("target").to_str().unwrap());
    for key in ["workspace", "host"] {
        assert!(l[key].is_string() || l[key].is_null(), "{key}: {l:#}");
    }
    assert!(
        l["workspace"].is_string(),
        "a built workspace is recorded: {l:#}"
    );
    assert!(
        l["pid"].is_null() || l["pid"].as_u64().is_some_and(|p| p <= u64::from(u32::MAX)),
        "pid: {l:#}"
    );
    for key in ["created_at", "renewed_at", "expires_at"] {
        let t = l[key].as_str().unwrap_or_else(|| panic!("{key}: {l:#}"));
        humantime::parse_rfc3339(t).unwrap_or_else(|e| panic!("{key} = {t}: {e}"));
    }
    assert!(
        l["size_bytes"].is_null() || l["size_bytes"].as_u64().is_some(),
        "size_bytes: {l:#}"
    );
    let keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
    for key in [
        "job_id",
        "state",
        "dir",
        "target_dir",
        "workspace",
        "host",
        "pid",
        "created_at",
        "renewed_at",
        "expires_at",
        "size_bytes",
    ] {
        assert!(keys.contains(&key), "missing {key}: {l:#}");
    }
}

// ---------------------------------------------------------------------------------------------
// Job ids

const GITHUB: &[(&str, &str)] = &[
    ("GITHUB_ACTIONS", "true"),
    ("GITHUB_REPOSITORY", "acme/widgets"),
    ("GITHUB_RUN_ID", "123"),
    ("GITHUB_RUN_ATTEMPT", "2"),
    ("GITHUB_JOB", "coverage"),
    ("RUNNER_NAME", "runner-3"),
];

/// `cargo guarded ARGS` in `cwd` with extra environment variables, asserting success.
fn ok_with(env: &Env, cwd: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = env.cmd(cwd);
    cmd.envs(vars.iter().copied()).arg("guarded").args(args);
    let out = output(&mut cmd);
    assert_success(&out);
    out
}

#[test]
fn job_ids_come_from_the_ci_and_steps_of_a_job_share_its_dir() {
    let env = Env::new();
    let ws = env.fixture("small");

    // GitHub Actions: two steps of one job share one dir.
    let step1 = env_lines(&ok_with(&env, &ws, GITHUB, &["env"]));
    let id = "gh-acme/widgets-123-2-coverage-runner-3";
    assert_eq!(step1["CARGO_GUARDED_JOB_ID"], id);
    let job = job_of(&env, &step1["CARGO_TARGET_DIR"]);
    assert!(
        job.starts_with("gh-acme_widgets-123-2-coverage-runner-3"),
        "{job}"
    );
    let step2 = ok_with(&env, &ws, GITHUB, &["build"]);
    assert!(compiled_anything(&step2), "{}", describe(&step2));
    assert_eq!(
        env.job_dirs(),
        std::slice::from_ref(&job),
        "steps of one job share a dir"
    );
    assert!(env.root.join(&job).join("target/debug/app").is_file());
    assert_eq!(env.lease(&job)["job_id"], id);
    assert_eq!(env.lease(&job)["state"], "released");

    // Another job of the same run is another id (and, without adoption, another dir).
    let mut other: Vec<(&str, &str)> = GITHUB.to_vec();
    other.retain(|(k, _)| *k != "GITHUB_JOB");
    other.push(("GITHUB_JOB", "lint"));
    let vars = env_lines(&ok_with(&env, &ws, &other, &["--no-adopt", "env"]));
    assert_eq!(
        vars["CARGO_GUARDED_JOB_ID"],
        "gh-acme/widgets-123-2-lint-runner-3"
    );
    assert_ne!(job_of(&env, &vars["CARGO_TARGET_DIR"]), job);

    // GitLab and Buildkite.
    for (var, value, expected) in [
        ("CI_JOB_ID", "4711", "gl-4711"),
        ("BUILDKITE_JOB_ID", "0190-abcd", "bk-0190-abcd"),
    ] {
        let first = env_lines(&ok_with(&env, &ws, &[(var, value)], &["env"]));
        assert_eq!(first["CARGO_GUARDED_JOB_ID"], expected);
        assert_eq!(job_of(&env, &first["CARGO_TARGET_DIR"]), expected);
        let second = env_lines(&ok_with(&env, &ws, &[(var, value)], &["env"]));
        assert_eq!(second["CARGO_TARGET_DIR"], first["CARGO_TARGET_DIR"]);
    }
}

#[test]
fn hostile_job_ids_stay_one_component_inside_the_root() {
    let env = Env::new();
    let ws = env.fixture("small");
    let long = "x".repeat(5000);
    let before = env.outside_root();
    let mut seen = Vec::new();
    for id in [
        "../../etc",
        "/",
        long.as_str(),
        "ünïcødé ☃",
        "..",
        ".trash",
        "CACHEDIR.TAG",
        "-rf",
    ] {
        let out = env.run(&ws, [format!("--job-id={id}").as_str(), "env"]);
        assert_success(&out);
        let vars = env_lines(&out);
        assert_eq!(vars["CARGO_GUARDED_JOB_ID"], id);
        let job = job_of(&env, &vars["CARGO_TARGET_DIR"]);
        assert!(
            !job.starts_with(['.', '-']) && job.len() <= 96,
            "{id:?} -> {job}"
        );
        assert!(
            job.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{id:?} -> {job}"
        );
        assert!(env.root.join(&job).join("lease.json").is_file(), "{id:?}");
        assert_eq!(env.lease(&job)["job_id"], id);
        assert!(!seen.contains(&job), "{id:?} shares {job} with another id");
        seen.push(job);
    }
    let mut dirs = env.job_dirs();
    dirs.sort();
    seen.sort();
    assert_eq!(dirs, seen, "one dir per id, nothing else");
    assert!(
        std::fs::read_to_string(env.root.join("CACHEDIR.TAG"))
            .unwrap()
            .starts_with("Signature: 8a477f597d28d172789f06886806bc55")
    );
    assert_eq!(
        env.outside_root(),
        before,
        "nothing created outside the root"
    );
}

// ---------------------------------------------------------------------------------------------
// Two runs of one job

/// A run of job `same` that holds its lease until `<ws>/hold` is removed; returns once it holds.
fn holder(env: &Env, ws: &Path) -> Spawned {
    std::fs::write(ws.join("hold"), "").unwrap();
    let h = env.spawn(
        ws,
        "holder",
        [
            "--job-id",
            "same",
            "exec",
            "--",
            "sh",
            "-c",
            "touch ready; while [ -e hold ]; do sleep 0.05; done",
        ],
    );
    assert!(
        wait_for(60, || ws.join("ready").exists()),
        "holder never started\n{}",
        h.stderr_so_far()
    );
    assert_eq!(env.lease("same")["state"], "active");
    assert!(is_locked(&env.root.join("same")));
    h
}

#[test]
fn same_job_at_once_waits_for_the_lease() {
    let env = Env::new();
    let ws = env.fixture("small");
    let h = holder(&env, &ws);
    let holder_pid = h.pid();

    let mut second = env.spawn(
        &ws,
        "second",
        [
            "--job-id",
            "same",
            "exec",
            "--",
            "sh",
            "-c",
            "echo second ran",
        ],
    );
    assert!(
        wait_for(60, || second
            .stderr_so_far()
            .contains("Waiting for lease held by")),
        "no waiting message\n{}",
        second.stderr_so_far()
    );
    let msg = second.stderr_so_far();
    assert!(
        msg.contains(&format!("(pid {holder_pid})")),
        "the message names the holder: {msg}"
    );
    assert!(
        second.child.try_wait().unwrap().is_none(),
        "the second run finished while the first held the lease\n{msg}"
    );
    assert!(!second.stdout_so_far().contains("second ran"));

    std::fs::remove_file(ws.join("hold")).unwrap();
    assert_success(&h.finish(60));
    let out = second.finish(60);
    assert_success(&out);
    assert_eq!(stdout(&out).trim(), "second ran");
    assert_eq!(env.job_dirs(), ["same"]);
    assert_eq!(env.lease("same")["state"], "released");
}

#[test]
fn same_job_at_once_gives_up_after_wait() {
    let env = Env::new();
    let ws = env.fixture("small");
    let h = holder(&env, &ws);

    let out = env.run(
        &ws,
        [
            "--wait", "1s", "--job-id", "same", "exec", "--", "sh", "-c", "echo ran",
        ],
    );
    // 75, "try again later", as for a full disk: CI can tell it from a broken setup.
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(!stdout(&out).contains("ran"), "{}", describe(&out));
    let err = stderr(&out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{}", describe(&out));
    assert!(errors[0].contains("same"), "{}", describe(&out));
    // The holder is untouched: still active and locked, and it finishes normally.
    assert_eq!(env.lease("same")["state"], "active");
    assert!(is_locked(&env.root.join("same")));
    std::fs::remove_file(ws.join("hold")).unwrap();
    assert_success(&h.finish(60));
    assert_eq!(env.lease("same")["state"], "released");
}

/// A root that does not exist is created, with its parents, and said once: a typo in `--root`
/// does not start a second root without a word. A relative root that lands inside the
/// workspace is refused before anything is created: the heartbeats would change files under
/// the package, and a build script without `rerun-if-changed` reran on every job.
#[test]
fn a_new_root_is_said_once_and_a_relative_one_inside_the_workspace_is_refused() {
    let env = Env::new();
    let ws = env.fixture("small");
    let root = env.path().join("new/parents/root");
    let root_arg = root.to_str().unwrap();
    let first = env.ok(&ws, ["--root", root_arg, "exec", "--", "true"]);
    let created: Vec<String> = stderr(&first)
        .lines()
        .filter(|l| l.trim_start().starts_with("Created root"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        created,
        [format!("     Created root {root_arg}")],
        "{}",
        describe(&first)
    );
    assert!(root.join(".cargo-guarded-root").is_file());
    let again = env.ok(&ws, ["--root", root_arg, "exec", "--", "true"]);
    assert!(!stderr(&again).contains("Created"), "{}", describe(&again));

    for relative in [".cache/cg", "sub/../cg", "./target/cg"] {
        let out = env.run(&ws, ["--root", relative, "exec", "--", "true"]);
        assert_eq!(out.status.code(), Some(1), "{relative}: {}", describe(&out));
        let line = one_line_error(&out);
        assert!(
            line.contains(relative)
                && line.contains("inside the workspace")
                && line.contains(ws.to_str().unwrap()),
            "{relative}: {line}"
        );
    }
    assert!(!ws.join(".cache").exists() && !ws.join("cg").exists() && !ws.join("target").exists());
    // Relative but outside the workspace: fine.
    env.ok(&ws, ["--root", "../outside", "exec", "--", "true"]);
    assert!(env.path().join("outside/.cargo-guarded-root").is_file());
}

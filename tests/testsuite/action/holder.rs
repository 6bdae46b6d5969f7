//! Hostile inputs and the lease holder: job ids and inputs that cannot start a workflow command, the holder stopped only when it is the job's own.

use super::*;

#[test]
fn a_newline_in_the_job_id_defines_no_variable_in_github_env() {
    let mut job = Job::new();
    let id = "pr-7\nBASH_ENV=/x";
    let a = job.action(&[
        ("command", "exec -- true"),
        ("job-id", id),
        ("export-target-dir", "true"),
    ]);
    assert_success(&a.run);
    // Parsed as the runner parses it, heredoc values included.
    let vars: HashMap<_, _> = a.step.env_lines().into_iter().collect();
    assert!(!vars.contains_key("BASH_ENV"), "{vars:?}");
    assert_eq!(
        vars.get("CARGO_GUARDED_JOB_ID").map(String::as_str),
        Some(id)
    );
    // The holder holds the very dir that CARGO_TARGET_DIR names.
    let target = PathBuf::from(&vars["CARGO_TARGET_DIR"]);
    assert!(dir_locked(target.parent().unwrap()), "{vars:?}");
    assert_eq!(job.hold_pids().len(), 1);
    for line in stdout(&a.run).lines().chain(stderr(&a.run).lines()) {
        assert!(!line.starts_with("BASH_ENV"), "{}", describe(&a.run));
    }
}

#[test]
fn a_later_use_without_export_keeps_the_holder_and_runs_inside_its_lease() {
    let mut job = Job::new();
    let a = job.action(&[("command", "exec -- true"), ("export-target-dir", "true")]);
    assert_success(&a.run);
    assert_eq!(a.step.outputs()["origin"], "fresh");
    let target = a.step.outputs()["target-dir"].clone();
    let pid = job.hold_pids()[0];

    let b = job.action(&[("command", "exec -- sh -c 'echo \"$CARGO_TARGET_DIR\"'")]);
    assert_success(&b.run);
    assert_eq!(stdout(&b.run).trim(), target, "{}", describe(&b.run));
    assert!(
        !stdout(&b.run).contains("stopping the lease holder"),
        "{}",
        describe(&b.run)
    );
    assert_eq!(b.step.outputs()["origin"], "resumed");
    // CARGO_TARGET_DIR stays exported, so the holder stays.
    assert!(alive(pid), "the holder was stopped");
    assert_eq!(lease_state(&job.env, JOB_ID).as_deref(), Some("active"));
    assert!(dir_locked(&job_dir(&job.env, JOB_ID)));
}

#[test]
fn the_holder_is_stopped_only_when_it_is_this_jobs_own() {
    let mut job = Job::new();
    // A pid that GITHUB_ENV names, but that is some other process (a recycled pid).
    let mut other = Command::new("sleep").arg("300").spawn().unwrap();
    job.exported
        .push(("CARGO_GUARDED_HOLD_PID".into(), other.id().to_string()));
    job.exported
        .push(("CARGO_GUARDED_HOLD_ID".into(), "not-its-id".into()));
    let a = job.action(&[("command", "exec -- true"), ("export-target-dir", "true")]);
    let still_alive = alive(other.id() as i32);
    let _ = other.kill();
    let _ = other.wait();
    assert_success(&a.run);
    assert!(still_alive, "an unrelated process was killed");
    assert!(!stdout(&a.run).contains("stopping the lease holder"));
    // No pid file anywhere: nothing predictable in /tmp or the runner's temp dir.
    for e in std::fs::read_dir(&job.runner_temp).unwrap().flatten() {
        assert!(
            !e.file_name().to_string_lossy().ends_with(".pid"),
            "{:?}",
            e.path()
        );
    }
}

#[test]
fn inputs_in_error_lines_cannot_start_a_workflow_command() {
    let mut job = Job::new();
    for inputs in [
        vec![
            ("command", "build"),
            ("export-target-dir", "x\n::error::pwned"),
        ],
        vec![
            ("command", "build"),
            ("working-directory", "nope\n::error::pwned"),
        ],
        vec![("command", "build 'unbalanced\n::error::pwned")],
    ] {
        let a = job.action(&inputs);
        assert_eq!(a.run.status.code(), Some(1), "{}", describe(&a.run));
        let all = format!("{}{}", stdout(&a.run), stderr(&a.run));
        assert!(all.contains("::error title=cargo-guarded::"), "{all}");
        for line in all.lines() {
            assert!(!line.starts_with("::error::pwned"), "{}", describe(&a.run));
        }
    }
}

#[test]
fn a_run_that_fails_before_it_has_a_dir_still_sets_its_job_id_output() {
    let mut job = Job::new();
    let step = job.step();
    let file = job.env.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let mut cmd = job.command(BIN, &job.ws, &step);
    cmd.env("CARGO_GUARDED_ROOT", &file)
        .args(["guarded", "exec", "--", "true"]);
    let out = output(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let outputs = step.outputs();
    assert_eq!(outputs.get("job-id").map(String::as_str), Some(JOB_ID));
    assert_eq!(
        outputs.get("reclaimed-bytes").map(String::as_str),
        Some("0")
    );
}

/// A job that starts from a copy of a finished job's dir says so in its outputs and
/// its step summary.
#[test]
fn a_seeded_job_has_origin_seeded_and_says_so_in_its_summary() {
    let mut job = Job::new();
    let a = job.action(&[("command", "build"), ("job-id", "first")]);
    assert_success(&a.run);
    assert_eq!(a.step.outputs()["origin"], "fresh");
    // Another runner, while the first job's dir lingers (its job holder still runs): a seed.
    job.exported
        .push(("RUNNER_NAME".to_owned(), "runner-2".to_owned()));
    let b = job.action(&[("command", "build"), ("job-id", "second")]);
    assert_success(&b.run);
    assert_eq!(b.step.outputs()["origin"], "seeded", "{}", describe(&b.run));
    let summary = b.step.summary();
    assert!(
        summary.contains("seeded warm from finished job `first`"),
        "{summary}"
    );
    // What content verification decided, in the summary too.
    assert!(
        summary.contains("Built elsewhere: 2 units warm by content, 0 made stale"),
        "{summary}"
    );
    assert!(!compiled_anything(&b.run), "{}", describe(&b.run));
}

/// Without export-target-dir the action leaves one job holder (`hold
/// --job-only`) running; the runner's end-of-job cleanup (SIGKILL) ends the job dir's linger.
#[test]
fn the_job_holder_ends_the_linger_at_the_end_of_the_job() {
    let mut job = Job::new();
    let a = job.action(&[("command", "exec -- true")]);
    assert_success(&a.run);
    let holders = job.job_hold_pids();
    assert_eq!(holders.len(), 1, "{}", describe(&a.run));
    let b = job.action(&[("command", "exec -- true")]);
    assert_success(&b.run);
    assert_eq!(job.job_hold_pids(), holders, "a second holder was started");
    let lease = job_dir(&job.env, JOB_ID).join("lease.json");
    assert!(
        wait_for(30, || std::fs::read_to_string(&lease)
            .is_ok_and(|t| t.contains("\"job_lock\": true"))),
        "{}",
        describe(&b.run)
    );
    let gc = |env: &Env| {
        let out = env.ok(env.path(), ["gc", "--json", "--all-expired"]);
        removed_names(&serde_json::from_slice(&out.stdout).unwrap())
    };
    assert!(gc(&job.env).is_empty());
    kill(holders[0], "KILL");
    assert!(wait_for(30, || !alive(holders[0])));
    assert_eq!(gc(&job.env).len(), 1);
}

/// Every origin a lease records (`lease::Origin`'s names) is described wherever the origin is:
/// action.yml's `origin` output and docs/action.md's outputs paragraph.
#[test]
fn every_origin_is_documented_where_the_origin_output_is() {
    let request = std::fs::read_to_string(Path::new(SOURCE).join("src/lease/request.rs")).unwrap();
    let origins: Vec<&str> = request
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub(crate) const "))
        .filter_map(|l| l.split_once(": &str = \""))
        .filter_map(|(_, v)| v.strip_suffix("\";"))
        .collect();
    assert!(origins.len() >= 4, "{origins:?}");
    let action = std::fs::read_to_string(Path::new(SOURCE).join("action.yml")).unwrap();
    let output = action
        .split("\n  origin:\n")
        .nth(1)
        .and_then(|o| o.split("\n  warm:").next())
        .expect("action.yml has an origin output");
    let readme = std::fs::read_to_string(Path::new(SOURCE).join("docs/action.md")).unwrap();
    let outputs = readme
        .split("\nOutputs: ")
        .nth(1)
        .and_then(|o| o.split("\n\n").next())
        .expect("docs/action.md has the action's outputs paragraph");
    for origin in origins {
        let named = format!("`{origin}`");
        assert!(output.contains(&named), "action.yml's origin lacks {named}");
        assert!(
            outputs.contains(&named),
            "docs/action.md's outputs lack {named}"
        );
    }
}

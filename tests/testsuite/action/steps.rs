//! The action end to end: a step's outputs, summary, log groups and annotations, low disk, export-target-dir.

use snapbox::{assert_data_eq, str};

use super::*;

/// A later step of the job resumes its dir with plenty of space: no sweep runs, and the summary
/// gives the free space the precheck read.
#[test]
fn a_step_without_a_sweep_summarizes_the_free_space() {
    let mut job = Job::new();
    assert_success(&job.action(&[("command", "build")]).run);
    let a = job.action(&[("command", "build")]);
    assert_success(&a.run);
    assert_eq!(a.step.outputs()["origin"], "resumed");
    let summary = a.step.summary();
    let root = job.env.root.display().to_string();
    assert!(
        summary.contains(&format!("Free space on `{root}`"))
            && summary.contains("% used); no sweep was needed."),
        "{summary}"
    );
}

#[test]
fn build_step_sets_outputs_and_a_summary() {
    let mut job = Job::new();
    let a = job.action(&[("command", "build")]);
    assert_success(&a.run);
    assert!(
        stdout(&a.install).contains("from PATH"),
        "the matching cargo-guarded on PATH must be used\n{}",
        describe(&a.install)
    );
    assert_eq!(
        a.install_bin,
        job.bin_dir.join("cargo-guarded").display().to_string()
    );

    let outputs = a.step.outputs();
    let dir = job_dir(&job.env, JOB_ID);
    assert_eq!(outputs["job-id"], JOB_ID);
    assert_eq!(
        outputs["target-dir"],
        dir.join("target").display().to_string()
    );
    assert_eq!(outputs["reclaimed-bytes"], "0");
    assert!(
        dir.join("target/debug/app").exists(),
        "{}",
        describe(&a.run)
    );

    // The whole summary, as the run's page shows it.
    assert_data_eq!(
        redact(&job.env, &a.step.summary()),
        str![[r#"
### cargo guarded `build`

Job `gh-octo/app-7001-1-build-runner-1` builds in `[ROOT]/gh-octo_app-7001-1-build-runner-1-2b9b4a5b/target` (a fresh dir).

Disk of `[ROOT]` ([SIZE] total):

| | free | used |
|---|---:|---:|
| before | [SIZE] | [PCT] |
| after | [SIZE] | [PCT] |

Reclaimed nothing: no expired job dir had to go.

Kept 1 job dir(s): 1 live.

| job dir | why |
|---|---|
| `gh-octo_app-7001-1-build-runner-1-2b9b4a5b` (this job) | lease held by runner-1 (pid [PID]), renewed [AGE] ago |

Job `gh-octo/app-7001-1-build-runner-1` built cold: 2 units compiled in [ELAPSED]s ([ELAPSED]s per unit), on record for the estimates of this workspace's warm jobs.

At release, the dir is [SIZE] against its budget of [SIZE] ([SIZE] used by recent jobs).


"#]]
    );
    let err = stderr(&a.run);
    assert!(
        !err.contains("::warning") && !err.contains("::error"),
        "{}",
        describe(&a.run)
    );
    assert_eq!(lease_state(&job.env, JOB_ID).as_deref(), Some("released"));
}

#[test]
fn precheck_reclaims_in_a_log_group_keeps_live_leases_and_warns_when_disk_stays_low() {
    let mut job = Job::new();
    expired_dir(&job.env, "old");
    let live_ws = job.env.fixture_as("small", "live-ws");
    let mut live = job.env.live_holder(&live_ws, "live");
    let live_dir = job_dir(&job.env, "live");

    // Every share of the disk is "low" at 100%, so the sweep runs under pressure, takes every
    // expired dir, and still cannot reach the target.
    let a = job.action(&[("command", "build"), ("reclaim-below", "100%")]);
    assert_success(&a.run);
    let err = stderr(&a.run);
    let grouped = group(&err, "cargo-guarded: disk precheck");
    assert!(
        grouped.iter().any(|l| l.contains("Removed old")),
        "the sweep's lines belong in the group\n{}",
        describe(&a.run)
    );
    assert!(
        err.lines().any(
            |l| l.starts_with("::warning title=cargo-guarded%3A disk still low::")
                && l.contains("below the reclaim target")
        ),
        "{}",
        describe(&a.run)
    );

    let outputs = a.step.outputs();
    let reclaimed: u64 = outputs["reclaimed-bytes"].parse().unwrap();
    assert!(reclaimed >= 1 << 20, "reclaimed {reclaimed} bytes");
    // `old` and `live` are not this repository's jobs (octo/app's ids are `gh-octo/app-…`): a
    // shared root's other tenants are counted in the summary, never named; the live lease is
    // counted as kept.
    assert_data_eq!(
        redact(&job.env, &a.step.summary()),
        str![[r#"
### cargo guarded `build`

Job `gh-octo/app-7001-1-build-runner-1` builds in `[ROOT]/gh-octo_app-7001-1-build-runner-1-2b9b4a5b/target` (a fresh dir).

Disk of `[ROOT]` ([SIZE] total):

| | free | used |
|---|---:|---:|
| before | [SIZE] | [PCT] |
| after | [SIZE] | [PCT] |

**Reclaimed [SIZE]** from 1 expired job dir(s).

1 of them ([SIZE]) belonged to other repositories' jobs.

Kept 1 job dir(s): 1 live.

Job `gh-octo/app-7001-1-build-runner-1` built cold: 2 units compiled in [ELAPSED]s ([ELAPSED]s per unit), on record for the estimates of this workspace's warm jobs.

At release, the dir is [SIZE] against its budget of [SIZE] ([SIZE] used by recent jobs).


"#]]
    );

    assert!(live.running(), "the live build was disturbed");
    assert!(live_dir.exists(), "a live job dir was removed");
    assert_eq!(lease_state(&job.env, "live").as_deref(), Some("active"));
    assert_eq!(lease_state(&job.env, "old"), None, "the expired dir stayed");
}

#[test]
fn low_disk_fails_the_step_with_an_error_annotation_and_exit_75() {
    let mut job = Job::new();
    let a = job.action(&[("command", "build"), ("min-free", "100%")]);
    assert_eq!(a.run.status.code(), Some(75), "{}", describe(&a.run));
    let err = stderr(&a.run);
    let annotation = err
        .lines()
        .find(|l| l.starts_with("::error title=cargo-guarded%3A not enough disk space::"))
        .unwrap_or_else(|| panic!("no ::error:: annotation\n{}", describe(&a.run)));
    assert!(annotation.contains("required by min-free"), "{annotation}");
    assert!(
        annotation.contains(" bytes)") && annotation.contains(" < "),
        "the annotation carries the numbers: {annotation}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: not enough free disk space")),
        "{}",
        describe(&a.run)
    );
    let summary = a.step.summary();
    assert!(summary.contains("refused to start"), "{summary}");
    assert!(summary.contains("Exit status 75"), "{summary}");
    // Exit 75 still sets every output: what was reclaimed, the dir the job would have
    // used, how it came by it.
    let outputs = a.step.outputs();
    for name in ["target-dir", "job-id", "reclaimed-bytes", "origin"] {
        assert!(outputs.contains_key(name), "no {name} output: {outputs:?}");
    }
    assert_eq!(outputs["origin"], "fresh");

    // The same from the CLI flag, without the action around it.
    let step = job.step();
    let out = job.binary(&job.ws, &step, &["--min-free", "100%", "build"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(
        stderr(&out).contains("::error title="),
        "{}",
        describe(&out)
    );
}

#[test]
fn exit_75_names_only_live_leases_and_only_this_repository_s() {
    let mut job = Job::new();
    // A released (lingering) dir of this repository: its process is gone, it is not live.
    let lint_ws = job.env.fixture_as("small", "lint-ws");
    job.env.ok(
        &lint_ws,
        ["--job-id", "gh-octo/app-4-1-lint-r3", "exec", "--", "true"],
    );
    let ours_ws = job.env.fixture_as("small", "ours-ws");
    let _ours = job.env.live_holder(&ours_ws, "gh-octo/app-5-1-test-r2");
    let theirs_ws = job.env.fixture_as("small", "theirs-ws");
    let _theirs = job.env.live_holder(&theirs_ws, "gh-other/secret-1-1-b-r9");
    let a = job.action(&[("command", "build"), ("min-free", "100%")]);
    assert_eq!(a.run.status.code(), Some(75), "{}", describe(&a.run));
    let summary = a.step.summary();
    assert!(
        summary.contains("Live leases holding the most space"),
        "{summary}"
    );
    assert!(summary.contains("gh-octo/app-5-1-test-r2"), "{summary}");
    assert!(
        !summary.contains("lint-r3"),
        "a released lease listed as live:\n{summary}"
    );
    assert!(
        !summary.contains("other/secret"),
        "another repository's job named:\n{summary}"
    );
    assert!(
        summary.contains("1 live lease(s) of other repositories' jobs"),
        "{summary}"
    );
}

#[test]
fn command_words_split_like_a_shell_but_nothing_is_expanded() {
    let mut job = Job::new();
    let a = job.action(&[
        (
            "command",
            r#"exec -- sh -c 'printf "%s\n" "$CARGO_TARGET_DIR" "$1" > words.txt' sh '$HOME *'"#,
        ),
        ("working-directory", "app"),
    ]);
    assert_success(&a.run);
    let words = std::fs::read_to_string(job.ws.join("app/words.txt")).unwrap();
    let target = &a.step.outputs()["target-dir"];
    assert_eq!(words, format!("{target}\n$HOME *\n"));

    let bad = job.action(&[("command", "build 'unbalanced")]);
    assert_eq!(bad.run.status.code(), Some(1), "{}", describe(&bad.run));
    assert!(stdout(&bad.run).contains("::error title=cargo-guarded::cannot split"));
}

/// The splitting the action runs (`cargo-guarded __split-words`) is a shell's: for lines with
/// nothing to expand, the words bash itself makes of them; what bash would expand stays literal.
#[test]
fn command_input_is_split_by_the_binary_as_bash_splits_it() {
    let split = |line: &str| {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd).args(["__split-words", "--", line]);
        output(&mut cmd)
    };
    let words = |out: &Output| -> Vec<String> {
        assert_success(out);
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        let mut words: Vec<String> = text.split('\0').map(str::to_owned).collect();
        assert_eq!(
            words.pop().as_deref(),
            Some(""),
            "each word ends with a NUL"
        );
        words
    };
    for line in [
        "build --release",
        "  test\t--features 'a b'  -- --exact x ",
        r#"exec -- sh -c 'printf "%s\n" "it'\''s"' sh"#,
        r#"nextest run -E "test(=a\"b)" back\ slash 'x\y' "x\\y""#,
        "build --config 'build.rustflags=[\"-C\", \"debuginfo=0\"]' # a comment",
    ] {
        let bash = Command::new("bash")
            .args([
                "-c",
                "eval \"set -- $1\"; printf '%s\\0' \"$@\"",
                "bash",
                line,
            ])
            .output()
            .unwrap();
        assert_success(&bash);
        let expected: Vec<String> = String::from_utf8(bash.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(str::to_owned)
            .collect();
        assert_eq!(words(&split(line)), expected, "{line}");
    }
    // A line break (a YAML block scalar) separates words, as before: one command, not two.
    assert_eq!(
        words(&split("clippy --all-targets\n-- -D warnings\n")),
        ["clippy", "--all-targets", "--", "-D", "warnings"]
    );
    // Nothing is expanded: no variables, globs, command substitutions or `~`.
    assert_eq!(
        words(&split(r#"exec -- echo $HOME * $(id) ~ "$X""#)),
        ["exec", "--", "echo", "$HOME", "*", "$(id)", "~", "$X"]
    );
    for bad in ["build 'unbalanced", "build \"x", "build x\\"] {
        let out = split(bad);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", describe(&out));
        assert!(stderr(&out).contains("cannot split"), "{}", describe(&out));
    }
}

#[test]
fn export_target_dir_keeps_the_lease_live_for_later_plain_cargo_steps() {
    let mut job = Job::new();
    let a = job.action(&[
        ("command", "build"),
        ("export-target-dir", "true"),
        ("ttl", "3s"),
    ]);
    assert_success(&a.run);
    let target = a.step.outputs()["target-dir"].clone();
    let exported: HashMap<_, _> = a.step.env_lines().into_iter().collect();
    assert_eq!(exported.get("CARGO_TARGET_DIR"), Some(&target));
    assert_eq!(
        exported.get("CARGO_GUARDED_JOB_ID").map(String::as_str),
        Some(JOB_ID)
    );
    let pids = job.hold_pids();
    assert_eq!(pids.len(), 1, "one lease holder");
    let first = pids[0];
    assert!(alive(first));
    assert_eq!(lease_state(&job.env, JOB_ID).as_deref(), Some("active"));
    let dir = job_dir(&job.env, JOB_ID);
    assert!(dir_locked(&dir));

    // A later plain cargo step builds in the exported dir, warm; a sibling's guard meanwhile
    // reclaims every expired dir and leaves this one alone.
    let step = job.step();
    let mut cargo = job.command("cargo", &job.ws, &step);
    cargo.arg("build");
    let out = output(&mut cargo);
    assert_success(&out);
    assert!(!compiled_anything(&out), "{}", describe(&out));
    job.env.ok(job.env.path(), ["gc", "--all-expired"]);
    assert!(dir.join("target/debug/app").exists());

    // Using the action again in the same job stops the holder first (else this step would
    // wait for the lease forever), then holds the lease again.
    let again = job.action(&[("command", "build"), ("export-target-dir", "true")]);
    assert_success(&again.run);
    assert!(
        stdout(&again.run).contains("stopping the lease holder"),
        "{}",
        describe(&again.run)
    );
    assert!(!alive(first), "the first holder is still running");
    let second = job.hold_pids();
    assert_eq!(second.len(), 1);
    assert_ne!(second[0], first);
    assert_eq!(lease_state(&job.env, JOB_ID).as_deref(), Some("active"));

    // The runner's end-of-job orphan cleanup SIGKILLs it: the lock goes with the process, while
    // the lease (this step's TTL is the default 10m) still protects the dir for a while.
    kill(second[0], "KILL");
    assert!(wait_for(30, || !alive(second[0])));
    // Its other threads may still be exiting for a moment after the main one is a zombie.
    assert!(
        wait_for(30, || !dir_locked(&dir)),
        "a dead holder's lock must be free"
    );
    // `status` tries the locks: the holder is gone. Its heartbeat is recent,
    // so the dir stays protected until the TTL passes.
    assert_eq!(lease_state(&job.env, JOB_ID).as_deref(), Some("gone"));
    job.env.ok(job.env.path(), ["gc", "--all-expired"]);
    assert!(dir.join("target/debug/app").exists());
}

#[test]
fn a_killed_holder_expires_one_ttl_after_its_last_heartbeat() {
    let mut job = Job::new();
    let a = job.action(&[
        ("command", "build"),
        ("export-target-dir", "true"),
        ("ttl", "2s"),
        ("linger", "1h"),
    ]);
    assert_success(&a.run);
    let pid = job.hold_pids()[0];
    let dir = job_dir(&job.env, JOB_ID);
    kill(pid, "KILL");
    assert!(wait_for(30, || !alive(pid)));
    // Not the 1h linger: a SIGKILLed holder never released, so its TTL is what ends it.
    assert!(
        wait_for(60, || lease_state(&job.env, JOB_ID).as_deref()
            == Some("expired")),
        "{:#}",
        job.env.status()
    );
    job.env.ok(job.env.path(), ["gc", "--all-expired"]);
    assert!(
        !dir.exists(),
        "the expired dir of a finished job is reclaimed"
    );
}

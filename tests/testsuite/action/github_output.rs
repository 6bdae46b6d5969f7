//! The binary's GitHub output outside the action: nothing written off GitHub, clean stdout on it, `gc`'s group and summary.

use snapbox::{assert_data_eq, str};

use super::*;

#[test]
fn outside_github_actions_no_files_are_written_and_no_workflow_commands_printed() {
    let mut job = Job::new();
    expired_dir(&job.env, "old");
    let step = job.step();
    let mut cmd = job.command(BIN, &job.ws, &step);
    cmd.env_remove("GITHUB_ACTIONS")
        .args(["guarded", "--reclaim-below", "100%", "build"]);
    let out = output(&mut cmd);
    assert_success(&out);
    assert!(stderr(&out).contains("Removed old"), "{}", describe(&out));
    assert!(!stderr(&out).contains("::"), "{}", describe(&out));
    assert_eq!(std::fs::read_to_string(&step.output).unwrap(), "");
    assert_eq!(step.summary(), "");
}

#[test]
fn machine_readable_stdout_stays_clean_on_github() {
    let mut job = Job::new();
    expired_dir(&job.env, "old");
    let step = job.step();
    let env_out = job.binary(&job.ws, &step, &["--reclaim-below", "100%", "env"]);
    assert_success(&env_out);
    let text = stdout(&env_out);
    assert!(text.contains("CARGO_TARGET_DIR="), "{text}");
    for line in text.lines() {
        assert!(
            line.split_once('=')
                .is_some_and(|(k, _)| !k.is_empty() && !k.contains(':')),
            "not a KEY=VALUE line on stdout: {line:?}"
        );
    }
    // The warning went to stderr, where the runner reads workflow commands too.
    assert!(stderr(&env_out).contains("::warning title="));

    for args in [
        &["--reclaim-below", "100%", "gc", "--json"][..],
        &["status", "--json"],
    ] {
        let step = job.step();
        let out = job.binary(&job.ws, &step, args);
        assert_success(&out);
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out.stdout);
        assert!(
            parsed.is_ok(),
            "{args:?}: stdout is not JSON\n{}",
            describe(&out)
        );
    }
}

#[test]
fn gc_on_github_groups_its_log_sets_reclaimed_bytes_and_summarises() {
    let mut job = Job::new();
    expired_dir(&job.env, "old");
    let step = job.step();
    let out = job.binary(job.env.path(), &step, &["--reclaim-below", "100%", "gc"]);
    assert_success(&out);
    let err = stderr(&out);
    let grouped = group(&err, "cargo-guarded: gc");
    assert!(grouped.iter().any(|l| l.contains("Removed old")), "{err}");
    assert!(err.contains("::warning title=cargo-guarded%3A disk still low::"));
    let reclaimed: u64 = step.outputs()["reclaimed-bytes"].parse().unwrap();
    assert!(reclaimed >= 1 << 20, "reclaimed {reclaimed}");
    // Another repository's job is counted, never named.
    assert_data_eq!(
        redact(&job.env, &step.summary()),
        str![[r#"
### cargo guarded gc

Disk of `[ROOT]` ([SIZE] total):

| | free | used |
|---|---:|---:|
| before | [SIZE] | [PCT] |
| after | [SIZE] | [PCT] |

**Reclaimed [SIZE]** from 1 expired job dir(s).

1 of them ([SIZE]) belonged to other repositories' jobs.


"#]]
    );

    // A dry run reclaims nothing and so warns about nothing.
    expired_dir(&job.env, "old2");
    let step = job.step();
    let out = job.binary(
        job.env.path(),
        &step,
        &["--reclaim-below", "100%", "gc", "--dry-run"],
    );
    assert_success(&out);
    assert!(!stderr(&out).contains("::warning"), "{}", describe(&out));
    assert_eq!(step.outputs()["reclaimed-bytes"], "0");
    assert!(step.summary().contains("Would reclaim"));
}

//! `--events PATH` (docs/json.md, "Events (`--events`)"): every event of a job's life, and `gc`'s
//! sweep, appended to a file as one line of JSON each, `{"v":1,"event":…}`. Real runs of the
//! binary on a fixture crate: fresh, resumed (its command failing), seeded, adopted, refused with
//! exit 75, a nested run whose command dies of a signal, `gc`; every line parsed with
//! serde_json, the sequence and the key fields checked, every field checked to be documented,
//! and the redacted stream pinned whole.

use std::path::Path;
use std::process::Output;

use crate::common::*;
use regex::Regex;
use serde_json::Value;
use snapbox::assert_data_eq;

/// `cargo-guarded guarded ARGS` in `cwd` with `CARGO_GUARDED_EVENTS=events`. No reclaiming for
/// pressure and no minimum (a flag still wins): which sweeps run, and so which `swept` events
/// are told, must not depend on how full the machine's disk is.
fn run(env: &Env, cwd: &Path, events: &Path, args: &[&str]) -> Output {
    let mut cmd = env.cmd(cwd);
    cmd.env("CARGO_GUARDED_EVENTS", events)
        .env("CARGO_GUARDED_RECLAIM_BELOW", "0")
        .env("CARGO_GUARDED_MIN_FREE", "0")
        .arg("guarded")
        .args(args);
    output(&mut cmd)
}

/// Every line of the file, parsed; each must be a whole line of JSON.
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.ends_with('\n'),
        "the last line is not complete: {text}"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `event` of each line.
fn names(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["event"].as_str().unwrap().to_owned())
        .collect()
}

/// The lines of the run whose `starting` line names `job` (the `n`th such run, from 0).
fn run_of<'a>(lines: &'a [Value], job: &str, n: usize) -> Vec<&'a Value> {
    let pid = lines
        .iter()
        .filter(|l| l["event"] == "starting" && l["job_id"] == job)
        .nth(n)
        .unwrap_or_else(|| panic!("no run {n} of {job}"))["pid"]
        .clone();
    lines.iter().filter(|l| l["pid"] == pid).collect()
}

fn events_of(run: &[&Value]) -> Vec<String> {
    run.iter()
        .map(|l| l["event"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_job_s_life_is_a_stream_of_json_lines() {
    let env = Env::new();
    let ws = env.fixture("small");
    let file = env.path().join("events.jsonl");
    // The flag (the variable is `run`'s; the flag names the same file).
    let file_arg = file.to_str().unwrap();
    let began = std::time::SystemTime::now();
    assert_success(&run(
        &env,
        &ws,
        &file,
        &[
            "--events", file_arg, "--job-id", "job-1", "exec", "--", "true",
        ],
    ));
    // Resumed; its command fails, and no pruning follows a failed command.
    let failed = run(
        &env,
        &ws,
        &file,
        &["--job-id", "job-1", "exec", "--", "sh", "-c", "exit 3"],
    );
    assert_eq!(failed.status.code(), Some(3), "{}", describe(&failed));
    // job-1's dir lingers: job-2 seeds from it; then job-3, alone, adopts job-2's (expired).
    let seed = ["--job-id", "job-2", "--linger", "0s", "exec", "--", "true"];
    assert_success(&run(&env, &ws, &file, &seed));
    assert_success(&run(
        &env,
        &ws,
        &file,
        &["--job-id", "job-3", "exec", "--", "true"],
    ));
    let refused = run(
        &env,
        &ws,
        &file,
        &[
            "--job-id",
            "job-4",
            "--min-free",
            "100%",
            "exec",
            "--",
            "true",
        ],
    );
    assert_eq!(refused.status.code(), Some(75), "{}", describe(&refused));
    assert_success(&run(&env, &ws, &file, &["gc", "--dry-run", "--json"]));

    let all = lines(&file);
    let ended = std::time::SystemTime::now();
    let mut last = began - std::time::Duration::from_millis(1);
    for l in &all {
        assert_eq!(l["v"], 1, "{l}");
        assert!(l["pid"].is_u64(), "{l}");
        // When it happened, to the millisecond, in UTC: in the order the lines were written.
        let time = l["time"].as_str().unwrap_or_else(|| panic!("no time: {l}"));
        assert!(time.ends_with('Z') && time.len() == 24, "{l}");
        let time = humantime::parse_rfc3339(time).unwrap();
        assert!(last <= time && time <= ended, "{l}");
        last = time;
    }
    let root = env.root.to_str().unwrap();
    let dir = |job: &str| format!("{root}/{job}");

    let fresh = run_of(&all, "job-1", 0);
    assert_eq!(
        events_of(&fresh),
        [
            "starting", "acquired", "swept", "ready", "counted", "pruned", "exited"
        ]
    );
    // Every line after `acquired` names the job and its dir.
    for l in &fresh[1..] {
        assert_eq!(l["job_id"], "job-1", "{l}");
        assert_eq!(l["dir"], dir("job-1"), "{l}");
    }
    assert!(fresh[0].get("dir").is_none(), "{}", fresh[0]);
    assert_eq!(fresh[1]["origin"], "fresh");
    assert_eq!(fresh[1]["target_dir"], format!("{root}/job-1/target"));
    assert_eq!(fresh[2]["root"], root);
    assert!(fresh[2]["report"]["kept"].is_array(), "{}", fresh[2]);
    assert_eq!(fresh[3]["tool"], "exec");
    assert_eq!(fresh[3]["command"], "true");
    assert!(fresh[3]["free_bytes"].is_u64());
    // `exec -- true` used no unit: counted, nothing reused or compiled.
    assert_eq!(fresh[4]["units_reused"], 0, "{}", fresh[4]);
    assert_eq!(fresh[4]["units_compiled"], 0, "{}", fresh[4]);
    assert_eq!(fresh[4]["steps"], 1, "{}", fresh[4]);
    assert!(fresh[4]["command_secs"].is_f64(), "{}", fresh[4]);
    assert_eq!(fresh[5]["moment"], "release");
    assert_eq!(fresh[5]["outcome"], "ran");
    assert_eq!(fresh[6]["exit"], serde_json::json!({"code": 0}));

    // A failed step prunes at release too: its shape counts in the working set.
    let resumed = run_of(&all, "job-1", 1);
    assert_eq!(
        events_of(&resumed),
        [
            "starting", "acquired", "ready", "counted", "pruned", "exited"
        ]
    );
    assert_eq!(resumed[1]["origin"], "resumed");
    assert_eq!(resumed[2]["tool"], "exec");
    assert_eq!(resumed[2]["command"], "sh -c exit 3");
    assert_eq!(resumed[3]["steps"], 2, "{}", resumed[3]);
    assert_eq!(resumed[5]["exit"], serde_json::json!({"code": 3}));

    let seeded = run_of(&all, "job-2", 0);
    assert_eq!(seeded[1]["origin"], "seeded", "{}", seeded[1]);
    assert_eq!(seeded[1]["from"], "job-1");
    assert!(seeded[1]["from_bytes"].is_u64() && seeded[1]["copy_secs"].is_f64());

    let adopted = run_of(&all, "job-3", 0);
    assert_eq!(
        events_of(&adopted),
        [
            "starting", "acquired", "pruned", "verified", "swept", "ready", "counted", "pruned",
            "exited"
        ]
    );
    assert_eq!(adopted[1]["origin"], "adopted", "{}", adopted[1]);
    assert_eq!(adopted[1]["from"], "job-2");
    assert_eq!(adopted[1]["dir"], dir("job-3"));
    assert_eq!(adopted[2]["moment"], "adoption");
    // Built by job-2's step in the same checkout: content verification ran, nothing was stale.
    assert!(adopted[3]["verified"].is_u64(), "{}", adopted[3]);
    assert_eq!(adopted[3]["stale"], serde_json::json!({}), "{}", adopted[3]);
    assert!(adopted[3]["built_in"].is_string(), "{}", adopted[3]);

    let refused = run_of(&all, "job-4", 0);
    assert_eq!(
        events_of(&refused)[events_of(&refused).len() - 2..],
        ["refused", "gave_up"]
    );
    let line = refused[refused.len() - 2];
    assert!(
        line["free_bytes"].as_u64() < line["required_bytes"].as_u64(),
        "{line}"
    );
    assert!(line["holding"]["lingering"]["dirs"].is_u64(), "{line}");

    let gc = all.last().unwrap();
    assert_eq!(gc["event"], "collected");
    assert!(gc.get("job_id").is_none(), "{gc}");
    assert_eq!(gc["hook"], false);
    assert_eq!(gc["report"]["dry_run"], true);

    assert_documented(&all);
    assert_data_eq!(redact(&env, &file), snapshot_file("events/life.txt"));
}

/// A nested run (inside its parent's lease) writes to the same file, inheriting the variable;
/// a command that dies of a signal is `{"signal":N}`, for the nested run and its parent alike.
#[test]
fn a_nested_run_and_a_signal() {
    let env = Env::new();
    let ws = env.fixture("small");
    let file = env.path().join("events.jsonl");
    let out = run(
        &env,
        &ws,
        &file,
        &[
            "--job-id",
            "outer",
            "exec",
            "--",
            BIN,
            "guarded",
            "exec",
            "--",
            "sh",
            "-c",
            "kill -TERM $$",
        ],
    );
    assert_eq!(out.status.code(), None, "{}", describe(&out));
    let all = lines(&file);
    assert_eq!(
        names(&all),
        [
            "starting", "acquired", "swept", "ready", "nested", "exited", "counted", "pruned",
            "exited"
        ],
        "{all:#?}"
    );
    let (nested, inner, outer) = (&all[4], &all[5], &all[8]);
    assert_eq!(nested["job_id"], "outer");
    assert_eq!(nested["dir"], all[1]["dir"]);
    assert_eq!(inner["pid"], nested["pid"]);
    assert_ne!(outer["pid"], nested["pid"]);
    for exited in [inner, outer] {
        assert_eq!(
            exited["exit"],
            serde_json::json!({"signal": 15}),
            "{exited}"
        );
    }
}

/// A file that cannot be opened is an error naming it, before any lease is taken; for a hook,
/// which never fails the job, a warning.
#[test]
fn an_events_file_that_cannot_be_opened_is_an_error() {
    let env = Env::new();
    let ws = env.fixture("small");
    let file = env.path().join("no-such-dir/events.jsonl");
    let out = env.run(
        &ws,
        ["--events", file.to_str().unwrap(), "exec", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let error = one_line_error(&out);
    assert!(
        error.contains(&format!("events file {}", file.display())),
        "{error}"
    );
    assert!(env.job_dirs().is_empty(), "{:?}", env.job_dirs());

    env.ok(&ws, ["--min-free", "0", "exec", "--", "true"]);
    let hook = env.ok(&ws, ["--events", file.to_str().unwrap(), "gc", "--hook"]);
    assert!(
        stderr(&hook).starts_with(&format!(
            "warning: failed to open the events file {}",
            file.display()
        )),
        "{}",
        describe(&hook)
    );
}

/// Buildkite's variables for a build of `branch` (`pr`: its pull request, or `false`), for job
/// `job` on its own runner: scopes without GitHub's event payload.
fn buildkite(cmd: &mut std::process::Command, job: &str, branch: &str, pr: &str) {
    cmd.env("BUILDKITE", "true")
        .env("BUILDKITE_BRANCH", branch)
        .env("BUILDKITE_PULL_REQUEST", pr)
        .env("BUILDKITE_PULL_REQUEST_BASE_BRANCH", "main")
        .env("BUILDKITE_PIPELINE_DEFAULT_BRANCH", "main")
        .env("RUNNER_NAME", format!("runner-{job}"));
}

/// Why a new job passed over each finished dir of its workspace is a `note` line, whatever the
/// terminal's verbosity: one a pull request wrote (the scope rule), and one whose last step was
/// `env` (no seed source until its linger ends).
#[test]
fn a_passed_over_dir_is_a_note() {
    let env = Env::new();
    let ws = env.fixture("small");
    let file = env.path().join("events.jsonl");
    let step = |job: &str, branch: &str, pr: &str, args: &[&str]| {
        let mut cmd = env.cmd(&ws);
        buildkite(&mut cmd, job, branch, pr);
        cmd.env("CARGO_GUARDED_EVENTS", &file)
            .env("CARGO_GUARDED_MIN_FREE", "0")
            .args(["guarded", "--job-id", job])
            .args(args);
        let out = output(&mut cmd);
        assert_success(&out);
        out
    };
    step("pr-12", "feature", "12", &["exec", "--", "true"]);
    step("main-env", "main", "false", &["env"]);
    let out = step("main-1", "main", "false", &["exec", "--", "true"]);
    // Not said on the terminal without -v, as before.
    assert!(!stderr(&out).contains("not adopting"), "{}", describe(&out));

    let all = lines(&file);
    let run = run_of(&all, "main-1", 0);
    let root = env.root.to_str().unwrap();
    let notes: Vec<&&Value> = run.iter().filter(|l| l["event"] == "note").collect();
    assert_eq!(notes.len(), 2, "{run:#?}");
    let scope = notes[0];
    assert_eq!(scope["what"], "other_scope", "{scope}");
    assert_eq!(scope["path"], format!("{root}/pr-12"), "{scope}");
    assert!(
        scope["why"].as_str().unwrap().contains("pr:pull/12->main"),
        "{scope}"
    );
    assert_eq!(
        scope["message"],
        format!(
            "not adopting or seeding from {root}/pr-12: scope: {}",
            scope["why"].as_str().unwrap()
        )
    );
    let handed_out = notes[1];
    assert_eq!(handed_out["what"], "seed_skipped", "{handed_out}");
    assert_eq!(handed_out["path"], format!("{root}/main-env"));
    assert!(
        handed_out["why"]
            .as_str()
            .unwrap()
            .contains("its last step was `env`"),
        "{handed_out}"
    );
    // Said before the job's dir is chosen, and counted there.
    let acquired = run.iter().position(|l| l["event"] == "acquired").unwrap();
    assert!(run.iter().rposition(|l| l["event"] == "note").unwrap() < acquired);
    assert_eq!(run[acquired]["passed_over"], 1, "{}", run[acquired]);
    assert_eq!(run[acquired]["origin"], "fresh", "{}", run[acquired]);
    assert_documented(&all);
}

/// A warning the lease layer says is a `warning` line, and under GitHub Actions an annotation on
/// the run's page as well as the terminal's `warning:` line.
#[test]
fn a_warning_is_a_line_and_an_annotation() {
    let env = Env::new();
    let ws = env.fixture("small");
    let file = env.path().join("events.jsonl");
    let gh = GithubStep::new(env.path().join("gh"));
    let mut cmd = env.cmd(&ws);
    gh.apply(&mut cmd)
        .env("CARGO_GUARDED_EVENTS", &file)
        .env("CARGO_GUARDED_MIN_FREE", "0")
        .args(["guarded", "--warm-from", "any", "exec", "--", "true"]);
    let out = output(&mut cmd);
    assert_success(&out);
    let err = stderr(&out);
    let words = "--warm-from any: this job may start from a dir of its workspace that any job \
                 wrote, whatever its ref or pull request (the scope rule is off)";
    assert!(
        err.contains(&format!("warning: {words}")),
        "{}",
        describe(&out)
    );
    assert!(
        err.lines()
            .any(|l| l == format!("::warning title=cargo-guarded%3A warm from any::{words}")),
        "{}",
        describe(&out)
    );

    let all = lines(&file);
    let warning = all.iter().find(|l| l["event"] == "warning").unwrap();
    assert_eq!(warning["what"], "warm_from_any", "{warning}");
    assert_eq!(warning["message"], words, "{warning}");
    assert!(
        warning["path"].is_null() && warning["why"].is_null(),
        "{warning}"
    );
    assert!(warning["time"].is_string(), "{warning}");
    assert_documented(&all);
}

/// Every field of every line is in docs/json.md's events section.
fn assert_documented(lines: &[Value]) {
    let section = doc_section("docs/json.md", "## Events (`--events`)");
    for l in lines {
        let event = l["event"].as_str().unwrap();
        assert!(
            section.contains(&format!("`{event}`")),
            "event `{event}` is not documented in docs/json.md's events section"
        );
        let Value::Object(fields) = l else {
            panic!("{l}")
        };
        for (k, v) in fields {
            // The guard's report is `gc --json`'s, documented there.
            if k == "report" {
                continue;
            }
            let mut keys = vec![k.clone()];
            if let Value::Object(inner) = v {
                keys.extend(inner.keys().cloned());
                if let Some(Value::Object(group)) = inner.values().next() {
                    keys.extend(group.keys().cloned());
                }
            }
            for k in keys {
                assert!(
                    section.contains(&format!("`{k}`")),
                    "field `{k}` of `{event}` is not documented in docs/json.md's events section\n{l}"
                );
            }
        }
    }
}

/// The file, its numbers that vary between runs and machines (pids, byte counts, a copy's
/// seconds) redacted as tests/common/snap.rs does for pretty JSON, and paths, ages, pids and
/// hosts in the guard's reasons as for every snapshot.
fn redact(env: &Env, file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let compact = [
        ("[PID]", r#""pid":(\d+)"#),
        ("[TIME]", r#""time":"([^"]+)""#),
        (
            "[BYTES]",
            r#""([a-z_]*(bytes|free)[a-z_]*|size|working_set)":(\d+)"#,
        ),
        // The budget's bytes (`pruned.budget` counts units).
        ("[BYTES]", r#""budget":(\d+),"working_set""#),
        ("[ELAPSED]", r#""copy_secs":([\d.]+)"#),
        // What warmth saved: wall times, and an estimate made from them.
        (
            "[ELAPSED]",
            r#""(?:command_secs|secs|saved_secs_estimate)":([\d.e-]+)"#,
        ),
        ("[AGE]", r#""expired_for_secs":(\d+)"#),
    ];
    let mut text = text;
    for (placeholder, pattern) in compact {
        let re = Regex::new(pattern).unwrap();
        text = re
            .replace_all(&text, |c: &regex::Captures| {
                let whole = &c[0];
                let value = c.get(c.len() - 1).unwrap();
                let start = value.start() - c.get(0).unwrap().start();
                format!(
                    "{}{placeholder}{}",
                    &whole[..start],
                    &whole[start + value.len()..]
                )
            })
            .into_owned();
    }
    crate::common::redact(env, &text)
}

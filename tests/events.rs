//! `--events PATH` (docs/json.md, "Events (`--events`)"): every event of a job's life, and `gc`'s
//! sweep, appended to a file as one line of JSON each, `{"v":1,"event":…}`. Real runs of the
//! binary on a fixture crate: fresh, resumed (its command failing), seeded, adopted, refused with
//! exit 75, a nested run whose command dies of a signal, `gc`; every line parsed with
//! serde_json, the sequence and the key fields checked, every field checked to be documented,
//! and the redacted stream pinned whole.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
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
    for l in &all {
        assert_eq!(l["v"], 1, "{l}");
        assert!(l["pid"].is_u64(), "{l}");
    }
    let root = env.root.to_str().unwrap();
    let dir = |job: &str| format!("{root}/{job}");

    let fresh = run_of(&all, "job-1", 0);
    assert_eq!(
        events_of(&fresh),
        ["starting", "acquired", "swept", "ready", "pruned", "exited"]
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
    assert_eq!(fresh[4]["moment"], "release");
    assert_eq!(fresh[4]["outcome"], "ran");
    assert_eq!(fresh[5]["exit"], serde_json::json!({"code": 0}));

    // A failed step prunes at release too: its shape counts in the working set.
    let resumed = run_of(&all, "job-1", 1);
    assert_eq!(
        events_of(&resumed),
        ["starting", "acquired", "ready", "pruned", "exited"]
    );
    assert_eq!(resumed[1]["origin"], "resumed");
    assert_eq!(resumed[2]["tool"], "exec");
    assert_eq!(resumed[2]["command"], "sh -c exit 3");
    assert_eq!(resumed[4]["exit"], serde_json::json!({"code": 3}));

    let seeded = run_of(&all, "job-2", 0);
    assert_eq!(seeded[1]["origin"], "seeded", "{}", seeded[1]);
    assert_eq!(seeded[1]["from"], "job-1");
    assert!(seeded[1]["from_bytes"].is_u64() && seeded[1]["copy_secs"].is_f64());

    let adopted = run_of(&all, "job-3", 0);
    assert_eq!(
        events_of(&adopted),
        [
            "starting", "acquired", "pruned", "verified", "swept", "ready", "pruned", "exited"
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
            "starting", "acquired", "swept", "ready", "nested", "exited", "pruned", "exited"
        ],
        "{all:#?}"
    );
    let (nested, inner, outer) = (&all[4], &all[5], &all[7]);
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
        (
            "[BYTES]",
            r#""([a-z_]*(bytes|free)[a-z_]*|size|working_set)":(\d+)"#,
        ),
        // The budget's bytes (`pruned.budget` counts units).
        ("[BYTES]", r#""budget":(\d+),"working_set""#),
        ("[ELAPSED]", r#""copy_secs":([\d.]+)"#),
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
    common::redact(env, &text)
}

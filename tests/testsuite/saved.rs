//! What warmth saved (docs/protocol.md#what-warmth-saved): at each release a job's lease records
//! its units reused and compiled, its steps and their wall time; a cold build is on record for
//! the estimate of time saved; `status` (text and `--json`) sums them per workspace and in total,
//! and the GitHub step summary says them. Real cargo on the `small` fixture (two units: `util`'s
//! lib and `app`'s bin). Counts only: no time is asserted beyond its presence and its sense.

use std::path::Path;
use std::process::Output;

use crate::common::*;
use serde_json::Value;

/// A step of job `job` with `args`, asserting success; `seed`: seeding on (else adoption only).
fn step(env: &Env, ws: &Path, job: &str, seed: bool, args: &[&str]) -> Output {
    let mut cmd = env.cmd(ws);
    cmd.env("CARGO_GUARDED_SEED", if seed { "1" } else { "0" })
        // No reclaim line or minimum: whether a seed fits must not depend on the machine's disk.
        .env("CARGO_GUARDED_MIN_FREE", "0")
        .env("CARGO_GUARDED_RECLAIM_BELOW", "0")
        .args(["guarded", "--job-id", job])
        .args(args);
    let out = output(&mut cmd);
    assert_success(&out);
    out
}

/// The lease's `warmth`: `(reused, compiled, steps)`.
fn counts(env: &Env, job: &str) -> (Value, Value, Value) {
    let w = env.lease(job)["warmth"].clone();
    (
        w["units_reused"].clone(),
        w["units_compiled"].clone(),
        w["steps"].clone(),
    )
}

/// The `starts` entry of the workspace at `ws`.
fn starts_of(status: &Value, ws: &Path) -> Value {
    status["starts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["workspace"]
                .as_str()
                .unwrap()
                .ends_with(ws.to_str().unwrap())
        })
        .unwrap_or_else(|| panic!("no workspace {} in {status:#}", ws.display()))
        .clone()
}

#[test]
fn a_cold_job_compiles_every_unit_it_uses_and_is_on_record() {
    let env = Env::new();
    let ws = env.fixture("small");
    let out = step(&env, &ws, "cold", true, &["build"]);
    assert_eq!(compiled(&out), ["app", "util"], "{}", describe(&out));
    assert_eq!(counts(&env, "cold"), (0.into(), 2.into(), 1.into()));
    let lease = env.lease("cold");
    assert!(lease["warmth"]["command_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(lease["cold"]["job_id"], "cold");
    assert_eq!(lease["cold"]["units"], 2);
    // A later step of the job (it resumes): nothing new compiled or reused, one more step, and
    // the cold build still the job's.
    step(&env, &ws, "cold", true, &["build"]);
    assert_eq!(counts(&env, "cold"), (0.into(), 2.into(), 2.into()));
    assert_eq!(env.lease("cold")["cold"]["job_id"], "cold");
}

#[test]
fn a_job_adopting_an_unchanged_dir_reuses_every_unit() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "first", false, &["--linger", "0s", "build"]);
    let out = step(&env, &ws, "second", false, &["build"]);
    assert!(stderr(&out).contains("Adopted first"), "{}", describe(&out));
    assert!(!compiled_anything(&out), "{}", describe(&out));
    assert_eq!(counts(&env, "second"), (2.into(), 0.into(), 1.into()));
    // The cold build the dir's line started from comes with the dir.
    assert_eq!(env.lease("second")["cold"]["job_id"], "first");
}

#[test]
fn a_job_seeding_from_an_unchanged_dir_reuses_every_unit() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "first", true, &["build"]);
    let out = step(&env, &ws, "second", true, &["build"]);
    assert!(stderr(&out).contains("Seeded"), "{}", describe(&out));
    assert!(!compiled_anything(&out), "{}", describe(&out));
    assert_eq!(counts(&env, "second"), (2.into(), 0.into(), 1.into()));
    assert_eq!(env.lease("second")["cold"]["job_id"], "first");
}

#[test]
fn after_a_one_file_change_the_changed_units_are_compiled_and_the_rest_reused() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "first", false, &["--linger", "0s", "build"]);
    // `app` alone depends on nothing that changed.
    let main = ws.join("app/src/main.rs");
    let text = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, format!("{text}\n// changed\n")).unwrap();
    let out = step(&env, &ws, "second", false, &["build"]);
    assert_eq!(compiled(&out), ["app"], "{}", describe(&out));
    assert_eq!(counts(&env, "second"), (1.into(), 1.into(), 1.into()));
}

#[test]
fn status_sums_the_counts_per_workspace_and_in_total_with_an_estimate() {
    let env = Env::new();
    let a = env.fixture_as("small", "a");
    let b = env.fixture_as("small", "b");
    step(&env, &a, "a-1", true, &["build"]);
    step(&env, &a, "a-2", true, &["build"]);
    let after_one = env.status();
    step(&env, &a, "a-3", true, &["build"]);
    step(&env, &b, "b-1", true, &["build"]);
    let status = env.status();

    let sa = starts_of(&status, &a);
    // Two warm jobs (seeded: every dir stays in the root) reused both units; one cold compiled them.
    assert_eq!(sa["fresh"], 1, "{sa:#}");
    assert_eq!(sa["seeded"], 2, "{sa:#}");
    assert_eq!(sa["units_reused"], 4, "{sa:#}");
    assert_eq!(sa["units_compiled"], 2, "{sa:#}");
    assert_eq!(sa["dirs_not_counted"], 0, "{sa:#}");
    assert_eq!(sa["cold_builds"], 1, "{sa:#}");
    let rate = sa["cold_secs_per_unit"].as_f64().unwrap();
    let saved = sa["saved_secs_estimate"].as_f64().unwrap();
    assert!(rate > 0.0 && (saved - rate * 4.0).abs() < 1e-6, "{sa:#}");
    // More warm jobs, more saved.
    let before = starts_of(&after_one, &a)["saved_secs_estimate"]
        .as_f64()
        .unwrap();
    assert!(saved > before, "{before} then {saved}");
    // Each lease's own counts add up to the workspace's.
    let leases = status["leases"].as_array().unwrap();
    let sum = |ws: &Path, field: &str| -> u64 {
        leases
            .iter()
            .filter(|l| {
                l["workspace"]
                    .as_str()
                    .unwrap()
                    .ends_with(ws.to_str().unwrap())
            })
            .map(|l| l["warmth"][field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sa["units_reused"], sum(&a, "units_reused"));
    assert_eq!(sa["units_compiled"], sum(&a, "units_compiled"));

    let sb = starts_of(&status, &b);
    assert_eq!(
        (&sb["units_reused"], &sb["units_compiled"]),
        (&0.into(), &2.into())
    );
    assert_eq!(sb["saved_secs_estimate"], 0.0, "{sb:#}");
    let total = &status["warmth"];
    assert_eq!(total["units_reused"], 4, "{total:#}");
    assert_eq!(total["units_compiled"], 4, "{total:#}");
    assert_eq!(total["saved_secs_estimate"].as_f64(), Some(saved));

    let text = stdout(&env.ok(env.path(), ["status"]));
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no `{start}` line:\n{text}"))
            .to_owned()
    };
    let la = line(&format!("units: {}", a.display()));
    assert!(la.contains("4 reused, 2 compiled (66% reused)"), "{la}");
    assert!(
        la.contains("saved ~") && la.contains("(estimate: 1 cold build"),
        "{la}"
    );
    let total = line("units in total:");
    assert!(
        total.contains("4 reused, 4 compiled (50% reused)"),
        "{total}"
    );
    assert!(total.contains("(estimate)"), "{total}");
}

#[test]
fn the_step_summary_says_what_warmth_saved() {
    let env = Env::new();
    let ws = env.fixture("small");
    let run = |n: usize, job: &str| {
        let gh = GithubStep::new(env.path().join(format!("step-{n}")));
        let mut cmd = env.cmd(&ws);
        gh.apply(&mut cmd)
            .env("CARGO_GUARDED_MIN_FREE", "0")
            .env("CARGO_GUARDED_RECLAIM_BELOW", "0")
            .args(["guarded", "--job-id", job, "build"]);
        assert_success(&output(&mut cmd));
        std::fs::read_to_string(&gh.summary).unwrap()
    };
    let cold = run(1, "cold");
    assert!(
        cold.contains("Job `cold` built cold: 2 units compiled in ")
            && cold.contains("on record for the estimates"),
        "{cold}"
    );
    let warm = run(2, "warm");
    assert!(
        warm.contains(
            "Job `warm` so far: 2 units reused warm, 0 compiled (100% reused); time saved ~"
        ) && warm.contains("(estimate: ")
            && warm.contains("from cold build `cold`"),
        "{warm}"
    );
}

#[test]
fn counts_a_lease_does_not_hold_as_written_are_unknown() {
    let env = Env::new();
    let mut lease = expired_lease("planted-1", Some(1000));
    lease["warmth"] = serde_json::json!({
        "units_reused": -3, "units_compiled": "lots", "steps": 1e30, "command_secs": 1e308
    });
    lease["cold"] = serde_json::json!({"job_id": "x", "units": 0, "secs": 5});
    plant_job(&env.root, "planted-1", &lease);
    let mut other = expired_lease("planted-2", Some(1000));
    other["warmth"] = serde_json::json!("garbage");
    other["cold"] = serde_json::json!({"job_id": "y", "units": 3, "secs": 1e300});
    plant_job(&env.root, "planted-2", &other);

    let status = env.status();
    for l in status["leases"].as_array().unwrap() {
        // The dir is read as any other: only the counts are unknown.
        assert_eq!(l["state"], "expired", "{l:#}");
        let w = &l["warmth"];
        for field in ["units_reused", "units_compiled", "steps", "command_secs"] {
            assert!(w[field].is_null(), "{field} in {l:#}");
        }
        assert!(l["cold"].is_null(), "{l:#}");
    }
    let s = &status["starts"][0];
    assert_eq!(s["dirs_not_counted"], 2, "{s:#}");
    assert_eq!(
        (&s["units_reused"], &s["units_compiled"]),
        (&0.into(), &0.into())
    );
    assert!(s["saved_secs_estimate"].is_null(), "{s:#}");
    let text = stdout(&env.ok(env.path(), ["status"]));
    assert!(
        text.contains("units: planted: 0 reused, 0 compiled (no units used), 2 dirs not counted; saved unknown"),
        "{text}"
    );

    // Its own job resumes it: the step is counted, what could not be read stays unknown.
    let ws = env.fixture("small");
    let mut cmd = env.cmd(&ws);
    cmd.args(["guarded", "--job-id", "planted-1", "exec", "--", "true"]);
    assert_success(&output(&mut cmd));
    let w = &env.lease("planted-1")["warmth"];
    assert!(w["steps"].is_null() && w["command_secs"].is_null(), "{w:#}");
    assert!(w["units_compiled"].is_u64(), "{w:#}");
}

/// Where a read could go unrecorded, units reused is unknown rather than undercounted: a dir
/// adopted with `--no-prune` keeps the previous job's atimes (after both mtime and ctime, from
/// its reads), and `relatime` records no read of them for a day.
#[test]
fn reads_relatime_could_hide_leave_units_reused_unknown() {
    let env = Env::new();
    let ws = env.fixture("small");
    let mount = output(
        std::process::Command::new("findmnt")
            .args(["-no", "OPTIONS", "-T"])
            .arg(env.path()),
    );
    let options = stdout(&mount);
    if !options.split(',').any(|o| o.trim() == "relatime") {
        eprintln!(
            "skipped: {} is not mounted relatime ({options})",
            env.path().display()
        );
        return;
    }
    step(&env, &ws, "first", false, &["--linger", "0s", "build"]);
    // Adopted and pruned: reads are observable, and this job's reads leave atimes ahead.
    step(&env, &ws, "second", false, &["--linger", "0s", "build"]);
    assert_eq!(counts(&env, "second").0, 2);
    let out = step(&env, &ws, "third", false, &["--no-prune", "build"]);
    assert!(
        stderr(&out).contains("Adopted second"),
        "{}",
        describe(&out)
    );
    assert_eq!(counts(&env, "third"), (Value::Null, 0.into(), 1.into()));
    let s = &env.status()["starts"][0];
    assert_eq!(s["dirs_not_counted"], 1, "{s:#}");
    assert!(s["saved_secs_estimate"].as_f64() == Some(0.0), "{s:#}");
}

//! The disk guard: the seed scenario, a crash at every step, attacks planted in the
//! root, untrusted locks, and a real small filesystem.

use crate::common::tmpfs;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tmpfs::Tmpfs;

/// A lease as cargo-guarded writes it.
fn lease(job: &str, state: &str, renewed: i64, expires: i64, ttl: u64) -> Value {
    json!({
        "protocol": 1, "job_id": job, "token": "t", "workspace": "planted", "toolchain": null,
        "host": "elsewhere", "boot_id": null, "runner": "runner-9", "pid": 4121,
        "created_at": ts(renewed), "renewed_at": ts(renewed), "expires_at": ts(expires),
        "heartbeat_secs": 1, "ttl_secs": ttl, "state": state, "size_bytes": null, "command": []
    })
}

/// Plant a job dir with `lease` (or none) and a file in its target dir.
fn plant(env: &Env, name: &str, lease: Option<&Value>) -> PathBuf {
    let dir = env.root.join(name);
    std::fs::create_dir_all(dir.join("target/debug")).unwrap();
    // A planted root must be a root: `gc` refuses a directory without cargo-guarded's marker.
    std::fs::write(env.root.join(".cargo-guarded-root"), "").unwrap();
    std::fs::write(dir.join("target/debug/artifact"), vec![7u8; 4096]).unwrap();
    if let Some(l) = lease {
        std::fs::write(
            dir.join("lease.json"),
            serde_json::to_vec_pretty(l).unwrap(),
        )
        .unwrap();
    }
    dir
}

fn expired(env: &Env, name: &str) -> PathBuf {
    plant(env, name, Some(&lease(name, "released", -7200, -3600, 600)))
}

fn gc_json(env: &Env, extra: &[&str]) -> Value {
    let mut args = vec!["gc", "--json"];
    args.extend_from_slice(extra);
    let out = env.run(env.path(), &args);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("gc --json: {e}\n{}", describe(&out)))
}

fn trash_entries(env: &Env) -> usize {
    std::fs::read_dir(env.root.join(".trash"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

#[test]
fn seed_scenario_builds_survive_a_guard_at_forced_pressure() {
    seed_scenario(3, 3, 1);
}

/// The longer version: `cargo test --test testsuite guard:: -- --ignored` (counts are printed).
#[test]
#[ignore = "stress run; opt in with --ignored"]
fn seed_scenario_stress() {
    let builds = std::env::var("STRESS_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    seed_scenario(builds, 12, 3);
}

/// `builds` real builds of a workspace that takes seconds to compile, started at once, while
/// `guards` loops run `gc --reclaim-below 100%` (forced pressure) every 100 ms; `old` dirs
/// expired before they started.
fn seed_scenario(builds: usize, old: usize, guards: usize) {
    let env = Env::new();
    let ws = env.fixture("slow");
    // Dirs that expired before the builds started, from another workspace.
    let elsewhere = env.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for i in 1..=old {
        let job = format!("old-{i}");
        env.ok(
            &elsewhere,
            [
                "--no-adopt",
                "--linger",
                "0s",
                "--job-id",
                &job,
                "exec",
                "--",
                "true",
            ],
        );
    }

    let done = Arc::new(AtomicBool::new(false));
    let sweeps = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = (0..guards)
        .map(|_| {
            let (done, sweeps) = (Arc::clone(&done), Arc::clone(&sweeps));
            let (root, tmp) = (env.root.clone(), env.path().to_owned());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    let out = output(
                        Command::new(BIN)
                            .env_clear()
                            .env("NO_COLOR", "1")
                            .args(["guarded", "--root"])
                            .arg(&root)
                            .args(["gc", "--reclaim-below", "100%"])
                            .current_dir(&tmp),
                    );
                    if !out.status.success() {
                        failures.push(describe(&out));
                    }
                    sweeps.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                }
                failures
            })
        })
        .collect();
    let children: Vec<Child> = (1..=builds)
        .map(|i| {
            env.cmd(&ws)
                .args(["guarded", "--job-id", &format!("seed-{i}"), "build"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    done.store(true, Ordering::SeqCst);
    let failures: Vec<String> = loops.into_iter().flat_map(|l| l.join().unwrap()).collect();
    let sweeps = sweeps.load(Ordering::SeqCst);
    eprintln!(
        "seed scenario: {builds} builds, {old} expired dirs, {guards} guard loop(s), {sweeps} sweeps"
    );

    for out in &outs {
        assert_success(out);
    }
    assert!(failures.is_empty(), "a sweep failed: {failures:#?}");
    assert!(sweeps >= 2, "the guard loop never overlapped the builds");
    let dirs = env.job_dirs();
    for i in 1..=old {
        assert!(
            !dirs.contains(&format!("old-{i}")),
            "expired dir old-{i} survived: {dirs:?}"
        );
    }
    for i in 1..=builds {
        let again = env.ok(&ws, ["--job-id", &format!("seed-{i}"), "build"]);
        assert!(
            !compiled_anything(&again),
            "seed-{i} was touched:\n{}",
            describe(&again)
        );
    }
    assert_eq!(trash_entries(&env), 0);
}

// A crash at each fault point (`CARGO_GUARDED_FAULT`, SIGABRT there) loses no live dir and
// leaves nothing that a later run or sweep does not clean up: one test per step.

/// Run `test` beside a live job, whose lease and dir no crash may touch.
fn beside_a_live_job(test: impl FnOnce(&Env, &Path)) {
    let env = Env::new();
    let ws = env.fixture("small");
    let holder = env.live_holder(env.path(), "live");
    test(&env, &ws);
    assert_eq!(
        env.lease("live")["state"],
        "active",
        "the live job's lease changed"
    );
    assert!(
        env.root.join("live/target").is_dir(),
        "the live job's dir was lost"
    );
    holder.stop();
}

/// `cargo guarded ARGS` in `cwd`, which must die at fault point `step`.
fn crash_at(env: &Env, cwd: &Path, step: &str, args: &[&str]) {
    let mut cmd = env.cmd(cwd);
    cmd.env("CARGO_GUARDED_FAULT", step)
        .arg("guarded")
        .args(args);
    let out = output(&mut cmd);
    assert_eq!(
        out.status.signal(),
        Some(6),
        "fault point {step} was not reached:\n{}",
        describe(&out)
    );
}

fn no_new_dirs(env: &Env) -> bool {
    std::fs::read_dir(&env.root)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".new-")
        })
        .count()
        == 0
}

/// Creating a dir: nothing is visible under the job's name; the unfinished dir ages out.
fn crash_creating(step: &str) {
    beside_a_live_job(|env, ws| {
        crash_at(env, ws, step, &["--job-id", "fresh", "exec", "--", "true"]);
        assert!(
            !env.job_dirs().contains(&"fresh".to_owned()),
            "{step}: half-visible job dir"
        );
        unfinished_dir_is_reclaimed(env, step);
        assert_eq!(trash_entries(env), 0);
    });
}

#[test]
fn a_crash_with_a_new_dir_locked_is_reclaimed_later() {
    crash_creating("acquire-locked");
}

#[test]
fn a_crash_before_a_new_dir_is_published_is_reclaimed_later() {
    crash_creating("acquire-before-publish");
}

/// Resuming: the dir stays, released.
#[test]
fn a_crash_while_resuming_leaves_the_dir_released() {
    beside_a_live_job(|env, ws| {
        env.ok(ws, ["--job-id", "job", "exec", "--", "true"]);
        crash_at(
            env,
            ws,
            "acquire-resume-locked",
            &["--job-id", "job", "exec", "--", "true"],
        );
        assert_eq!(env.lease("job")["state"], "released");
    });
}

/// Heartbeat, release: the dir stays; a dead job's dir expires after its TTL.
fn crash_holding(step: &str, job: &str, command: &[&str]) {
    beside_a_live_job(|env, ws| {
        let mut args = vec!["--ttl", "1s", "--job-id", job, "exec", "--"];
        args.extend_from_slice(command);
        crash_at(env, ws, step, &args);
        assert_eq!(env.lease(job)["state"], "active", "{job}");
        assert!(
            wait_for(20, || {
                let r = gc_json(env, &["--all-expired"]);
                !env.job_dirs().contains(&job.to_owned()) && r["errors"] == json!([])
            }),
            "a dead job's dir was not reclaimed after its TTL: {:?}",
            env.job_dirs()
        );
    });
}

#[test]
fn a_crash_in_the_heartbeat_expires_after_the_ttl() {
    crash_holding("heartbeat", "beat", &["sleep", "30"]);
}

#[test]
fn a_crash_at_release_expires_after_the_ttl() {
    crash_holding("release", "rel", &["true"]);
}

/// Adopting: a released `donor` dir, then job `taker` crashes at `step` while adopting it.
fn crash_adopting(env: &Env, ws: &Path, step: &str) {
    env.ok(
        ws,
        ["--linger", "0s", "--job-id", "donor", "exec", "--", "true"],
    );
    // Seeding off: with it, the only finished dir of the workspace is seeded from, not adopted.
    crash_at(
        env,
        ws,
        step,
        &["--no-seed", "--job-id", "taker", "exec", "--", "true"],
    );
}

/// Seeding: a crash mid-seed leaves the source whole and released, nothing under the
/// new job's name, and an unfinished `.new-*` dir that ages out; the source's shared `seed.lock`
/// went with the process, so a sweep can still take the source once it expires.
/// A crash left an unfinished `.new-*` dir, which a later `gc` reclaims once its age is past the
/// TTL.
fn unfinished_dir_is_reclaimed(env: &Env, step: &str) {
    assert!(
        !no_new_dirs(env),
        "{step}: expected an unfinished .new-* dir"
    );
    assert!(
        wait_for(20, || {
            env.ok(env.path(), ["--ttl", "1s", "gc"]);
            no_new_dirs(env)
        }),
        "{step}: unfinished dir never reclaimed"
    );
}

fn crash_seeding(step: &str) {
    beside_a_live_job(|env, ws| {
        env.ok(ws, ["--job-id", "source", "exec", "--", "true"]);
        crash_at(env, ws, step, &["--job-id", "seeded", "exec", "--", "true"]);
        assert!(!env.job_dirs().contains(&"seeded".to_owned()), "{step}");
        assert_eq!(env.lease("source")["state"], "released", "{step}");
        assert!(env.root.join("source/target").is_dir(), "{step}");
        unfinished_dir_is_reclaimed(env, step);
        env.ok(
            ws,
            ["--job-id", "source", "--linger", "0s", "exec", "--", "true"],
        );
        let out = env.ok(env.path(), ["gc", "--all-expired"]);
        assert!(
            !env.job_dirs().contains(&"source".to_owned()),
            "{step}: the source stayed claimed by a dead seeder\n{}",
            describe(&out)
        );
    });
}

#[test]
fn a_crash_mid_seed_leaves_the_source_whole_and_ages_out() {
    for step in ["seed-locked", "seed-copied", "seed-before-publish"] {
        crash_seeding(step);
    }
}

/// Adopting: the candidate stays whole under one name or the other.
#[test]
fn a_crash_with_the_adoption_candidate_locked_leaves_it_whole() {
    beside_a_live_job(|env, ws| {
        crash_adopting(env, ws, "adopt-locked");
        assert!(env.job_dirs().contains(&"donor".to_owned()));
        assert!(!env.job_dirs().contains(&"taker".to_owned()));
    });
}

#[test]
fn a_crash_after_the_adopted_dir_is_renamed_is_finished_by_the_next_run() {
    beside_a_live_job(|env, ws| {
        crash_adopting(env, ws, "adopt-renamed");
        assert!(!env.job_dirs().contains(&"donor".to_owned()));
        assert_eq!(
            env.lease("taker")["job_id"],
            "donor",
            "renamed, lease not yet rewritten"
        );
        // `status` lists the dir under its own job, saying what its lease names.
        let status = env.status();
        let entry = status["leases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["dir"].as_str().unwrap().ends_with("/taker"))
            .unwrap();
        assert_eq!(entry["job_id"], "taker", "{status:#}");
        assert!(
            entry["note"]
                .as_str()
                .is_some_and(|n| n.contains("lease names job `donor`")),
            "{status:#}"
        );
        env.ok(ws, ["--job-id", "taker", "exec", "--", "true"]);
        assert_eq!(env.lease("taker")["job_id"], "taker");
    });
}

/// The guard: before the rename nothing changed; after it, the next sweep empties the trash.
fn crash_sweeping(step: &str) {
    beside_a_live_job(|env, _| {
        let name = "old";
        expired(env, name);
        crash_at(env, env.path(), step, &["gc", "--all-expired"]);
        env.ok(env.path(), ["gc", "--all-expired"]);
        assert!(
            !env.job_dirs().contains(&name.to_owned()),
            "{step}: {name} not reclaimed by the next sweep"
        );
        assert_eq!(trash_entries(env), 0, "{step}: trash not emptied");
    });
}

#[test]
fn a_guard_crash_with_the_dir_locked_is_finished_by_the_next_sweep() {
    crash_sweeping("guard-locked");
}

#[test]
fn a_guard_crash_at_the_rename_is_finished_by_the_next_sweep() {
    crash_sweeping("guard-rename");
}

#[test]
fn a_guard_crash_with_the_dir_trashed_is_finished_by_the_next_sweep() {
    crash_sweeping("guard-trashed");
}

#[test]
fn a_guard_crash_while_deleting_is_finished_by_the_next_sweep() {
    crash_sweeping("guard-delete");
}

#[test]
fn nothing_unclassifiable_is_deleted_and_nothing_outside_the_root_is_touched() {
    let env = Env::new();
    let outside = env.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), "keep me").unwrap();
    std::fs::create_dir_all(&env.root).unwrap();

    std::os::unix::fs::symlink(&outside, env.root.join("evil-link")).unwrap();
    std::fs::write(env.root.join("stray-file"), "x").unwrap();
    plant(&env, "no-lease", None);
    plant(
        &env,
        "future",
        Some(&json!({"protocol": 99, "job_id": "future"})),
    );
    plant(&env, "garbage", None);
    std::fs::write(env.root.join("garbage/lease.json"), b"\x00\xffnot json").unwrap();
    let huge = plant(&env, "huge", None);
    std::fs::File::create(huge.join("lease.json"))
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let fifo = plant(&env, "fifo", None);
    assert!(
        Command::new("mkfifo")
            .arg(fifo.join("lease.json"))
            .status()
            .unwrap()
            .success()
    );
    let linked = plant(&env, "linked-lease", None);
    std::fs::write(
        outside.join("lease.json"),
        serde_json::to_vec(&lease("x", "released", -7200, -3600, 1)).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("lease.json"), linked.join("lease.json")).unwrap();
    // An expired lease that names paths outside the root: only its own dir may go.
    let mut pointing = lease("pointing", "released", -7200, -3600, 600);
    pointing["target_dir"] = json!(outside);
    pointing["dir"] = json!("/");
    plant(&env, "pointing", Some(&pointing));

    let report = gc_json(&env, &["--all-expired", "--reclaim-below", "100%"]);
    assert_eq!(removed_names(&report), ["pointing"], "{report:#}");
    assert_eq!(kept_reason(&report, "evil-link"), "skipped: symlink");
    assert_eq!(
        kept_reason(&report, "stray-file"),
        "skipped: not a directory"
    );
    assert!(kept_reason(&report, "no-lease").contains("unknown – no lease"));
    assert!(kept_reason(&report, "future").contains("unknown lease protocol version 99"));
    assert!(kept_reason(&report, "garbage").contains("unknown – lease unreadable"));
    assert!(kept_reason(&report, "huge").contains("unknown – lease larger than"));
    assert!(kept_reason(&report, "fifo").contains("unknown"));
    assert!(kept_reason(&report, "linked-lease").contains("unknown – lease is a symlink"));
    for name in [
        "no-lease",
        "future",
        "garbage",
        "huge",
        "fifo",
        "linked-lease",
    ] {
        assert!(
            env.root.join(name).join("target/debug/artifact").exists(),
            "{name} was touched"
        );
    }
    assert!(env.root.join("evil-link").is_symlink());
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me"
    );
    assert!(outside.join("lease.json").exists());
}

/// Swap an expired job dir for a symlink to `outside` while the guard is paused at `step`.
fn swap_during(step: &str) {
    let env = Env::new();
    let outside = env.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), "keep me").unwrap();
    expired(&env, "victim");
    let mut cmd = env.cmd(env.path());
    cmd.args(["guarded", "gc", "--json", "--all-expired"]);
    let guard = env.paused(cmd, "guard", step);
    let moved = env.path().join("moved-away");
    std::fs::rename(env.root.join("victim"), &moved).unwrap();
    std::os::unix::fs::symlink(&outside, env.root.join("victim")).unwrap();
    let out = guard.resume(60);
    assert_success(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(removed_names(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me"
    );
    assert!(moved.join("target/debug/artifact").exists());
    assert!(env.root.join("victim").is_symlink());
}

#[test]
fn a_dir_swapped_for_a_symlink_after_the_scan_is_skipped() {
    swap_during("guard-scanned");
}

#[test]
fn a_dir_swapped_for_a_symlink_after_its_lock_is_skipped() {
    swap_during("guard-locked");
}

#[test]
fn untrusted_locks_fall_back_to_the_heartbeat_with_a_margin() {
    let env = Env::new();
    // Fresh heartbeat, lock free (no process holds it).
    plant(&env, "fresh", Some(&lease("fresh", "active", 0, 600, 600)));
    // Heartbeat stopped 700 s ago with a 600 s TTL: expired, but within the untrusted margin.
    plant(
        &env,
        "stale",
        Some(&lease("stale", "active", -700, -100, 600)),
    );

    let mut cmd = env.cmd(env.path());
    cmd.env("CARGO_GUARDED_LOCKS", "untrusted")
        .args(["guarded", "gc", "--json", "--all-expired"]);
    let out = output(&mut cmd);
    assert_success(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(removed_names(&report), Vec::<String>::new(), "{report:#}");
    assert!(kept_reason(&report, "fresh").contains("lease held by runner-9"));

    let report = gc_json(&env, &["--all-expired"]);
    assert_eq!(
        removed_names(&report),
        ["stale"],
        "with trusted locks the stale lease expires: {report:#}"
    );
    assert!(env.root.join("fresh").exists());
}

#[test]
fn dry_run_reports_what_it_would_remove_and_removes_nothing() {
    let env = Env::new();
    expired(&env, "old");
    plant(
        &env,
        "lingering",
        Some(&lease("lingering", "released", 0, 2400, 600)),
    );
    // Its lines are pinned whole in tests/snapshots.rs (gc_dry_run_then_gc).
    env.ok(env.path(), ["gc", "--dry-run", "--all-expired"]);
    assert!(env.root.join("old/target/debug/artifact").exists());
    let report = gc_json(&env, &["--dry-run", "--all-expired"]);
    assert_eq!(report["dry_run"], true);
    assert_eq!(removed_names(&report), ["old"]);
    for key in ["free_before", "free_after", "target_free"] {
        assert!(report[key].is_u64(), "{key}: {report:#}");
    }
    assert!(report["errors"].as_array().unwrap().is_empty());

    env.ok(env.path(), ["gc", "--all-expired"]);
    assert!(!env.root.join("old").exists());
}

#[test]
fn without_pressure_the_guard_keeps_expired_dirs_it_does_not_need() {
    let env = Env::new();
    expired(&env, "old");
    let report = gc_json(&env, &["--reclaim-below", "0%", "--keep-expired", "5"]);
    assert_eq!(removed_names(&report), Vec::<String>::new());
    assert!(
        kept_reason(&report, "old").starts_with("kept: expired"),
        "{report:#}"
    );
    let report = gc_json(&env, &["--reclaim-below", "100%"]);
    assert_eq!(removed_names(&report), ["old"]);
}

// --- A real small filesystem --------------------------------------------------------------------

/// An `Env` whose root is on a fresh tmpfs of `mib` MiB (unmounted when the `Tmpfs` drops,
/// before the `Env`'s temp dir goes), or `None` with the reason printed.
fn env_on_tmpfs(mib: u64) -> Option<(Tmpfs, Env)> {
    let mut env = Env::new();
    let mnt = tmpfs_at_or_skip(&env.path().join("mnt"), mib)?;
    env.root = mnt.0.join("root");
    Some((mnt, env))
}

fn tmpfs_at_or_skip(at: &Path, mib: u64) -> Option<Tmpfs> {
    Tmpfs::mount_or_skip(at, &format!("{mib}m"))
}

/// `exec` a job that writes `mib` MiB into its target dir.
fn fill_args(job: &str, mib: u64, linger: &str) -> Vec<String> {
    [
        "--no-adopt",
        "--keep-expired",
        "100",
        "--min-free",
        "0",
        "--reclaim-below",
        "0",
        "--linger",
        linger,
        "--job-id",
        job,
        "exec",
        "--",
        "sh",
        "-c",
        &format!("head -c {}M /dev/zero > \"$CARGO_TARGET_DIR/blob\"", mib),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn on_a_full_small_disk_the_guard_frees_just_enough_oldest_first() {
    let Some((_mnt, env)) = env_on_tmpfs(300) else {
        return;
    };
    for i in 1..=5 {
        env.ok(env.path(), fill_args(&format!("fill-{i}"), 50, "0s"));
    }
    // ~250 MiB used of 300: a job that needs 120 MiB free must reclaim two dirs, oldest first.
    let ws = env.fixture("small");
    let out = env.run(
        &ws,
        [
            "--keep-expired",
            "100",
            "--reclaim-below",
            "120M",
            "--reclaim-to",
            "120M",
            "--min-free",
            "100M",
            "--job-id",
            "needs-space",
            "build",
        ],
    );
    assert_success(&out);
    assert_eq!(
        env.job_dirs(),
        ["fill-3", "fill-4", "fill-5", "needs-space"],
        "{}",
        describe(&out)
    );
    assert!(
        stderr(&out).contains("Removed fill-1"),
        "{}",
        describe(&out)
    );
}

#[test]
fn on_a_small_disk_full_of_live_leases_nothing_is_deleted_and_the_job_refuses() {
    let Some((_mnt, env)) = env_on_tmpfs(300) else {
        return;
    };
    let mut holders = Vec::new();
    for i in 1..=4 {
        let job = format!("live-{i}");
        let mut args = fill_args(&job, 50, "1h");
        // Keep the lease live after filling.
        let script = args.pop().unwrap() + " && sleep 60";
        args.push(script);
        let child = env
            .cmd(env.path())
            .arg("guarded")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        holders.push(child);
        assert!(wait_for(30, || env
            .root
            .join(&job)
            .join("target/blob")
            .metadata()
            .is_ok_and(|m| m.len() == 50 << 20)));
    }
    let ws = env.fixture("small");
    let out = env.run(
        &ws,
        ["--min-free", "150M", "--job-id", "wants-space", "build"],
    );
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not enough free disk space") && err.contains("required"),
        "{err}"
    );
    assert!(!compiled_anything(&out));
    for i in 1..=4 {
        assert!(
            env.root.join(format!("live-{i}/target/blob")).exists(),
            "live-{i} was deleted"
        );
    }
    for h in holders {
        stop(h);
    }
}

/// docs/protocol.md "Renew": if the job dir is moved away under a running job (a rogue cleaner, an
/// operator's `mv`), the job stops loudly instead of building into a dir being deleted.
#[test]
fn a_job_whose_dir_is_moved_away_stops_loudly() {
    let env = Env::new();
    let job = env
        .cmd(env.path())
        .args([
            "guarded", "--ttl", "1s", "--job-id", "victim", "exec", "--", "sleep", "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(30, || env.root.join("victim/lease.json").exists()));
    std::fs::rename(env.root.join("victim"), env.path().join("moved")).unwrap();
    let out = job.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("was moved away while the job was running"),
        "{}",
        describe(&out)
    );
}

#[test]
fn max_time_stops_new_deletions() {
    let env = Env::new();
    for i in 0..3 {
        expired(&env, &format!("old-{i}"));
    }
    let report = gc_json(&env, &["--all-expired", "--max-time", "0s"]);
    assert_eq!(removed_names(&report), Vec::<String>::new(), "{report:#}");
    for i in 0..3 {
        assert_eq!(
            kept_reason(&report, &format!("old-{i}")),
            "kept: expired, but --max-time was reached"
        );
    }
    assert_eq!(env.job_dirs().len(), 3);
}

#[test]
fn hook_mode_prints_compact_decisions_and_never_fails_the_job() {
    let env = Env::new();
    expired(&env, "old");
    plant(&env, "live", Some(&lease("live", "active", 0, 600, 600)));
    plant(&env, "broken", None);
    // Its lines are pinned whole in tests/snapshots.rs (gc_hook_mode).
    env.ok(env.path(), ["gc", "--hook", "--all-expired"]);
    assert!(!env.root.join("old").exists());
    assert!(env.root.join("live").exists() && env.root.join("broken").exists());
    // A root that cannot be swept (here: not there at all) still does not fail the hook.
    let out = env.run(
        env.path(),
        ["--root", "/nonexistent/cargo-guarded", "gc", "--hook"],
    );
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        err.starts_with("warning: root /nonexistent/cargo-guarded does not exist"),
        "{err}"
    );
}

/// Invariant 5: deletion never leaves the root's filesystem. A filesystem mounted inside an
/// expired job dir stays, with its files, and the sweep reports it.
#[test]
fn deletion_never_enters_another_filesystem() {
    let env = Env::new();
    let dir = expired(&env, "old");
    let Some(mnt) = tmpfs_at_or_skip(&dir.join("target/debug/mounted"), 8) else {
        return;
    };
    std::fs::write(mnt.0.join("on-another-fs"), "keep me").unwrap();
    let out = env.run(env.path(), ["gc", "--all-expired"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("another filesystem"),
        "{}",
        describe(&out)
    );
    // The dir was moved into the trash (the mount moves with it) and emptied around the mount.
    let trashed = std::fs::read_dir(env.root.join(".trash"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let moved = Tmpfs(trashed.join("target/debug/mounted"));
    std::mem::forget(mnt);
    assert_eq!(
        std::fs::read_to_string(moved.0.join("on-another-fs")).unwrap(),
        "keep me"
    );
    assert!(
        !trashed.join("lease.json").exists(),
        "the rest of the dir was not deleted"
    );
}

/// Retention on a real small filesystem: without any disk pressure, a sweep keeps only
/// the `--keep-expired` most recently used expired dirs of a workspace, and the space comes back.
#[test]
fn on_a_small_disk_retention_keeps_the_newest_expired_dir_per_workspace() {
    let Some((_mnt, env)) = env_on_tmpfs(200) else {
        return;
    };
    for i in 1..=4 {
        env.ok(env.path(), fill_args(&format!("ret-{i}"), 20, "0s"));
    }
    let free = || env.status()["free_bytes"].as_u64().unwrap();
    let before = free();
    let out = env.ok(env.path(), ["gc", "--reclaim-below", "0"]);
    assert_eq!(env.job_dirs(), ["ret-4"], "{}", describe(&out));
    assert!(
        free() >= before + (55 << 20),
        "60 MiB of expired dirs should be free again"
    );
}

/// The sweep command lines `contrib/` ships (the systemd unit's `ExecStart=`, the DaemonSet's
/// loop), as arguments after the binary.
fn shipped_sweeps() -> Vec<(&'static str, Vec<String>)> {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let read = |p: &str| std::fs::read_to_string(contrib.join(p)).unwrap();
    let service = read("cargo-guarded-gc.service");
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart=");
    let daemonset = read("kubernetes/cargo-guarded-gc.yaml");
    let looped = daemonset
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cargo-guarded guarded gc"))
        .expect("the DaemonSet runs cargo-guarded guarded gc");
    let args = |line: &str| -> Vec<String> {
        let line = line.split("||").next().unwrap();
        line.split_whitespace().skip(2).map(str::to_owned).collect()
    };
    vec![("systemd", args(exec)), ("kubernetes", args(looped))]
}

/// The scheduled sweeps as `contrib/` ships them keep the warm reserve (the only
/// expired dir of a workspace) while the disk has room, and reclaim it once free space is below
/// `--reclaim-below`, on a real small tmpfs. Before, they ran `gc --all-expired`, which removed
/// it on every sweep.
#[test]
fn the_shipped_sweeps_keep_the_warm_reserve_until_the_disk_is_short() {
    for (which, args) in shipped_sweeps() {
        assert_eq!(args[0], "gc", "{which}: {args:?}");
        let Some((mnt, env)) = env_on_tmpfs(64) else {
            return;
        };
        env.ok(env.path(), fill_args("warm", 8, "0s"));
        let sweep = |env: &Env| {
            let mut cmd = env.cmd(env.path());
            cmd.arg("guarded").args(&args).arg("--json");
            let out = output(&mut cmd);
            assert_success(&out);
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        };
        let report = sweep(&env);
        assert_eq!(
            removed_names(&report),
            Vec::<String>::new(),
            "{which}: {report:#}"
        );
        assert!(env.root.join("warm").exists(), "{which}: {report:#}");

        tmpfs::fill(&mnt.0);
        let report = sweep(&env);
        assert_eq!(removed_names(&report), ["warm"], "{which}: {report:#}");
        assert!(!env.root.join("warm").exists());
    }
}

/// Bytes allocated under `dir`, each inode once.
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                total += m.blocks() * 512;
                stack.push(e.path());
            } else if seen.insert(m.ino()) {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// Every file under `dir` with its length: what "untouched" compares.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if e.file_name() != "lease.json" {
                out.push((e.path(), m.len()));
            }
        }
    }
    out.sort();
    out
}

/// `--max-root-size` caps the root whatever the free space. Three expired dirs of real
/// builds, one lingering, one live (held): with a cap that the two oldest expired dirs' removal
/// meets, a dry run names them and removes nothing; the sweep removes exactly them, oldest
/// first, says why, and leaves the root under the cap; the live and lingering dirs are
/// untouched. A cap below what the live and lingering dirs hold removes every expired dir and
/// says the rest is not reclaimable.
#[test]
fn max_root_size_reclaims_oldest_expired_until_under_the_cap() {
    let env = Env::new();
    let ws = env.fixture("small");
    // Nothing but the cap may reclaim: no retention, no pressure, no adoption.
    let quiet = [
        "--no-adopt",
        "--keep-expired",
        "10",
        "--reclaim-below",
        "0%",
        "--min-free",
        "0",
    ];
    let build = |id: &str, linger: &str| {
        let mut args = vec!["--job-id", id, "--linger", linger];
        args.extend(quiet);
        args.push("build");
        env.ok(&ws, &args);
    };
    for id in ["old-1", "old-2", "old-3"] {
        build(id, "0s");
    }
    build("lingering", "1h");
    build("live", "1h");
    let hold = {
        let mut args = vec!["--job-id", "live"];
        args.extend(quiet);
        args.push("hold");
        env.spawn(&ws, "hold", args)
    };
    assert!(
        wait_for(60, || hold.stderr_so_far().contains("Holding")),
        "{}",
        hold.stderr_so_far()
    );
    let kept_before: Vec<_> = ["lingering", "live"]
        .iter()
        .map(|d| files(&env.root.join(d)))
        .collect();
    let one = du(&env.root.join("old-1"));
    // Over by one dir and a half: the two oldest go, the third stays.
    let cap = du(&env.root) - one - one / 2;
    let cap_arg = format!("{cap}B");
    let cap_args = ["--max-root-size", cap_arg.as_str(), "--reclaim-below", "0%"];

    let mut dry = vec!["--dry-run"];
    dry.extend(cap_args);
    let would = gc_json(&env, &dry);
    assert_eq!(removed_names(&would), ["old-1", "old-2"], "{would}");
    assert!(env.root.join("old-1/target").exists(), "a dry run removed");

    let out = env.ok(env.path(), ["gc"].iter().chain(cap_args.iter()));
    let err = stderr(&out);
    assert!(
        err.contains("over --max-root-size") && err.contains("Removed old-1"),
        "{}",
        describe(&out)
    );
    assert!(!env.root.join("old-1").exists() && !env.root.join("old-2").exists());
    assert!(env.root.join("old-3/target").exists(), "old-3 went too");
    assert!(
        du(&env.root) <= cap,
        "root {} over the cap {cap}",
        du(&env.root)
    );
    let kept_after: Vec<_> = ["lingering", "live"]
        .iter()
        .map(|d| files(&env.root.join(d)))
        .collect();
    assert_eq!(kept_before, kept_after, "a live or lingering dir changed");

    // A cap the live and lingering dirs alone exceed: every expired dir goes, they stay.
    let report = gc_json(&env, &["--max-root-size", "1KiB", "--reclaim-below", "0%"]);
    assert_eq!(removed_names(&report), ["old-3"], "{report}");
    assert!(
        report["root_cap"]["root_after"].as_u64() > Some(1024),
        "{report}"
    );
    assert!(env.root.join("live/target").exists() && env.root.join("lingering/target").exists());
    send_signal(hold.pid(), libc::SIGTERM);
    hold.finish(60);
}

/// A seed's copy cut short (an unfinished `.new-*` dir) is counted as what deleting it frees:
/// in the `Removed` line (a dry run's too), and toward the sweep's target. Here the target is `--max-root-size`:
/// the leftover copy alone brings the root under the cap, so the warm dir stays.
#[test]
fn a_leftover_seed_copy_counts_its_bytes() {
    let env = Env::new();
    expired(&env, "warm");
    let copy = env.root.join(".new-seeded.1234");
    std::fs::create_dir_all(copy.join("target/debug")).unwrap();
    std::fs::write(copy.join("target/debug/big"), vec![1u8; 8 << 20]).unwrap();
    // Old enough for a sweep's "abandoned .new-*" rule (`--ttl 1s` makes that age 1s).
    assert!(wait_for(10, || {
        use std::os::unix::fs::MetadataExt;
        let ctime = std::fs::metadata(&copy).unwrap().ctime();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        now - ctime >= 2
    }));
    // Over the cap by less than the copy holds.
    let cap = format!("{}B", du(&env.root) - (4 << 20));
    let args = [
        "--ttl",
        "1s",
        "--reclaim-below",
        "0%",
        "--max-root-size",
        &cap,
    ];
    // A dry run names it, with the bytes the run then frees, and removes nothing.
    let dry = gc_json(&env, &[&args[..], &["--dry-run"]].concat());
    assert!(copy.exists(), "a dry run removed");
    let report = gc_json(&env, &args);
    assert_eq!(dry["removed"], report["removed"], "dry run: {dry:#}");
    let removed = report["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{report:#}");
    assert_eq!(removed[0]["unfinished"], true, "{report:#}");
    assert!(
        removed[0]["bytes"].as_u64().unwrap() >= 8 << 20,
        "{report:#}"
    );
    assert!(!copy.exists());
    assert!(env.root.join("warm/target").exists(), "{report:#}");
    assert!(
        kept_reason(&report, "warm").contains("warm for reuse"),
        "{report:#}"
    );
}

/// After a `kill -9`, the lease still has a fresh heartbeat but nobody holds its locks: `status`
/// and `gc` read it the same way and say it in the same words (they said "gone (holder gone;
/// reclaimable in 9m)" and "Kept … (lease held by … renewed 2s ago)").
#[test]
fn a_killed_job_reads_the_same_in_status_and_gc() {
    let env = Env::new();
    let ws = env.fixture("small");
    let hold = env.spawn(&ws, "hold", ["--job-id", "killed", "hold"]);
    assert!(
        wait_for(60, || hold.stderr_so_far().contains("Holding")),
        "{}",
        hold.stderr_so_far()
    );
    send_signal(hold.pid(), libc::SIGKILL);
    let _ = hold.finish(30);
    let status = env.status();
    assert_eq!(status["leases"][0]["state"], "gone", "{status:#}");
    let table = stdout(&env.ok(env.path(), ["status"]));
    let row = table
        .lines()
        .find(|l| l.contains("killed"))
        .unwrap_or_else(|| panic!("{table}"));
    let said = row
        .split_once("(holder gone; reclaimable in ")
        .map(|(_, rest)| rest.split(')').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{row}"));
    for extra in [&["--dry-run"][..], &[]] {
        let report = gc_json(&env, extra);
        assert_eq!(
            kept_reason(&report, "killed"),
            format!("kept: holder gone; reclaimable in {said}"),
            "{extra:?}"
        );
        let text = stderr(&env.ok(env.path(), ["gc"].iter().chain(extra)));
        assert!(
            text.contains(&format!("Kept killed (holder gone; reclaimable in {said})")),
            "{extra:?}: {text}"
        );
    }
    assert!(env.root.join("killed/target").exists());
}

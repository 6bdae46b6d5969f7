//! Hardening of the lease protocol: hostile or absurd leases, names swapped under a
//! guard, directories that are not roots, a full disk under the heartbeat, a lock held by
//! someone else, huge command lines, and several users sharing one root.

use crate::common::tmpfs;
use crate::common::users;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use serde_json::Value;
use tmpfs::Tmpfs;

/// Run a step of job `job`, asserting success.
fn step(env: &Env, ws: &Path, job: &str, args: &[&str]) -> Output {
    let mut cmd = env.cmd(ws);
    cmd.args(["guarded", "--job-id", job]).args(args);
    let out = output(&mut cmd);
    assert_success(&out);
    out
}

fn gc(env: &Env, args: &[&str]) -> Output {
    let mut cmd = env.cmd(env.path());
    cmd.args(["guarded", "gc"]).args(args);
    output(&mut cmd)
}

/// A copy of job dir `from` under `to`, its lease edited by `edit`.
fn forge(env: &Env, from: &str, to: &str, edit: impl FnOnce(&mut Value)) {
    copy_dir(&env.root.join(from), &env.root.join(to));
    let mut lease = env.lease(from);
    lease["job_id"] = Value::from(to);
    edit(&mut lease);
    std::fs::write(
        env.root.join(to).join("lease.json"),
        serde_json::to_vec_pretty(&lease).unwrap(),
    )
    .unwrap();
}

fn status_entry(status: &Value, dir: &str) -> Value {
    status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["dir"].as_str().unwrap().ends_with(&format!("/{dir}")))
        .unwrap_or_else(|| panic!("no {dir} in {status:#}"))
        .clone()
}

// --- item 1: time arithmetic ---------------------------------------------------------------------

#[test]
fn out_of_range_leases_are_kept_and_reported_never_a_panic() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(
        &env,
        &ws,
        "donor",
        &["--linger", "0s", "exec", "--", "true"],
    );
    forge(&env, "donor", "huge-ttl", |l| {
        l["state"] = Value::from("active");
        l["ttl_secs"] = Value::from(u64::MAX);
    });
    forge(&env, "donor", "far-expiry", |l| {
        l["state"] = Value::from("released");
        l["expires_at"] = Value::from("9999-12-31T23:59:59Z");
    });

    let status = env.status();
    let huge = status_entry(&status, "huge-ttl");
    assert_eq!(huge["state"], "unknown", "{huge:#}");
    assert!(
        huge["note"].as_str().unwrap().contains("out of range"),
        "{huge:#}"
    );
    assert_eq!(status_entry(&status, "far-expiry")["state"], "released");
    env.ok(env.path(), ["status"]);
    for args in [&["--all-expired"][..], &["--hook"], &[]] {
        let out = gc(&env, args);
        assert_success(&out);
    }
    // A new job scans (and would adopt from) the same root.
    step(&env, &ws, "next", &["exec", "--", "true"]);
    let dirs = env.job_dirs();
    assert!(
        dirs.contains(&"huge-ttl".to_owned()) && dirs.contains(&"far-expiry".to_owned()),
        "{dirs:?}"
    );
    // The expired donor itself was reclaimed: the sweep went on past the bad leases.
    assert!(!dirs.contains(&"donor".to_owned()), "{dirs:?}");
}

#[test]
fn absurd_ttl_and_linger_are_errors_naming_the_option() {
    let env = Env::new();
    let ws = env.fixture("small");
    for opt in ["--ttl", "--linger"] {
        let out = env.run(&ws, ["--job-id", "j", opt, "20000y", "exec", "--", "true"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains(opt) && err.contains("20000y") && err.contains("maximum"),
            "{err}"
        );
        assert!(!env.root.exists(), "nothing may be created");
    }
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_GUARDED_TTL", "20000y")
        .args(["guarded", "exec", "--", "true"]);
    let out = output(&mut cmd);
    assert!(
        stderr(&out).contains("CARGO_GUARDED_TTL"),
        "{}",
        describe(&out)
    );
}

// --- item 3: rename by name after checking by fd -------------------------------------------------

/// `renameat2(RENAME_EXCHANGE)`: what a third party with write access to the root can do.
fn exchange(dir: &Path, a: &str, b: &str) {
    let d = std::fs::File::open(dir).unwrap();
    rustix::fs::renameat_with(&d, a, &d, b, rustix::fs::RenameFlags::EXCHANGE)
        .unwrap_or_else(|e| panic!("exchange {a} and {b}: {e}"));
}

#[test]
fn a_name_swapped_under_the_guard_never_trashes_the_live_dir() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "old", &["--linger", "0s", "exec", "--", "true"]);
    // `--no-adopt`: the live job must not take the expired dir for itself.
    step(&env, &ws, "live", &["--no-adopt", "build"]);
    // The live job's next step: holds its dir until the gate goes, then builds again.
    let gate = env.path().join("gate");
    std::fs::write(&gate, "").unwrap();
    let script = format!(
        "while [ -e '{}' ]; do sleep 0.05; done; cargo build",
        gate.display()
    );
    let live = env.spawn(
        &ws,
        "live",
        ["--job-id", "live", "exec", "--", "sh", "-c", &script],
    );
    assert!(wait_for(30, || is_locked(&env.root.join("live"))));

    let mut cmd = env.cmd(env.path());
    cmd.args(["guarded", "gc", "--all-expired"]);
    let guard = env.paused(cmd, "guard", "guard-rename");
    // The guard checked and locked `old`; now the name `old` means the live dir.
    exchange(&env.root, "old", "live");
    let out = guard.resume(60);
    assert_success(&out);
    assert!(
        stdout(&out).contains("swapped") || stderr(&out).contains("swapped"),
        "{}",
        describe(&out)
    );
    // The third party undoes its swap; the live job never noticed.
    exchange(&env.root, "old", "live");
    assert!(env.root.join("live/target/debug").is_dir());
    std::fs::remove_file(&gate).unwrap();
    let out = live.finish(120);
    assert_success(&out);
    assert!(env.root.join("live/target/debug").is_dir());
    assert_eq!(env.lease("live")["job_id"], "live");
}

#[test]
fn an_adopter_never_takes_a_swapped_in_live_dir() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "donor", &["--linger", "0s", "build"]);
    // `--no-adopt`: the live job must not take the expired dir for itself.
    step(&env, &ws, "live", &["--no-adopt", "build"]);
    let gate = env.path().join("gate");
    std::fs::write(&gate, "").unwrap();
    let script = format!("while [ -e '{}' ]; do sleep 0.05; done", gate.display());
    let live = env.spawn(
        &ws,
        "live",
        ["--job-id", "live", "exec", "--", "sh", "-c", &script],
    );
    assert!(wait_for(30, || is_locked(&env.root.join("live"))));

    let mut cmd = env.cmd(&ws);
    // Seeding off: with it, the freshest finished dir (the donor) is seeded from, not adopted.
    cmd.env("CARGO_GUARDED_SEED", "0")
        .args(["guarded", "--job-id", "new", "exec", "--", "true"]);
    let adopter = env.paused(cmd, "adopter", "adopt-locked");
    exchange(&env.root, "donor", "live");
    let out = adopter.resume(60);
    assert_success(&out);
    assert!(stderr(&out).contains("swapped"), "{}", describe(&out));
    // The live dir is back under the name it had after the swap, never renamed to `new`.
    exchange(&env.root, "donor", "live");
    assert_eq!(env.lease("live")["job_id"], "live");
    assert_ne!(env.lease("new")["job_id"], "live");
    std::fs::remove_file(&gate).unwrap();
    assert_success(&live.finish(60));
}

// --- item 4: only roots are swept ----------------------------------------------------------------

fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walk(dir);
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn gc_and_status_refuse_a_directory_that_is_not_a_root() {
    let env = Env::new();
    let home = env.path().join("home");
    std::fs::create_dir_all(home.join(".trash/x")).unwrap();
    std::fs::write(home.join(".trash/x/precious"), "keep").unwrap();
    std::fs::create_dir_all(home.join(".new-y")).unwrap();
    std::fs::write(home.join("notes.txt"), "keep").unwrap();
    // Old enough for a sweep's "abandoned .new-*" rule (`--ttl 1s` makes that age 1s).
    let made = std::fs::metadata(home.join(".new-y")).unwrap();
    assert!(wait_for(10, || made
        .modified()
        .unwrap()
        .elapsed()
        .unwrap()
        .as_secs()
        >= 2));
    let before = tree(&home);

    for args in [
        &["gc", "--all-expired", "--ttl", "1s"][..],
        &["gc", "--hook", "--ttl", "1s"],
        &["status"],
    ] {
        let mut cmd = env.cmd(env.path());
        cmd.env("CARGO_GUARDED_ROOT", &home)
            .arg("guarded")
            .args(args);
        let out = output(&mut cmd);
        assert!(
            !out.status.success() || args.contains(&"--hook"),
            "{}",
            describe(&out)
        );
        assert!(
            stderr(&out).contains("not a cargo-guarded root"),
            "{args:?}: {}",
            describe(&out)
        );
        assert_eq!(tree(&home), before, "{args:?} changed the directory");
    }
    // A job refuses to lay out a root in it, too.
    let ws = env.fixture("small");
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_GUARDED_ROOT", &home)
        .args(["guarded", "exec", "--", "true"]);
    let out = output(&mut cmd);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(tree(&home), before);

    // A symlink to a real root is refused, with the reason.
    step(&env, &ws, "a", &["exec", "--", "true"]);
    let link = env.path().join("link");
    std::os::unix::fs::symlink(&env.root, &link).unwrap();
    let mut cmd = env.cmd(env.path());
    cmd.env("CARGO_GUARDED_ROOT", &link).args(["guarded", "gc"]);
    let out = output(&mut cmd);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("symlink"), "{}", describe(&out));
}

#[test]
fn a_root_laid_out_by_an_earlier_version_still_works_and_gets_the_marker() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "a", &["--linger", "0s", "exec", "--", "true"]);
    std::fs::remove_file(env.root.join(".cargo-guarded-root")).unwrap();
    assert_success(&gc(&env, &["--all-expired"]));
    assert!(env.root.join(".cargo-guarded-root").is_file());
    assert!(env.job_dirs().is_empty());
}

// --- item 7: a heartbeat that cannot write -------------------------------------------------------

#[test]
fn a_heartbeat_on_a_full_disk_warns_once_and_once_on_recovery() {
    if require_root("a tmpfs mount or a second user", || Ok(())).is_none() {
        return;
    }
    let mut env = Env::new();
    let mnt = Tmpfs::mount(&env.path().join("mnt"), "4m").unwrap();
    env.root = mnt.0.join("root");
    let ws = env.fixture("small");
    let fill = mnt.0.join("fill");
    let events = env.path().join("events.jsonl");
    // The workload fills the disk, lets several beats (every 200ms at `--ttl 1s`) fail, frees
    // the disk and lets a few succeed. Then it looks at the events: the failing heartbeat was
    // told while the command ran, not after.
    let script = format!(
        "dd if=/dev/zero of='{fill}' bs=64k 2>/dev/null; sleep 2; rm '{fill}'; sleep 1; \
         grep -q '\"what\":\"renewal_failing\"' '{events}' || exit 9",
        fill = fill.display(),
        events = events.display(),
    );
    let out = step(
        &env,
        &ws,
        "hb",
        &[
            "--events",
            events.to_str().unwrap(),
            "--ttl",
            "1s",
            "--min-free",
            "0",
            "exec",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let err = stderr(&out);
    let failed = err.matches("failed to renew lease").count();
    assert_eq!(failed, 1, "{err}");
    assert!(err.contains("works again"), "{err}");
    // Both are `warning` lines of the stream, naming the dir.
    let text = std::fs::read_to_string(&events).unwrap();
    let warnings: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "warning")
        .collect();
    let what: Vec<&str> = warnings
        .iter()
        .map(|l| l["what"].as_str().unwrap())
        .collect();
    assert_eq!(what, ["renewal_failing", "renewal_recovered"], "{text}");
    assert_eq!(warnings[0]["path"], env.root.join("hb").to_str().unwrap());
    drop(mnt);
}

// --- item 8: a lock someone else holds -----------------------------------------------------------

#[test]
fn a_held_locktest_file_freezes_nothing() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "a", &["--linger", "0s", "exec", "--", "true"]);
    let locktest = env.root.join(".locktest");
    let mut holder = Command::new("flock")
        .arg(&locktest)
        .args(["sleep", "600"])
        .spawn()
        .unwrap();
    assert!(wait_for(10, || is_locked(&locktest)));
    let runs = [
        env.spawn(env.path(), "status", ["status"]),
        env.spawn(env.path(), "gc", ["gc", "--all-expired"]),
        // Adopting (not seeding: the freshest finished dir is kept as a seed source), so that
        // either way `a` is gone at the end.
        env.spawn(
            &ws,
            "job",
            ["--job-id", "b", "--no-seed", "exec", "--", "true"],
        ),
    ];
    for run in runs {
        assert_success(&run.finish(60));
    }
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(env.job_dirs(), ["b"]);
    // No scratch file is left behind.
    let left: Vec<_> = std::fs::read_dir(&env.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".locktest-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

// --- item 14: a huge command line ----------------------------------------------------------------

#[test]
fn a_job_with_80kb_of_arguments_leaves_a_reclaimable_lease() {
    let env = Env::new();
    let ws = env.fixture("small");
    let mut args = vec!["--linger", "0s", "exec", "--", "true"];
    let big: Vec<String> = (0..8000).map(|i| format!("arg-{i:05}")).collect();
    args.extend(big.iter().map(String::as_str));
    step(&env, &ws, "big", &args);
    let size = std::fs::metadata(env.root.join("big/lease.json"))
        .unwrap()
        .len();
    assert!(size < 16 * 1024, "lease is {size} bytes");
    let command = env.lease("big")["command"].as_array().unwrap().clone();
    assert!(
        command.last().unwrap().as_str().unwrap().contains("elided"),
        "{command:?}"
    );
    let status = env.status();
    assert_eq!(
        status_entry(&status, "big")["state"],
        "expired",
        "{status:#}"
    );
    assert_success(&gc(&env, &["--all-expired"]));
    assert!(env.job_dirs().is_empty());
}

// --- item 17: waiting for a dir that is renamed away ---------------------------------------------

#[test]
fn a_step_waiting_for_its_dir_starts_over_when_an_adopter_renames_it() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "x", &["--linger", "0s", "exec", "--", "true"]);
    // Job y adopts x's expired dir and then holds it (as `y`) until the gate goes.
    let gate = env.path().join("gate");
    std::fs::write(&gate, "").unwrap();
    let script = format!("while [ -e '{}' ]; do sleep 0.05; done", gate.display());
    let mut cmd = env.cmd(&ws);
    // Seeding off: with it, x's dir (the freshest finished one) is seeded from, not adopted.
    cmd.env("CARGO_GUARDED_SEED", "0").args([
        "guarded", "--job-id", "y", "exec", "--", "sh", "-c", &script,
    ]);
    let adopter = env.paused(cmd, "y", "adopt-locked");
    // A later step of job x finds its dir locked (by the adopter) and waits.
    let x = env.spawn(&ws, "x", ["--job-id", "x", "exec", "--", "true"]);
    assert!(wait_for(30, || std::fs::read_to_string(
        env.path().join("x.stderr")
    )
    .unwrap_or_default()
    .to_lowercase()
    .contains("waiting for lease")));
    // Let the adopter rename x's dir to `y`; it keeps running, holding it, until the gate goes.
    let y = std::thread::spawn(move || adopter.resume(120));
    // x must not wait for y to finish: its name was taken away, so it starts a fresh dir.
    let out = x.finish(60);
    assert_success(&out);
    assert_eq!(env.lease("x")["job_id"], "x");
    std::fs::remove_file(&gate).unwrap();
    assert_success(&y.join().unwrap());
}

// --- items 15 and 16: several users --------------------------------------------------------------

const ALICE: u32 = 4242;
const BOB: u32 = 4343;

fn shared_root(env: &Env) {
    std::fs::create_dir_all(&env.root).unwrap();
    users::chmod(&env.root, 0o1777);
}

#[test]
fn two_users_share_a_sticky_root() {
    if require_root("a tmpfs mount or a second user", || Ok(())).is_none() {
        return;
    }
    let env = Env::new();
    let tc = users::Toolchain::share(&env);
    shared_root(&env);
    let ws_a = users::fixture_for(&env, "small", ALICE);
    let ws_b = users::fixture_for(&env, "small", BOB);
    let run = |uid, ws: &Path, args: &[&str]| {
        let mut cmd = users::cmd_as(&env, &tc, uid, ws);
        cmd.arg("guarded").args(args);
        output(&mut cmd)
    };
    let out = run(ALICE, &ws_a, &["--job-id", "a", "--linger", "0s", "build"]);
    assert_success(&out);
    // Bob's job: Alice's expired dir is not his to adopt; he starts fresh and says why.
    let out = run(BOB, &ws_b, &["-v", "--job-id", "b", "build"]);
    assert_success(&out);
    assert!(compiled_anything(&out));
    let out = run(BOB, &ws_b, &["gc", "--all-expired"]);
    assert_success(&out);
    let out = run(ALICE, &ws_a, &["--job-id", "a2", "build"]);
    assert_success(&out);
    assert!(env.root.join("b/target/debug").is_dir());
}

#[test]
fn a_job_dir_planted_by_another_user_is_never_used() {
    if require_root("a tmpfs mount or a second user", || Ok(())).is_none() {
        return;
    }
    let env = Env::new();
    let tc = users::Toolchain::share(&env);
    shared_root(&env);
    let ws_a = users::fixture_for(&env, "small", ALICE);
    let ws_b = users::fixture_for(&env, "small", BOB);
    let run = |uid, ws: &Path, args: &[&str]| {
        let mut cmd = users::cmd_as(&env, &tc, uid, ws);
        cmd.arg("guarded").args(args);
        output(&mut cmd)
    };
    // Alice's earlier job left an expired dir of her workspace.
    assert_success(&run(
        ALICE,
        &ws_a,
        &["--job-id", "seed", "--linger", "0s", "exec", "--", "true"],
    ));
    // Bob plants Alice's next job dir: a valid lease of his, claiming her workspace and newer
    // than her own expired dir (so adoption would try it first), and `target` pointing at his
    // files.
    assert_success(&run(
        BOB,
        &ws_b,
        &[
            "--job-id", "planted", "--linger", "0s", "exec", "--", "true",
        ],
    ));
    let seed = env.lease("seed");
    let mut lease = env.lease("planted");
    lease["workspace"] = seed["workspace"].clone();
    lease["toolchain"] = seed["toolchain"].clone();
    std::fs::write(
        env.root.join("planted/lease.json"),
        serde_json::to_vec_pretty(&lease).unwrap(),
    )
    .unwrap();
    let bait = env.path().join("bait");
    std::fs::create_dir_all(&bait).unwrap();
    users::chown_r(&bait, BOB);
    let planted = env.root.join("planted");
    std::fs::remove_dir(planted.join("target")).unwrap();
    std::os::unix::fs::symlink(&bait, planted.join("target")).unwrap();
    users::chown_r(&planted, BOB);
    let out = run(ALICE, &ws_a, &["--job-id", "planted", "build"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&planted.display().to_string()) && err.contains(&BOB.to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&bait).unwrap().count(), 0);
    // Alice's other jobs do not adopt it either.
    let out = run(ALICE, &ws_a, &["-v", "--job-id", "other", "build"]);
    assert_success(&out);
    assert!(
        stderr(&out).to_lowercase().contains("not adopting"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read_dir(&bait).unwrap().count(), 0);
}

#[test]
fn doctor_warns_about_a_shared_root_without_the_sticky_bit() {
    let env = Env::new();
    std::fs::create_dir_all(&env.root).unwrap();
    users::chmod(&env.root, 0o777);
    let out = env.run(env.path(), ["doctor"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("lacks the sticky bit"), "{}", describe(&out));
    users::chmod(&env.root, 0o1777);
    let out = env.run(env.path(), ["doctor"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains("sticky"), "{}", describe(&out));
}

/// `gc --all-expired --json` with every expired dir reclaimable, run with the wall clock shifted
/// by `offset` seconds (`CARGO_GUARDED_CLOCK_OFFSET`), optionally under a `wrapper` (`unshare`).
fn gc_stepped(env: &Env, offset: i64, wrapper: &[&str]) -> Value {
    let mut cmd = env.cmd(env.path());
    cmd.env("CARGO_GUARDED_CLOCK_OFFSET", offset.to_string())
        .args([
            "guarded",
            "--keep-expired",
            "0",
            "gc",
            "--all-expired",
            "--json",
        ]);
    let mut cmd = if wrapper.is_empty() {
        cmd
    } else {
        let mut w = Command::new(wrapper[0]);
        w.args(&wrapper[1..])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        w.env_clear().current_dir(env.path());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                w.env(k, v);
            }
        }
        w
    };
    let out = output(&mut cmd);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// On the lease's own kernel and time namespace, ages are measured on
/// `CLOCK_BOOTTIME`, so a wall-clock step between release and sweep changes nothing: a forward
/// step longer than the linger does not end lingering, and a backward step does not keep an
/// expired dir for the length of the step.
#[test]
fn a_wall_clock_step_neither_ends_lingering_nor_makes_a_dir_immortal() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(
        &env,
        &ws,
        "lingers",
        &["--linger", "1h", "exec", "--", "true"],
    );
    step(
        &env,
        &ws,
        "expired",
        &["--linger", "0s", "exec", "--", "true"],
    );
    let lease = env.lease("lingers");
    assert!(lease["boottime_ms"].is_u64(), "{lease:#}");
    assert_eq!(lease["protocol"], 1, "no version bump: {lease:#}");

    // Forward two hours: the lingering dir stays, as its boot time says only seconds passed.
    let report = gc_stepped(&env, 2 * 3600, &[]);
    assert_eq!(removed_names(&report), ["expired"], "{report:#}");
    assert!(
        kept_reason(&report, "lingers").contains("released"),
        "{report:#}"
    );

    // Backward a day: a dir whose linger is over goes, though the wall clock says it is a day
    // before its expiry.
    step(
        &env,
        &ws,
        "expired",
        &["--linger", "0s", "exec", "--", "true"],
    );
    let report = gc_stepped(&env, -24 * 3600, &[]);
    assert_eq!(removed_names(&report), ["expired"], "{report:#}");
    assert!(env.root.join("lingers").is_dir());

    // A lease without the optional fields (an older writer) is judged on the wall clock, as
    // before: the same forward step ends its lingering.
    let path = env.root.join("lingers/lease.json");
    let mut old = env.lease("lingers");
    old.as_object_mut().unwrap().remove("boottime_ms");
    old.as_object_mut().unwrap().remove("time_ns");
    std::fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    let report = gc_stepped(&env, 2 * 3600, &[]);
    assert_eq!(removed_names(&report), ["lingers"], "{report:#}");
}

/// A time namespace shifts `CLOCK_BOOTTIME` while the boot id stays the kernel's, so
/// a reader in another time namespace judges on the wall clock (a real `unshare --time`).
#[test]
fn a_reader_in_another_time_namespace_judges_on_the_wall_clock() {
    let Some(()) = require_root("unshare --time", || {
        let ok = Command::new("unshare")
            .args(["--time", "--fork", "--boottime", "100000", "true"])
            .status()
            .map_err(|e| e.to_string())?
            .success();
        ok.then_some(()).ok_or("unshare --time failed".to_owned())
    }) else {
        return;
    };
    let env = Env::new();
    let ws = env.fixture("small");
    step(
        &env,
        &ws,
        "lingers",
        &["--linger", "1h", "exec", "--", "true"],
    );
    // A container whose boot time runs a day ahead of the host's: taken at its word, an hour's
    // linger would be long over. The wall clock (not stepped) says it is not.
    let unshare = ["unshare", "--time", "--fork", "--boottime", "86400"];
    let report = gc_stepped(&env, 0, &unshare);
    assert!(removed_names(&report).is_empty(), "{report:#}");
    assert!(
        kept_reason(&report, "lingers").contains("released"),
        "{report:#}"
    );
    // And there the wall clock decides: a forward step past the linger ends it.
    let report = gc_stepped(&env, 2 * 3600, &unshare);
    assert_eq!(removed_names(&report), ["lingers"], "{report:#}");
}

/// A holder SIGKILLed a moment ago (its heartbeat still fresh) is shown as gone,
/// with when its dir becomes reclaimable, not as `active … held by` until its TTL passes:
/// `status` tries the locks (`lease::probe`).
#[test]
fn status_shows_a_killed_holder_as_gone_not_active() {
    let env = Env::new();
    let ws = env.fixture("small");
    let holder = env.live_holder(&ws, "killed");
    send_signal(holder.pid(), libc::SIGKILL);
    // Its reaper kills `sleep 60`, which held the tree lock it inherited.
    let mut last = Value::Null;
    let gone = wait_for(30, || {
        last = status_entry(&env.status(), "killed");
        last["state"] == "gone"
    });
    assert!(gone, "{last:#}");
    let note = last["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("holder gone; reclaimable at 20"),
        "{last:#}"
    );
    let out = env.ok(env.path(), ["status"]);
    let row = stdout(&out)
        .lines()
        .find(|l| l.contains("killed"))
        .unwrap_or_default()
        .to_owned();
    assert!(row.starts_with("gone"), "{}", describe(&out));
    assert!(
        row.contains("(holder gone; reclaimable in "),
        "{}",
        describe(&out)
    );
    // Not reclaimable before its TTL: the guard keeps it, judged by its lease.
    let gc = gc(&env, &["--all-expired"]);
    assert!(env.root.join("killed").is_dir(), "{}", describe(&gc));
}

//! The wrapper against bad input and bad luck: a full disk before and during
//! the command, a sweep stopped mid-delete, signals while waiting for the guard, nested runs,
//! hostile lease strings, config files that move the target dir, matrix legs sharing a runner,
//! and readers that close their pipe.

use crate::common::github_env;
use crate::common::tmpfs;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::{Value, json};
use tmpfs::Tmpfs;

/// Plant job dir `name` with `lease` and `kib` KiB in its target dir.
fn plant(root: &Path, name: &str, lease: &Value, kib: usize) {
    let dir = plant_job(root, name, lease);
    std::fs::write(dir.join("target/blob"), vec![7u8; kib * 1024]).unwrap();
}

/// An `Env` whose root is on a fresh tmpfs of `kib` KiB, already created by a first job.
fn env_on_tmpfs(kib: u64) -> Option<(Tmpfs, Env)> {
    let mut env = Env::new();
    let mnt = Tmpfs::mount_or_skip(&env.path().join("mnt"), &format!("{kib}k"))?;
    env.root = mnt.0.join("root");
    env.ok(
        env.path(),
        ["--job-id", "first", "--min-free", "0", "exec", "--", "true"],
    );
    Some((mnt, env))
}

// --- Full disk (13.5, 13.6) -----------------------------------------------------------------

#[test]
fn on_a_full_disk_a_new_job_reclaims_before_writing_its_lease() {
    let Some((mnt, env)) = env_on_tmpfs(8 * 1024) else {
        return;
    };
    plant(&env.root, "old", &expired_lease("old", None), 2048);
    tmpfs::fill(&mnt.0);
    let out = env.run(
        env.path(),
        [
            "--job-id",
            "new",
            "--reclaim-below",
            "1M",
            "--min-free",
            "1M",
            "exec",
            "--",
            "sh",
            "-c",
            "echo built > \"$CARGO_TARGET_DIR/out\"",
        ],
    );
    assert_success(&out);
    assert!(!env.root.join("old").exists(), "{}", describe(&out));
    assert!(env.root.join("new/target/out").exists());
}

#[test]
fn on_a_full_disk_the_reclaim_before_the_lease_spares_the_jobs_own_expired_dir() {
    let Some((mnt, env)) = env_on_tmpfs(8 * 1024) else {
        return;
    };
    // A later step of job `again` comes back after its linger: its own dir is expired too.
    plant(&env.root, "again", &expired_lease("again", None), 1024);
    plant(&env.root, "other", &expired_lease("other", None), 2048);
    tmpfs::fill(&mnt.0);
    let out = env.run(
        env.path(),
        [
            "-v",
            "--job-id",
            "again",
            "--reclaim-below",
            "1M",
            "--min-free",
            "1M",
            "exec",
            "--",
            "true",
        ],
    );
    assert_success(&out);
    assert!(!env.root.join("other").exists(), "{}", describe(&out));
    assert!(
        env.root.join("again/target/blob").exists(),
        "the job's own dir was reclaimed instead of resumed\n{}",
        describe(&out)
    );
    assert!(stderr(&out).contains("(resumed)"), "{}", describe(&out));
}

#[test]
fn a_disk_that_fills_during_the_command_does_not_change_its_exit_status() {
    let Some((_mnt, env)) = env_on_tmpfs(4 * 1024) else {
        return;
    };
    for (code, script) in [
        (0, "head -c 1G /dev/zero > \"$CARGO_TARGET_DIR/blob\"; true"),
        (
            3,
            "head -c 1G /dev/zero > \"$CARGO_TARGET_DIR/blob\"; exit 3",
        ),
    ] {
        let job = format!("fills-{code}");
        let out = env.run(
            env.path(),
            [
                "--job-id",
                &job,
                "--min-free",
                "0",
                "--linger",
                "1h",
                "exec",
                "--",
                "sh",
                "-c",
                script,
            ],
        );
        assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
        assert!(
            stderr(&out).contains("warning: failed to release lease"),
            "{}",
            describe(&out)
        );
        // The lock went with the process: the lease is no longer held.
        assert!(!is_locked(&env.root.join(&job)));
        std::fs::remove_file(env.root.join(&job).join("target/blob")).unwrap();
    }
}

// --- The guard's lock (13.10, 13.11) --------------------------------------------------------

fn gc_json(env: &Env, out: &std::process::Output) -> Value {
    let _ = env;
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("gc --json: {e}\n{}", describe(out)))
}

#[test]
fn a_sweep_stopped_while_deleting_holds_no_one_up_and_nothing_is_deleted_twice() {
    let env = Env::new();
    env.ok(
        env.path(),
        ["--job-id", "first", "--min-free", "0", "exec", "--", "true"],
    );
    plant(&env.root, "old", &expired_lease("old", None), 64);
    let mut gc = env.cmd(env.path());
    gc.args(["guarded", "gc", "--json", "--all-expired"]);
    // Stopped between the rename into `.trash/` and the delete: where the old code still held
    // `.guard.lock`.
    let paused = env.paused(gc, "gc1", "guard-delete");
    let gc1_pid = paused_pid(&env, "gc1");
    send_signal(gc1_pid, libc::SIGSTOP);

    // A job under pressure sweeps too: it must not wait for the stopped sweep's turn (the old
    // code waited the guard's 60 s, then skipped its sweep with a warning).
    let job = env.spawn(
        env.path(),
        "job",
        [
            "-v",
            "--job-id",
            "new",
            "--reclaim-below",
            "100%",
            "--min-free",
            "0",
            "exec",
            "--",
            "true",
        ],
    );
    let out = job.finish(45);
    assert_success(&out);
    assert!(
        !stderr(&out).contains("another sweep held"),
        "{}",
        describe(&out)
    );

    // Concurrent sweeps leave the entry the stopped one is deleting to it: not deleted twice,
    // not reported twice, no error.
    let gc2 = env.run(env.path(), ["gc", "--json", "--all-expired"]);
    let report2 = gc_json(&env, &gc2);
    assert_eq!(report2["errors"], json!([]), "{report2:#}");
    assert_eq!(report2["removed"], json!([]), "{report2:#}");
    assert!(!stderr(&out).contains("Removed old"), "{}", describe(&out));
    assert_eq!(
        std::fs::read_dir(env.root.join(".trash")).unwrap().count(),
        1,
        "still the stopped sweep's to delete"
    );

    send_signal(gc1_pid, libc::SIGCONT);
    let out1 = paused.resume(60);
    assert_success(&out1);
    let report1 = gc_json(&env, &out1);
    assert_eq!(report1["errors"], json!([]), "{report1:#}");
    assert_eq!(report1["removed"][0]["job_id"], "old", "{report1:#}");
    assert_eq!(
        std::fs::read_dir(env.root.join(".trash")).unwrap().count(),
        0,
        "the trash is empty once the stopped sweep finishes"
    );
}

/// The pid of the paused run `name` (its `.paused` file exists, so it is running).
fn paused_pid(env: &Env, name: &str) -> i32 {
    // The paused run is the only cargo-guarded child of this test with that log file open.
    let log = env.path().join(format!("{name}.stderr"));
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/fd/2")).is_ok_and(|p| p == log) {
            return pid;
        }
    }
    panic!("no process writes {log:?}");
}

#[test]
fn sigterm_while_waiting_for_the_guard_lock_ends_the_run_at_once() {
    let env = Env::new();
    env.ok(
        env.path(),
        ["--job-id", "first", "--min-free", "0", "exec", "--", "true"],
    );
    // Another sweep (here `flock`) holds the guard's lock.
    let mut holder = Command::new("flock")
        .arg(env.root.join(".guard.lock"))
        .args(["sleep", "300"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(30, || is_flocked(&env.root.join(".guard.lock"))));
    let job = env.spawn(
        env.path(),
        "job",
        [
            "-v",
            "--job-id",
            "waits",
            "--reclaim-below",
            "100%",
            "--min-free",
            "0",
            "exec",
            "--",
            "true",
        ],
    );
    assert!(
        wait_for(30, || job.stderr_so_far().contains("Waiting up to")),
        "{}",
        job.stderr_so_far()
    );
    send_signal(job.pid(), libc::SIGTERM);
    // Bounded well below the guard's 60 s wait, which the old code sat out.
    let out = job.finish(30);
    let _ = holder.kill();
    let _ = holder.wait();
    // Dies of the signal after releasing (a shell sees 143), as every interrupted run does.
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGTERM),
        "{}",
        describe(&out)
    );
    // No lease is left active: the job had not written one yet, or released it.
    let dir = env.root.join("waits");
    if dir.exists() {
        assert!(!is_locked(&dir));
        assert_ne!(env.lease("waits")["state"], "active");
    }
}

fn is_flocked(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    match f.try_lock() {
        Ok(()) => {
            f.unlock().unwrap();
            false
        }
        Err(_) => true,
    }
}

// --- Nested runs (13.18, 14.6) --------------------------------------------------------------

#[test]
fn a_nested_cargo_guarded_runs_inside_its_parents_lease() {
    let env = Env::new();
    let ws = env.fixture("small");
    let job = env.spawn(
        &ws,
        "outer",
        [
            "--job-id",
            "nest",
            "--min-free",
            "0",
            "exec",
            "--",
            BIN,
            "guarded",
            "build",
        ],
    );
    let out = job.finish(240);
    assert_success(&out);
    assert_eq!(env.job_dirs(), ["nest"], "{}", describe(&out));
    assert!(env.root.join("nest/target/debug/app").exists());
    assert_eq!(env.lease("nest")["state"], "released");
}

#[test]
fn a_bare_run_while_hold_is_live_runs_inside_the_held_lease() {
    let env = Env::new();
    let exported = env.path().join("github_env");
    std::fs::write(&exported, "").unwrap();
    let mut cmd = env.cmd(env.path());
    cmd.args(["guarded", "--job-id", "held", "--min-free", "0", "hold"])
        .env("CARGO_GUARDED_EXPORT_ENV", &exported);
    let hold = spawn_logged(&mut cmd, &env.path().join("hold"));
    assert!(
        wait_for(60, || hold.stderr_so_far().contains("Holding the lease")),
        "{}",
        hold.stderr_so_far()
    );
    let vars = github_env::read(&exported);
    let get = |k: &str| {
        vars.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} not exported: {vars:?}"))
    };
    assert_eq!(get("CARGO_GUARDED_JOB_ID"), "held");
    assert_eq!(get("CARGO_GUARDED_HOLD_PID"), hold.pid().to_string());
    assert!(get("CARGO_GUARDED_LEASE").ends_with("/held"));

    // A later step with that environment: no second lease, no wait.
    let mut bare = env.cmd(env.path());
    bare.arg("guarded")
        .args(["exec", "--", "sh", "-c", "echo \"$CARGO_TARGET_DIR\""]);
    for (k, v) in &vars {
        bare.env(k, v);
    }
    let run = spawn_logged(&mut bare, &env.path().join("bare"));
    let out = run.finish(60);
    assert_success(&out);
    assert_eq!(stdout(&out).trim(), get("CARGO_TARGET_DIR"));
    assert_eq!(env.lease("held")["state"], "active");
    assert!(
        is_locked(&env.root.join("held")),
        "the holder still holds it"
    );

    send_signal(hold.pid(), libc::SIGTERM);
    let out = hold.finish(30);
    assert_success(&out);
    assert_eq!(env.lease("held")["state"], "released");
}

#[test]
fn an_inherited_lease_marker_of_a_dead_parent_is_ignored() {
    let env = Env::new();
    env.ok(
        env.path(),
        ["--job-id", "gone", "--min-free", "0", "exec", "--", "true"],
    );
    let token = env.lease("gone")["token"].as_str().unwrap().to_owned();
    let marker = format!("{token} {}", env.root.join("gone").display());
    let mut cmd = env.cmd(env.path());
    cmd.args([
        "guarded",
        "--job-id",
        "gone",
        "--min-free",
        "0",
        "exec",
        "--",
        "true",
    ])
    .env("CARGO_GUARDED_LEASE", marker);
    let out = output(&mut cmd);
    assert_success(&out);
    // It took the lease itself: a new token.
    assert_ne!(env.lease("gone")["token"].as_str().unwrap(), token);
}

// --- Outside data printed (13.19, 14.15) ----------------------------------------------------

#[test]
fn hostile_lease_strings_never_start_a_workflow_command_line() {
    let env = Env::new();
    env.ok(
        env.path(),
        ["--job-id", "first", "--min-free", "0", "exec", "--", "true"],
    );
    let mut live = expired_lease("x\n::error::pwned", None);
    live["runner"] = json!("r\n::warning::runner");
    live["workspace"] = json!("w\r\n::error::ws");
    live["state"] = json!("active");
    live["renewed_at"] = json!(ts(0));
    live["expires_at"] = json!(ts(3600));
    plant(&env.root, "live", &live, 4);
    // Its lock held, as a running job holds it: `gc` then names the lease's holder (a fresh
    // lease whose lock nobody holds reads "holder gone", with no lease data).
    let mut lock = std::process::Command::new("flock")
        .arg(env.root.join("live"))
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let held = || {
        !std::process::Command::new("flock")
            .arg("-n")
            .arg(env.root.join("live"))
            .arg("true")
            .status()
            .unwrap()
            .success()
    };
    assert!(wait_for(10, held), "flock never took the dir's lock");
    let mut old = expired_lease("y\n::error::pwned", None);
    old["runner"] = json!("r\n::warning::runner");
    plant(&env.root, "old", &old, 4);

    let runs = [
        env.run(env.path(), ["status"]),
        env.run(env.path(), ["-v", "gc", "--keep-expired", "5"]),
        env.run(env.path(), ["gc", "--all-expired"]),
    ];
    for out in &runs {
        assert_success(out);
        let all = format!("{}{}", stdout(out), stderr(out));
        for line in all.lines() {
            assert!(
                !line.starts_with("::") && !line.contains("\r"),
                "a workflow command from lease data: {line:?}\n{}",
                describe(out)
            );
        }
        assert!(all.contains("\\n::"), "{}", describe(out));
    }
    assert!(!env.root.join("old").exists());
    let _ = lock.kill();
    let _ = lock.wait();
}

// --- `--config FILE` (14.4) -----------------------------------------------------------------

#[test]
fn a_config_file_that_moves_the_target_or_build_dir_is_refused() {
    let env = Env::new();
    let ws = env.fixture("small");
    let files = [
        ("table.toml", "[build]\ntarget-dir = \"/tmp/elsewhere\"\n"),
        ("dotted.toml", "build.build-dir = \"elsewhere\"\n"),
        (
            "inline.toml",
            "build = { \"target-dir\" = \"elsewhere\" }\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(ws.join(name), text).unwrap();
        for args in [
            vec!["build", "--config", name],
            vec!["build", &format!("--config={name}")],
        ] {
            let out = env.run(&ws, &args);
            assert_eq!(out.status.code(), Some(1), "{name}: {}", describe(&out));
            let err = one_line_error(&out);
            assert!(err.contains("--target-dir"), "{err}");
        }
    }
    assert!(env.job_dirs().is_empty(), "refused before taking a lease");
    // The inline form is still refused, and a config file that moves nothing is fine.
    let out = env.run(&ws, ["build", "--config", "build.target-dir=\"x\""]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    std::fs::write(ws.join("ok.toml"), "[term]\nverbose = false\n").unwrap();
    env.ok(&ws, ["--min-free", "0", "build", "--config", "ok.toml"]);
}

// --- Matrix legs (14.17) --------------------------------------------------------------------

#[test]
fn matrix_legs_run_one_after_another_on_one_runner_get_their_own_dirs() {
    let env = Env::new();
    let mut dirs = Vec::new();
    for leg in [
        "github_00000000-0000-4000-8000-00000000000a",
        "github_00000000-0000-4000-8000-00000000000b",
    ] {
        let mut cmd = env.cmd(env.path());
        // Seeding off: this is about job ids; with it, leg b seeds from leg a's dir (two dirs).
        cmd.args(["guarded", "-v", "--min-free", "0", "exec", "--", "true"])
            .env("CARGO_GUARDED_SEED", "0")
            .env("GITHUB_RUN_ID", "9")
            .env("GITHUB_RUN_ATTEMPT", "1")
            .env("GITHUB_JOB", "test")
            .env("GITHUB_REPOSITORY", "octo/app")
            .env("RUNNER_NAME", "runner-1")
            .env("RUNNER_TRACKING_ID", leg);
        let out = output(&mut cmd);
        assert_success(&out);
        // The second leg may adopt the first's dir (ended, same workspace), never resume it.
        assert!(!stderr(&out).contains("(resumed)"), "{}", describe(&out));
        dirs.push(env.job_dirs());
    }
    assert_eq!(dirs[0].len(), 1);
    assert_eq!(dirs[1].len(), 1);
    assert_ne!(
        dirs[0], dirs[1],
        "the second leg took the first leg's job id"
    );
}

// --- Closed pipes (14.18) -------------------------------------------------------------------

/// Run with stdout a pipe whose reading end is already closed.
fn with_closed_stdout(mut cmd: Command) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer)
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let child = cmd.spawn().unwrap();
    drop(cmd);
    child.wait_with_output().unwrap()
}

#[test]
fn env_and_status_into_a_closed_pipe_exit_quietly_and_release() {
    let env = Env::new();
    env.ok(
        env.path(),
        ["--job-id", "piped", "--min-free", "0", "exec", "--", "true"],
    );
    let mut cmd = env.cmd(env.path());
    cmd.args(["guarded", "--job-id", "piped", "--min-free", "0", "env"]);
    let out = with_closed_stdout(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(out.status.signal(), None);
    assert_eq!(env.lease("piped")["state"], "released");

    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["gc", "--json"],
    ] {
        let mut cmd = env.cmd(env.path());
        cmd.arg("guarded").args(&args);
        let out = with_closed_stdout(cmd);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", describe(&out));
    }
}

#[test]
fn env_prints_a_multi_line_value_in_the_form_github_env_keeps_whole() {
    let env = Env::new();
    let id = "pr-7\nBASH_ENV=/x";
    let out = env.ok(env.path(), ["--job-id", id, "--min-free", "0", "env"]);
    let vars = github_env::parse(&stdout(&out)).unwrap();
    assert!(vars.iter().all(|(k, _)| k != "BASH_ENV"), "{vars:?}");
    assert!(
        vars.iter()
            .any(|(k, v)| k == "CARGO_GUARDED_JOB_ID" && v == id),
        "{vars:?}"
    );
}

#[test]
fn an_adopted_dirs_hostile_job_id_stays_on_its_line() {
    let env = Env::new();
    let hostile = "x\n::error::pwned";
    env.ok(
        env.path(),
        [
            "--job-id",
            hostile,
            "--linger",
            "0s",
            "--min-free",
            "0",
            "exec",
            "--",
            "true",
        ],
    );
    let out = env.ok(
        env.path(),
        ["--job-id", "next", "--min-free", "0", "exec", "--", "true"],
    );
    // Alone, the next job adopts it (a seed names it the same way, escaped).
    assert!(
        stderr(&out).contains("Adopted x\\n::error::pwned"),
        "{}",
        describe(&out)
    );
    for line in stderr(&out).lines() {
        assert!(!line.starts_with("::error::pwned"), "{}", describe(&out));
    }
}

/// `sh -c SCRIPT` in the background, in `cwd`, with the binary's clean environment, and the
/// gated fixture's gate at `gate`.
fn spawn_script(env: &Env, cwd: &Path, name: &str, script: &str, gate: &Path) -> Spawned {
    let mut sh = Command::new("sh");
    clean_env(&mut sh)
        .env("CARGO_GUARDED_ROOT", &env.root)
        .env("GATE_DIR", gate)
        .current_dir(cwd)
        .args(["-c", script]);
    spawn_logged(&mut sh, &env.path().join(name))
}

/// Start `script` (a real cargo build of the gated fixture), let a `gc` that reclaims every
/// expired dir run while the build waits at its gate, then open the gate. Returns the script's
/// output and the `gc` report.
fn gc_during_build(env: &Env, name: &str, script: &str) -> (std::process::Output, Value) {
    let ws = env.fixture_as("gated", name);
    let gate = env.path().join(format!("{name}.gate"));
    std::fs::create_dir(&gate).unwrap();
    let run = spawn_script(env, &ws, name, script, &gate);
    assert!(
        wait_for(120, || gate.join("started").exists()),
        "the build never reached its gate\n{}",
        run.stderr_so_far()
    );
    let gc = env.ok(
        env.path(),
        ["--keep-expired", "0", "gc", "--all-expired", "--json"],
    );
    std::fs::write(gate.join("go"), "").unwrap();
    (run.finish(120), gc_json(env, &gc))
}

/// `eval "$(cargo guarded env --shell)"` then plain `cargo build` is protected for
/// `--linger` only, and `env` says so on stderr, naming `exec`; `exec -- sh -c 'cargo build'`
/// holds the lease for the whole script, so the same `gc` during the build keeps the dir.
#[test]
fn a_script_after_env_shell_is_protected_for_linger_only_and_exec_holds_it_throughout() {
    let env = Env::new();
    let script = format!(
        "eval \"$('{BIN}' guarded --job-id evald --linger 0s env --shell)\" && cargo build"
    );
    let (out, gc) = gc_during_build(&env, "evald", &script);
    // What `env` printed on stderr before the build started.
    assert!(
        stderr(&out).contains("protected for --linger (0s) only")
            && stderr(&out).contains("cargo guarded exec -- SCRIPT"),
        "env did not say what stays unprotected\n{}",
        describe(&out)
    );
    // The documented behaviour: once the linger is over, the dir is reclaimable even though a
    // build is running in it.
    assert_eq!(removed_names(&gc), ["evald"], "{gc:#}");
    assert!(!env.root.join("evald").exists());
    assert!(!out.status.success(), "{}", describe(&out));

    let script = format!("'{BIN}' guarded --job-id execd --linger 0s exec -- sh -c 'cargo build'");
    let (out, gc) = gc_during_build(&env, "execd", &script);
    assert_success(&out);
    assert!(removed_names(&gc).is_empty(), "{gc:#}");
    assert!(
        kept_reason(&gc, "execd").contains("lease held by"),
        "{gc:#}"
    );
    assert!(
        env.root.join("execd/target/debug/gated").is_file(),
        "{}",
        describe(&out)
    );
}

/// Run `cargo-guarded guarded ARGS` with `root` as the root (at most 60 s: `hold` on a root it
/// accepts would hold until stopped).
fn run_with_root(env: &Env, root: &Path, name: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = env.cmd(env.path());
    cmd.env("CARGO_GUARDED_ROOT", root)
        .env(
            "CARGO_GUARDED_EXPORT_ENV",
            env.path().join(format!("{name}.env")),
        )
        .arg("guarded")
        .args(args);
    spawn_logged(&mut cmd, &env.path().join(name)).finish(60)
}

/// The commands that resolve a root, each a different path through it.
const ROOT_COMMANDS: &[&[&str]] = &[
    &["env", "--shell"],
    &["env"],
    &["hold"],
    &["exec", "--", "true"],
    &["gc"],
    &["gc", "--json"],
    &["status", "--json"],
    &["doctor"],
];

/// A root whose path is not UTF-8 is refused by every command, with the path
/// escaped (the byte shown as `\xff`, not U+FFFD), and nothing is created in it.
#[test]
fn a_root_whose_path_is_not_utf8_is_refused_by_every_command() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let parent = env
        .path()
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9-runner"));
    std::fs::create_dir(&parent).unwrap();
    let root = parent.join("root");
    for (i, args) in ROOT_COMMANDS.iter().enumerate() {
        let out = run_with_root(&env, &root, &format!("bad{i}"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{}", describe(&out));
        let err = one_line_error(&out);
        assert!(
            err.contains("caf\\xe9-runner/root is not valid UTF-8"),
            "{args:?}: {err}"
        );
        assert!(stdout(&out).is_empty(), "{args:?}\n{}", describe(&out));
        assert!(!root.exists(), "{args:?} created the root");
    }
}

/// A root so long that a job's `CARGO_TARGET_DIR` (and its siblings) would exceed
/// `PATH_MAX` is refused at the start, naming the limit, before anything is created.
/// `base` extended with components of at most 100 bytes to exactly `len` bytes.
fn path_of_len(base: &Path, fill: char, len: usize) -> std::path::PathBuf {
    let mut p = base.to_path_buf();
    while p.as_os_str().len() + 101 < len {
        p.push(fill.to_string().repeat(100));
    }
    let pad = len - 1 - p.as_os_str().len();
    p.push(fill.to_string().repeat(pad));
    assert_eq!(p.as_os_str().len(), len);
    p
}

#[test]
fn a_root_too_long_for_a_childs_target_dir_is_refused_at_the_start() {
    let env = Env::new();
    let root = path_of_len(env.path(), 'd', 4036);
    for (i, args) in ROOT_COMMANDS.iter().enumerate() {
        let out = run_with_root(&env, &root, &format!("long{i}"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{}", describe(&out));
        let err = one_line_error(&out);
        assert!(
            err.contains("is 4036 bytes long, over the limit of 3982")
                && err.contains("4095-byte limit on a path (PATH_MAX)"),
            "{args:?}: {err}"
        );
        assert!(!env.path().join("d".repeat(100)).exists(), "{args:?}");
    }
    // At the limit, a root like any other: the longest job dir name fits.
    let root = path_of_len(env.path(), 'o', 3982);
    let id = "j".repeat(200);
    let out = run_with_root(
        &env,
        &root,
        "at-limit",
        &["--job-id", &id, "exec", "--", "true"],
    );
    assert_success(&out);
}

/// Under GitHub Actions, a `GITHUB_RUN_ID` that is not UTF-8 cannot name the job;
/// the run says so (as for an unrecognised CI) instead of silently using a `local-…` id.
#[test]
fn a_ci_job_id_variable_that_is_not_utf8_is_warned_about() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let ws = env.fixture("small");
    let run = |run_id: &std::ffi::OsStr| {
        let mut cmd = env.cmd(&ws);
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_RUN_ID", run_id)
            .env("GITHUB_JOB", "build")
            .args(["guarded", "--min-free", "0", "env"]);
        let out = output(&mut cmd);
        assert_success(&out);
        out
    };
    let out = run(std::ffi::OsStr::from_bytes(b"41\xff"));
    let err = stderr(&out);
    assert!(
        err.contains(
            "warning: GITHUB_RUN_ID (from GitHub Actions) is not valid UTF-8, so the job id \
             cannot use it: it is derived from the workspace path instead (local-small-"
        ) && err.contains("set CARGO_GUARDED_JOB_ID (or pass --job-id)"),
        "{}",
        describe(&out)
    );
    assert!(stdout(&out).contains("CARGO_GUARDED_JOB_ID=local-small-"));
    // A readable one names the job, with nothing to warn about.
    let out = run(std::ffi::OsStr::new("41"));
    assert!(!stderr(&out).contains("UTF-8"), "{}", describe(&out));
    assert!(stdout(&out).contains("CARGO_GUARDED_JOB_ID=gh--41-1-build-"));
}

/// An adoption on a disk that fills up between its checks and its rename. The dir's
/// lease must name the dir's own job: the adopter's lease is written in full before the rename,
/// so a full disk cannot leave dir `b` with the lease of the job it was adopted from.
#[test]
fn an_adoption_on_a_disk_that_fills_leaves_each_dir_with_its_own_jobs_lease() {
    let Some((mnt, env)) = env_on_tmpfs(8 * 1024) else {
        return;
    };
    // Adoption, not a seed (which keeps the freshest finished dir as its source).
    let args = [
        "--min-free",
        "0",
        "--reclaim-below",
        "0",
        "--linger",
        "0s",
        "--no-seed",
    ];
    let mut cmd = env.cmd(env.path());
    cmd.arg("guarded")
        .args(args)
        .args(["--job-id", "a2", "exec", "--", "true"]);
    assert_success(&output(&mut cmd));
    let mut cmd = env.cmd(env.path());
    cmd.arg("guarded")
        .args(args)
        .args(["--job-id", "b", "exec", "--", "true"]);
    let paused = env.paused(cmd, "b", "adopt-locked");
    tmpfs::fill(&mnt.0);
    let out = paused.resume(60);
    assert!(
        env.root.join("b").is_dir() && !env.root.join("a2").exists(),
        "no adoption\n{}",
        describe(&out)
    );
    assert_eq!(env.lease("b")["job_id"], "b", "{}", describe(&out));
    let _ = std::fs::remove_file(mnt.0.join("filler"));
    for lease in env.status()["leases"].as_array().unwrap() {
        let dir = lease["dir"].as_str().unwrap();
        assert!(
            dir.ends_with(&format!("/{}", lease["job_id"].as_str().unwrap())),
            "{lease:#}"
        );
    }
}

//! Supervision with real processes and a real terminal: no process of the command's tree outlives
//! the wrapper (cgroup or token, `kill -9` or normal exit); signals the wrapper inherited as
//! ignored stay ignored; Ctrl-Z, `fg` and Ctrl-C in a tmux session behave as in a shell; the
//! other terminating signals are forwarded and the lease released.

use crate::common::tmux;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};

use crate::common::*;
use tmux::Tmux;

fn assert_gone(pids: &[i32], what: &str) {
    assert!(
        wait_for(30, || pids.iter().all(|&p| !pid_alive(p))),
        "{what}: still running: {:?}",
        pids.iter().filter(|&&p| pid_alive(p)).collect::<Vec<_>>()
    );
}

/// Wait for `file` to hold a pid; fail with the run's stderr otherwise.
fn wait_pid(run: &Spawned, file: &Path) -> i32 {
    let mut pid = None;
    let ok = wait_for(120, || {
        pid = read_pid(file);
        pid.is_some()
    });
    assert!(
        ok,
        "{} was never written\n{}",
        file.display(),
        run.stderr_so_far()
    );
    pid.unwrap()
}

/// The process state letter from `/proc/PID/stat` (`S`, `T`, `Z`, ...).
fn state(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_owned()
}

/// Whether `pid` runs (not stopped) in the terminal's foreground group: only then is it safe to
/// type for it (keys typed while the shell still has the terminal in raw mode arrive as `\r`).
fn running_in_foreground(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    // state ppid pgrp session tty_nr tpgid
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.len() > 5 && f[0] != "T" && f[2] == f[5]
}

/// Whether `pid` ignores `sig` (`SigIgn` in `/proc/PID/status`).
fn ignores(pid: i32, sig: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (sig - 1)) != 0
}

/// The cgroup the wrapper `pid` would have made (under this test's own cgroup v2), if it is
/// still there. Per pid: other tests' wrappers run at the same time.
fn cgroup_left(pid: i32) -> Option<PathBuf> {
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let rel = ours
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_start_matches('/');
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(|base| Path::new(base).join(rel))
        .filter(|dir| dir.join("cgroup.procs").exists())
        .map(|dir| dir.join(format!("cargo-guarded-{pid}")))
        .find(|dir| dir.exists())
}

// ---------------------------------------------------------------------------------------------
// The whole tree

#[test]
fn kill_9_during_nextest_kills_the_test_processes() {
    let env = Env::new();
    let ws = env.fixture("sleeper");
    let mut cmd = env.cmd(&ws);
    cmd.env("SLEEPER_DIR", &ws).args([
        "guarded",
        "-v",
        "--job-id",
        "nx",
        "nextest",
        "run",
        "--no-capture",
    ]);
    let run = spawn_logged(&mut cmd, &env.path().join("nextest"));
    let test = wait_pid(&run, &ws.join("test.pid"));
    // nextest runs each test in a process group of its own: the wrapper's group kill misses it.
    assert_ne!(
        rustix::process::getpgid(rustix::process::Pid::from_raw(test)).ok(),
        rustix::process::getpgid(rustix::process::Pid::from_raw(run.pid())).ok()
    );
    let wrapper = run.pid();
    send_signal(wrapper, libc::SIGKILL);
    let out = run.finish(30);
    assert_eq!(out.status.signal(), Some(libc::SIGKILL));
    assert_gone(
        &[test],
        "the nextest test process after kill -9 of the wrapper",
    );
    let log = std::fs::metadata(ws.join("test.log")).unwrap().len();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        std::fs::metadata(ws.join("test.log")).unwrap().len(),
        log,
        "still written"
    );
    assert!(
        stderr(&out)
            .to_lowercase()
            .contains("tracking the command's process tree"),
        "-v names the mechanism\n{}",
        describe(&out)
    );
    assert!(
        wait_for(30, || cgroup_left(wrapper).is_none()),
        "{:?}",
        cgroup_left(wrapper)
    );
}

#[test]
fn kill_9_kills_a_new_session() {
    let env = Env::new();
    let ws = env.fixture("small");
    let run = env.spawn(
        &ws,
        "setsid",
        [
            "--job-id",
            "ss",
            "exec",
            "--",
            "setsid",
            "--wait",
            "sh",
            "-c",
            "echo $$ > s.tmp && mv s.tmp s.pid; exec sleep 1000",
        ],
    );
    let sleeper = wait_pid(&run, &ws.join("s.pid"));
    send_signal(run.pid(), libc::SIGKILL);
    run.finish(30);
    assert_gone(&[sleeper], "setsid sleep after kill -9 of the wrapper");
}

#[test]
fn a_background_grandchild_is_gone_after_a_normal_exit() {
    let env = Env::new();
    let ws = env.fixture("small");
    let mut cmd = env.cmd(&ws);
    cmd.args([
        "guarded",
        "-v",
        "--job-id",
        "bg",
        "exec",
        "--",
        "sh",
        "-c",
        "setsid sleep 1000 >/dev/null 2>&1 & echo $! > bg.pid",
    ]);
    let run = spawn_logged(&mut cmd, &env.path().join("bg"));
    let wrapper = run.pid();
    let out = run.finish(60);
    assert_success(&out);
    let bg = read_pid(&ws.join("bg.pid")).expect("bg.pid");
    assert_gone(&[bg], "a background grandchild after the command exited");
    assert_eq!(env.lease("bg")["state"], "released", "{}", describe(&out));
    assert_eq!(cgroup_left(wrapper), None);
}

/// A `cargo guarded` inside another: `kill -9` of the outer one takes the inner one's tree too,
/// and no cgroup of either is left behind.
#[test]
fn kill_9_of_an_outer_wrapper_takes_a_nested_one_and_leaves_no_cgroup() {
    let env = Env::new();
    let ws = env.fixture("small");
    let inner = format!(
        "'{BIN}' guarded --job-id inner exec -- sh -c 'sleep 1000 & echo $! > n.tmp && mv n.tmp n.pid; wait'"
    );
    let run = env.spawn(
        &ws,
        "outer",
        ["--job-id", "outer", "exec", "--", "sh", "-c", &inner],
    );
    let sleeper = wait_pid(&run, &ws.join("n.pid"));
    let wrapper = run.pid();
    send_signal(wrapper, libc::SIGKILL);
    run.finish(30);
    assert_gone(
        &[sleeper],
        "the nested run's tree after kill -9 of the outer wrapper",
    );
    assert!(
        wait_for(30, || cgroup_left(wrapper).is_none()),
        "{:?}",
        cgroup_left(wrapper)
    );
}

/// A user who may not create cgroups: the token in the environment finds the tree.
#[test]
fn without_a_cgroup_the_token_finds_the_tree() {
    if require_root("a second user", || Ok(())).is_none() {
        return;
    }
    let env = Env::new();
    let ws = env.fixture("small");
    std::fs::create_dir(&env.root).unwrap();
    for p in [env.path(), &env.root, &ws] {
        std::os::unix::fs::chown(p, Some(4711), Some(4711)).unwrap();
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "4711", "--regid", "4711", "--clear-groups", BIN]);
    let base = env.cmd(&ws);
    cmd.env_clear()
        .envs(base.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("HOME", env.path())
        .current_dir(&ws)
        .args([
            "guarded",
            "-v",
            "--job-id",
            "tok",
            "exec",
            "--",
            "setsid",
            "--wait",
            "sh",
            "-c",
            "echo $$ > t.tmp && mv t.tmp t.pid; sleep 1000 & exec sleep 1000",
        ]);
    let run = spawn_logged(&mut cmd, &env.path().join("token"));
    let leader = wait_pid(&run, &ws.join("t.pid"));
    assert!(wait_for(30, || run
        .stderr_so_far()
        .contains("CARGO_GUARDED_RUN_TOKEN")));
    let children: Vec<i32> =
        std::fs::read_to_string(format!("/proc/{leader}/task/{leader}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
    send_signal(run.pid(), libc::SIGKILL);
    run.finish(30);
    let mut all = children;
    all.push(leader);
    assert_gone(&all, "the token-tracked tree after kill -9 of the wrapper");
}

use std::process::Command;

/// A cgroup made for one test under ours, removed (with what a run left in it) when dropped.
struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // What a failed run left in it (a sleeper that outlived the wrapper) goes first.
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        wait_for(10, || {
            std::fs::read_to_string(self.0.join("cgroup.events"))
                .is_ok_and(|e| e.contains("populated 0"))
        });
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// In a cgroup namespace (a container; here `unshare --cgroup` with cgroup2
/// mounted inside) the wrapper's cgroup is `/`. Its user may create a cgroup under it but not
/// write the parent's `cgroup.procs`, so the move of the child is refused: the token must take
/// over, and a `setsid` child must not outlive a normal exit. (Judged by the end of the path,
/// `ends_with("")` took the refused move for success.)
#[test]
fn at_a_cgroup_namespace_root_a_refused_move_falls_back_to_the_token() {
    if require_root("unshare --cgroup, a second user", || Ok(())).is_none() {
        return;
    }
    let Some(base) = require("a cgroup v2 hierarchy", own_cgroup()) else {
        return;
    };
    let env = Env::new();
    let ws = env.fixture("small");
    let uid = 4721;
    let cg = TestCgroup(base.join(format!("cg-test-{}", std::process::id())));
    std::fs::create_dir(&cg.0).unwrap();
    // Ours to create cgroups in; its `cgroup.procs` stays root's (mode 644).
    std::os::unix::fs::chown(&cg.0, Some(uid), Some(uid)).unwrap();
    let mnt = env.path().join("cgroup2");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&env.root).unwrap();
    for p in [env.path(), &env.root, &ws] {
        std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
    }
    let inner = "setsid sleep 1000 >/dev/null 2>&1 & echo $! > s.tmp && mv s.tmp s.pid";
    let script = format!(
        "echo $$ > '{procs}' && exec unshare --cgroup --mount sh -c \
         'mount -t cgroup2 none \"$0\" && exec setpriv --reuid {uid} --regid {uid} --clear-groups \
          env -i PATH=/usr/bin:/bin HOME=\"$1\" CARGO_GUARDED_ROOT=\"$2\" \"$3\" guarded -v \
          --job-id ns exec -- sh -c \"$4\"' '{mnt}' '{home}' '{root}' '{BIN}' '{inner}'",
        procs = cg.0.join("cgroup.procs").display(),
        mnt = mnt.display(),
        home = env.path().display(),
        root = env.root.display(),
    );
    let out = output(Command::new("sh").args(["-c", &script]).current_dir(&ws));
    assert_success(&out);
    assert!(
        stderr(&out).contains("_CARGO_GUARDED_RUN_TOKEN"),
        "the refused move is seen, the token tracks the tree\n{}",
        describe(&out)
    );
    let sleeper = read_pid(&ws.join("s.pid")).expect("s.pid");
    let _cleanup = KillOnDrop(vec![sleeper]);
    assert_gone(
        &[sleeper],
        "a setsid child after a normal exit at a cgroup namespace root",
    );
}

/// This test's own cgroup v2 dir (where `cargo-guarded-<pid>` cgroups of its runs go).
fn own_cgroup() -> Result<PathBuf, String> {
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let rel = ours
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 line in /proc/self/cgroup")?
        .trim_start_matches('/')
        .to_owned();
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(|base| Path::new(base).join(&rel))
        .find(|dir| dir.join("cgroup.procs").exists())
        .ok_or_else(|| "no cgroup2 mount".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Wrapper and reaper SIGKILLed together (`killall -9 cargo-guarded`)

/// The wrapper's reaper: its child that is a forked copy of it (same `comm`).
fn reaper_of(run: &Spawned) -> i32 {
    reaper_of_pid(run.pid(), run)
}

fn reaper_of_pid(wrapper: i32, run: &Spawned) -> i32 {
    let mut found = None;
    let ok = wait_for(60, || {
        let tasks = std::fs::read_dir(format!("/proc/{wrapper}/task"))
            .into_iter()
            .flatten();
        found = tasks.flatten().find_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .find(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "cargo-guarded")
                })
        });
        found.is_some()
    });
    assert!(
        ok,
        "no reaper under wrapper {wrapper}\n{}",
        run.stderr_so_far()
    );
    found.unwrap()
}

/// Processes a test started that must not outlive it, whatever it asserts: SIGKILLed on drop.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &p in &self.0 {
            if pid_alive(p) {
                send_signal(p, libc::SIGKILL);
            }
        }
    }
}

/// The command that escaped supervision in a user's report: a `setsid` sleeper and a plain background one (the
/// shell, the direct child, dies with the wrapper by `PR_SET_PDEATHSIG`; both sleepers survive).
const ORPHANING: &str = "setsid sleep 1000 >/dev/null 2>&1 & echo $! > o.tmp && mv o.tmp o.pid; \
                         sleep 1000 & echo $! > p.tmp && mv p.tmp p.pid; wait";

/// Kill wrapper and reaper together (the reaper first, so it cannot act), let the lease's 1 s
/// TTL pass, and check what every reader makes of the dir while the orphan lives, and after.
/// `step` makes the command of a further `cargo guarded ARGS` of the same user.
fn wrapper_and_reaper_killed(
    env: &Env,
    ws: &Path,
    run: Spawned,
    job: &str,
    step: &dyn Fn(&[&str]) -> Command,
) {
    let orphans = [
        wait_pid(&run, &ws.join("o.pid")),
        wait_pid(&run, &ws.join("p.pid")),
    ];
    let wrapper = run.pid();
    let reaper = reaper_of(&run);
    send_signal(reaper, libc::SIGKILL);
    send_signal(wrapper, libc::SIGKILL);
    run.finish(30);
    assert!(
        wait_for(30, || !pid_alive(reaper)),
        "the reaper survived kill -9"
    );
    assert!(
        orphans.iter().all(|&p| pid_alive(p)),
        "the orphans must outlive wrapper and reaper here"
    );
    // The lease's TTL (1 s) passes with no heartbeat: by the lease alone, the dir is expired.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let gc = env.ok(env.path(), ["gc", "--all-expired"]);
    assert!(
        env.root.join(job).join("target").is_dir(),
        "gc deleted the dir of a running process\n{}",
        describe(&gc)
    );
    assert!(
        stderr(&gc).contains(&format!("processes of job `{job}` still hold it")),
        "gc says why it keeps the dir\n{}",
        describe(&gc)
    );
    let status = env.status();
    let lease = &status["leases"][0];
    assert_eq!(lease["state"], "active", "{status:#}");
    assert!(
        lease["note"]
            .as_str()
            .unwrap_or_default()
            .contains("still hold it"),
        "{status:#}"
    );
    // The job's next step is not blocked by its orphans (they share the tree lock, the step
    // takes it shared too), and it says they still run.
    let next = output(&mut step(&[
        "--wait", "30s", "--linger", "0s", "--job-id", job, "exec", "--", "true",
    ]));
    assert_success(&next);
    assert!(
        stderr(&next).contains("processes of this job (started by this step, or by an earlier one that was killed) still run after this step ended"),
        "{}",
        describe(&next)
    );
    // The orphans gone, the lock goes with them: the next sweep reclaims the dir.
    for p in orphans {
        send_signal(p, libc::SIGKILL);
    }
    assert_gone(&orphans, "the orphans");
    let gc = env.ok(env.path(), ["gc", "--all-expired"]);
    assert!(
        !env.root.join(job).exists(),
        "an expired dir nobody holds is reclaimed\n{}",
        describe(&gc)
    );
}

/// Cgroup mode: `killall -9 cargo-guarded` hits wrapper and reaper; a `setsid`
/// child of the command survives, and the dir stays protected while it runs (the tree lock it
/// inherited). The cgroup it was left in is removed by the next run once empty.
#[test]
fn kill_9_of_wrapper_and_reaper_keeps_the_dir_while_the_tree_lives() {
    let env = Env::new();
    let ws = env.fixture("small");
    let run = env.spawn(
        &ws,
        "orphan",
        [
            "-v", "--ttl", "1s", "--job-id", "orph", "exec", "--", "sh", "-c", ORPHANING,
        ],
    );
    let wrapper = run.pid();
    assert!(wait_for(60, || run.stderr_so_far().contains("Tracking")));
    let in_cgroup = run.stderr_so_far().contains("process tree in cgroup");
    let cgroup =
        in_cgroup.then(|| cgroup_left(wrapper).expect("the wrapper's cgroup, while it runs"));
    // The steps run while the orphans live: the killed wrapper's cgroup must still be there (it
    // is checked here, not after the orphans are killed, because once it is empty any other
    // test's run may rightly remove it).
    let step = |args: &[&str]| {
        if let Some(cgroup) = &cgroup {
            assert!(
                cgroup.exists(),
                "{} was removed while the orphans in it live",
                cgroup.display()
            );
        }
        let mut cmd = env.cmd(&ws);
        cmd.arg("guarded").args(args);
        cmd
    };
    wrapper_and_reaper_killed(&env, &ws, run, "orph", &step);
    if let Some(left) = cgroup {
        // Empty now (its orphans were killed): the next run of any job removes it.
        env.ok(&ws, ["--job-id", "next", "exec", "--", "true"]);
        assert!(!left.exists(), "{} was left behind", left.display());
    }
}

/// `cargo-guarded guarded ARGS` as uid `uid`, who owns the test's dirs and can create no cgroup
/// (the machine's cgroups are root's): the token tracks the tree. `None`: not root, skipped.
fn as_token_user(env: &Env, ws: &Path, uid: u32, args: &[&str]) -> Option<Command> {
    require_root("a second user", || Ok(()))?;
    std::fs::create_dir_all(&env.root).unwrap();
    for p in [env.path(), &env.root, ws] {
        std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
    }
    let mut cmd = Command::new("setpriv");
    let id = uid.to_string();
    cmd.args(["--reuid", &id, "--regid", &id, "--clear-groups", BIN]);
    let base = env.cmd(ws);
    cmd.env_clear()
        .envs(base.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("HOME", env.path())
        .current_dir(ws)
        .arg("guarded")
        .args(args);
    Some(cmd)
}

/// Token mode (a user with no writable cgroup): the same protection.
#[test]
fn kill_9_of_wrapper_and_reaper_keeps_the_dir_in_token_mode() {
    let env = Env::new();
    let ws = env.fixture("small");
    let args = [
        "-v", "--ttl", "1s", "--job-id", "orph", "exec", "--", "sh", "-c", ORPHANING,
    ];
    let Some(mut cmd) = as_token_user(&env, &ws, 4712, &args) else {
        return;
    };
    let run = spawn_logged(&mut cmd, &env.path().join("orphan"));
    assert!(wait_for(30, || run
        .stderr_so_far()
        .contains("CARGO_GUARDED_RUN_TOKEN")));
    let step = |args: &[&str]| as_token_user(&env, &ws, 4712, args).unwrap();
    wrapper_and_reaper_killed(&env, &ws, run, "orph", &step);
}

/// A daemon that escapes the step's tracking (here: a scrubbed environment, in token mode) but
/// keeps the fds it inherited: the step says so when it ends, and the dir stays protected.
#[test]
fn a_step_that_ends_with_an_escaped_daemon_says_so_and_keeps_the_dir() {
    let env = Env::new();
    let ws = env.fixture("small");
    // The daemon writes its own pid once its environment is scrubbed (`env -i` has run), and the
    // step waits for it: a step that ended first would leave the reaper a moment in which the
    // daemon still carried the run token (before `env` exec'd), and the scan would kill it.
    let daemon = "env -i setsid sh -c 'echo $$ > e.tmp && mv e.tmp e.pid && exec sleep 1000' \
                  >/dev/null 2>&1 & while [ ! -f e.pid ]; do sleep 0.05; done";
    let args = [
        "--ttl", "1s", "--linger", "0s", "--job-id", "esc", "exec", "--", "sh", "-c", daemon,
    ];
    let Some(mut cmd) = as_token_user(&env, &ws, 4713, &args) else {
        return;
    };
    let out = output(&mut cmd);
    assert_success(&out);
    let escaped = read_pid(&ws.join("e.pid")).expect("e.pid");
    let _cleanup = KillOnDrop(vec![escaped]);
    assert!(pid_alive(escaped), "the daemon escaped the token scan");
    assert!(
        stderr(&out).contains("still run after this step ended"),
        "{}",
        describe(&out)
    );
    let gc = env.ok(env.path(), ["gc", "--all-expired"]);
    assert!(
        env.root.join("esc").join("target").is_dir(),
        "{}",
        describe(&gc)
    );
    send_signal(escaped, libc::SIGKILL);
    assert_gone(&[escaped], "the escaped daemon");
    env.ok(env.path(), ["gc", "--all-expired"]);
    assert!(!env.root.join("esc").exists());
}

/// Token mode (no writable cgroup), a nested run of the same job, `kill -9` of
/// the outer wrapper. The outer reaper kills the inner wrapper and reaper (they carry the outer
/// token); the inner tree carries the chain `outer:inner`, so it goes too. The inner reaper is
/// SIGKILLed first: were it to win the race against the outer one (its wrapper killed first, it
/// kills its tree), the test would prove nothing; here nothing but the outer scan is left.
#[test]
fn kill_9_of_an_outer_wrapper_in_token_mode_takes_the_nested_runs_tree() {
    let env = Env::new();
    let ws = env.fixture("small");
    let inner = format!(
        "'{BIN}' guarded --job-id nest exec -- sh -c 'setsid sleep 1000 >/dev/null 2>&1 & \
         echo $! > a.tmp && mv a.tmp a.pid; sleep 1000 & echo $! > b.tmp && mv b.tmp b.pid; \
         echo $PPID > w.tmp && mv w.tmp w.pid; wait'"
    );
    let args = ["-v", "--job-id", "nest", "exec", "--", "sh", "-c", &inner];
    let Some(mut cmd) = as_token_user(&env, &ws, 4714, &args) else {
        return;
    };
    let run = spawn_logged(&mut cmd, &env.path().join("nest"));
    let sleepers = [
        wait_pid(&run, &ws.join("a.pid")),
        wait_pid(&run, &ws.join("b.pid")),
    ];
    let _cleanup = KillOnDrop(sleepers.to_vec());
    assert!(
        run.stderr_so_far().contains("CARGO_GUARDED_RUN_TOKEN"),
        "token mode\n{}",
        run.stderr_so_far()
    );
    let inner_wrapper = wait_pid(&run, &ws.join("w.pid"));
    let inner_reaper = reaper_of_pid(inner_wrapper, &run);
    send_signal(inner_reaper, libc::SIGKILL);
    assert!(wait_for(30, || !pid_alive(inner_reaper)));
    send_signal(run.pid(), libc::SIGKILL);
    run.finish(30);
    assert_gone(
        &sleepers,
        "the nested run's tree after kill -9 of the outer wrapper",
    );
}

// ---------------------------------------------------------------------------------------------
// Inherited dispositions

/// `nohup`: SIGHUP ignored when we start stays ignored, for the wrapper and the child.
#[test]
fn an_inherited_ignored_sighup_stays_ignored() {
    let env = Env::new();
    let ws = env.fixture("small");
    let mut cmd = env.cmd(&ws);
    cmd.args([
        "guarded",
        "--job-id",
        "nohup",
        "exec",
        "--",
        "sh",
        "-c",
        "echo $$ > c.tmp && mv c.tmp c.pid; exec sleep 1000",
    ]);
    // SAFETY: setting a disposition between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let run = spawn_logged(&mut cmd, &env.path().join("nohup"));
    let child = wait_pid(&run, &ws.join("c.pid"));
    assert!(
        ignores(child, libc::SIGHUP),
        "the child does not ignore SIGHUP"
    );
    send_signal(run.pid(), libc::SIGHUP);
    send_signal(child, libc::SIGHUP);
    // Give a wrongly forwarded or delivered hangup the time to act, then check both still live.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        pid_alive(run.pid()) && pid_alive(child),
        "{}",
        run.stderr_so_far()
    );
    send_signal(run.pid(), libc::SIGTERM);
    let out = run.finish(30);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGTERM),
        "{}",
        describe(&out)
    );
    assert_eq!(env.lease("nohup")["state"], "released");
}

#[test]
fn an_inherited_ignored_sigchld_does_not_break_the_run() {
    let env = Env::new();
    let ws = env.fixture("small");
    let mut cmd = env.cmd(&ws);
    cmd.args([
        "guarded", "--job-id", "chld", "exec", "--", "sh", "-c", "exit 7",
    ]);
    // SAFETY: setting a disposition between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = output(&mut cmd);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert_eq!(env.lease("chld")["state"], "released");
}

// ---------------------------------------------------------------------------------------------
// Signals sent to the wrapper

fn start_sleeper(env: &Env, ws: &Path, job: &str) -> (Spawned, i32) {
    let run = env.spawn(
        ws,
        job,
        [
            "--job-id",
            job,
            "exec",
            "--",
            "sh",
            "-c",
            "echo $$ > c.tmp && mv c.tmp c.pid; exec sleep 1000",
        ],
    );
    let child = wait_pid(&run, &ws.join("c.pid"));
    (run, child)
}

/// QUIT, USR1, USR2 and ALRM are forwarded: the child dies of it, the lease is released, and the
/// wrapper dies of the same signal.
#[test]
fn other_terminating_signals_are_forwarded_and_release() {
    for sig in [libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGALRM] {
        let env = Env::new();
        let ws = env.fixture("small");
        let (run, child) = start_sleeper(&env, &ws, "fw");
        send_signal(run.pid(), sig);
        let out = run.finish(30);
        assert_eq!(
            out.status.signal(),
            Some(sig),
            "signal {sig}: {}",
            describe(&out)
        );
        assert!(
            !out.status.core_dumped(),
            "signal {sig}: the wrapper dumped core"
        );
        assert_gone(&[child], "the child");
        assert_eq!(env.lease("fw")["state"], "released", "signal {sig}");
    }
}

/// `kill -TSTP` of the wrapper (no terminal) stops the child, not the wrapper alone; `kill
/// -CONT` continues it.
#[test]
fn sigtstp_to_the_wrapper_stops_the_child_and_sigcont_resumes_it() {
    let env = Env::new();
    let ws = env.fixture("small");
    let (run, child) = start_sleeper(&env, &ws, "tstp");
    send_signal(run.pid(), libc::SIGTSTP);
    assert!(
        wait_for(30, || state(child) == "T"),
        "child state {}",
        state(child)
    );
    assert_ne!(state(run.pid()), "T", "the wrapper stopped itself");
    send_signal(run.pid(), libc::SIGCONT);
    assert!(
        wait_for(30, || state(child) == "S"),
        "child state {}",
        state(child)
    );
    send_signal(run.pid(), libc::SIGTERM);
    let out = run.finish(30);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGTERM),
        "{}",
        describe(&out)
    );
    assert_eq!(env.lease("tstp")["state"], "released");
}

// ---------------------------------------------------------------------------------------------
// A real terminal

/// `cargo-guarded guarded ARGS...` as a shell command line (arguments single-quoted).
fn cmdline(args: &[&str]) -> String {
    let mut s = format!("'{BIN}' guarded");
    for a in args {
        s.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
    }
    s
}

#[test]
fn ctrl_z_stops_the_job_and_fg_resumes_it() {
    let env = Env::new();
    let ws = env.fixture("small");
    let t = Tmux::start(&env, &ws);
    let job = cmdline(&[
        "--job-id",
        "tz",
        "exec",
        "--",
        "sh",
        "-c",
        "echo $$ > c.pid; echo ready-$((40+2)); read x; echo got-$x",
    ]);
    t.line(&job);
    assert!(t.wait_for_text(60, "ready-42"), "{}", t.pane());
    let child = read_pid(&ws.join("c.pid")).unwrap();
    t.keys(&["C-z"]);
    assert!(
        t.wait_for_text(30, "Stopped"),
        "Ctrl-Z did not stop the job:\n{}",
        t.pane()
    );
    assert_eq!(state(child), "T");
    assert_eq!(env.lease("tz")["state"], "active");
    t.line("fg");
    assert!(
        wait_for(30, || running_in_foreground(child)),
        "{}",
        t.pane()
    );
    t.line("hello");
    assert!(t.wait_for_text(30, "got-hello"), "{}", t.pane());
    t.line("echo rc=$?");
    assert!(t.wait_for_text(30, "rc=0"), "{}", t.pane());
    assert_eq!(env.lease("tz")["state"], "released");
}

#[test]
fn fg_after_a_background_start_does_not_hang() {
    let env = Env::new();
    let ws = env.fixture("small");
    let t = Tmux::start(&env, &ws);
    let job = cmdline(&[
        "--job-id",
        "tb",
        "exec",
        "--",
        "sh",
        "-c",
        "echo $$ > c.pid; read x; echo got-$x",
    ]);
    t.line(&format!("{job} &"));
    assert!(
        wait_for(60, || read_pid(&ws.join("c.pid")).is_some()),
        "{}",
        t.pane()
    );
    t.line("fg");
    t.line("there");
    assert!(t.wait_for_text(30, "got-there"), "fg hung:\n{}", t.pane());
    t.line("echo rc=$?");
    assert!(t.wait_for_text(30, "rc=0"), "{}", t.pane());
}

/// Ctrl-C stops a loop around `cargo guarded`, in an interactive shell and in a script.
#[test]
fn ctrl_c_stops_a_shell_loop() {
    let env = Env::new();
    let ws = env.fixture("small");
    let t = Tmux::start(&env, &ws);
    let job = cmdline(&[
        "--job-id",
        "tl",
        "exec",
        "--",
        "sh",
        "-c",
        "echo iteration-$0; exec sleep 1000",
    ]);
    std::fs::write(
        ws.join("loop.sh"),
        format!("for i in a b c; do {job} $i; done; echo survived\n"),
    )
    .unwrap();
    // A script: bash stops its loop only if it got the SIGINT itself. (The interactive shell
    // then drops the rest of the line too.)
    t.line("bash loop.sh");
    assert!(t.wait_for_text(60, "iteration-a"), "{}", t.pane());
    t.keys(&["C-c"]);
    t.line("echo after-$((1+1))=$?");
    assert!(t.wait_for_text(30, "after-2="), "{}", t.pane());
    let pane = t.pane();
    assert!(
        !pane.contains("iteration-b") && !pane.contains("survived"),
        "{pane}"
    );
    assert!(pane.contains("after-2=130"), "{pane}");
    assert_eq!(env.lease("tl")["state"], "released");
    // Interactive: bash stops the loop when the job died of SIGINT.
    t.line(&format!(
        "for i in d e f; do {job} $i; done; echo surv-$((2+2))"
    ));
    assert!(t.wait_for_text(60, "iteration-d"), "{}", t.pane());
    t.keys(&["C-c"]);
    t.line("echo after-$((2+1))=$?");
    assert!(t.wait_for_text(30, "after-3="), "{}", t.pane());
    let pane = t.pane();
    assert!(
        !pane.contains("iteration-e") && !pane.contains("surv-4"),
        "{pane}"
    );
    assert_eq!(env.lease("tl")["state"], "released");
}

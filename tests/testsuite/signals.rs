//! Signals with real processes: a signal sent to the wrapper reaches the child and the lease is
//! still released; a wrapper killed outright takes its child's whole tree with it, and its lease
//! expires after the TTL instead of being released.

use std::path::Path;

use crate::common::*;

/// A wrapped `sh` that writes its pid to `child.pid` and the pid of a background `sleep` (its
/// child, the wrapper's grandchild) to `gc.pid`, then waits. Returns once both pids are written.
fn start_tree(env: &Env, ws: &Path, extra: &[&str]) -> (Spawned, i32, i32) {
    let script = "echo $$ > child.tmp && mv child.tmp child.pid; \
                  sleep 300 & echo $! > gc.tmp && mv gc.tmp gc.pid; wait";
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--job-id", "sig", "exec", "--", "sh", "-c", script]);
    let run = env.spawn(ws, "wrapper", args);
    let mut pids = None;
    let started = wait_for(60, || {
        pids = read_pid(&ws.join("child.pid")).zip(read_pid(&ws.join("gc.pid")));
        pids.is_some()
    });
    assert!(started, "the child never started\n{}", run.stderr_so_far());
    let (child, grandchild) = pids.unwrap();
    assert!(pid_alive(child) && pid_alive(grandchild));
    assert_eq!(env.lease("sig")["state"], "active");
    assert!(is_locked(&env.root.join("sig")));
    (run, child, grandchild)
}

/// The wrapper died of `sig` after releasing (as its child did, or as it was interrupted), so a
/// shell sees 128+N and a loop around it stops; no core dump of its own.
fn assert_died_of(out: &std::process::Output, sig: i32) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(sig), "{}", describe(out));
    assert!(!out.status.core_dumped(), "{}", describe(out));
}

fn assert_gone(pids: &[i32], what: &str) {
    assert!(
        wait_for(30, || pids.iter().all(|&p| !pid_alive(p))),
        "{what}: still running: {:?}",
        pids.iter().filter(|&&p| pid_alive(p)).collect::<Vec<_>>()
    );
}

#[test]
fn sigterm_to_the_wrapper_ends_the_child_and_releases() {
    let env = Env::new();
    let ws = env.fixture("small");
    let (run, child, grandchild) = start_tree(&env, &ws, &[]);
    send_signal(run.pid(), libc::SIGTERM);
    let out = run.finish(60);
    assert_died_of(&out, libc::SIGTERM);
    assert_gone(&[child, grandchild], "after SIGTERM");
    assert_eq!(env.lease("sig")["state"], "released");
    assert!(!is_locked(&env.root.join("sig")));
}

#[test]
fn sigint_and_sighup_are_forwarded_too() {
    for sig in [libc::SIGINT, libc::SIGHUP] {
        let env = Env::new();
        let ws = env.fixture("small");
        // `exec`: the signal goes to `sleep` itself (a non-interactive shell's background jobs
        // ignore SIGINT, which would hide whether the signal arrived).
        let run = env.spawn(
            &ws,
            "wrapper",
            [
                "--job-id",
                "sig",
                "exec",
                "--",
                "sh",
                "-c",
                "echo $$ > child.tmp && mv child.tmp child.pid; exec sleep 300",
            ],
        );
        let mut child = None;
        assert!(
            wait_for(60, || {
                child = read_pid(&ws.join("child.pid"));
                child.is_some()
            }),
            "the child never started\n{}",
            run.stderr_so_far()
        );
        send_signal(run.pid(), sig);
        let out = run.finish(60);
        assert_died_of(&out, sig);
        assert_gone(&[child.unwrap()], "after the forwarded signal");
        assert_eq!(env.lease("sig")["state"], "released");
    }
}

#[test]
fn sigkill_to_the_wrapper_kills_the_tree_and_the_lease_expires() {
    let env = Env::new();
    let ws = env.fixture("small");
    let (mut run, child, grandchild) = start_tree(&env, &ws, &["--ttl", "1s"]);
    run.child.kill().unwrap();
    run.child.wait().unwrap();

    // No orphan keeps writing into a dir a guard may later reclaim.
    assert_gone(&[child, grandchild], "after SIGKILL of the wrapper");
    // The kernel dropped the lock with the process; the lease was never released.
    let dir = env.root.join("sig");
    assert!(
        wait_for(30, || !is_locked(&dir)),
        "the lock outlived the wrapper"
    );
    assert_eq!(env.lease("sig")["state"], "active");
    // Once the heartbeat is older than the TTL, status calls it expired.
    let mut last = serde_json::Value::Null;
    let expired = wait_for(60, || {
        last = env.status();
        last["leases"][0]["state"] == "expired"
    });
    assert!(expired, "never expired: {last:#}");
    assert_eq!(last["leases"][0]["job_id"], "sig");
    assert_eq!(
        env.lease("sig")["state"],
        "active",
        "status changes nothing"
    );
}

/// A signal that arrives while the wrapper is still waiting for its lease (before its command
/// started) ends it at once (the wrapper dies of the same signal: 128+N to a shell), and leaves the holder's lease alone.
#[test]
fn a_signal_while_waiting_for_the_lease_ends_the_wait() {
    let env = Env::new();
    let ws = env.fixture("small");
    let (holder, child, grandchild) = start_tree(&env, &ws, &[]);
    let waiter = env.spawn(&ws, "waiter", ["--job-id", "sig", "exec", "--", "true"]);
    assert!(
        wait_for(30, || waiter
            .stderr_so_far()
            .contains("Waiting for lease held by")),
        "the second run never waited\n{}",
        waiter.stderr_so_far()
    );
    send_signal(waiter.pid(), libc::SIGTERM);
    let out = waiter.finish(30);
    assert_died_of(&out, libc::SIGTERM);
    assert!(
        stderr(&out).contains("interrupted by signal 15"),
        "{}",
        describe(&out)
    );
    assert!(
        pid_alive(child) && pid_alive(grandchild),
        "the holder's command was touched"
    );
    assert_eq!(env.lease("sig")["state"], "active");
    send_signal(holder.pid(), libc::SIGTERM);
    let out = holder.finish(60);
    assert_died_of(&out, libc::SIGTERM);
}

//! Progress while waiting: a wait for a lease names the holder and its command, stays
//! visibly alive (a spinner on a real terminal, a line every 10 s in a log), and says when the
//! lease was acquired and after how long.

use std::process::Command;

use crate::common::*;

#[test]
fn a_wait_in_a_log_names_the_holder_repeats_and_says_when_it_ends() {
    let env = Env::new();
    let ws = env.fixture("small");
    let holder = env.live_holder(&ws, "w");
    let waiter = env.spawn(&ws, "waiter", ["--job-id", "w", "exec", "--", "true"]);
    assert!(
        wait_for(60, || waiter
            .stderr_so_far()
            .contains("Waiting for lease held by")),
        "{}",
        waiter.stderr_so_far()
    );
    let first = waiter.stderr_so_far();
    assert!(first.contains("running `sleep 60`"), "{first}");
    // Not one line and then silence: a CI log gets a line every 10 s.
    assert!(
        wait_for(60, || waiter
            .stderr_so_far()
            .contains("(still going after 1")),
        "{}",
        waiter.stderr_so_far()
    );
    send_signal(holder.pid(), libc::SIGTERM);
    let out = waiter.finish(60);
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        err.contains("    Acquired the lease on ") && err.contains(" after "),
        "{err}"
    );
    drop(holder);
}

/// The hint the spinner line ends with when no `--wait` bounds the wait.
const HINT: &str = "(Ctrl-C stops; --wait bounds the wait)";

/// The spinner's line: the verb, the message cut to the width, the elapsed time and the hint.
fn is_spinner(line: &str) -> bool {
    line.trim_start().starts_with("Waiting for lease held by") && line.trim_end().ends_with(HINT)
}

/// `tmux capture-pane` of `session`.
fn pane(session: &str) -> String {
    let out = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", session])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_wait_on_a_terminal_shows_a_live_spinner_then_clears_it() {
    let found = which::which("tmux").map_err(|_| "not installed".to_owned());
    if require("tmux", found).is_none() {
        return;
    }
    let env = Env::new();
    let ws = env.fixture("small");
    let holder = env.live_holder(&ws, "t");
    let session = format!("cg-progress-{}", std::process::id());
    let done = env.path().join("done");
    let script = format!(
        "cd '{}' && env -i PATH=\"$PATH\" HOME=\"$HOME\" TERM=xterm CARGO_GUARDED_ROOT='{}' \
         '{BIN}' guarded --job-id t exec -- true; echo $? > '{}'; sleep 60",
        ws.display(),
        env.root.display(),
        done.display()
    );
    // 80 columns: the message (holder, command, the dir's long path) is longer than that.
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "20",
            "-s",
            &session,
            &script,
        ])
        .status()
        .unwrap();
    assert!(started.success());
    let kill = || {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &session])
            .status();
    };
    // The spinner line redraws with the elapsed time: two different captures of it.
    let mut seen = Vec::new();
    let ok = wait_for(60, || {
        let p = pane(&session);
        if let Some(line) = p.lines().find(|l| is_spinner(l))
            && !seen.iter().any(|s| s == line)
        {
            seen.push(line.to_owned());
        }
        seen.len() >= 2
    });
    let before = pane(&session);
    send_signal(holder.pid(), libc::SIGTERM);
    let finished = wait_for(60, || done.exists());
    let after = pane(&session);
    kill();
    assert!(ok, "no live spinner line: {seen:?}\n{before}");
    // Said once (not a line and then a spinner repeating it), on one line
    // that fits the 80 columns (a wrapped line would leave the hint on the next one), with
    // what the user can do about it.
    let waiting: Vec<&str> = before.lines().filter(|l| l.contains("Waiting")).collect();
    assert_eq!(waiting.len(), 1, "{before}");
    assert!(is_spinner(waiting[0]), "{before}");
    assert!(waiting[0].chars().count() <= 80, "{before}");
    assert!(finished, "{after}");
    assert!(after.contains("Acquired the lease on"), "{after}");
    // Cleared when done: no spinner line left behind.
    assert!(!after.lines().any(is_spinner), "{after}");
    drop(holder);
}

#[test]
fn a_long_sweep_says_it_is_at_work_while_it_is() {
    let env = Env::new();
    // A real root with one expired job dir (`--linger 0s`: expired at release).
    let ws = env.fixture("small");
    env.ok(
        &ws,
        ["--job-id", "old", "--linger", "0s", "exec", "--", "true"],
    );
    let mut cmd = env.cmd(env.path());
    cmd.args(["guarded", "gc", "--all-expired"]);
    // Held at the step after the scan: a sweep that takes as long as a test needs.
    let paused = env.paused(cmd, "gc", "guard-scanned");
    let log = env.path().join("gc.stderr");
    assert!(
        wait_for(30, || std::fs::read_to_string(&log).is_ok_and(|t| t
            .contains("    Sweeping ")
            && t.contains("for expired job dirs"))),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let out = paused.resume(60);
    assert_success(&out);
    assert!(
        stderr(&out).contains("     Removed old"),
        "{}",
        describe(&out)
    );
    // A sweep that finishes at once adds no line.
    let out = env.ok(env.path(), ["gc"]);
    assert!(!stderr(&out).contains("Sweeping"), "{}", describe(&out));
}

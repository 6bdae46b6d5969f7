//! Warm starts on a fresh host from an object store. On `fixtures/slow` (a workspace crate that
//! takes seconds to compile), a job on host A builds and runs `store push` to an `fs://` store
//! once; then each round times, in the same checkout path:
//!
//! - restored: a fresh host (a new root), in a fresh clone (every mtime new), with `--store`
//!   and `--restore-mtimes`: it must say it restored and compile nothing;
//! - cold: a fresh host without a store.
//!
//! Goal: restored / cold <= 0.2. Also printed: what the push uploaded, and what a second push of
//! the same dir uploads (nothing: objects are addressed by content).
//!
//! Scale: `BENCH_RUNS` (default 5) rounds, the order alternating. Needs the `store` feature
//! (`cargo bench --features store --bench store`).

mod common;

use std::path::Path;

use common::*;

fn main() {
    if !invoked_by_cargo_bench("store") {
        return;
    }
    let runs = setting("BENCH_RUNS", 5, 1).max(1);
    let tmp = tempdir("cg-bench-store-");
    let logs = tmp.path().join("logs");
    let ws = fixture("slow", &tmp.path().join("ws"));
    let store = format!("fs://{}", tmp.path().join("store").display());
    println!(
        "store: fixtures/slow, {runs} rounds of a fresh host restored from an fs:// store against a cold build"
    );
    println!("  binary:    {BIN}");

    let job = |root: &Path, id: &str, args: &[&str], with_store: bool| {
        let mut c = guarded(root, &ws, ["--job-id", id]);
        if with_store {
            c.env("CARGO_GUARDED_STORE", &store);
        }
        c.args(args);
        c
    };
    let host_a = tmp.path().join("host-a");
    let first = timed(&mut job(&host_a, "a", &["build"], false), &logs);
    assert!(first.compiled(), "the first build compiled nothing?");
    let push = timed(&mut job(&host_a, "a", &["store", "push"], true), &logs);
    println!("  push:   {} ({})", push.stderr.trim(), ms(push.wall));
    let again = timed(&mut job(&host_a, "a", &["store", "push"], true), &logs);
    assert!(again.stderr.contains(" 0 of "), "{}", again.stderr);
    println!("  again:  {} ({})", again.stderr.trim(), ms(again.wall));

    let mut restored = Vec::new();
    let mut cold = Vec::new();
    for r in 0..runs {
        let mut order = [true, false];
        order.rotate_left(r % 2);
        for with_store in order {
            fresh_clone(&ws, &tmp.path().join("clone.tmp"));
            let root = tmp.path().join(format!("host-{r}-{with_store}"));
            let args = ["--restore-mtimes", "build"];
            let run = timed(&mut job(&root, "b", &args, with_store), &logs);
            if with_store {
                assert!(
                    run.stderr.contains("Restored") && !run.compiled(),
                    "the restored build compiled, or did not restore:\n{}",
                    run.stderr
                );
                restored.push(run.wall);
            } else {
                assert!(run.compiled(), "the cold build compiled nothing");
                cold.push(run.wall);
            }
            std::fs::remove_dir_all(&root).unwrap();
        }
    }
    println!(
        "{}",
        summary("fresh host, restored from the store", &restored)
    );
    println!("{}", summary("fresh host, cold", &cold));
    ratio_line("restored / cold", &restored, &cold, Some(0.2));
}

/// The checkout replaced by a copy of itself: the same path and content, every mtime new.
fn fresh_clone(ws: &Path, tmp: &Path) {
    copy_dir(ws, tmp);
    std::fs::remove_dir_all(ws).unwrap();
    std::fs::rename(tmp, ws).unwrap();
}

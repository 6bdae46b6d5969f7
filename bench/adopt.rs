//! Issue 4's benchmark: warm reuse. On `fixtures/slow` (a dependency that takes seconds to
//! compile), copied once to a temp dir so every run has the same workspace path (and so the same
//! workspace key), it times:
//!
//! - adopted: a new job, `cargo guarded --job-id job-N --linger 0s build`, that adopts the dir
//!   the previous job released (expired at release because of `--linger 0s`);
//! - resumed: the same job id again, which takes back its own dir (no adoption): separates
//!   the cost of adopting from the cost of the lease;
//! - shared: an incremental no-change build in a plain shared target dir,
//!   `cargo build --target-dir shared` (the unsafe status quo);
//! - cold: `cargo build --target-dir <fresh dir>`.
//!
//! Goals: adopted / shared <= 1.2, adopted / cold <= 0.2. Every adopted run must say it adopted
//! the previous job's dir and compile nothing, or the bench stops and says what it saw.
//!
//! Then disk: `BENCH_DISK_RUNS` (default 20) sequential runs with distinct job ids and
//! `--linger 0s` in a fresh root, and the root's allocated bytes (du-style) against one target
//! dir's (the shared one). Goal <= 1.2x.
//!
//! Scale: `BENCH_RUNS` (default 10) rounds of adopted, resumed and shared builds, the first
//! `BENCH_COLD_RUNS` (default 3) of which also time a cold build; the order rotates every round.

mod common;

use std::path::Path;

use common::*;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Adopted,
    Resumed,
    Shared,
    Cold,
}

fn main() {
    if !invoked_by_cargo_bench("adopt") {
        return;
    }
    let runs = setting("BENCH_RUNS", 10, 1).max(1);
    let cold_runs = setting("BENCH_COLD_RUNS", 3, 1).clamp(1, runs);
    let disk_runs = setting("BENCH_DISK_RUNS", 20, 3).max(1);
    let tmp = tempdir("cg-bench-adopt-");
    let logs = tmp.path().join("logs");
    let ws = fixture("slow", &tmp.path().join("ws"));
    let root = tmp.path().join("root");
    let shared = tmp.path().join("shared-target");
    let cold = tmp.path().join("cold-target");

    println!(
        "adopt: fixtures/slow; {runs} rounds of adopted, resumed and shared builds, {cold_runs} cold builds, interleaved"
    );
    println!("  binary:    {BIN}");
    println!("  workspace: {}", ws.display());

    let job = |root: &Path, id: &str| {
        guarded(
            root,
            &ws,
            ["--no-seed", "--job-id", id, "--linger", "0s", "build"],
        )
    };
    let plain = |dir: &Path| {
        let mut c = cmd("cargo", &ws);
        c.arg("build").arg("--target-dir").arg(dir);
        c
    };

    // Warm-up: the first job builds cold and releases its dir, expired at once; the shared
    // target dir is built once and checked to be a no-op afterwards.
    let first = timed(&mut job(&root, "job-0"), &logs);
    assert!(
        first.compiled(),
        "job-0 compiled nothing?\n{}",
        first.stderr
    );
    println!(
        "  warm-up: job-0 (fresh dir, cold build) {}",
        ms(first.wall)
    );
    let s = timed(&mut plain(&shared), &logs);
    println!("  warm-up: shared target dir, cold build  {}", ms(s.wall));
    let s = timed(&mut plain(&shared), &logs);
    assert!(
        !s.compiled(),
        "the shared build is not a no-op:\n{}",
        s.stderr
    );

    let mut next_job = 1;
    let mut adopted = Vec::new();
    let mut resumed = Vec::new();
    let mut shared_t = Vec::new();
    let mut cold_t = Vec::new();
    for r in 0..runs {
        let mut order = vec![Variant::Adopted, Variant::Resumed, Variant::Shared];
        if r < cold_runs {
            order.push(Variant::Cold);
        }
        let n = order.len();
        order.rotate_left(r % n);
        for v in order {
            match v {
                Variant::Adopted => {
                    let id = format!("job-{next_job}");
                    let prev = format!("job-{}", next_job - 1);
                    let before = dir_identities(&root);
                    let run = timed(&mut job(&root, &id), &logs);
                    let how = origin(&root, &id, &before, &logs);
                    if how != Origin::Adopted(prev.clone()) {
                        panic!(
                            "{id} did not adopt {prev}'s expired dir ({how:?}); job dirs now: {:?}\n--- stderr ---\n{}",
                            job_dirs(&root),
                            run.stderr
                        );
                    }
                    assert!(
                        !run.compiled(),
                        "{id} adopted {prev} but compiled:\n{}",
                        run.stderr
                    );
                    next_job += 1;
                    adopted.push(run.wall);
                }
                Variant::Resumed => {
                    let id = format!("job-{}", next_job - 1);
                    let before = dir_identities(&root);
                    let run = timed(&mut job(&root, &id), &logs);
                    let how = origin(&root, &id, &before, &logs);
                    assert_eq!(
                        how,
                        Origin::Resumed,
                        "{id} did not resume its own dir:\n{}",
                        run.stderr
                    );
                    assert!(
                        !run.compiled(),
                        "{id} resumed but compiled:\n{}",
                        run.stderr
                    );
                    resumed.push(run.wall);
                }
                Variant::Shared => {
                    let run = timed(&mut plain(&shared), &logs);
                    assert!(!run.compiled(), "shared build compiled:\n{}", run.stderr);
                    shared_t.push(run.wall);
                }
                Variant::Cold => {
                    if cold.exists() {
                        std::fs::remove_dir_all(&cold).unwrap();
                    }
                    let run = timed(&mut plain(&cold), &logs);
                    assert!(
                        run.stderr.contains("Compiling heavy"),
                        "the cold build did not compile the dependency:\n{}",
                        run.stderr
                    );
                    cold_t.push(run.wall);
                }
            }
        }
    }
    let dirs = job_dirs(&root);

    println!();
    println!(
        "{}",
        summary("adopted: cargo guarded --job-id job-N build", &adopted)
    );
    println!(
        "{}",
        summary("resumed: the same job-N again (its own dir)", &resumed)
    );
    println!(
        "{}",
        summary("shared: cargo build --target-dir shared", &shared_t)
    );
    println!(
        "{}",
        summary("cold: cargo build --target-dir <fresh>", &cold_t)
    );
    ratio_line("adopted / shared", &adopted, &shared_t, Some(1.2));
    ratio_line(
        "resumed / shared (the lease alone)",
        &resumed,
        &shared_t,
        None,
    );
    ratio_line(
        "adopted / resumed (adoption itself)",
        &adopted,
        &resumed,
        None,
    );
    // Cold builds are fewer than the others: compare medians, not rounds.
    let to_cold = median(&adopted).as_secs_f64() / median(&cold_t).as_secs_f64();
    println!(
        "  {:<44} {to_cold:>6.3}x   goal <= 0.20: {}",
        "adopted / cold",
        if to_cold <= 0.2 { "met" } else { "NOT met" }
    );
    println!(
        "  job dirs left in the root after {} jobs: {} {dirs:?}",
        next_job,
        dirs.len()
    );

    // Disk after many runs with distinct job ids.
    let disk_root = tmp.path().join("root-disk");
    let mut adoptions = 0;
    let mut compiled_runs = Vec::new();
    let mut max_dirs = 0;
    let mut run_times = Vec::new();
    for i in 1..=disk_runs {
        let id = format!("run-{i}");
        let before = dir_identities(&disk_root);
        let run = timed(&mut job(&disk_root, &id), &logs);
        if matches!(origin(&disk_root, &id, &before, &logs), Origin::Adopted(_)) {
            adoptions += 1;
        }
        if run.compiled() {
            compiled_runs.push(i);
        }
        max_dirs = max_dirs.max(job_dirs(&disk_root).len());
        run_times.push(run.wall);
    }
    let root_bytes = disk_bytes(&disk_root);
    let one = disk_bytes(&shared);
    let cold_bytes = disk_bytes(&cold);
    let ratio = root_bytes as f64 / one as f64;
    println!();
    println!(
        "disk after {disk_runs} sequential runs (distinct job ids, --linger 0s) in {}:",
        disk_root.display()
    );
    println!(
        "  runs that adopted: {adoptions}/{}; runs that compiled: {compiled_runs:?}; most job dirs at once: {max_dirs}; left: {:?}",
        disk_runs - 1,
        job_dirs(&disk_root)
    );
    println!(
        "  median run time {} (first run, cold: {})",
        ms(median(&run_times)),
        ms(run_times[0])
    );
    println!(
        "  root:                      {:>12} bytes ({})",
        root_bytes,
        human_bytes(root_bytes)
    );
    println!(
        "  one target dir (shared):   {:>12} bytes ({})",
        one,
        human_bytes(one)
    );
    println!(
        "  one target dir (cold):     {:>12} bytes ({})",
        cold_bytes,
        human_bytes(cold_bytes)
    );
    println!(
        "  {:<44} {ratio:>6.3}x   goal <= 1.20: {}",
        "root / one target dir",
        if ratio <= 1.2 { "met" } else { "NOT met" }
    );
}

//! Issue 9's benchmark: warm dirs that stay small. On `fixtures/moving` (its path dependency's
//! version, and so its unit hash and its dependents', moves on every job), copied once to a temp
//! dir:
//!
//! - History: `BENCH_JOBS` (default 20) jobs on one runner, each adopting the last one's dir
//!   (`--linger 0s`), in three roots side by side: pruned with `--prune-after 3` (the default),
//!   pruned with `--prune-after 1`, and never pruned (`--no-prune --max-warm-size off`). Every 5 jobs: each root's
//!   job dir against a fresh build of the same state (du-style bytes; goal <= 1.3x and flat as N
//!   grows), and the units cargo compiled per job in each root (goal: the same as never pruned).
//! - Cost: at the end state, interleaved rounds (`BENCH_RUNS`, default 15) of a no-op job that
//!   adopts with pruning on, the same in the same root with `--no-prune --max-warm-size off`
//!   (no size walk either), and a plain no-op `cargo build` in a
//!   target dir of its own. Prune cost = median of (pruning adoption - non-pruning adoption), per
//!   round; goal <= 10% of the plain no-op build.

mod common;
#[path = "../tests/testsuite/common/moving.rs"]
mod moving;

use std::path::Path;
use std::time::Duration;

use moving::set_dep_version;

use common::*;

fn compiled_units(run: &Run) -> usize {
    run.stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .count()
}

fn main() {
    if !invoked_by_cargo_bench("prune") {
        return;
    }
    let jobs = setting("BENCH_JOBS", 20, 3).max(2);
    let runs = setting("BENCH_RUNS", 15, 1).max(1);
    let tmp = tempdir("cg-bench-prune-");
    let logs = tmp.path().join("logs");
    let ws = fixture("moving", &tmp.path().join("ws"));
    println!("prune: fixtures/moving, the path dependency's version moving on each of {jobs} jobs");
    println!("  binary:    {BIN}");

    let variants: [(&str, &[&str]); 3] = [
        ("K=3", &["--prune-after", "3"]),
        ("K=1", &["--prune-after", "1"]),
        ("never", &["--no-prune", "--max-warm-size", "off"]),
    ];
    let roots: Vec<_> = variants
        .iter()
        .map(|(name, _)| tmp.path().join(format!("root-{}", name.replace('=', ""))))
        .collect();
    let job = |root: &Path, id: &str, extra: &[&str]| {
        let mut c = guarded(root, &ws, ["--no-seed", "--job-id", id, "--linger", "0s"]);
        c.env("RUNNER_NAME", "bench").args(extra).arg("build");
        c
    };
    let mut compiled = vec![Vec::new(); variants.len()];
    println!(
        "  {:>4}  {:>10}  {:>13}  {:>13}  {:>13}",
        "jobs", "fresh", "K=3 / fresh", "K=1 / fresh", "never / fresh"
    );
    let mut worst: f64 = 0.0;
    for i in 1..=jobs {
        set_dep_version(&ws, &format!("1.0.{i}"));
        for (v, (_, extra)) in variants.iter().enumerate() {
            let run = timed(&mut job(&roots[v], &format!("job-{i}"), extra), &logs);
            compiled[v].push(compiled_units(&run));
        }
        if i % 5 == 0 || i == jobs {
            let fresh_dir = tmp.path().join("fresh");
            let mut c = cmd("cargo", &ws);
            c.args(["build", "--target-dir"]).arg(&fresh_dir);
            timed(&mut c, &logs);
            let fresh = disk_bytes(&fresh_dir);
            let _ = std::fs::remove_dir_all(&fresh_dir);
            let ratio = |v: usize| {
                disk_bytes(&roots[v].join(format!("job-{i}")).join("target")) as f64 / fresh as f64
            };
            let (k3, k1, never) = (ratio(0), ratio(1), ratio(2));
            if i >= 5 {
                worst = worst.max(k3);
            }
            println!(
                "  {i:>4}  {:>10}  {k3:>12.2}x  {k1:>12.2}x  {never:>12.2}x",
                human_bytes(fresh)
            );
        }
    }
    let total = |v: usize| compiled[v].iter().sum::<usize>();
    println!(
        "  units compiled over {jobs} jobs: K=3 {}, K=1 {}, never pruned {} (goal: the same)",
        total(0),
        total(1),
        total(2)
    );
    println!(
        "  worst K=3 warm/fresh from job 5 on: {worst:.2}x (goal <= 1.3x: {})",
        if worst <= 1.3 { "met" } else { "NOT met" }
    );

    // Cost at the end state: no-op adoptions with and without pruning, and a plain no-op build.
    let plain_dir = tmp.path().join("plain");
    let mut c = cmd("cargo", &ws);
    c.args(["build", "--target-dir"]).arg(&plain_dir);
    timed(&mut c, &logs);
    let n = std::cell::Cell::new(jobs);
    let next = || {
        n.set(n.get() + 1);
        format!("job-{}", n.get())
    };
    // A no-op adoption: the job took the last job's dir (by `status --json` and the dir's
    // identity) and compiled nothing.
    let adoption = |extra: &[&str]| {
        let id = next();
        let before = dir_identities(&roots[0]);
        let run = timed(&mut job(&roots[0], &id, extra), &logs);
        let how = origin(&roots[0], &id, &before, &logs);
        assert!(
            matches!(how, Origin::Adopted(_)),
            "{id} did not adopt ({how:?}):\n{}",
            run.stderr
        );
        run
    };
    let mut on = |_: usize| {
        let run = adoption(&[]);
        assert!(
            !run.compiled(),
            "a no-op adoption compiled:\n{}",
            run.stderr
        );
        run.wall
    };
    let mut off = |_: usize| {
        let run = adoption(&["--no-prune", "--max-warm-size", "off"]);
        assert!(
            !run.compiled(),
            "a no-op adoption compiled:\n{}",
            run.stderr
        );
        run.wall
    };
    let mut plain = |_: usize| {
        let mut c = cmd("cargo", &ws);
        c.args(["build", "--target-dir"]).arg(&plain_dir);
        timed(&mut c, &logs).wall
    };
    let times = interleaved(
        runs,
        &mut [
            ("prune on", &mut on),
            ("prune off", &mut off),
            ("plain", &mut plain),
        ],
    );
    println!("  {}", summary("adopt, prune on ", &times[0]));
    println!("  {}", summary("adopt, prune off", &times[1]));
    println!("  {}", summary("plain no-op build", &times[2]));
    let diffs: Vec<f64> = times[0]
        .iter()
        .zip(&times[1])
        .map(|(a, b)| a.as_secs_f64() - b.as_secs_f64())
        .collect();
    let cost = median_f64(&diffs);
    let share = cost / median(&times[2]).as_secs_f64();
    println!(
        "  prune cost at adoption: {} median per job = {:.1}% of a no-op build (goal <= 10%: {})",
        ms(Duration::from_secs_f64(cost.max(0.0))),
        share * 100.0,
        if share <= 0.10 { "met" } else { "NOT met" }
    );
}

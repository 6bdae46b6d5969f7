//! Issue 3's sweep benchmark: a guard sweep over many job dirs, mostly live, against the raw
//! cost of listing them and reading every lease file once. Goal: <= 3x, and linear in the number
//! of dirs.
//!
//! Each job dir holds a `lease.json` derived from one written by a real `cargo guarded exec --
//! true` (fields rewritten, so the format stays the product's) and an empty `target/`. The mix:
//! 89% live (`active`, renewed now, ttl 600), 10% released and still lingering (expires in 1h),
//! 1% expired, each of its own workspace (so `--keep-expired 1` keeps it warm). The sweep,
//! `cargo guarded gc --reclaim-below 0%`, therefore reads and classifies every lease and removes
//! nothing; the bench checks that.
//!
//! Baselines, timed in the same rounds (order alternating):
//! - in process: `std::fs::read_dir` of the root and `std::fs::read` of every lease, in this
//!   bench's own process (no process start-up: the strictest baseline);
//! - the same listing as a separate process (this bench binary re-run with `--list-leases`);
//! - `find ROOT -mindepth 2 -maxdepth 2 -name lease.json -exec cat {} +` (output to /dev/null).
//!
//! Scale: `BENCH_DIRS` (default 10000) is the largest root; roots of 1/4 and 1/2 of it are
//! swept too, for linearity. `BENCH_RUNS` (default 15) rounds per size.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn main() {
    // The separate-process baseline: this binary, re-run.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--list-leases") {
        let (files, bytes) = list_and_read(Path::new(&args[i + 1]));
        println!("{files} {bytes}");
        return;
    }
    if !invoked_by_cargo_bench("sweep") {
        return;
    }
    let max = setting("BENCH_DIRS", 10_000, 200).max(4);
    let runs = setting("BENCH_RUNS", 15, 1).max(1);
    let sizes = [max / 4, max / 2, max];
    let tmp = tempdir("cg-bench-sweep-");
    let logs = tmp.path().join("logs");
    let template = real_lease(tmp.path());
    let me = std::env::current_exe().unwrap();

    println!(
        "sweep: `cargo guarded gc --reclaim-below 0%` over N job dirs (89% live, 10% lingering, \
         1% expired and kept warm), {runs} interleaved rounds per N"
    );
    println!("  binary: {BIN}");

    let mut per_dir = Vec::new();
    for &n in &sizes {
        let root = tmp.path().join(format!("root-{n}"));
        let made = Instant::now();
        populate(&root, n, &template, tmp.path());
        println!();
        println!(
            "N = {n}: root {} (created in {:.1} s)",
            root.display(),
            made.elapsed().as_secs_f64()
        );

        // Warm the page cache, and check the sweep classifies everything and removes nothing.
        let check = timed(
            &mut guarded(&root, tmp.path(), ["gc", "--json", "--reclaim-below", "0%"]),
            &logs,
        );
        let report: Value = serde_json::from_str(&check.stdout).unwrap();
        let removed = report["removed"].as_array().map_or(0, Vec::len);
        let kept = report["kept"].as_array().map_or(0, Vec::len);
        assert_eq!(removed, 0, "the sweep removed dirs:\n{}", check.stdout);
        assert_eq!(
            kept, n,
            "the sweep did not classify every dir:\n{}",
            check.stdout
        );
        assert_eq!(
            report["errors"].as_array().map_or(0, Vec::len),
            0,
            "{}",
            check.stdout
        );
        assert_eq!(list_and_read(&root).0, n);

        let mut gc = |_| {
            timed(
                &mut guarded(&root, tmp.path(), ["gc", "--reclaim-below", "0%"]),
                &logs,
            )
            .wall
        };
        let mut in_process = |_| {
            let start = Instant::now();
            let (files, bytes) = list_and_read(&root);
            let wall = start.elapsed();
            assert_eq!(files, n);
            std::hint::black_box(bytes);
            wall
        };
        let mut self_exec = |_| {
            let r = timed(cmd(&me, tmp.path()).arg("--list-leases").arg(&root), &logs);
            assert!(r.stdout.starts_with(&format!("{n} ")), "{}", r.stdout);
            r.wall
        };
        let mut find_cat = |_| {
            let mut c = cmd("find", tmp.path());
            c.arg(&root)
                .args(["-mindepth", "2", "-maxdepth", "2", "-name", "lease.json"])
                .args(["-exec", "cat", "{}", "+"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let start = Instant::now();
            let status = c.status().unwrap();
            let wall = start.elapsed();
            assert!(status.success(), "find failed: {status}");
            wall
        };
        let times = interleaved(
            runs,
            &mut [
                ("gc", &mut gc),
                ("in-process", &mut in_process),
                ("self-exec", &mut self_exec),
                ("find+cat", &mut find_cat),
            ],
        );
        let left = job_dirs(&root).len();
        assert_eq!(left, n, "dirs were removed during the timed sweeps");

        let (gc_t, inproc_t, exec_t, find_t) = (&times[0], &times[1], &times[2], &times[3]);
        println!("{}", summary("cargo guarded gc --reclaim-below 0%", gc_t));
        println!("{}", summary("baseline: list + read, in process", inproc_t));
        println!(
            "{}",
            summary("baseline: list + read, separate process", exec_t)
        );
        println!("{}", summary("baseline: find -exec cat {} +", find_t));
        ratio_line("gc / in-process listing", gc_t, inproc_t, Some(3.0));
        ratio_line("gc / separate-process listing", gc_t, exec_t, Some(3.0));
        ratio_line("gc / find+cat", gc_t, find_t, Some(3.0));
        let us = |t: &[Duration]| median(t).as_secs_f64() * 1e6 / n as f64;
        println!(
            "  per dir: gc {:.1} us, in-process {:.1} us, separate process {:.1} us, find+cat {:.1} us",
            us(gc_t),
            us(inproc_t),
            us(exec_t),
            us(find_t)
        );
        per_dir.push((n, us(gc_t), us(inproc_t)));
        std::fs::remove_dir_all(&root).unwrap();
    }

    println!();
    println!("linearity (median time per dir; constant per-dir cost = linear):");
    for (n, gc, base) in &per_dir {
        println!("  N = {n:>6}: gc {gc:>7.1} us/dir   in-process listing {base:>6.1} us/dir");
    }
    // Least-squares line through the medians: time = fixed + slope * N.
    let pts: Vec<(f64, f64)> = per_dir
        .iter()
        .map(|&(n, gc, _)| (n as f64, gc * n as f64))
        .collect();
    let k = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let sxx: f64 = pts.iter().map(|(x, _)| x * x).sum();
    let sxy: f64 = pts.iter().map(|(x, y)| x * y).sum();
    let slope = (k * sxy - sx * sy) / (k * sxx - sx * sx);
    let fixed = (sy - slope * sx) / k;
    let worst = pts
        .iter()
        .map(|(x, y)| ((y - (fixed + slope * x)) / y).abs())
        .fold(0.0, f64::max);
    println!(
        "  gc fit: {:.1} ms fixed + {slope:.1} us per dir; the medians are within {:.1}% of the line",
        fixed / 1e3,
        worst * 100.0
    );
    let (first, last) = (per_dir[0], per_dir[per_dir.len() - 1]);
    println!(
        "  gc per-dir cost at N={} / at N={}: {:.2}x (1.00 = perfectly linear; process start-up \
         weighs more at small N)",
        last.0,
        first.0,
        last.1 / first.1
    );
}

/// The raw cost the sweep is compared with: list the root, read every `lease.json` once.
fn list_and_read(root: &Path) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0u64;
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        if let Ok(b) = std::fs::read(entry.path().join("lease.json")) {
            files += 1;
            bytes += b.len() as u64;
        }
    }
    (files, bytes)
}

/// A root with `n` job dirs, as `cargo guarded` lays it out.
fn populate(root: &Path, n: usize, template: &Value, tmp: &Path) {
    make_root(root, tmp);
    for i in 0..n {
        let job = format!("gh-acme-widgets-{}-1-test-runner-{}", 9_000_000 + i, i % 16);
        let dir = root.join(&job);
        std::fs::create_dir_all(dir.join("target")).unwrap();
        let lease = if i % 100 == 0 {
            let ws = format!("acme/widgets-{i}");
            derive_lease(
                template,
                &job,
                LeaseState::Expired(Duration::from_secs(7200)),
                Some(&ws),
            )
        } else if i % 10 == 5 {
            derive_lease(
                template,
                &job,
                LeaseState::Lingering(Duration::from_secs(3600)),
                None,
            )
        } else {
            derive_lease(template, &job, LeaseState::Live, None)
        };
        write_lease(&dir, &lease);
    }
}

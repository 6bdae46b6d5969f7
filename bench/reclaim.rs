//! Issue 3's reclaim benchmark: the guard reclaiming a big target dir against `rm -rf` of an
//! identical copy. Goal: <= 1.0x.
//!
//! Every round builds two identical target-dir-like trees (`BENCH_FILES` files, 100 per leaf
//! dir, leaf dirs five levels down as under `target/debug/deps/...`; small files of 0-2 KiB).
//! One is the `target/` of an expired job dir in a root (its lease derived from one written by a
//! real `cargo guarded exec -- true`: released, expired an hour ago) and is reclaimed by
//! `cargo guarded gc --all-expired`; the other sits, with the same `lease.json`, in a plain dir
//! removed by `rm -rf`. The trees are written at the same time (a thread each) and synced to
//! disk before timing, so neither is colder than the other and neither removal races
//! writeback. The order alternates every round. Both figures are whole-process wall times;
//! nothing is subtracted. Building the trees takes most of the bench's time.
//!
//! Scale: `BENCH_FILES` (default 100000) files per tree, `BENCH_ROUNDS` (default 4, an even
//! number so that each goes first equally often) rounds.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const FILES_PER_DIR: usize = 100;
const KINDS: [&str; 4] = ["deps", "build", ".fingerprint", "incremental"];

fn main() {
    if !invoked_by_cargo_bench("reclaim") {
        return;
    }
    let files = env_usize("BENCH_FILES", 100_000).max(FILES_PER_DIR);
    let rounds = env_usize("BENCH_ROUNDS", 4).max(1);
    let tmp = tempdir("cg-bench-reclaim-");
    let logs = tmp.path().join("logs");
    let template = real_lease(tmp.path());
    let root = tmp.path().join("root");
    make_root(&root, tmp.path());

    println!(
        "reclaim: `cargo guarded gc --all-expired` of an expired job dir vs `rm -rf` of an \
         identical copy; {files} files per tree, {rounds} interleaved rounds"
    );
    println!("  binary: {BIN}");
    println!("  root:   {}", root.display());

    let mut gc_times = Vec::new();
    let mut rm_times = Vec::new();
    for r in 0..rounds {
        let job = format!("gh-acme-widgets-{}-1-build-runner-1", 7_000_000 + r);
        let job_dir = root.join(&job);
        let plain = tmp.path().join(format!("plain-{r}"));
        let made = Instant::now();
        make_trees(&[&job_dir.join("target"), &plain.join("target")], files);
        let mut lease = derive_lease(
            &template,
            &job,
            LeaseState::Expired(Duration::from_secs(3600)),
            None,
        );
        let bytes = disk_bytes(&job_dir.join("target"));
        lease["size_bytes"] = bytes.into();
        write_lease(&job_dir, &lease);
        write_lease(&plain, &lease);
        let made_s = made.elapsed().as_secs_f64();
        let synced = Instant::now();
        let _ = cmd("sync", tmp.path()).status();
        assert_eq!(
            disk_bytes(&job_dir),
            disk_bytes(&plain),
            "the copies differ"
        );
        println!(
            "  round {}: two trees of {files} files, {} each (created in {made_s:.1} s, synced in {:.1} s)",
            r + 1,
            human_bytes(disk_bytes(&plain)),
            synced.elapsed().as_secs_f64()
        );

        let gc = |logs: &Path| {
            let run = timed(
                &mut guarded(&root, tmp.path(), ["gc", "--all-expired"]),
                logs,
            );
            assert!(
                !job_dir.exists(),
                "gc did not remove {}:\n{}",
                job_dir.display(),
                run.stderr
            );
            assert!(
                job_dirs(&root.join(".trash")).is_empty(),
                "gc left {} in .trash/",
                job
            );
            assert!(
                run.stderr.contains(&format!("Removed {job}")),
                "{}",
                run.stderr
            );
            run.wall
        };
        let rm = |logs: &Path| {
            let mut c = cmd("rm", tmp.path());
            c.arg("-rf").arg(&plain);
            let wall = timed(&mut c, logs).wall;
            assert!(!plain.exists(), "rm -rf left {}", plain.display());
            wall
        };
        let (g, m) = if r % 2 == 0 {
            let g = gc(&logs);
            (g, rm(&logs))
        } else {
            let m = rm(&logs);
            (gc(&logs), m)
        };
        println!(
            "           gc {}   rm -rf {}   ratio {:.3}x   ({} first)",
            ms(g),
            ms(m),
            g.as_secs_f64() / m.as_secs_f64(),
            if r % 2 == 0 { "gc" } else { "rm" }
        );
        gc_times.push(g);
        rm_times.push(m);
    }

    println!();
    println!("{}", summary("cargo guarded gc --all-expired", &gc_times));
    println!("{}", summary("rm -rf (identical copy)", &rm_times));
    ratio_line("gc / rm -rf", &gc_times, &rm_times, Some(1.0));
}

/// Identical target-dir-like trees at each of `tops`: `files` files, 100 per leaf dir, leaves
/// at `debug/<kind>/<pkg>/<unit>/`, sizes 0..2 KiB. One thread per tree, all at once, so that
/// neither tree is older or colder in the caches than the other.
fn make_trees(tops: &[&Path], files: usize) {
    std::thread::scope(|s| {
        for top in tops {
            s.spawn(move || make_tree(top, files));
        }
    });
}

fn make_tree(top: &Path, files: usize) {
    let content = vec![b'x'; 2048];
    let mut left = files;
    for i in 0..files.div_ceil(FILES_PER_DIR) {
        let leaf = top
            .join("debug")
            .join(KINDS[i % KINDS.len()])
            .join(format!("pkg-{:02}", (i / KINDS.len()) % 16))
            .join(format!("unit-{:04}", i / (KINDS.len() * 16)));
        std::fs::create_dir_all(&leaf).unwrap();
        for j in 0..FILES_PER_DIR.min(left) {
            let len = (i * 31 + j * 17) % content.len();
            std::fs::write(leaf.join(format!("f{j:03}.o")), &content[..len]).unwrap();
        }
        left -= FILES_PER_DIR.min(left);
    }
}

//! Warm starts on a fresh host from an object store. On `fixtures/slow` (a workspace crate that
//! takes seconds to compile), a job on host A builds and runs `store push` to an `fs://` store
//! once; then each round times, in the same checkout path:
//!
//! - restored: a fresh host (a new root), in a fresh clone (every mtime new), with `--store`
//!   and `--restore-mtimes`: it must say it restored and compile nothing;
//! - cold: a fresh host without a store;
//! - s3: as restored, from moto's S3 server on loopback, when `moto_server` is on PATH.
//!
//! Goal: restored / cold <= 0.2 (each store). Also printed: what the push uploaded, and what a second push of
//! the same dir uploads (nothing: objects are addressed by content).
//!
//! Scale: `BENCH_RUNS` (default 5) rounds, the order alternating. Needs the `store` feature
//! (`cargo bench --features store --bench store`).
//!
//! `BENCH_PROJECT=ripgrep`: the same on ripgrep 15.1.0 (`RIPGREP_GIT`, default the local mirror;
//! missing, a clean skip), against `fs://`, with the baseline rust-cache stores: a `tar.zst`
//! archive of the whole target dir (`tar` through `zstd -T0 --long=30`, as actions/cache
//! compresses). Each round (`BENCH_RUNS`, default 1: a cold ripgrep build takes minutes) times a
//! cold build, a restore from the store plus its build, and the archive extracted plus a plain
//! `cargo build` (as rust-cache restores: cargo then judges the fresh clone's mtimes). Printed:
//! restored / cold (goal <= 0.2), the restore alone against the extraction alone (goal <= 1),
//! archive restore / cold; then after a one-line change (`crates/globset/src/lib.rs`: globset and
//! every crate above it rebuild), the bytes a push uploads against a new whole archive's (goal
//! <= 0.3), and the first push's against the first archive's.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn main() {
    if !invoked_by_cargo_bench("store") {
        return;
    }
    if std::env::var("BENCH_PROJECT").is_ok_and(|p| p == "ripgrep") {
        return ripgrep::run();
    }
    let runs = setting("BENCH_RUNS", 5, 1).max(1);
    let tmp = tempdir("cg-bench-store-");
    let logs = tmp.path().join("logs");
    let ws = fixture("slow", &tmp.path().join("ws"));
    let store = format!("fs://{}", tmp.path().join("store").display());
    println!(
        "store: fixtures/slow, {runs} rounds of a fresh host restored from a store (fs://, and S3 on loopback when moto_server is on PATH) against a cold build"
    );
    println!("  binary:    {BIN}");

    let moto = Moto::program().map(|p| Moto::start(&p, &tmp.path().join("moto.log")));
    let s3 = moto.as_ref().map(s3_vars);
    let job = |root: &Path, id: &str, args: &[&str], how: How| {
        let mut c = guarded(root, &ws, ["--job-id", id]);
        match how {
            How::Fs => {
                c.env("CARGO_GUARDED_STORE", &store);
            }
            How::S3 => {
                c.envs(s3.iter().flatten().map(|(k, v)| (k, v)));
            }
            How::Cold => {}
        }
        c.args(args);
        c
    };
    let host_a = tmp.path().join("host-a");
    let first = timed(&mut job(&host_a, "a", &["build"], How::Cold), &logs);
    assert!(first.compiled(), "the first build compiled nothing?");
    let mut ways = vec![How::Fs, How::Cold];
    if s3.is_some() {
        ways.push(How::S3);
    } else {
        println!("  (no moto_server on PATH: the S3 variant is left out)");
    }
    for &how in ways.iter().filter(|h| **h != How::Cold) {
        let push = timed(&mut job(&host_a, "a", &["store", "push"], how), &logs);
        println!("  push:   {} ({})", push.stderr.trim(), ms(push.wall));
        let again = timed(&mut job(&host_a, "a", &["store", "push"], how), &logs);
        assert!(again.stderr.contains(" 0 of "), "{}", again.stderr);
        println!("  again:  {} ({})", again.stderr.trim(), ms(again.wall));
    }

    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); ways.len()];
    for r in 0..runs {
        let mut order: Vec<usize> = (0..ways.len()).collect();
        order.rotate_left(r % ways.len());
        for i in order {
            let how = ways[i];
            fresh_clone(&ws, &tmp.path().join("clone.tmp"));
            let root = tmp.path().join(format!("host-{r}-{i}"));
            let args = ["--restore-mtimes", "build"];
            let run = timed(&mut job(&root, "b", &args, how), &logs);
            if how == How::Cold {
                assert!(run.compiled(), "the cold build compiled nothing");
            } else {
                assert!(
                    run.stderr.contains("Restored") && !run.compiled(),
                    "the restored build compiled, or did not restore:\n{}",
                    run.stderr
                );
            }
            times[i].push(run.wall);
            std::fs::remove_dir_all(&root).unwrap();
        }
    }
    println!("{}", summary("fresh host, restored from fs://", &times[0]));
    println!("{}", summary("fresh host, cold", &times[1]));
    if ways.len() > 2 {
        println!(
            "{}",
            summary("fresh host, restored from S3 (moto)", &times[2])
        );
    }
    ratio_line(
        "restored from fs:// / cold",
        &times[0],
        &times[1],
        Some(0.2),
    );
    if ways.len() > 2 {
        ratio_line("restored from S3 / cold", &times[2], &times[1], Some(0.2));
    }
    drop(moto);
}

#[derive(Clone, Copy, PartialEq)]
enum How {
    Fs,
    S3,
    Cold,
}

/// What a job needs to reach `moto` as its store.
fn s3_vars(moto: &Moto) -> Vec<(String, String)> {
    [
        ("CARGO_GUARDED_STORE", "s3://cache/bench".to_owned()),
        ("AWS_ACCESS_KEY_ID", "bench".into()),
        ("AWS_SECRET_ACCESS_KEY", "bench".into()),
        ("AWS_REGION", "us-east-1".into()),
        (
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", moto.port),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The checkout replaced by a copy of itself: the same path and content, every mtime new.
fn fresh_clone(ws: &Path, tmp: &Path) {
    copy_dir(ws, tmp);
    std::fs::remove_dir_all(ws).unwrap();
    std::fs::rename(tmp, ws).unwrap();
}

/// `BENCH_PROJECT=ripgrep`: the store against a whole-dir `tar.zst` archive on ripgrep 15.1.0.
mod ripgrep {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::How;
    use super::common::*;

    const DEFAULT_GIT: &str = "/work/.mirror/BurntSushi+ripgrep/repo";
    /// actions/cache's compression (rust-cache stores through it).
    const ZSTD: &str = "zstd -T0 --long=30";
    const UNZSTD: &str = "zstd -d --long=30";

    /// Bytes under `dir` (apparent sizes, every file).
    fn bytes_under(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .map(|e| e.unwrap())
            .map(|e| {
                let t = e.file_type().unwrap();
                if t.is_dir() {
                    bytes_under(&e.path())
                } else if t.is_file() {
                    e.metadata().unwrap().len()
                } else {
                    0
                }
            })
            .sum()
    }

    /// `tar` through zstd, timed; panics with the command on failure.
    fn tar(args: &[&str], logs: &Path) -> Duration {
        let mut c = std::process::Command::new("tar");
        c.args(args);
        timed(&mut c, logs).wall
    }

    /// The archive of `job_dir`'s target dir at `to`: its time and size.
    fn archive(job_dir: &Path, to: &Path, logs: &Path) -> (Duration, u64) {
        let took = tar(
            &[
                "-I",
                ZSTD,
                "-cf",
                to.to_str().unwrap(),
                "-C",
                job_dir.to_str().unwrap(),
                "target",
            ],
            logs,
        );
        (took, std::fs::metadata(to).unwrap().len())
    }

    /// The seconds a `Restored … in 4.1s)` line states.
    fn restore_secs(stderr: &str) -> f64 {
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with("Restored"))
            .unwrap_or_else(|| panic!("no Restored line:\n{stderr}"));
        let at = line.rfind(" in ").unwrap() + 4;
        line[at..]
            .trim_end_matches(')')
            .trim_end_matches('s')
            .parse()
            .unwrap()
    }

    /// The checkout replaced by a copy of itself (`cp -R`: ripgrep's tree has symlinks), every
    /// mtime new.
    fn fresh_clone(ws: &Path, tmp: &Path) {
        let copied = std::process::Command::new("cp")
            .arg("-R")
            .arg(ws)
            .arg(tmp)
            .status()
            .unwrap();
        assert!(copied.success(), "cp -R failed");
        std::fs::remove_dir_all(ws).unwrap();
        std::fs::rename(tmp, ws).unwrap();
    }

    fn secs(d: Duration) -> String {
        format!("{:.1}s", d.as_secs_f64())
    }

    // Long: one scenario read top to bottom: A's cold build and push, the rounds, the next
    // commit's push; splitting it would thread a dozen paths through every part.
    pub fn run() {
        let repo = std::env::var("RIPGREP_GIT").unwrap_or_else(|_| DEFAULT_GIT.to_owned());
        if !Path::new(&repo).exists() {
            println!("store (ripgrep): skipped: no ripgrep git dir at {repo} (set RIPGREP_GIT)");
            return;
        }
        let runs = setting("BENCH_RUNS", 1, 1).max(1);
        let tmp = tempdir("cg-bench-store-rg-");
        let base = tmp.path();
        let logs = base.join("logs");
        let ws = base.join("ws");
        history::checkout(&repo, "15.1.0", &ws);
        let store_dir = base.join("store");
        let store = format!("fs://{}", store_dir.display());
        println!(
            "store (ripgrep 15.1.0): {runs} round(s) of a fresh host: cold, restored from fs://, \
             and a whole-target-dir tar.zst ({ZSTD}) extracted then `cargo build`"
        );
        println!("  binary:    {BIN}");
        let moto = Moto::program().map(|p| Moto::start(&p, &base.join("moto.log")));
        let s3 = moto.as_ref().map(super::s3_vars);
        let job = |root: &Path, id: &str, args: &[&str], how: How| {
            let mut c = guarded(root, &ws, ["--job-id", id]);
            // A restore takes at most the free space above the sweep line.
            c.env("CARGO_GUARDED_MIN_FREE", "0")
                .env("CARGO_GUARDED_RECLAIM_BELOW", "0%");
            match how {
                How::Fs => {
                    c.env("CARGO_GUARDED_STORE", &store);
                }
                How::S3 => {
                    c.envs(s3.iter().flatten().map(|(k, v)| (k, v)));
                }
                How::Cold => {}
            }
            c.args(args);
            c
        };
        let host_a = base.join("host-a");
        let a_dir = host_a.join("a");
        let first = timed(&mut job(&host_a, "a", &["build"], How::Cold), &logs);
        assert!(first.compiled(), "A's cold build compiled nothing?");
        println!("  A cold build:            {}", secs(first.wall));
        let push = timed(&mut job(&host_a, "a", &["store", "push"], How::Fs), &logs);
        let pushed = bytes_under(&store_dir.join("objects"));
        if s3.is_some() {
            let p = timed(&mut job(&host_a, "a", &["store", "push"], How::S3), &logs);
            println!(
                "  A push to S3 (moto):     {} ({})",
                p.stderr.trim(),
                secs(p.wall)
            );
        } else {
            println!("  (no moto_server on PATH: the S3 variant is left out)");
        }
        println!(
            "  A push:                  {} ({})",
            push.stderr.trim(),
            secs(push.wall)
        );
        let tarball = base.join("target.tar.zst");
        let (tar_took, tar_bytes) = archive(&a_dir, &tarball, &logs);
        println!(
            "  A archive:               {} in {} (target dir {})",
            human_bytes(tar_bytes),
            secs(tar_took),
            human_bytes(bytes_under(&a_dir.join("target")))
        );

        // A's checkout, mtimes kept, for its next commit after the rounds' fresh clones.
        let a_ws = base.join("a-ws");
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(&ws)
            .arg(&a_ws)
            .status()
            .unwrap();
        assert!(copied.success(), "cp -a failed");

        let (mut cold, mut restored, mut pulled, mut unpacked, mut from_archive) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut restored_s3, mut pulled_s3) = (Vec::new(), Vec::new());
        for r in 0..runs {
            // Each variant on its own fresh host: on one, the warm job would seed from the cold.
            let root = base.join(format!("host-{r}-cold"));
            fresh_clone(&ws, &base.join("clone.tmp"));
            let c = timed(&mut job(&root, "cold", &["build"], How::Cold), &logs);
            assert!(c.compiled(), "the cold build compiled nothing");
            cold.push(c.wall);

            std::fs::remove_dir_all(&root).unwrap();
            let root = base.join(format!("host-{r}-warm"));
            fresh_clone(&ws, &base.join("clone.tmp"));
            let args = ["--restore-mtimes", "build"];
            let w = timed(&mut job(&root, "warm", &args, How::Fs), &logs);
            assert!(
                w.stderr.contains("Restored"),
                "did not restore:\n{}",
                w.stderr
            );
            restored.push(w.wall);
            pulled.push(Duration::from_secs_f64(restore_secs(&w.stderr)));
            let compiled = w
                .stderr
                .lines()
                .filter(|l| l.contains("Compiling "))
                .count();
            println!(
                "  round {r}: cold {}, restored {} ({} units compiled)",
                secs(c.wall),
                secs(w.wall),
                compiled
            );

            if s3.is_some() {
                std::fs::remove_dir_all(&root).unwrap();
                fresh_clone(&ws, &base.join("clone.tmp"));
                let w = timed(&mut job(&root, "warm", &args, How::S3), &logs);
                assert!(
                    w.stderr.contains("Restored"),
                    "did not restore:\n{}",
                    w.stderr
                );
                restored_s3.push(w.wall);
                pulled_s3.push(Duration::from_secs_f64(restore_secs(&w.stderr)));
                println!("           restored from S3 (moto) {}", secs(w.wall));
            }

            // rust-cache's way: the archive into a new target dir, then a plain cargo build
            // in a fresh clone (mtimes all new: cargo decides what it rebuilds).
            fresh_clone(&ws, &base.join("clone.tmp"));
            let into = base.join(format!("archive-{r}"));
            std::fs::create_dir_all(&into).unwrap();
            let x = tar(
                &[
                    "-I",
                    UNZSTD,
                    "-xf",
                    tarball.to_str().unwrap(),
                    "-C",
                    into.to_str().unwrap(),
                ],
                &logs,
            );
            let mut build = cmd("cargo", &ws);
            build
                .args(["build"])
                .env("CARGO_TARGET_DIR", into.join("target"));
            let start = Instant::now();
            let b = timed(&mut build, &logs);
            let units = b
                .stderr
                .lines()
                .filter(|l| l.contains("Compiling "))
                .count();
            unpacked.push(x);
            from_archive.push(x + start.elapsed());
            println!(
                "           archive: extracted in {}, then cargo build {} ({units} units compiled)",
                secs(x),
                secs(b.wall)
            );
            std::fs::remove_dir_all(&into).unwrap();
            std::fs::remove_dir_all(&root).unwrap();
        }
        println!("{}", summary("fresh host, cold", &cold));
        println!(
            "{}",
            summary("fresh host, restored from fs:// + build", &restored)
        );
        println!("{}", summary("  of which the restore", &pulled));
        println!(
            "{}",
            summary("fresh host, archive extracted + build", &from_archive)
        );
        println!("{}", summary("  of which the extraction", &unpacked));
        ratio_line("restored + build / cold", &restored, &cold, Some(0.2));
        ratio_line("archive + build / cold", &from_archive, &cold, None);
        ratio_line("restore / extraction", &pulled, &unpacked, Some(1.0));
        if !restored_s3.is_empty() {
            println!(
                "{}",
                summary("fresh host, restored from S3 (moto) + build", &restored_s3)
            );
            println!("{}", summary("  of which the restore", &pulled_s3));
            ratio_line(
                "restored from S3 + build / cold",
                &restored_s3,
                &cold,
                Some(0.2),
            );
            ratio_line(
                "restore from S3 / extraction",
                &pulled_s3,
                &unpacked,
                Some(1.0),
            );
        }
        ratio_line(
            "restored + build / archive + build",
            &restored,
            &from_archive,
            None,
        );

        // The next commit: one line changed in globset; A builds it in its own dir, in its own
        // checkout (put back with its mtimes), and pushes.
        std::fs::remove_dir_all(&ws).unwrap();
        std::fs::rename(&a_ws, &ws).unwrap();
        let lib = ws.join("crates/globset/src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap();
        std::fs::write(
            &lib,
            text + "\n#[doc(hidden)]\npub fn bench_next_commit() {}\n",
        )
        .unwrap();
        let again = timed(&mut job(&host_a, "a", &["build"], How::Cold), &logs);
        let units = again
            .stderr
            .lines()
            .filter(|l| l.contains("Compiling "))
            .count();
        let before = bytes_under(&store_dir.join("objects"));
        let push2 = timed(&mut job(&host_a, "a", &["store", "push"], How::Fs), &logs);
        let uploaded = bytes_under(&store_dir.join("objects")) - before;
        let (_, tar2_bytes) = archive(&a_dir, &base.join("next.tar.zst"), &logs);
        println!(
            "  next commit (one line in globset): {units} units rebuilt in {}",
            secs(again.wall)
        );
        println!(
            "  next push:               {} ({})",
            push2.stderr.trim(),
            secs(push2.wall)
        );
        let verdict = |r: f64, g: f64| if r <= g { "met" } else { "NOT met" };
        let next = uploaded as f64 / tar2_bytes as f64;
        println!(
            "  next commit's upload / new archive       {next:>6.3}x   ({} / {})   goal <= 0.30: {}",
            human_bytes(uploaded),
            human_bytes(tar2_bytes),
            verdict(next, 0.3)
        );
        let first_ratio = pushed as f64 / tar_bytes as f64;
        println!(
            "  first push's upload / first archive      {first_ratio:>6.3}x   ({} zstd objects / {} tar.zst)",
            human_bytes(pushed),
            human_bytes(tar_bytes)
        );
    }
}

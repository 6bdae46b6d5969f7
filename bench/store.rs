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

mod common;

use std::path::Path;
use std::time::Duration;

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

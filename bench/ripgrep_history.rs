//! Issue 9's benchmark on a real history: ripgrep's last `BENCH_JOBS` (default 8) commits that
//! changed `Cargo.lock` between tags 14.1.1 and 15.1.0, each built by a new job
//! (`cargo guarded build`, `--linger 0s`) that adopts the last one's dir, in two roots: pruned
//! (the defaults: K = 3 and the superseded rule) and never pruned (`--no-prune
//! --max-warm-size off`). After each job: each root's job dir against a fresh build of the last
//! commit (du-style bytes; goal <= 1.3x and flat), and the units cargo compiled in each (goal:
//! the same). A job's size includes what it replaced, which goes when the next job adopts the
//! dir: a last no-op job (the last commit again) shows the dir after that. Crates come from the
//! registry (cached or fetched).
//!
//! The repository is read from `RIPGREP_GIT` (a git dir, bare or not; default
//! `/work/.mirror/BurntSushi+ripgrep/repo`, at full scale only: a smoke run without
//! `RIPGREP_GIT` skips, and so does any run without the repository); each commit is `git archive`d into one workspace
//! path, emptied in between, so every job is the same workspace at another commit.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const DEFAULT_GIT: &str = "/work/.mirror/BurntSushi+ripgrep/repo";

fn git(repo: &str) -> Command {
    let mut c = Command::new("git");
    c.arg("--git-dir").arg(repo);
    c
}

/// The last `n` commits that changed `Cargo.lock` from 14.1.1 to 15.1.0, oldest first.
fn commits(repo: &str, n: usize) -> Vec<String> {
    let out = git(repo)
        .args([
            "log",
            "--reverse",
            "--format=%H %s",
            "14.1.1..15.1.0",
            "--",
            "Cargo.lock",
        ])
        .output()
        .expect("failed to run git");
    assert!(out.status.success(), "git log failed: {out:?}");
    let all: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    all[all.len().saturating_sub(n)..].to_vec()
}

/// Make `ws` hold exactly `commit`'s tree.
fn checkout(repo: &str, commit: &str, ws: &Path) {
    let _ = std::fs::remove_dir_all(ws);
    std::fs::create_dir_all(ws).unwrap();
    let archive = git(repo)
        .args(["archive", "--format=tar", commit])
        .output()
        .expect("failed to run git archive");
    assert!(archive.status.success(), "git archive {commit} failed");
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(ws)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("failed to run tar");
    use std::io::Write;
    tar.stdin
        .take()
        .unwrap()
        .write_all(&archive.stdout)
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar -x failed");
}

fn main() {
    if !invoked_by_cargo_bench("ripgrep_history") {
        return;
    }
    let repo = match std::env::var("RIPGREP_GIT") {
        Ok(repo) => repo,
        // Even at 2 jobs the history makes three cold ripgrep builds (minutes): a smoke run takes
        // it only when asked to.
        Err(_) if smoke() => {
            println!(
                "ripgrep_history: skipped in a smoke run: RIPGREP_GIT is not set (the default \
                 mirror {DEFAULT_GIT} is used at full scale only)"
            );
            return;
        }
        Err(_) => DEFAULT_GIT.to_owned(),
    };
    if !Path::new(&repo).exists() {
        println!("ripgrep_history: skipped: no ripgrep git dir at {repo} (set RIPGREP_GIT)");
        return;
    }
    let commits = commits(&repo, setting("BENCH_JOBS", 8, 2).max(2));
    let tmp = tempdir("cg-bench-rg-");
    let logs = tmp.path().join("logs");
    let ws = tmp.path().join("ripgrep");
    println!(
        "ripgrep_history: {} commits changing Cargo.lock, 14.1.1..15.1.0, one job each",
        commits.len()
    );
    println!("  binary:    {BIN}");

    let (last, _) = commits.last().unwrap().split_once(' ').unwrap();
    checkout(&repo, last, &ws);
    let fresh_dir = tmp.path().join("fresh");
    let mut c = cmd("cargo", &ws);
    c.args(["build", "--target-dir"]).arg(&fresh_dir);
    let run = timed(&mut c, &logs);
    let fresh = disk_bytes(&fresh_dir);
    let _ = std::fs::remove_dir_all(&fresh_dir);
    println!(
        "  fresh build of {}: {} in {:.0} s",
        &last[..10],
        human_bytes(fresh),
        run.wall.as_secs_f64()
    );

    let variants: [(&str, &[&str]); 2] = [
        ("pruned", &[]),
        ("never", &["--no-prune", "--max-warm-size", "off"]),
    ];
    println!(
        "  {:>3}  {:<10}  {:>14}  {:>14}  {:>16}  {:>16}",
        "job", "commit", "pruned / fresh", "never / fresh", "compiled pruned", "compiled never"
    );
    let mut compiled = [0usize; 2];
    for (i, line) in commits.iter().enumerate() {
        let (commit, _) = line.split_once(' ').unwrap();
        checkout(&repo, commit, &ws);
        let mut cells = Vec::new();
        let mut units = Vec::new();
        for (v, (name, extra)) in variants.iter().enumerate() {
            let root = tmp.path().join(format!("root-{name}"));
            let id = format!("job-{}", i + 1);
            let mut c = guarded(&root, &ws, ["--no-seed", "--job-id", &id, "--linger", "0s"]);
            c.env("RUNNER_NAME", "bench").args(*extra).arg("build");
            let before = dir_identities(&root);
            let run = timed(&mut c, &logs);
            // Each job after the first takes the last one's dir (`status --json`, the dir's
            // identity): the figures are about warm reuse.
            let how = origin(&root, &id, &before, &logs);
            if i > 0 {
                assert_eq!(
                    how,
                    Origin::Adopted(format!("job-{i}")),
                    "{name} {id}:\n{}",
                    run.stderr
                );
            }
            let n = run
                .stderr
                .lines()
                .filter(|l| l.trim_start().starts_with("Compiling "))
                .count();
            compiled[v] += n;
            units.push(n);
            let size = disk_bytes(&root.join(&id).join("target"));
            cells.push(size as f64 / fresh as f64);
        }
        println!(
            "  {:>3}  {:<10}  {:>13.2}x  {:>13.2}x  {:>16}  {:>16}",
            i + 1,
            &commit[..10],
            cells[0],
            cells[1],
            units[0],
            units[1]
        );
    }
    println!(
        "  units compiled over {} jobs: pruned {}, never pruned {} (goal: the same)",
        commits.len(),
        compiled[0],
        compiled[1]
    );
    // Pruning happens at adoption: what the last job replaced goes when the next job adopts.
    let root = tmp.path().join("root-pruned");
    let id = format!("job-{}", commits.len() + 1);
    let mut c = guarded(&root, &ws, ["--no-seed", "--job-id", &id, "--linger", "0s"]);
    c.env("RUNNER_NAME", "bench").arg("build");
    let run = timed(&mut c, &logs);
    let ratio = disk_bytes(&root.join(&id).join("target")) as f64 / fresh as f64;
    println!(
        "  re-run of the last commit (adopts, prunes what the last job replaced): pruned / fresh \
         {ratio:.2}x (goal <= 1.3x: {}), compiled anything: {}",
        if ratio <= 1.3 { "met" } else { "NOT met" },
        run.compiled()
    );
}

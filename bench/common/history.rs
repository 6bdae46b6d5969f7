//! Replaying a real project's history, one job per commit, in two roots side by side: pruned
//! (the defaults: K = 3, the superseded rule, the size budget, pruning at release) and never
//! pruned (`--no-prune --warm-budget off --max-warm-size off`). Each commit is `git archive`d
//! into one workspace path, emptied in between, so every job is the same workspace at another
//! commit; each job (`cargo guarded build`, `--linger 0s`) adopts the last one's dir.
//!
//! After every job (so after its release): the pruned dir against a fresh build of that same
//! commit (du-style bytes, each inode once; goal <= 1.3x after every job, issue 19), and the
//! units cargo compiled in each root (goal: the same). Shared by `ripgrep_history` and
//! `fd_history`. `CARGO_GUARDED_BENCH_SMOKE=1` replays the last two commits only (a check that
//! the bench runs, not a measurement); a missing repository is a clean skip.

use std::path::Path;
use std::process::Command;

use super::*;

/// One project's history.
pub struct History<'a> {
    /// The bench's name (`fd_history`).
    pub name: &'a str,
    /// The variable naming the git dir (`FD_GIT`), and its default (a local mirror).
    pub git_var: &'a str,
    pub default_git: &'a str,
    /// The revision range whose `Cargo.lock` commits are replayed (`v10.0.0..v10.3.0`).
    pub range: &'a str,
    /// Which of those commits: the last N, or N spread evenly over the range (first and last
    /// included, so a change early in the range, such as a renamed dependency, is replayed).
    pub pick: Pick,
    /// `--first-parent`: the commits of the main line only (merges stand for their branches).
    pub first_parent: bool,
}

#[derive(Clone, Copy)]
pub enum Pick {
    Last,
    Spread,
}

fn git(repo: &str) -> Command {
    let mut c = Command::new("git");
    c.arg("--git-dir").arg(repo);
    c
}

/// `n` commits of the range that changed `Cargo.lock`, oldest first, as `<hash> <subject>`.
fn commits(h: &History<'_>, repo: &str, n: usize) -> Vec<String> {
    let mut c = git(repo);
    c.args(["log", "--reverse", "--format=%H %s"]);
    if h.first_parent {
        c.arg("--first-parent");
    }
    let out = c
        .args([h.range, "--", "Cargo.lock"])
        .output()
        .expect("failed to run git");
    assert!(out.status.success(), "git log failed: {out:?}");
    let all: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    if all.len() <= n {
        return all;
    }
    match h.pick {
        Pick::Last => all[all.len() - n..].to_vec(),
        Pick::Spread => (0..n)
            .map(|i| all[i * (all.len() - 1) / (n - 1)].clone())
            .collect(),
    }
}

/// Make `ws` hold exactly `commit`'s tree.
pub fn checkout(repo: &str, commit: &str, ws: &Path) {
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

fn compiled_units(run: &Run) -> usize {
    run.stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .count()
}

/// Replay `h` and print, per job, each root against a fresh build of that commit and the units
/// compiled; then the goals, met or not (printed, never failed).
pub fn replay(h: &History<'_>) {
    if !invoked_by_cargo_bench(h.name) {
        return;
    }
    // A smoke run replays real crates.io projects only when asked to (a few cold builds of
    // ripgrep or fd take minutes): it says so and skips.
    if smoke() && std::env::var_os(h.git_var).is_none() {
        println!(
            "{}: skipped in a smoke run: set {} to replay the history",
            h.name, h.git_var
        );
        return;
    }
    let repo = std::env::var(h.git_var).unwrap_or_else(|_| h.default_git.to_owned());
    if !Path::new(&repo).exists() {
        println!(
            "{}: skipped: no git dir at {repo} (set {})",
            h.name, h.git_var
        );
        return;
    }
    let smoke = smoke();
    let n = setting("BENCH_JOBS", 8, 2).max(2);
    let commits = commits(h, &repo, n);
    let tmp = tempdir("cg-bench-history-");
    let logs = tmp.path().join("logs");
    let ws = tmp.path().join("ws");
    println!(
        "{}: {} commits changing Cargo.lock in {}, one job each{}",
        h.name,
        commits.len(),
        h.range,
        if smoke { " (smoke: the last two)" } else { "" }
    );
    println!("  binary:    {BIN}");
    println!(
        "  {:>3}  {:<10}  {:>10}  {:>14}  {:>14}  {:>15}  {:>14}",
        "job",
        "commit",
        "fresh",
        "pruned / fresh",
        "never / fresh",
        "compiled pruned",
        "compiled never"
    );
    let variants: [(&str, &[&str]); 2] = [
        ("pruned", &[]),
        (
            "never",
            &[
                "--no-prune",
                "--warm-budget",
                "off",
                "--max-warm-size",
                "off",
            ],
        ),
    ];
    let mut compiled = [0usize; 2];
    let mut worst: f64 = 0.0;
    for (i, line) in commits.iter().enumerate() {
        let (commit, _) = line.split_once(' ').unwrap();
        checkout(&repo, commit, &ws);
        let fresh = fresh_build(&ws, &tmp.path().join("fresh"), &logs);
        let mut ratios = [0.0; 2];
        let mut units = [0usize; 2];
        for (v, (name, extra)) in variants.iter().enumerate() {
            let root = tmp.path().join(format!("root-{name}"));
            let id = format!("job-{}", i + 1);
            let mut c = guarded(&root, &ws, ["--job-id", &id, "--linger", "0s", "--no-seed"]);
            c.env("RUNNER_NAME", "bench").args(*extra).arg("build");
            let run = timed(&mut c, &logs);
            units[v] = compiled_units(&run);
            compiled[v] += units[v];
            // After the job's release (the command returned): what the dir holds until the
            // next job adopts it.
            ratios[v] = disk_bytes(&root.join(&id).join("target")) as f64 / fresh as f64;
        }
        worst = worst.max(ratios[0]);
        println!(
            "  {:>3}  {:<10}  {:>10}  {:>13.2}x  {:>13.2}x  {:>15}  {:>14}",
            i + 1,
            &commit[..10],
            human_bytes(fresh),
            ratios[0],
            ratios[1],
            units[0],
            units[1]
        );
    }
    println!(
        "  largest pruned / fresh after a job's release: {worst:.2}x (goal <= 1.3x: {})",
        if worst <= 1.3 { "met" } else { "NOT met" }
    );
    println!(
        "  units compiled over {} jobs: pruned {}, never pruned {} (goal: the same: {})",
        commits.len(),
        compiled[0],
        compiled[1],
        if compiled[0] == compiled[1] {
            "met"
        } else {
            "NOT met"
        }
    );
    let root = tmp.path().join("root-pruned");
    let id = format!("job-{}", commits.len() + 1);
    let mut c = guarded(&root, &ws, ["--job-id", &id, "--linger", "0s", "--no-seed"]);
    c.env("RUNNER_NAME", "bench").arg("build");
    let run = timed(&mut c, &logs);
    println!(
        "  re-run of the last commit in the pruned dir: compiled anything: {} (goal: no)",
        run.compiled()
    );
}

/// A fresh `cargo build` of `ws` into `dir` (removed after): its size, each inode once.
fn fresh_build(ws: &Path, dir: &Path, logs: &Path) -> u64 {
    let _ = std::fs::remove_dir_all(dir);
    let mut c = cmd("cargo", ws);
    c.args(["build", "--target-dir"]).arg(dir);
    timed(&mut c, logs);
    let size = disk_bytes(dir);
    let _ = std::fs::remove_dir_all(dir);
    size
}

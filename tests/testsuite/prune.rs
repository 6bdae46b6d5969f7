//! Warm dirs that stay small: at adoption, units no job used in the last K jobs are
//! pruned; live ones (two versions of one crate, other job shapes within K) never are; where
//! access times are not recorded the run says so and only the size backstop applies.
//!
//! Seeding is off here (`CARGO_GUARDED_SEED=0`): pruning happens along adoption chains, and with
//! seeding on the freshest finished dir of a workspace is seeded from, not adopted.

use crate::common::mounts;
use crate::common::moving;
use crate::common::tmpfs;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use moving::{set_dep_name, set_dep_version, set_edit};
use tmpfs::Tmpfs;

/// One CI job on runner `r`: its dir expires at release, so the next job adopts it.
fn job(env: &Env, ws: &Path, id: &str, extra: &[&str], args: &[&str]) -> Output {
    let out = output(&mut job_cmd(env, ws, id, extra, args));
    assert_success(&out);
    out
}

/// The command `job` runs, for tests that add to its environment.
fn job_cmd(env: &Env, ws: &Path, id: &str, extra: &[&str], args: &[&str]) -> Command {
    let mut cmd = env.cmd(ws);
    cmd.env("CARGO_GUARDED_SEED", "0");
    cmd.env("RUNNER_NAME", "r")
        .env("CARGO_LLVM_COV_SETUP", "no")
        .args(["guarded", "--job-id", id, "--linger", "0s"])
        .args(extra)
        .args(args);
    cmd
}

/// Bytes allocated under `dir`, each inode once (cargo hard-links uplifted binaries).
fn du(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if seen.insert(m.ino()) {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// A fresh `cargo build` of the workspace's current state, outside the root.
fn fresh_size(env: &Env, ws: &Path, name: &str) -> u64 {
    let dir = env.path().join(name);
    let out = env.shell(
        ws,
        &format!("cargo build -q --target-dir '{}'", dir.display()),
    );
    assert_success(&out);
    du(&dir)
}

fn target(env: &Env, id: &str) -> PathBuf {
    env.root.join(id).join("target")
}

/// Units of `pkg` in the job dir's `debug/`.
fn fingerprints(env: &Env, id: &str, pkg: &str) -> usize {
    units_of(env, id, "debug", pkg)
}

/// Ten jobs, the path dependency's version (so its hash, and its dependents') moving on each:
/// the dir stays flat and, with K = 1, within 1.3x a fresh build; the two units of `feat` (a
/// normal dependency with a feature and a build-dependency without) are both kept; the last
/// state re-run compiles nothing.
#[test]
fn a_moving_dependency_does_not_grow_the_dir() {
    for (k, bound) in [("1", 1.3), ("3", 2.0)] {
        let env = Env::new();
        let ws = env.fixture("moving");
        let extra = ["--prune-after", k];
        let mut sizes = Vec::new();
        for i in 1..=10 {
            set_dep_version(&ws, &format!("1.0.{i}"));
            let out = job(&env, &ws, &format!("job-{i}"), &extra, &["build"]);
            if i > 1 {
                assert!(
                    stderr(&out)
                        .to_lowercase()
                        .contains(&format!("adopted job-{}", i - 1)),
                    "{}",
                    describe(&out)
                );
            }
            sizes.push(du(&target(&env, &format!("job-{i}"))));
        }
        let fresh = fresh_size(&env, &ws, "fresh");
        let last = *sizes.last().unwrap();
        let ratio = last as f64 / fresh as f64;
        assert!(
            ratio <= bound,
            "K={k}: warm/fresh = {ratio:.2} > {bound} (sizes {sizes:?}, fresh {fresh})"
        );
        // Flat: the last job's dir is no larger than the one K+2 jobs into the history.
        let settled = sizes[k.parse::<usize>().unwrap() + 2];
        assert!(
            last as f64 <= settled as f64 * 1.05,
            "K={k}: the dir still grows: {sizes:?}"
        );
        assert_eq!(
            fingerprints(&env, "job-10", "feat"),
            2,
            "both feat units kept"
        );
        let again = job(&env, &ws, "job-11", &extra, &["build"]);
        assert!(!compiled_anything(&again), "{}", describe(&again));
    }
}

/// A dependency renamed in every job (`package = "…"`, as a history swapping
/// `jemalloc-sys` for `tikv-jemalloc-sys` does) has another identity each time, so nothing
/// replaces the old units and the K rule alone kept three jobs of them (2.25x a fresh build at
/// the peak). With the size budget, the dir after every job's release is within 1.3x a fresh
/// build of that job's state, what the job used stays (a re-run compiles nothing), and the
/// budget says it pruned.
#[test]
fn a_dependency_renamed_in_every_job_stays_within_the_budget() {
    let env = Env::new();
    let ws = env.fixture("moving");
    let mut ratios = Vec::new();
    let mut said = Vec::new();
    for i in 1..=8 {
        set_dep_name(&ws, &format!("dep{i}"));
        let out = job(&env, &ws, &format!("job-{i}"), &[], &["build"]);
        let size = du(&target(&env, &format!("job-{i}")));
        let fresh = fresh_size(&env, &ws, &format!("fresh-{i}"));
        ratios.push(size as f64 / fresh as f64);
        said.push(stderr(&out));
    }
    let peak = ratios.iter().copied().fold(0.0, f64::max);
    eprintln!("warm/fresh after each release: {ratios:.2?}");
    assert!(peak <= 1.3, "warm/fresh after each release: {ratios:.2?}");
    // `status` shows the dir against its budget, within it.
    let status = env.status();
    let entry = status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["job_id"] == "job-8")
        .unwrap_or_else(|| panic!("{status}"));
    let b = &entry["budget"];
    assert!(b["size"].as_u64() <= b["budget"].as_u64(), "{status}");
    assert_eq!(b["over"], false, "{status}");
    assert_eq!(entry["pruned"]["at_release"], true, "{status}");
    let table = stdout(&env.ok(&ws, ["status"]));
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains("BUDGET")),
        "{table}"
    );
    // Once the renamed-away units add up, each release says what the budget removed.
    for (i, err) in said.iter().enumerate().skip(2) {
        assert!(
            err.contains("over budget") && err.contains("at release"),
            "job {} pruned nothing for the budget:\n{err}",
            i + 1
        );
    }
    assert_eq!(fingerprints(&env, "job-8", "dep8"), 1, "the live dep kept");
    let again = job(&env, &ws, "job-9", &[], &["build"]);
    assert!(!compiled_anything(&again), "{}", describe(&again));
}

/// Jobs `job-1` … `job-N` of `build`, `dep` at version 1.0.i in job i; each job dir's size.
fn moving_history(env: &Env, ws: &Path, n: usize, extra: &[&str]) -> Vec<u64> {
    let mut sizes = Vec::new();
    for i in 1..=n {
        set_dep_version(ws, &format!("1.0.{i}"));
        job(env, ws, &format!("job-{i}"), extra, &["build"]);
        sizes.push(du(&target(env, &format!("job-{i}"))));
    }
    sizes
}

/// Without pruning the same history grows: the test above would fail on the old code.
#[test]
fn without_pruning_the_history_grows() {
    let env = Env::new();
    let ws = env.fixture("moving");
    let sizes = moving_history(&env, &ws, 6, &["--no-prune", "--max-warm-size", "off"]);
    assert!(
        sizes[5] as f64 > sizes[0] as f64 * 1.5,
        "expected growth without pruning: {sizes:?}"
    );
    assert_eq!(fingerprints(&env, "job-6", "dep"), 6);
}

/// The common case: a workspace crate edited in every job. Its unit hashes stay; rustc keeps one
/// incremental session; the dir stays the size of a fresh build.
#[test]
fn a_crate_edited_every_job_does_not_grow_the_dir() {
    let env = Env::new();
    let ws = env.fixture("moving");
    let mut sizes = Vec::new();
    for i in 1..=8 {
        set_edit(&ws, i);
        let out = job(&env, &ws, &format!("job-{i}"), &[], &["build"]);
        assert!(compiled_anything(&out));
        sizes.push(du(&target(&env, &format!("job-{i}"))));
    }
    let fresh = fresh_size(&env, &ws, "fresh");
    let ratio = sizes[7] as f64 / fresh as f64;
    assert!(ratio <= 1.3, "warm/fresh = {ratio:.2} ({sizes:?}, {fresh})");
}

/// A build-only job, a test job, an llvm-cov job.
const THREE_SHAPES: [&[&str]; 3] = [&["build"], &["test"], &["llvm-cov", "--no-report"]];

/// Jobs of `shapes` round and round, three rounds: after the first round none of them
/// recompiles anything. Returns the number of jobs run (`job-1` … `job-N`).
fn round_and_round(env: &Env, ws: &Path, shapes: &[&[&str]], extra: &[&str]) -> usize {
    let mut n = 0;
    for round in 0..3 {
        for shape in shapes {
            n += 1;
            let out = job(env, ws, &format!("job-{n}"), extra, shape);
            if round > 0 {
                assert!(
                    !compiled_anything(&out) && !stderr(&out).contains("Checking "),
                    "job {n} ({shape:?}) recompiled:\n{}",
                    describe(&out)
                );
            }
        }
    }
    n
}

/// Build, test and llvm-cov jobs round and round (K = 3): after the first round none of them
/// recompiles anything, though each uses units the other two do not.
#[test]
fn alternating_job_shapes_within_k_recompile_nothing() {
    let env = Env::new();
    let ws = env.fixture("moving");
    let mut n = round_and_round(&env, &ws, &THREE_SHAPES, &[]);
    // And pruning did run: a shape gone for more than K jobs loses its units.
    for i in 1..=4 {
        n += 1;
        job(&env, &ws, &format!("job-{n}"), &[], &["build"]);
        let _ = i;
    }
    assert!(
        !target(&env, &format!("job-{n}"))
            .join("llvm-cov-target/debug/.fingerprint")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "llvm-cov units unused for 4 jobs were kept"
    );
}

/// On a tmpfs with its default `relatime`, reads after the reset are recorded: dead units go,
/// live ones stay.
#[test]
fn pruning_works_on_a_relatime_tmpfs() {
    let env = Env::new();
    let Some(_mnt) = Tmpfs::mount_with_or_skip(&env.root, "size=512m") else {
        return;
    };
    let ws = env.fixture("moving");
    let extra = [
        "--prune-after",
        "1",
        "--min-free",
        "0",
        "--reclaim-below",
        "0%",
    ];
    for i in 1..=4 {
        set_dep_version(&ws, &format!("1.0.{i}"));
        let out = job(&env, &ws, &format!("job-{i}"), &extra, &["build"]);
        if i > 2 {
            assert!(
                stderr(&out).to_lowercase().contains("pruned"),
                "{}",
                describe(&out)
            );
        }
    }
    // The job's own replaced dep went at its release.
    assert_eq!(fingerprints(&env, "job-4", "dep"), 1);
    assert_eq!(fingerprints(&env, "job-4", "feat"), 2);
    let again = job(&env, &ws, "job-5", &extra, &["build"]);
    assert!(!compiled_anything(&again), "{}", describe(&again));
}

/// A tmpfs mounted `noatime` (as root): reads are not observable, the run says so, nothing is
/// pruned, and the `--max-warm-size` backstop still empties an oversized dir.
#[test]
fn noatime_engages_the_fallback_and_says_so() {
    let env = Env::new();
    let Some(_mnt) = Tmpfs::mount_with_or_skip(&env.root, "noatime,size=512m") else {
        return;
    };
    let ws = env.fixture("moving");
    for i in 1..=3 {
        set_dep_version(&ws, &format!("1.0.{i}"));
        let out = job(
            &env,
            &ws,
            &format!("job-{i}"),
            &[
                "--prune-after",
                "1",
                "--min-free",
                "0",
                "--reclaim-below",
                "0%",
            ],
            &["build"],
        );
        if i > 1 {
            let err = stderr(&out);
            assert!(
                err.to_lowercase().contains("not pruning") && err.contains("noatime"),
                "{}",
                describe(&out)
            );
            assert!(!err.to_lowercase().contains("pruned"), "{}", describe(&out));
        }
    }
    assert_eq!(fingerprints(&env, "job-3", "dep"), 3, "nothing pruned");
    // The backstop: over 1.1x its size at its first adoption (K = 1), the dir is emptied and the job builds fresh.
    set_dep_version(&ws, "1.0.4");
    let out = job(
        &env,
        &ws,
        "job-4",
        &[
            "--max-warm-size",
            "1.1x",
            "--prune-after",
            "1",
            "--min-free",
            "0",
            "--reclaim-below",
            "0%",
        ],
        &["build"],
    );
    assert!(
        stderr(&out).contains("over --max-warm-size") && stderr(&out).contains("builds fresh"),
        "{}",
        describe(&out)
    );
    assert!(
        stderr(&out).contains("Compiling feat"),
        "{}",
        describe(&out)
    );
    assert_eq!(fingerprints(&env, "job-4", "dep"), 1);
}

/// The pruner (an adopter, stopped between removing a dead unit's fingerprint and its outputs)
/// races a guard and a second adopter: the guard keeps the dir (its lock is held), the second
/// job does not adopt it; then the pruner is killed there. The next adopter finishes the prune,
/// and the state still builds without recompiling what is live.
#[test]
fn a_pruner_racing_a_guard_and_an_adopter_removes_nothing_live() {
    let env = Env::new();
    let ws = env.fixture("moving");
    for i in 1..=2 {
        set_dep_version(&ws, &format!("1.0.{i}"));
        job(
            &env,
            &ws,
            &format!("job-{i}"),
            &["--prune-after", "1"],
            &["build"],
        );
    }
    // job-3 adopts job-2's dir; dep 1.0.1's units are dead (K = 1) and are being pruned.
    set_dep_version(&ws, "1.0.3");
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_GUARDED_SEED", "0");
    cmd.env("RUNNER_NAME", "r").args([
        "guarded",
        "--job-id",
        "job-3",
        "--linger",
        "0s",
        "--prune-after",
        "1",
        "build",
    ]);
    let paused = env.paused(cmd, "pruner", "prune-fingerprint-removed");
    let gc = env.ok(env.path(), ["gc", "--all-expired"]);
    assert!(env.root.join("job-3").exists(), "{}", describe(&gc));
    let mut other = env.cmd(&ws);
    other.env("CARGO_GUARDED_SEED", "0");
    other
        .env("RUNNER_NAME", "r2")
        .args(["guarded", "--job-id", "other", "exec", "--", "true"]);
    let other = output(&mut other);
    assert_success(&other);
    assert!(
        !stderr(&other).to_lowercase().contains("adopted"),
        "{}",
        describe(&other)
    );
    let done = paused.resume(120);
    assert_success(&done);
    assert!(
        stderr(&done).to_lowercase().contains("pruned"),
        "{}",
        describe(&done)
    );
    assert!(
        !stderr(&done).contains("Compiling feat"),
        "{}",
        describe(&done)
    );

    // Now a crash (abort) between a dead unit's fingerprint and its outputs.
    set_dep_version(&ws, "1.0.4");
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_GUARDED_SEED", "0");
    cmd.env("RUNNER_NAME", "r")
        .env("CARGO_GUARDED_FAULT", "prune-fingerprint-removed")
        .args([
            "guarded",
            "--job-id",
            "job-4",
            "--linger",
            "0s",
            "--prune-after",
            "1",
            "build",
        ]);
    let crashed = output(&mut cmd);
    assert!(!crashed.status.success(), "{}", describe(&crashed));
    // The same job runs again (resumes its dir, unpruned but consistent) and builds.
    let out = job(&env, &ws, "job-4", &["--prune-after", "1"], &["build"]);
    assert!(
        !stderr(&out).contains("Compiling feat"),
        "{}",
        describe(&out)
    );
    // The next adopter completes the prune: no output of a unit without a fingerprint remains.
    let out = job(&env, &ws, "job-5", &["--prune-after", "1"], &["build"]);
    assert!(!compiled_anything(&out), "{}", describe(&out));
    let t = target(&env, "job-5").join("debug");
    let fps: Vec<String> = std::fs::read_dir(t.join(".fingerprint"))
        .unwrap()
        .flatten()
        .filter_map(|e| Some(e.file_name().to_str()?.rsplit_once('-')?.1.to_owned()))
        .collect();
    for e in std::fs::read_dir(t.join("deps")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            fps.iter().any(|h| name.contains(h.as_str())),
            "{name} is an output of a pruned unit"
        );
    }
}

/// The index and the dir are untrusted: a garbage `prune.json` is ignored (every unit counts as
/// used, nothing is pruned that time) and rebuilt; a symlink carrying a dead unit's hash is
/// removed as a link, never followed.
#[test]
fn a_bad_index_and_planted_symlinks_are_handled() {
    let env = Env::new();
    let ws = env.fixture("moving");
    let extra = ["--prune-after", "1"];
    for i in 1..=2 {
        set_dep_version(&ws, &format!("1.0.{i}"));
        job(&env, &ws, &format!("job-{i}"), &extra, &["build"]);
    }
    std::fs::write(
        env.root.join("job-2/prune.json"),
        b"{\"version\": 1, \"units\": 7",
    )
    .unwrap();
    set_dep_version(&ws, "1.0.3");
    let out = job(&env, &ws, "job-3", &extra, &["build"]);
    // The adoption pruned nothing (every unit counted as used by job-2); job-3's release then
    // removed what it replaced, by the rebuilt index.
    assert!(
        !stderr(&out).contains("of job-2 (warm)"),
        "{}",
        describe(&out)
    );
    assert!(
        stderr(&out).contains("of job-3 at release"),
        "{}",
        describe(&out)
    );
    assert_eq!(fingerprints(&env, "job-3", "dep"), 1);

    // Plant a link named like an output of dep 1.0.1's unit (dead from now on) to a file outside.
    let outside = env.path().join("precious");
    std::fs::write(&outside, "keep").unwrap();
    let deps = target(&env, "job-3").join("debug/deps");
    let old = std::fs::read_dir(&deps)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("libdep-") && n.ends_with(".rlib"))
        .min_by_key(|n| std::fs::metadata(deps.join(n)).unwrap().modified().unwrap())
        .unwrap();
    let hash = old.trim_start_matches("libdep-").trim_end_matches(".rlib");
    std::os::unix::fs::symlink(&outside, deps.join(format!("dep-{hash}.planted"))).unwrap();
    for i in 4..=5 {
        set_dep_version(&ws, &format!("1.0.{i}"));
        let out = job(&env, &ws, &format!("job-{i}"), &extra, &["build"]);
        assert!(
            stderr(&out).to_lowercase().contains("pruned"),
            "{}",
            describe(&out)
        );
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
    let deps = target(&env, "job-5").join("debug/deps");
    assert!(!deps.join(format!("dep-{hash}.planted")).exists());
    assert!(fingerprints(&env, "job-5", "dep") <= 2);
    let again = job(&env, &ws, "job-6", &extra, &["build"]);
    assert!(!compiled_anything(&again), "{}", describe(&again));
}

/// With a build dir configured, cargo keeps its units in the job's `build/`: pruned there too.
#[test]
fn units_in_a_configured_build_dir_are_pruned() {
    let env = Env::new();
    let ws = env.fixture("moving");
    let extra = ["--prune-after", "1"];
    for i in 1..=4 {
        set_dep_version(&ws, &format!("1.0.{i}"));
        let mut cmd = job_cmd(&env, &ws, &format!("job-{i}"), &extra, &["build"]);
        cmd.env("CARGO_BUILD_BUILD_DIR", env.path().join("ignored"));
        let out = output(&mut cmd);
        assert_success(&out);
        if i > 2 {
            assert!(
                stderr(&out).to_lowercase().contains("dead unit"),
                "{}",
                describe(&out)
            );
        }
    }
    let fp = env.root.join("job-4/build/debug/.fingerprint");
    let deps = std::fs::read_dir(&fp)
        .unwrap_or_else(|e| panic!("{}: {e}", fp.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("dep-"))
        .count();
    // The last job's: the one it replaced went at its release.
    assert_eq!(deps, 1);
}

/// The steps of one job (build, then test) resume its dir, so what any step used counts for the
/// job: with K = 1, the next job's test step still finds the test units.
#[test]
fn every_step_of_a_job_counts_as_that_job() {
    let env = Env::new();
    let ws = env.fixture("moving");
    let extra = ["--prune-after", "1"];
    for i in 1..=4 {
        let id = format!("job-{i}");
        let build = job(&env, &ws, &id, &extra, &["build"]);
        let test = job(&env, &ws, &id, &extra, &["test", "--no-run"]);
        if i > 1 {
            assert!(!compiled_anything(&build), "{}", describe(&build));
            assert!(!compiled_anything(&test), "{}", describe(&test));
        }
    }
}

/// The step summary of the job that adopted a dir says what pruning removed from it.
#[test]
fn the_step_summary_says_what_was_pruned() {
    let env = Env::new();
    let ws = env.fixture("moving");
    let extra = ["--prune-after", "1"];
    for i in 1..=2 {
        set_dep_version(&ws, &format!("1.0.{i}"));
        job(&env, &ws, &format!("job-{i}"), &extra, &["build"]);
    }
    set_dep_version(&ws, "1.0.3");
    let summary = env.path().join("summary.md");
    let mut cmd = job_cmd(&env, &ws, "job-3", &extra, &["build"]);
    // The earlier jobs ran outside Actions (scope `local`), which a CI job never warms from.
    cmd.env("GITHUB_ACTIONS", "true")
        .env("CARGO_GUARDED_WARM_FROM", "any")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", env.path().join("outputs"));
    let out = output(&mut cmd);
    assert_success(&out);
    assert!(
        stderr(&out).to_lowercase().contains("pruned"),
        "{}",
        describe(&out)
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("adopted warm from expired job"), "{md}");
    // The job's own release: what it replaced (dep 1.0.2 and the app built against it) and the
    // dir against its budget.
    assert!(
        md.contains("At release, job `job-3` pruned ")
            && md.contains("replaced")
            && md.contains("against its budget of"),
        "{md}"
    );
}

/// The pruning goal at the default K (3): ten jobs with the moving dependency leave the dir within
/// 1.3x a fresh build, as each job's new units supersede the last job's (same identity, another
/// version) at once; the last state re-run compiles nothing; `prune.json` records the last prune.
#[test]
fn the_default_k_keeps_a_moving_history_within_1_3x() {
    let env = Env::new();
    let ws = env.fixture("moving");
    let sizes = moving_history(&env, &ws, 10, &[]);
    let fresh = fresh_size(&env, &ws, "fresh");
    let ratio = sizes[9] as f64 / fresh as f64;
    assert!(ratio <= 1.3, "warm/fresh = {ratio:.2} ({sizes:?}, {fresh})");
    // 1.0.10's alone: job-10 replaced 1.0.9's, which went at its release.
    assert_eq!(
        fingerprints(&env, "job-10", "dep"),
        1,
        "older dep units kept"
    );
    assert_eq!(
        fingerprints(&env, "job-10", "feat"),
        2,
        "both feat units kept"
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.root.join("job-10/prune.json")).unwrap())
            .unwrap();
    let last = &index["last_prune"];
    assert!(
        last["superseded"].as_u64() >= Some(2) && last["bytes"].as_u64() > Some(0),
        "{index}"
    );
    // Pruned last at job-10's own release: what it replaced.
    assert_eq!(last["from"], "job-10", "{index}");
    assert_eq!(last["at_release"], true, "{index}");
    // `status` shows it: the table's PRUNED column and `--json`'s `pruned` of the dir.
    let status = env.status();
    let entry = status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["job_id"] == "job-10")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(entry["pruned"]["bytes"], last["bytes"], "{status}");
    assert_eq!(entry["pruned"]["from"], "job-10", "{status}");
    let table = stdout(&env.ok(&ws, ["status"]));
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains("PRUNED")),
        "{table}"
    );
    let again = job(&env, &ws, "job-11", &[], &["build"]);
    assert!(!compiled_anything(&again), "{}", describe(&again));
}

/// Units of `pkg` in the job dir's `profile` dir (none if it has no `.fingerprint/`).
fn units_of(env: &Env, id: &str, profile: &str, pkg: &str) -> usize {
    std::fs::read_dir(target(env, id).join(profile).join(".fingerprint"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.rsplit_once('-'))
                        .is_some_and(|(p, _)| p == pkg)
                })
                .count()
        })
        .unwrap_or(0)
}

/// `fixtures/shapes`: `twin` at two semver-incompatible versions (2.x for the app, 1.x for its
/// tests only) and `mid` built against `base` with and without a feature (feature unification
/// differs between `cargo build` and `cargo test`). Build, test and llvm-cov jobs round and
/// round at the default K: units of one identity but for the version (twin) or but for a
/// dependency's features (mid) are never taken as replacing each other, so after the first
/// round no job recompiles anything, and both of each are still there.
#[test]
fn shapes_with_two_versions_and_unified_features_recompile_nothing() {
    let env = Env::new();
    let ws = env.fixture("shapes");
    let n = round_and_round(&env, &ws, &THREE_SHAPES, &[]);
    let last = format!("job-{n}");
    assert_eq!(units_of(&env, &last, "debug", "twin"), 2, "both twins kept");
    // mid: its lib against base with and without `extra`, and its unit tests.
    assert_eq!(units_of(&env, &last, "debug", "mid"), 3, "every mid kept");
}

/// The size budget is about the job shapes together, not the last job alone. With the
/// tightest budget (1x the working set), build, test and llvm-cov jobs adopting each other's dir
/// still recompile nothing after the first round: each shape's last job's units are in the
/// working set; and the dir ends within its budget.
#[test]
fn alternating_shapes_keep_each_others_units_under_the_tightest_budget() {
    let env = Env::new();
    let ws = env.fixture("shapes");
    let n = round_and_round(&env, &ws, &THREE_SHAPES, &["--warm-budget", "1"]);
    let last = format!("job-{n}");
    assert_eq!(units_of(&env, &last, "debug", "twin"), 2, "both twins kept");
    let status = env.status();
    let entry = status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["job_id"] == last.as_str())
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(entry["budget"]["over"], false, "{status}");
}

/// Two versions of one crate used in the same job are never pruned, however many jobs run.
#[test]
fn two_versions_used_together_are_never_pruned() {
    let env = Env::new();
    let ws = env.fixture("shapes");
    for i in 1..=5 {
        let out = job(&env, &ws, &format!("job-{i}"), &[], &["test", "--no-run"]);
        if i > 1 {
            assert!(!compiled_anything(&out), "{}", describe(&out));
        }
    }
    assert_eq!(units_of(&env, "job-5", "debug", "twin"), 2);
}

/// `cargo check` (and clippy) units have the fingerprint JSON of the `cargo build` units of the
/// same crates (the mode is not in it): only their outputs (`.rmeta` alone) tell them apart. A
/// check job and a build job alternating recompile nothing after the first round.
#[test]
fn check_and_build_jobs_alternating_recompile_nothing() {
    let env = Env::new();
    let ws = env.fixture("moving");
    round_and_round(&env, &ws, &[&["build"], &["check"]], &[]);
}

/// A dependency rebuilt in place (`fixtures/rerun`: the app's build script reruns whenever a
/// file of the app changes, as ripgrep's does) gets a new fingerprint in the same unit dir: older
/// dependents still name the old one, and are replaced all the same when `dep` moves too.
#[test]
fn dependents_of_a_rerun_build_script_are_replaced_too() {
    let env = Env::new();
    let ws = env.fixture("rerun");
    let main = ws.join("app/src/main.rs");
    let text = std::fs::read_to_string(&main).unwrap();
    for i in 1..=8 {
        set_dep_version(&ws, &format!("1.0.{i}"));
        std::fs::write(&main, format!("{text}// job {i}\n")).unwrap();
        job(&env, &ws, &format!("job-{i}"), &[], &["build"]);
    }
    // The build script, its run, the binary: the binary the last job replaced went at its
    // release.
    assert_eq!(fingerprints(&env, "job-8", "app"), 3);
    let again = job(&env, &ws, "job-9", &[], &["build"]);
    assert!(!compiled_anything(&again), "{}", describe(&again));
    assert_eq!(fingerprints(&env, "job-9", "app"), 3);
    let fresh = fresh_size(&env, &ws, "fresh");
    let ratio = du(&target(&env, "job-9")) as f64 / fresh as f64;
    assert!(ratio <= 1.3, "warm/fresh = {ratio:.2}");
}

/// Two versions used together, then a build-only job bumps one of them (twin 2.0.0 → 2.0.1): the
/// new 2.x has the identity of the test-only 1.x and was first used after 1.x's last use, yet
/// 1.x stays for the next test job (a unit once used alongside another of its identity is never
/// taken as replaced).
#[test]
fn a_bump_of_one_of_two_versions_keeps_the_other() {
    let env = Env::new();
    let ws = env.fixture("shapes");
    job(&env, &ws, "job-1", &[], &["test", "--no-run"]);
    job(&env, &ws, "job-2", &[], &["build"]);
    let toml = ws.join("twin2/Cargo.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replace("\"2.0.0\"", "\"2.0.1\"")).unwrap();
    let bump = job(&env, &ws, "job-3", &[], &["build"]);
    assert!(
        stderr(&bump).contains("Compiling twin v2.0.1"),
        "{}",
        describe(&bump)
    );
    let test = job(&env, &ws, "job-4", &[], &["test", "--no-run"]);
    assert!(
        !stderr(&test).contains("Compiling twin v1.0.0"),
        "{}",
        describe(&test)
    );
}

/// The `dep-<hash>` fingerprint dirs in job `id`'s `debug/`.
fn dep_units(env: &Env, id: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(target(env, id).join("debug/.fingerprint"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.rsplit_once('-').is_some_and(|(p, _)| p == "dep"))
        .collect();
    v.sort();
    v
}

/// A dead unit behind a bind mount cannot be pruned (deletion never leaves the job
/// dir's mount). It is warned about at the adoption that first meets it, not again at every
/// later one (then only at `-v`), and `status` shows it while it lasts.
#[test]
fn a_unit_pending_behind_a_bind_mount_is_warned_about_once_then_shown_in_status() {
    if !mounts::root_or_skip("a bind mount in a job dir") {
        return;
    }
    let env = Env::new();
    let ws = env.fixture("moving");
    set_dep_version(&ws, "1.0.1");
    job(&env, &ws, "job-1", &[], &["build"]);
    set_dep_version(&ws, "1.0.2");
    // job-1's unit goes as job-2 releases (it replaced it): job-2's own is the one left.
    job(&env, &ws, "job-2", &[], &["build"]);
    let old = dep_units(&env, "job-2");
    assert_eq!(old.len(), 1, "{old:?}");
    set_dep_version(&ws, "1.0.3");
    // Something mounted over an output of the unit the next job replaces (its dep-info file):
    // job-3 meets it pruning at its release, job-4 at its adoption.
    let hash = old[0].rsplit_once('-').unwrap().1.to_owned();
    let unit = |id: &str| target(&env, id).join(format!("debug/deps/dep-{hash}.d"));
    assert!(unit("job-2").is_file());
    let mounted = env.path().join("mounted");
    std::fs::write(&mounted, "keep").unwrap();
    let status = Command::new("mount")
        .arg("--bind")
        .arg(&mounted)
        .arg(unit("job-2"))
        .status()
        .unwrap();
    assert!(status.success(), "mount --bind failed");
    let mut mount = mounts::Mount(unit("job-2"));
    let left = |out: &Output| {
        stderr(out)
            .matches("pruning left something in place")
            .count()
    };

    // The mount moves with the dir as each job adopts it; `mount` follows, to unmount it.
    let out = job(&env, &ws, "job-3", &[], &["build"]);
    mount.0 = unit("job-3");
    assert_eq!(left(&out), 1, "{}", describe(&out));
    let out = job(&env, &ws, "job-4", &[], &["build"]);
    mount.0 = unit("job-4");
    assert_eq!(left(&out), 0, "said again\n{}", describe(&out));
    assert_eq!(std::fs::read_to_string(&mounted).unwrap(), "keep");
    let status = env.status();
    let entry = status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["job_id"] == "job-4")
        .unwrap();
    assert!(
        entry["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("pruning left something in place: debug: unit")),
        "{status:#}"
    );
    // At -v it is still said, as a note.
    let out = job(&env, &ws, "job-5", &["-v"], &["build"]);
    mount.0 = unit("job-5");
    assert!(
        stderr(&out).contains("pruning still leaves something in place"),
        "{}",
        describe(&out)
    );
}

/// A step's exit code says nothing about which units it needed: a red test run built and used
/// its units. Job p builds, then its tests fail; job q adopts p's dir and builds (its release
/// must not prune what p's test run built), then runs the tests again: nothing compiles.
#[test]
fn a_failed_step_counts_in_the_working_set() {
    let env = Env::new();
    let ws = env.fixture("shapes");
    let tight = ["--warm-budget", "1"];
    job(&env, &ws, "job-p", &tight, &["build"]);
    let mut red = job_cmd(&env, &ws, "job-p", &tight, &["test"]);
    red.env("SHAPES_FAIL", "1");
    let out = output(&mut red);
    assert!(
        !out.status.success() && describe(&out).contains("failing as asked"),
        "{}",
        describe(&out)
    );
    job(&env, &ws, "job-q", &tight, &["build"]);
    let last = job(&env, &ws, "job-q", &tight, &["test"]);
    assert!(!compiled_anything(&last), "{}", describe(&last));
}

/// The tool is part of a step's shape, and of its lease: `nextest run` and `cargo run` share
/// their words after the tool, never their shape.
#[test]
fn nextest_run_and_cargo_run_are_different_shapes() {
    let env = Env::new();
    let ws = env.fixture("small");
    job(
        &env,
        &ws,
        "job-1",
        &[],
        &["nextest", "run", "--no-tests=pass"],
    );
    assert_eq!(env.lease("job-1")["tool"], "nextest");
    assert_eq!(
        env.lease("job-1")["command"],
        serde_json::json!(["run", "--no-tests=pass"])
    );
    job(&env, &ws, "job-1", &[], &["run", "-p", "app"]);
    assert_eq!(env.lease("job-1")["tool"], "cargo");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.root.join("job-1/prune.json")).unwrap())
            .unwrap();
    let shapes: Vec<&String> = index["shapes"].as_object().unwrap().keys().collect();
    assert_eq!(
        shapes,
        ["cargo run -p app", "nextest run --no-tests=pass"],
        "{index:#}"
    );
}

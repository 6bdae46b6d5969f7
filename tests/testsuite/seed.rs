//! Seeding (docs/protocol.md#seed): a job with no expired dir of its workspace to adopt
//! starts from a copy of the freshest finished dir of its workspace, on every filesystem, at any
//! concurrency, and a copy its source's owner overtook is discarded.

use crate::common::moving;
use crate::common::tmpfs;
use crate::common::xfs;

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use tmpfs::{Tmpfs, rustix_free};
use xfs::{Xfs, extents_shared};

/// A CI-like step on `runner` (an ephemeral runner: a new name per job) for job `job`.
fn job_cmd(env: &Env, ws: &Path, runner: &str, job: &str, args: &[&str]) -> Command {
    let mut cmd = env.cmd(ws);
    // Small filesystems (a 1 GiB tmpfs or XFS image) are below the default --min-free.
    cmd.env("RUNNER_NAME", runner)
        .env("CARGO_GUARDED_MIN_FREE", "0")
        .args(["guarded", "--job-id", job])
        .args(args);
    cmd
}

fn step(env: &Env, ws: &Path, runner: &str, job: &str, args: &[&str]) -> Output {
    let out = output(&mut job_cmd(env, ws, runner, job, args));
    assert_success(&out);
    out
}

/// Cargo found every unit fresh: nothing compiled, and the build did run.
fn assert_warm(out: &Output) {
    assert!(
        !compiled_anything(out) && stderr(out).contains("Finished"),
        "the job started cold:\n{}",
        describe(out)
    );
}

#[test]
fn a_second_job_right_after_a_finished_one_compiles_nothing() {
    let env = Env::new();
    let ws = env.fixture("small");
    let first = step(&env, &ws, "arc-runner-1", "job-1", &["build"]);
    assert!(compiled_anything(&first), "{}", describe(&first));
    // job-1's dir lingers (released, protected for an hour): not adoptable, but a seed source.
    let second = step(&env, &ws, "arc-runner-2", "job-2", &["build"]);
    assert_warm(&second);
    let err = stderr(&second);
    assert!(
        err.contains("Seeded") && err.contains("from finished job `job-1`"),
        "{err}"
    );
    assert_eq!(env.lease("job-2")["origin"], "seeded");
    assert_eq!(env.lease("job-1")["state"], "released");
    assert_eq!(env.job_dirs(), ["job-1", "job-2"]);
    // Operators see the rate they get, per workspace.
    let status = env.status();
    let starts = &status["starts"][0];
    assert_eq!(
        (&starts["fresh"], &starts["seeded"], &starts["adopted"]),
        (&1.into(), &1.into(), &0.into()),
        "{status:#}"
    );
    let text = stdout(&env.ok(env.path(), ["status"]));
    assert!(text.contains(": 1 of 2 warm (1 seeded, 1 fresh)"), "{text}");
}

/// The `Seeded … (method, size in time)` line of a job.
fn seeded_line(out: &Output) -> String {
    stderr(out)
        .lines()
        .find(|l| l.trim_start().starts_with("Seeded"))
        .unwrap_or_else(|| panic!("no Seeded line:\n{}", describe(out)))
        .to_owned()
}

/// Job 1 builds (cold) into a root at `root`; job 2, from another runner, must start warm by a
/// seed. Returns job 2's output.
fn first_then_seeded(env: &Env, ws: &Path) -> Output {
    let first = step(env, ws, "arc-a", "job-1", &["build"]);
    assert!(compiled_anything(&first), "{}", describe(&first));
    let second = step(env, ws, "arc-b", "job-2", &["build"]);
    assert_warm(&second);
    second
}

#[test]
fn a_seed_on_xfs_is_a_reflink_that_shares_extents() {
    let env = Env::new();
    let Some(xfs) = Xfs::mount_sized_or_skip(&env.path().join("xfs"), 512) else {
        return;
    };
    let ws = env.fixture("small");
    let env = Env {
        root: xfs.path.join("root"),
        ..env
    };
    let first = step(&env, &ws, "arc-a", "job-1", &["build"]);
    assert!(compiled_anything(&first), "{}", describe(&first));
    let before = rustix_free(&xfs.path);
    let second = step(&env, &ws, "arc-b", "job-2", &["build"]);
    assert_warm(&second);
    let after = rustix_free(&xfs.path);
    let line = seeded_line(&second);
    assert!(line.contains("(reflink, "), "{line}");
    // The binary cargo built, in the copy: every extent shared with job 1's.
    let bin = env.root.join("job-2/target/debug/app");
    assert_eq!(extents_shared(&bin), Some(true), "{}", bin.display());
    let size = std::fs::metadata(&bin).unwrap().len();
    assert!(
        before.saturating_sub(after) < size,
        "the seed took {} bytes of disk; the binary alone is {size}",
        before.saturating_sub(after)
    );
}

#[test]
fn a_seed_on_tmpfs_is_a_real_copy_and_starts_warm() {
    let env = Env::new();
    let Some(mnt) = Tmpfs::mount_or_skip(&env.path().join("mnt"), "1g") else {
        return;
    };
    let ws = env.fixture("small");
    let env = Env {
        root: mnt.0.join("root"),
        ..env
    };
    let second = first_then_seeded(&env, &ws);
    let line = seeded_line(&second);
    assert!(line.contains("(copy, "), "{line}");
    let bin = env.root.join("job-2/target/debug/app");
    let st = std::fs::metadata(&bin).unwrap();
    assert_eq!(
        st.len(),
        std::fs::metadata(env.root.join("job-1/target/debug/app"))
            .unwrap()
            .len()
    );
}

#[test]
fn a_copy_keeps_hard_links_times_and_leaves_the_source_atimes_alone() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let Some(mnt) = Tmpfs::mount_with_or_skip(&env.path().join("mnt"), "strictatime,size=1g")
    else {
        return;
    };
    let ws = env.fixture("small");
    let env = Env {
        root: mnt.0.join("root"),
        ..env
    };
    step(&env, &ws, "arc-a", "job-1", &["build"]);
    // A fingerprint file's access time, far in the past: a copy that read it plainly would
    // bump it (strictatime), and pruning would see every unit of job 1 as used.
    let fp_dir = env.root.join("job-1/target/debug/.fingerprint");
    let unit = std::fs::read_dir(&fp_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let fp = std::fs::read_dir(&unit)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let old = std::fs::FileTimes::new()
        .set_accessed(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000));
    std::fs::File::options()
        .write(true)
        .open(&fp)
        .unwrap()
        .set_times(old)
        .unwrap();
    let atime_before = std::fs::metadata(&fp).unwrap().atime();
    let second = step(&env, &ws, "arc-b", "job-2", &["build"]);
    assert_warm(&second);
    assert_eq!(
        std::fs::metadata(&fp).unwrap().atime(),
        atime_before,
        "{}",
        fp.display()
    );
    // cargo hard-links target/debug/app to its deps/ output: still one inode in the copy.
    let src = std::fs::metadata(env.root.join("job-1/target/debug/app")).unwrap();
    let copy = std::fs::metadata(env.root.join("job-2/target/debug/app")).unwrap();
    assert!(
        src.nlink() > 1,
        "cargo hard-linked nothing? nlink {}",
        src.nlink()
    );
    assert_eq!(copy.nlink(), src.nlink());
    assert_eq!(
        (copy.mtime(), copy.mtime_nsec()),
        (src.mtime(), src.mtime_nsec())
    );
    assert_ne!(copy.ino(), src.ino());
}

#[test]
fn three_jobs_starting_together_all_start_warm() {
    let env = Env::new();
    let ws = env.fixture("small");
    // Expired at once (linger 0): adoptable too, so the rule that keeps the freshest finished
    // dir a source, not an adoption, while other jobs start, is what keeps all three warm.
    step(&env, &ws, "arc-0", "job-0", &["--linger", "0s", "build"]);
    // Together: each has registered as starting before any of them chooses where to start.
    let jobs: Vec<Paused> = (1..=3)
        .map(|i| {
            let cmd = job_cmd(
                &env,
                &ws,
                &format!("arc-{i}"),
                &format!("job-{i}"),
                &["build"],
            );
            env.paused(cmd, &format!("job-{i}"), "acquire-registered")
        })
        .collect();
    let going: Vec<Spawned> = jobs.into_iter().map(Paused::let_go).collect();
    for (i, job) in going.into_iter().enumerate() {
        let out = job.finish(300);
        assert_success(&out);
        assert_warm(&out);
        assert!(
            stderr(&out).contains("Seeded"),
            "job {}:\n{}",
            i + 1,
            describe(&out)
        );
    }
    // The source was never adopted or touched: still job 0's released lease.
    assert_eq!(env.lease("job-0")["state"], "released");
}

/// A job that starts while another job of its workspace is starting seeds from the freshest
/// finished dir; a job that starts alone adopts the freshest expired dir (docs/protocol.md#seed).
#[test]
fn the_freshest_dir_is_adopted_alone_and_seeded_from_alongside_another_job() {
    let env = Env::new();
    let ws = env.fixture("small");
    let quick = ["--linger", "0s", "build"];
    step(&env, &ws, "arc-a", "job-1", &quick);
    // Job L is starting (registered, not yet chosen) while job 2 starts.
    let starting = env.paused(
        job_cmd(&env, &ws, "arc-l", "job-l", &quick),
        "job-l",
        "acquire-registered",
    );
    let second = step(&env, &ws, "arc-b", "job-2", &quick);
    assert_warm(&second);
    assert!(
        stderr(&second).contains("from finished job `job-1`"),
        "{}",
        describe(&second)
    );
    assert_eq!(env.lease("job-2")["together"], true);
    // Alone now, but the freshest dir's job started together with another: job L keeps it a
    // seed source and adopts the older one.
    let late = starting.resume(300);
    assert_success(&late);
    assert_warm(&late);
    assert!(
        stderr(&late).contains("Adopted job-1"),
        "{}",
        describe(&late)
    );
    // Alone, after a job that started alone: the freshest dir, job L's, is adopted.
    let third = step(&env, &ws, "arc-c", "job-3", &quick);
    assert_warm(&third);
    assert!(
        stderr(&third).contains("Adopted job-l"),
        "{}",
        describe(&third)
    );
    assert_eq!(env.job_dirs(), ["job-2", "job-3"]);
}

/// Sequential jobs, each with its dependency moved on: each starts from the last job's dir (by
/// adoption, no copy), an unchanged re-run compiles nothing, and one dir is left.
#[test]
fn sequential_jobs_start_from_the_freshest_dir_and_leave_one() {
    let env = Env::new();
    let ws = env.fixture("moving");
    let quick = ["--linger", "0s", "build"];
    for i in 1..=5 {
        moving::set_dep_version(&ws, &format!("0.1.{i}"));
        let out = step(&env, &ws, &format!("arc-{i}"), &format!("job-{i}"), &quick);
        if i > 1 {
            assert!(
                stderr(&out).contains(&format!("Adopted job-{}", i - 1)),
                "job {i}:\n{}",
                describe(&out)
            );
        }
        assert_eq!(env.job_dirs(), [format!("job-{i}")]);
    }
    let rerun = step(&env, &ws, "arc-6", "job-6", &quick);
    assert_warm(&rerun);
    assert_eq!(env.job_dirs(), ["job-6"]);
}

/// The seed's source is resumed by its owner (a later step of job 1 that builds a change) while
/// job 2 is copying it: job 2 must not keep that copy.
#[test]
fn a_copy_whose_source_is_resumed_mid_copy_is_discarded() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "arc-a", "job-1", &["build"]);
    let mut cmd = job_cmd(&env, &ws, "arc-b", "job-2", &["build"]);
    let events = env.path().join("events.jsonl");
    cmd.env("CARGO_GUARDED_EVENTS", &events);
    let seeder = env.paused(cmd, "job-2", "seed-copied");
    // The owner's next step: resumes its dir and writes into it.
    let main = ws.join("app/src/main.rs");
    let text = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, format!("{text}\n// changed\n")).unwrap();
    let owner = step(&env, &ws, "arc-a", "job-1", &["build"]);
    assert!(compiled_anything(&owner), "{}", describe(&owner));
    let out = seeder.resume(300);
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        err.contains("Discarded") && err.contains("its owner resumed it during the copy"),
        "{}",
        describe(&out)
    );
    assert!(!err.contains("Seeded"), "{}", describe(&out));
    // The fresh line says why, not "no finished dir".
    assert!(
        err.contains("(fresh dir: the seed copied from") && err.contains("was discarded)"),
        "{}",
        describe(&out)
    );
    assert_eq!(env.lease("job-2")["origin"], "fresh");
    assert_eq!(env.lease("job-1")["state"], "released");
    // The stream says it too, as a note naming the source, before the job's dir is chosen.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(names[..3], ["starting", "note", "acquired"], "{lines:#?}");
    let note = &lines[1];
    assert_eq!(note["what"], "seed_discarded", "{note}");
    assert_eq!(note["path"], env.root.join("job-1").to_str().unwrap());
    assert_eq!(
        note["why"], "its owner resumed it during the copy",
        "{note}"
    );
}

/// `gc` as `contrib/` ships it (the systemd unit's command), run between two jobs, leaves the
/// second a source to start warm from.
#[test]
fn the_shipped_sweep_between_jobs_leaves_the_next_job_warm() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/cargo-guarded-gc.service"),
    )
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    let args: Vec<&str> = exec.split_whitespace().skip_while(|w| *w != "gc").collect();
    assert_eq!(args.first(), Some(&"gc"), "{exec}");
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "arc-a", "job-1", &["build"]);
    let sweep = env.ok(env.path(), &args);
    let second = step(&env, &ws, "arc-b", "job-2", &["build"]);
    assert_warm(&second);
    assert!(
        stderr(&second).contains("Seeded"),
        "{}\n{}",
        describe(&sweep),
        describe(&second)
    );
}

#[test]
fn no_seed_starts_cold_and_a_size_cap_builds_fresh() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "arc-a", "job-1", &["build"]);
    let out = step(&env, &ws, "arc-b", "job-2", &["--no-seed", "build"]);
    assert!(compiled_anything(&out), "{}", describe(&out));
    assert!(
        stderr(&out).contains("seeding is off"),
        "{}",
        describe(&out)
    );
    let mut cmd = job_cmd(&env, &ws, "arc-c", "job-3", &["build"]);
    cmd.env("CARGO_GUARDED_SEED_MAX_SIZE", "1KiB");
    let out = output(&mut cmd);
    assert_success(&out);
    assert!(compiled_anything(&out), "{}", describe(&out));
    assert!(
        stderr(&out).contains("not seeding from") && stderr(&out).contains("larger than 1.0 KiB"),
        "{}",
        describe(&out)
    );
    // The fresh line says the real reason: a source existed, the seed was declined.
    let using = stderr(&out)
        .lines()
        .find(|l| l.trim_start().starts_with("Using"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        using.contains("(fresh dir: not seeding from") && using.contains("larger than 1.0 KiB"),
        "{}",
        describe(&out)
    );
    assert_eq!(env.lease("job-3")["origin"], "fresh");
}

/// A dir whose last step was `env` is no seed source while its linger runs: a plain cargo
/// started after `env` may still write in it, which the checks after a copy cannot see.
#[test]
fn a_dir_env_handed_out_is_no_seed_source_while_it_lingers() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "arc-a", "job-1", &["build"]);
    step(&env, &ws, "arc-a", "job-1", &["env"]);
    assert_eq!(env.lease("job-1")["tool"], "env");
    let second = step(&env, &ws, "arc-b", "job-2", &["build"]);
    assert!(compiled_anything(&second), "{}", describe(&second));
    let err = stderr(&second);
    assert!(
        err.contains("(fresh dir: not seeding from") && err.contains("its last step was `env`"),
        "{}",
        describe(&second)
    );
    assert_eq!(env.lease("job-2")["origin"], "fresh");
    // A wrapped step after `env`: a source again.
    step(&env, &ws, "arc-a", "job-1", &["build"]);
    let third = step(&env, &ws, "arc-c", "job-3", &["build"]);
    assert_warm(&third);
    assert!(
        stderr(&third).contains("from finished job `job-"),
        "{}",
        describe(&third)
    );
}

/// A symlink at the top of a source dir (where `build/` or `llvm-cov-target/` would be) is never
/// copied: the new job must build in real dirs of its own, not through a link somewhere else.
#[test]
fn a_symlink_at_the_top_of_the_source_is_not_copied() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "arc-a", "job-1", &["build"]);
    let elsewhere = env.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, env.root.join("job-1/build")).unwrap();
    let second = step(&env, &ws, "arc-b", "job-2", &["build"]);
    assert_warm(&second);
    assert!(
        std::fs::symlink_metadata(env.root.join("job-2/build")).is_err(),
        "the link was copied"
    );
}

/// A 200 MiB tmpfs holding a finished dir of about 70 MiB (a build and 60 MB of data), for the
/// room tests: about 130 MiB free, the reclaim line at 15% (30 MiB).
fn small_disk_with_a_big_source(env: Env, ws: &Path) -> Option<(Tmpfs, Env)> {
    let mnt = Tmpfs::mount_or_skip(&env.path().join("mnt"), "200m")?;
    let env = Env {
        root: mnt.0.join("root"),
        ..env
    };
    step(&env, ws, "arc-a", "job-1", &["build"]);
    let blob = "head -c 60000000 /dev/urandom > \"$CARGO_TARGET_DIR/blob\"";
    step(
        &env,
        ws,
        "arc-a",
        "job-1",
        &["exec", "--", "sh", "-c", blob],
    );
    Some((mnt, env))
}

const LINE: u64 = 30 << 20;

/// Two seeders at once share the room above the line through their reservations: one copies,
/// the other is told there is no room for it and builds fresh; the disk never goes below the line
/// for a copy.
#[test]
fn two_seeders_at_once_share_the_room_above_the_line() {
    let env = Env::new();
    let ws = env.fixture("small");
    let Some((mnt, env)) = small_disk_with_a_big_source(env, &ws) else {
        return;
    };
    let seeders: Vec<Paused> = ["job-2", "job-3"]
        .iter()
        .map(|job| {
            env.paused(
                job_cmd(&env, &ws, "arc-b", job, &["build"]),
                job,
                "seed-locked",
            )
        })
        .collect();
    let going: Vec<Spawned> = seeders.into_iter().map(Paused::let_go).collect();
    let outs: Vec<Output> = going.into_iter().map(|s| s.finish(300)).collect();
    for out in &outs {
        assert_success(out);
    }
    let seeded = outs.iter().filter(|o| stderr(o).contains("Seeded")).count();
    assert_eq!(seeded, 1, "{}\n{}", describe(&outs[0]), describe(&outs[1]));
    let cold = outs.iter().find(|o| !stderr(o).contains("Seeded")).unwrap();
    assert!(
        stderr(cold).contains("(fresh dir: not seeding from")
            && stderr(cold).contains("the disk can spare"),
        "{}",
        describe(cold)
    );
    let free = rustix_free(&mnt.0);
    assert!(free >= LINE, "free {free} below the line {LINE}");
}

/// A copy re-checks the free space as it goes: something else filling the disk meanwhile (another
/// job's build) stops it at the line, and the job builds fresh, saying why.
#[test]
fn a_copy_stops_when_the_disk_fills_below_the_line_meanwhile() {
    let env = Env::new();
    let ws = env.fixture("small");
    let Some((mnt, env)) = small_disk_with_a_big_source(env, &ws) else {
        return;
    };
    let seeder = env.paused(
        job_cmd(&env, &ws, "arc-b", "job-2", &["build"]),
        "job-2",
        "seed-rechecking",
    );
    // Another writer leaves 25 MiB free, below the line.
    let free = rustix_free(&mnt.0);
    let filler = (free - (25 << 20)).to_string();
    let out = std::process::Command::new("head")
        .args(["-c", &filler, "/dev/zero"])
        .output()
        .unwrap();
    std::fs::write(mnt.0.join("filler"), out.stdout).unwrap();
    let out = seeder.resume(300);
    std::fs::remove_file(mnt.0.join("filler")).unwrap();
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        !err.contains("Seeded") && err.contains("fell to the reclaim line"),
        "{}",
        describe(&out)
    );
    assert_eq!(env.lease("job-2")["origin"], "fresh");
}

/// Two jobs that overlapped both record it, even the one that started alone: it sees the other
/// as it releases (its dir then stays a seed source for the next job even alone).
#[test]
fn a_job_that_another_overlapped_records_it_at_release() {
    let env = Env::new();
    let ws = env.fixture("small");
    let quick = ["--linger", "0s", "build"];
    step(&env, &ws, "arc-0", "job-0", &quick);
    // Job A started alone (it adopts job 0's dir); job B starts and ends while A still runs.
    let a = env.paused(
        job_cmd(&env, &ws, "arc-a", "job-a", &quick),
        "job-a",
        "release",
    );
    let b = step(&env, &ws, "arc-b", "job-b", &quick);
    assert_eq!(
        env.lease("job-b")["together"],
        true,
        "{}\n{:#}",
        describe(&b),
        env.lease("job-a")
    );
    assert_success(&a.resume(300));
    assert_eq!(env.lease("job-a")["together"], true);
}

/// A reservation whose seeder is gone (its lock free) is ignored and removed; what is not a
/// seeder's reservation (a FIFO, another name) is left alone and never hangs the seeder.
#[test]
fn a_crashed_seeders_reservation_is_ignored() {
    let env = Env::new();
    let ws = env.fixture("small");
    step(&env, &ws, "arc-a", "job-1", &["build"]);
    let dir = env.root.join(".reservations");
    std::fs::create_dir_all(&dir).unwrap();
    let stale = dir.join("0123456789abcdef0123456789abcdef");
    std::fs::write(&stale, u64::MAX.to_string()).unwrap();
    let fifo = dir.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let second = step(&env, &ws, "arc-b", "job-2", &["build"]);
    assert_warm(&second);
    assert!(stderr(&second).contains("Seeded"), "{}", describe(&second));
    assert!(!stale.exists(), "the stale reservation is still there");
    assert!(fifo.exists());
}

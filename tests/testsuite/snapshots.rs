//! What users see, pinned whole: the terminal lines of a job's life (fresh, resumed,
//! adopted, refused with exit 75), `gc` and `gc --dry-run` (their `--json` too, and `--hook`
//! mode), the `status` table and its `--json`,
//! `doctor`, every `--help`, and what a GitHub Actions step gets (stderr's workflow commands,
//! `GITHUB_OUTPUT`, `GITHUB_ENV`, `GITHUB_STEP_SUMMARY`). Times, sizes, pids, paths, hosts and
//! hashes are redacted (tests/common/snap.rs).
//!
//! After an intended wording change: `SNAPSHOTS=overwrite cargo test --test testsuite snapshots::`, then
//! review the diff of this file and of `tests/snapshots/`.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use snapbox::{assert_data_eq, str};

/// `cargo-guarded guarded ARGS` in `cwd`, with the tests' clean environment (no CI variables).
fn run(env: &Env, cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = env.cmd(cwd);
    cmd.arg("guarded").args(args);
    output(&mut cmd)
}

/// A root holding one expired dir of another runner's job (`old`, 1 MiB recorded) and one
/// lingering dir of a real build (`job-1`).
fn expired_and_lingering() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let ws = env.fixture("small");
    plant_job(&env.root, "old", &expired_lease("old", Some(1 << 20)));
    assert_success(&run(&env, &ws, &["--job-id", "job-1", "build"]));
    (env, ws)
}

#[test]
fn a_job_fresh_then_resumed_then_seeded_then_adopted() {
    let env = Env::new();
    let ws = env.fixture("small");
    let fresh = run(&env, &ws, &["--job-id", "job-1", "build"]);
    assert_data_eq!(
        transcript(&env, &fresh),
        str![[r#"
[exit 0]
--- stderr
     Created root [ROOT]
       Using job dir [ROOT]/job-1 (fresh dir: no finished dir of this workspace to adopt or seed from)
   Compiling util v0.1.0 ([TMP]/small/util)
   Compiling app v0.1.0 ([TMP]/small/app)
    Finished `dev` profile [unoptimized + debuginfo] target(s) in [ELAPSED]s

"#]]
    );

    // `-v`, so that resuming says so; how the process tree is tracked (a cgroup, or the
    // environment token without a writable cgroup v2) depends on the machine: `[..]`.
    let resumed = run(&env, &ws, &["--job-id", "job-1", "-v", "build"]);
    assert_data_eq!(
        transcript(&env, &resumed),
        str![[r#"
[exit 0]
--- stderr
       Using job dir [ROOT]/job-1 (resumed)
    Tracking the command's process tree [..]
    Finished `dev` profile [unoptimized + debuginfo] target(s) in [ELAPSED]s
     Counted job `job-1` built cold: 2 units compiled in [ELAPSED]s ([ELAPSED]s per unit), on record for the estimates of this workspace's warm jobs
    Recorded the inputs of 2 path-package units (0 left out, 0 files read)

"#]]
    );

    // job-1's dir lingers (released, protected for its job's later steps): not adoptable, but
    // job-2 seeds from it (docs/protocol.md#seed).
    let expire = run(&env, &ws, &["--job-id", "job-1", "exec", "--", "true"]);
    assert_data_eq!(
        transcript(&env, &expire),
        str![[r#"
[exit 0]

"#]]
    );
    let seeded = run(&env, &ws, &["--job-id", "job-2", "build"]);
    assert_data_eq!(
        transcript(&env, &seeded),
        str![[r#"
[exit 0]
--- stderr
      Seeded [ROOT]/job-2 from finished job `job-1` (copy, [SIZE] in [ELAPSED]s)
    Verified 2 units warm by content, 0 made stale, built in [TMP]/small
    Finished `dev` profile [unoptimized + debuginfo] target(s) in [ELAPSED]s

"#]]
    );

    // job-2's dir expired, the freshest: job-3, alone, adopts it.
    run(
        &env,
        &ws,
        &["--job-id", "job-2", "--linger", "0s", "exec", "--", "true"],
    );
    let adopted = run(&env, &ws, &["--job-id", "job-3", "build"]);
    assert_data_eq!(
        transcript(&env, &adopted),
        str![[r#"
[exit 0]
--- stderr
     Adopted job-2 (warm, [SIZE], last used [AGE] ago) as [ROOT]/job-3
    Verified 2 units warm by content, 0 made stale, built in [TMP]/small
    Finished `dev` profile [unoptimized + debuginfo] target(s) in [ELAPSED]s

"#]]
    );
}

#[test]
fn a_job_refused_for_disk_space_exits_75() {
    let env = Env::new();
    let ws = env.fixture("small");
    let refused = run(
        &env,
        &ws,
        &["--job-id", "job-1", "--min-free", "100%", "build"],
    );
    assert_data_eq!(
        transcript(&env, &refused),
        str![[r#"
[exit 75]
--- stderr
     Created root [ROOT]
       Using job dir [ROOT]/job-1 (fresh dir: no finished dir of this workspace to adopt or seed from)
error: not enough free disk space on [ROOT]: [SIZE] free ([BYTES] bytes), [SIZE] required ([BYTES] bytes) by --min-free
note: the sweep reclaimed nothing
note: no other job dir holds space in the root: the space is used outside it

"#]]
    );
}

#[test]
fn gc_dry_run_then_gc() {
    let (env, ws) = expired_and_lingering();
    let dry = run(&env, &ws, &["gc", "--all-expired", "--dry-run"]);
    assert_data_eq!(
        transcript(&env, &dry),
        str![[r#"
[exit 0]
--- stderr
  Reclaiming expired target dirs in [ROOT]: [PCT] used ([SIZE] free)
Would remove old (expired [AGE] ago, [SIZE])
        Kept job-1 (released, expires in [AGE])
  Would free [SIZE] in 1 dir; would be [PCT] used ([SIZE] free)

"#]]
    );
    let json = run(&env, &ws, &["gc", "--all-expired", "--dry-run", "--json"]);
    assert_data_eq!(
        transcript(&env, &json),
        str![[r#"
[exit 0]
--- stdout
{
  "version": 1,
  "dry_run": true,
  "free_before": [BYTES],
  "free_after": [BYTES],
  "total_bytes": [BYTES],
  "target_free": [BYTES],
  "removed": [
    {
      "job_id": "old",
      "dir": "[ROOT]/old",
      "bytes": [BYTES],
      "expired_for_secs": [AGE],
      "unfinished": false,
      "lingering": false,
      "over_root_cap": false
    }
  ],
  "kept": [
    {
      "job_id": "job-1",
      "dir": "[ROOT]/job-1",
      "reason": "kept: released, expires in [AGE]"
    }
  ],
  "errors": [],
  "other_freed": [BYTES]
}

"#]]
    );
    let gc = run(&env, &ws, &["gc", "--all-expired"]);
    assert_data_eq!(
        transcript(&env, &gc),
        str![[r#"
[exit 0]
--- stderr
  Reclaiming expired target dirs in [ROOT]: [PCT] used ([SIZE] free)
     Removed old (expired [AGE] ago, [SIZE])
        Kept job-1 (released, expires in [AGE])
   Reclaimed [SIZE] in 1 dir; now [PCT] used ([SIZE] free)

"#]]
    );
    let again = run(&env, &ws, &["gc", "--all-expired"]);
    assert_data_eq!(
        transcript(&env, &again),
        str![[r#"
[exit 0]
--- stderr
        Kept job-1 (released, expires in [AGE])
     Nothing to reclaim: no job dir has expired ([PCT] used, [SIZE] free)

"#]]
    );
}

/// An expired job dir of another job, as cargo-guarded would have left it.
fn plant_expired(env: &Env, name: &str) {
    let dir = plant_job(&env.root, name, &expired_lease(name, None));
    std::fs::write(dir.join("target/debug/artifact"), vec![7u8; 4096]).unwrap();
}

#[test]
fn gc_says_why_it_reclaims_nothing_and_prints_cargo_style_lines() {
    let env = Env::new();
    // Make the root a real one first.
    env.ok(env.path(), ["--job-id", "job-1", "exec", "--", "true"]);
    plant_expired(&env, "old");
    // Whole runs as snapshots (tests/common/snap.rs; bless with SNAPSHOTS=overwrite).
    let out = env.ok(env.path(), ["gc", "--dry-run", "--reclaim-below", "0%"]);
    assert_data_eq!(
        transcript(&env, &out),
        str![[r#"
[exit 0]
--- stderr
        Kept job-1 (released, expires in [AGE])
        Kept old (expired, warm for reuse: --keep-expired 1)
     Nothing to reclaim: [SIZE] free ([PCT] used) is above the reclaim target of [SIZE]; `--all-expired` reclaims every expired dir anyway

"#]]
    );
    plant_expired(&env, "older");
    // With pressure, cargo's shape: verbs right-aligned in 12 columns.
    let out = env.ok(env.path(), ["gc", "--dry-run", "--all-expired"]);
    assert_data_eq!(
        transcript(&env, &out),
        str![[r#"
[exit 0]
--- stderr
  Reclaiming expired target dirs in [ROOT]: [PCT] used ([SIZE] free)
Would remove old (expired [AGE] ago, [SIZE])
Would remove older (expired [AGE] ago, [SIZE])
        Kept job-1 (released, expires in [AGE])
  Would free [SIZE] in 2 dirs; would be [PCT] used ([SIZE] free)

"#]]
    );
    let out = env.ok(env.path(), ["gc", "--all-expired"]);
    assert_data_eq!(
        transcript(&env, &out),
        str![[r#"
[exit 0]
--- stderr
  Reclaiming expired target dirs in [ROOT]: [PCT] used ([SIZE] free)
     Removed old (expired [AGE] ago, [SIZE])
     Removed older (expired [AGE] ago, [SIZE])
        Kept job-1 (released, expires in [AGE])
   Reclaimed [SIZE] in 2 dirs; now [PCT] used ([SIZE] free)

"#]]
    );
}

/// Runner-hook mode's compact lines: an expired dir removed, a live lease and a dir without a
/// lease kept.
#[test]
fn gc_hook_mode() {
    let env = Env::new();
    plant_job(&env.root, "old", &expired_lease("old", Some(1 << 20)));
    let mut live = expired_lease("live", None);
    live["state"] = "active".into();
    for field in ["created_at", "renewed_at"] {
        live[field] = ts(0).into();
    }
    live["expires_at"] = ts(600).into();
    plant_job(&env.root, "live", &live);
    std::fs::create_dir_all(env.root.join("broken/target")).unwrap();
    let out = run(&env, env.path(), &["gc", "--hook", "--all-expired"]);
    assert_data_eq!(
        transcript(&env, &out),
        str![[r#"
[exit 0]
--- stderr
     Removed old (expired [AGE] ago, [SIZE])
   Reclaimed [SIZE] in 1 dir of [ROOT]; now [PCT] used ([SIZE] free); kept 2 dirs: 1 lingering, 1 unreadable or skipped

"#]]
    );
}

#[test]
fn status_table_and_json() {
    let (env, ws) = expired_and_lingering();
    let table = run(&env, &ws, &["status"]);
    assert_data_eq!(
        columns(&transcript(&env, &table)),
        str![[r#"
[exit 0]
--- stdout
root [ROOT]: [SIZE] free of [SIZE] ([PCT] used), 2 job dirs
STATE  JOB  HOLDER  AGE  RENEWED  EXPIRES IN  SIZE  BUDGET  PRUNED  SCOPE  WORKSPACE
released  job-1  [HOST] (pid [PID])  [AGE]  [AGE] ago  [AGE]  [SIZE]*  [SIZE]  -  local  [TMP]/small
expired  old  runner-9 (pid [PID])  [AGE]  [AGE] ago  -  [SIZE]*  -  -  unknown  planted
total: live 0 dirs, [SIZE]; lingering 1 dir, [SIZE]; reclaimable 1 dir, [SIZE]
started: [TMP]/small: 0 of 1 warm (1 fresh)
started: planted: 0 of 0 warm (1 not recorded)
units: [TMP]/small: 0 reused, 2 compiled ([PCT] reused); saved ~[ELAPSED] (estimate: 1 cold build, [ELAPSED]s per compiled unit)
units: planted: 0 reused, 0 compiled (no units used), 1 dir not counted; saved unknown (estimate: no cold build on record)
units in total: 0 reused, 2 compiled ([PCT] reused), 1 dir not counted; saved ~[ELAPSED] (estimate)
* size recorded by the lease at release (0 while a job runs); `--sizes` measures now

"#]]
    );
    let json = run(&env, &ws, &["status", "--json"]);
    assert_data_eq!(
        transcript(&env, &json),
        str![[r#"
[exit 0]
--- stdout
{
  "version": 1,
  "root": "[ROOT]",
  "free_bytes": [BYTES],
  "total_bytes": [BYTES],
  "leases": [
    {
      "job_id": "job-1",
      "state": "released",
      "dir": "[ROOT]/job-1",
      "target_dir": "[ROOT]/job-1/target",
      "workspace": "[TMP]/small",
      "origin": "fresh",
      "scopes": [
        "local"
      ],
      "host": "[HOST]",
      "pid": [PID],
      "created_at": "[TIMESTAMP]",
      "renewed_at": "[TIMESTAMP]",
      "expires_at": "[TIMESTAMP]",
      "size_bytes": [BYTES],
      "size_measured": false,
      "pruned": null,
      "budget": {
        "size": [BYTES],
        "budget": [BYTES],
        "working_set": [BYTES],
        "over": false
      },
      "verified": null,
      "warmth": {
        "units_reused": 0,
        "units_compiled": 2,
        "steps": 1,
        "command_secs": [ELAPSED]
      },
      "cold": {
        "job_id": "job-1",
        "units": 2,
        "secs": [ELAPSED]
      }
    },
    {
      "job_id": "old",
      "state": "expired",
      "dir": "[ROOT]/old",
      "target_dir": "[ROOT]/old/target",
      "workspace": "planted",
      "origin": null,
      "scopes": null,
      "host": "runner-9",
      "pid": [PID],
      "created_at": "[TIMESTAMP]",
      "renewed_at": "[TIMESTAMP]",
      "expires_at": "[TIMESTAMP]",
      "size_bytes": [BYTES],
      "size_measured": false,
      "pruned": null,
      "budget": null,
      "verified": null,
      "warmth": null,
      "cold": null
    }
  ],
  "totals": {
    "live": {
      "dirs": 0,
      "bytes": [BYTES]
    },
    "lingering": {
      "dirs": 1,
      "bytes": [BYTES]
    },
    "reclaimable": {
      "dirs": 1,
      "bytes": [BYTES]
    },
    "unknown": {
      "dirs": 0,
      "bytes": [BYTES]
    }
  },
  "starts": [
    {
      "workspace": "[TMP]/small",
      "fresh": 1,
      "adopted": 0,
      "seeded": 0,
      "restored": 0,
      "unknown": 0,
      "units_verified": 0,
      "units_stale": 0,
      "resumed": 0,
      "units_reused": 0,
      "units_compiled": 2,
      "dirs_not_counted": 0,
      "cold_builds": 1,
      "cold_secs_per_unit": [ELAPSED],
      "saved_secs_estimate": [ELAPSED]
    },
    {
      "workspace": "planted",
      "fresh": 0,
      "adopted": 0,
      "seeded": 0,
      "restored": 0,
      "unknown": 1,
      "units_verified": 0,
      "units_stale": 0,
      "resumed": 0,
      "units_reused": 0,
      "units_compiled": 0,
      "dirs_not_counted": 1,
      "cold_builds": 0,
      "cold_secs_per_unit": null,
      "saved_secs_estimate": null
    }
  ],
  "warmth": {
    "units_reused": 0,
    "units_compiled": 2,
    "dirs_not_counted": 1,
    "saved_secs_estimate": [ELAPSED]
  }
}

"#]]
    );
}

/// `doctor` with only cargo and rustc on PATH and no LLVM search dirs, so the same problems are
/// found on every machine; the root's file system, tool versions and rustc's LLVM major are
/// wildcards (`[..]`) in the snapshot.
#[test]
fn doctor() {
    let env = Env::new();
    let ws = env.fixture("small");
    assert_success(&run(
        &env,
        &ws,
        &["--job-id", "job-1", "exec", "--", "true"],
    ));
    let bin = env.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["cargo", "rustc"] {
        let found = which::which(tool).unwrap();
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let empty = env.path().join("no-llvm");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = env.cmd(&ws);
    cmd.env("PATH", &bin)
        .env("CARGO_GUARDED_LLVM_SEARCH_DIRS", &empty)
        .args(["guarded", "doctor"]);
    let out = output(&mut cmd);
    assert_data_eq!(
        transcript(&env, &out),
        str![[r#"
[exit 0]
--- stdout
root            [ROOT] ([..])
locks           trusted (self-test passed)
free space      [SIZE] free of [SIZE]; reclaims expired dirs below [SIZE] up to [SIZE]; refuses to start below [SIZE]
cargo           [..]
rustc           [..]
cargo-llvm-cov  not installed
cargo-nextest   not installed
LLVM tools      none usable
CI              none detected (local)
job id          local-small-[HASH] (dir [ROOT]/local-small-[HASH])

3 problem(s):
  warning: cargo-llvm-cov is not installed: `cargo guarded llvm-cov` will fail
    fix: cargo install cargo-llvm-cov --locked
  warning: cargo-nextest is not installed: `cargo guarded nextest` will fail
    fix: cargo install cargo-nextest --locked
  warning: cargo-llvm-cov needs llvm-cov and llvm-profdata of LLVM [..], and none of LLVM [..] are in [TMP]/no-llvm, or on PATH
    fix: install LLVM [..]

"#]]
    );
}

/// The top-level help and each subcommand's, from files under tests/snapshots/help/.
#[test]
fn help() {
    let commands = [
        "",
        "env",
        "status",
        "gc",
        "exec",
        "hold",
        "doctor",
        "completions",
        "man",
    ];
    for command in commands {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd).arg("guarded");
        if !command.is_empty() {
            cmd.arg(command);
        }
        let out = output(cmd.arg("--help"));
        let name = if command.is_empty() {
            "guarded"
        } else {
            command
        };
        snapbox::assert::Assert::new()
            .action_env(snapbox::assert::DEFAULT_ACTION_ENV)
            .eq(
                raw_transcript(&out),
                snapshot_file(&format!("help/{name}.txt")),
            );
    }
}

/// A step on GitHub Actions: a fresh build, then one refused with exit 75, then `gc` reclaiming
/// another repository's expired dir.
#[test]
fn github_step_outputs_and_summary() {
    let env = Env::new();
    let ws = env.fixture("small");
    let github = |n: u32, args: &[&str]| {
        let step = GithubStep::new(env.path().join(format!("step-{n}")));
        let mut cmd = env.cmd(&ws);
        step.apply(&mut cmd).arg("guarded").args(args);
        let out = output(&mut cmd);
        format!("{}{}", transcript(&env, &out), redact(&env, &step.files()))
    };
    assert_data_eq!(
        github(1, &["build"]),
        str![[r#"
[exit 0]
--- stderr
     Created root [ROOT]
       Using job dir [ROOT]/gh-octo_app-7001-1-build-runner-1-2b9b4a5b (fresh dir: no finished dir of this workspace to adopt or seed from)
   Compiling util v0.1.0 ([TMP]/small/util)
   Compiling app v0.1.0 ([TMP]/small/app)
    Finished `dev` profile [unoptimized + debuginfo] target(s) in [ELAPSED]s
--- GITHUB_OUTPUT
target-dir=[ROOT]/gh-octo_app-7001-1-build-runner-1-2b9b4a5b/target
job-id=gh-octo/app-7001-1-build-runner-1
reclaimed-bytes=[BYTES]
origin=fresh
warm=false
--- GITHUB_ENV
--- GITHUB_STEP_SUMMARY
### cargo guarded `build`

Job `gh-octo/app-7001-1-build-runner-1` builds in `[ROOT]/gh-octo_app-7001-1-build-runner-1-2b9b4a5b/target` (a fresh dir).

Disk of `[ROOT]` ([SIZE] total):

| | free | used |
|---|---:|---:|
| before | [SIZE] | [PCT] |
| after | [SIZE] | [PCT] |

Reclaimed nothing: no expired job dir had to go.

Kept 1 job dir(s): 1 live.

| job dir | why |
|---|---|
| `gh-octo_app-7001-1-build-runner-1-2b9b4a5b` (this job) | lease held by runner-1 (pid [PID]), renewed [AGE] ago |

Job `gh-octo/app-7001-1-build-runner-1` built cold: 2 units compiled in [ELAPSED]s ([ELAPSED]s per unit), on record for the estimates of this workspace's warm jobs.

At release, the dir is [SIZE] against its budget of [SIZE] ([SIZE] used by recent jobs).


"#]]
    );
    assert_data_eq!(
        github(2, &["--min-free", "100%", "build"]),
        str![[r#"
[exit 75]
--- stderr
::error title=cargo-guarded%3A not enough disk space::[SIZE] free on [ROOT], [SIZE] required by min-free ([BYTES] < [BYTES] bytes); no sweep ran (free space was above --reclaim-below); no other job dir holds space in the root: the space is used outside it; exit 75
error: not enough free disk space on [ROOT]: [SIZE] free ([BYTES] bytes), [SIZE] required ([BYTES] bytes) by --min-free
note: no sweep ran (free space was above --reclaim-below)
note: no other job dir holds space in the root: the space is used outside it
--- GITHUB_OUTPUT
target-dir=[ROOT]/gh-octo_app-7001-1-build-runner-1-2b9b4a5b/target
job-id=gh-octo/app-7001-1-build-runner-1
reclaimed-bytes=[BYTES]
origin=resumed
warm=true
--- GITHUB_ENV
--- GITHUB_STEP_SUMMARY
### cargo guarded `build`: refused to start

Not enough free disk space on `[ROOT]`: **[SIZE] free, [SIZE] required** by min-free ([BYTES] < [BYTES] bytes); no sweep ran (free space was above --reclaim-below). Exit status 75.

No other live lease holds space in the root.


"#]]
    );
    // Another repository's expired dir, for the sweep to reclaim and count without naming it.
    plant_job(&env.root, "old", &expired_lease("old", Some(1 << 20)));
    assert_data_eq!(
        github(3, &["gc", "--all-expired"]),
        str![[r#"
[exit 0]
--- stderr
::group::cargo-guarded: gc
  Reclaiming expired target dirs in [ROOT]: [PCT] used ([SIZE] free)
     Removed old (expired [AGE] ago, [SIZE])
        Kept gh-octo_app-7001-1-build-runner-1-2b9b4a5b (released, expires in [AGE])
   Reclaimed [SIZE] in 1 dir; now [PCT] used ([SIZE] free)
::endgroup::
--- GITHUB_OUTPUT
reclaimed-bytes=[BYTES]
--- GITHUB_ENV
--- GITHUB_STEP_SUMMARY
### cargo guarded gc

Disk of `[ROOT]` ([SIZE] total):

| | free | used |
|---|---:|---:|
| before | [SIZE] | [PCT] |
| after | [SIZE] | [PCT] |

**Reclaimed [SIZE]** from 1 expired job dir(s).

1 of them ([SIZE]) belonged to other repositories' jobs.

Kept 1 job dir(s): 1 lingering.

| job dir | why |
|---|---|
| `gh-octo_app-7001-1-build-runner-1-2b9b4a5b` | released, expires in [AGE] |


"#]]
    );
}

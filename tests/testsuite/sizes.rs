//! Numbers a user can trust: every size the tool records, prunes by or
//! prints counts each inode once (cargo hard-links binaries and build-script executables), and
//! what the guard says it frees is what the disk gets back, on a real XFS with reflinked
//! (shared) extents as on ext4 or tmpfs.

use crate::common::tmpfs;
use crate::common::xfs;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// A lease as cargo-guarded writes it, expired an hour ago.
fn expired_lease(job: &str) -> Value {
    json!({
        "protocol": 1, "job_id": job, "token": "t", "workspace": "planted", "toolchain": null,
        "host": "elsewhere", "boot_id": null, "runner": "runner-9", "pid": 4121,
        "created_at": ts(-7200), "renewed_at": ts(-7200), "expires_at": ts(-3600),
        "heartbeat_secs": 1, "ttl_secs": 600, "state": "released", "size_bytes": null,
        "command": []
    })
}

/// Plant an expired job dir `name` in `root` whose `target/` is what `fill` writes.
fn plant_expired(root: &Path, name: &str, fill: impl FnOnce(&Path)) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("target/debug")).unwrap();
    std::fs::write(root.join(".cargo-guarded-root"), "").unwrap();
    fill(&dir.join("target/debug"));
    let lease = serde_json::to_vec_pretty(&expired_lease(name)).unwrap();
    std::fs::write(dir.join("lease.json"), lease).unwrap();
    dir
}

/// `size` bytes that no filesystem can deduplicate or compress away.
fn random_file(path: &Path, size: u64) {
    let out = std::process::Command::new("head")
        .args(["-c", &size.to_string(), "/dev/urandom"])
        .output()
        .unwrap();
    std::fs::write(path, out.stdout).unwrap();
}

fn gc_json(env: &Env, extra: &[&str]) -> Value {
    let mut args = vec!["gc", "--json", "--all-expired"];
    args.extend_from_slice(extra);
    let out = env.ok(env.path(), &args);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("gc --json: {e}\n{}", describe(&out)))
}

/// `removed[].bytes` by job id.
fn removed_bytes(report: &Value, job: &str) -> u64 {
    report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["job_id"] == job)
        .unwrap_or_else(|| panic!("{job} not removed: {report:#}"))["bytes"]
        .as_u64()
        .unwrap()
}

/// On a reflink XFS, a dir whose files are reflinked copies of files that stay frees (almost)
/// nothing: `gc --dry-run` and `gc` both say so, and `statvfs` before and after the sweep agrees
/// with what `gc` reports within 1 MiB (directories and inodes). Before, both counted the
/// copy's apparent 24 MiB.
#[test]
fn on_a_reflink_xfs_gc_reports_what_the_disk_gets_back() {
    let mut env = Env::new();
    let Some(mnt) = xfs::Xfs::mount_or_skip(&env.path().join("mnt")) else {
        return;
    };
    env.root = mnt.path.join("root");
    std::fs::create_dir_all(mnt.path.join("kept")).unwrap();
    random_file(&mnt.path.join("kept/blob"), 24 * MIB);
    plant_expired(&env.root, "copy", |debug| {
        xfs::reflink_copy(&mnt.path.join("kept/blob"), &debug.join("blob"));
    });
    plant_expired(&env.root, "plain", |debug| {
        random_file(&debug.join("blob"), 16 * MIB);
    });

    let dry = gc_json(&env, &["--dry-run"]);
    let would_copy = removed_bytes(&dry, "copy");
    let would_plain = removed_bytes(&dry, "plain");
    assert!(
        would_copy < MIB,
        "a reflinked copy would free {would_copy}: {dry:#}"
    );
    assert!(would_plain >= 16 * MIB, "{would_plain}: {dry:#}");

    let (_, _, used_before) = xfs::space(&mnt.path);
    let report = gc_json(&env, &[]);
    let (copy, plain) = (
        removed_bytes(&report, "copy"),
        removed_bytes(&report, "plain"),
    );
    // XFS frees an unlinked inode's blocks in the background (deferred inactivation): under
    // load `statvfs` can lag the deletion for a moment, so it is read until it agrees (bounded).
    let mut freed = 0;
    wait_for(30, || {
        let (_, _, used_after) = xfs::space(&mnt.path);
        freed = used_before.saturating_sub(used_after);
        (copy + plain).abs_diff(freed) < MIB
    });
    assert!(
        copy < MIB,
        "removing a reflinked copy reported {copy}: {report:#}"
    );
    assert!(
        plain.abs_diff(would_plain) < MIB,
        "{plain} vs dry run {would_plain}"
    );
    assert!(
        (copy + plain).abs_diff(freed) < MIB,
        "gc reported {} freed, statvfs says {freed}: {report:#}",
        copy + plain
    );
    assert!(!env.root.join("copy").exists() && !env.root.join("plain").exists());
    assert_eq!(
        std::fs::metadata(mnt.path.join("kept/blob")).unwrap().len(),
        24 * MIB
    );
}

/// What `du -sb`-style arithmetic says `dir` holds: allocated bytes, each inode once, the dir
/// itself included (as `du -s` counts it). Written here independently of the tool's walk.
fn du_inode_once(dir: &Path) -> (u64, usize) {
    let mut seen = HashSet::new();
    let (mut bytes, mut linked) = (std::fs::metadata(dir).unwrap().blocks() * 512, 0);
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let md = std::fs::symlink_metadata(&path).unwrap();
            if md.is_dir() {
                stack.push(path);
            } else if md.nlink() > 1 {
                linked += 1;
                if !seen.insert((md.dev(), md.ino())) {
                    continue;
                }
            }
            bytes += md.blocks() * 512;
        }
    }
    (bytes, linked)
}

/// A real cargo build's dir (cargo hard-links the binary and the build-script executable) as
/// `status --sizes`, the lease's recorded size at release and `gc --dry-run` count it: each
/// inode once, as `du` does. Before, each measured more (hard links counted per name). A dry
/// run says exactly what the real run then frees: one size function, the dir's own blocks
/// included (a dry run said 12.0 KiB where the real run said 16.0 KiB).
#[test]
fn a_built_dir_is_measured_each_inode_once_everywhere() {
    let env = Env::new();
    let ws = env.fixture("small");
    env.ok(&ws, ["--job-id", "sizes", "--linger", "0s", "build"]);
    let dir = env.root.join(env.job_dirs().pop().unwrap());
    let (whole, linked) = du_inode_once(&dir);
    assert!(
        linked >= 2,
        "the fixture build has no hard links to count once"
    );
    let (target, _) = du_inode_once(&dir.join("target"));

    let recorded = env.lease(&dir.file_name().unwrap().to_string_lossy())["size_bytes"]
        .as_u64()
        .expect("release records a size");
    assert_eq!(
        recorded, target,
        "the lease's recorded size (target/ each inode once)"
    );

    let status = serde_json::from_slice::<Value>(
        &env.ok(env.path(), ["status", "--sizes", "--json"]).stdout,
    )
    .unwrap();
    let measured = status["leases"][0]["size_bytes"].as_u64().unwrap();
    assert_eq!(measured, whole, "status --sizes: {status:#}");

    let report = gc_json(&env, &["--dry-run"]);
    let would = removed_bytes(&report, "sizes");
    assert_eq!(would, whole, "gc --dry-run: {report:#}");
    let report = gc_json(&env, &[]);
    let removed = removed_bytes(&report, "sizes");
    assert_eq!(
        removed, would,
        "gc removed {removed}, its dry run said {would}"
    );
}

/// The size in an `Adopted <job> (warm, <size>, …)` line, in bytes (to a tenth of its unit).
fn adopted_size(out: &std::process::Output) -> f64 {
    let text = stderr(out);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("Adopted"))
        .unwrap_or_else(|| panic!("no adoption:\n{}", describe(out)));
    let size = line
        .split("(warm, ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let (n, unit) = size.split_once(' ').unwrap();
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => MIB as f64,
        "GiB" => (1u64 << 30) as f64,
        _ => panic!("unit in {line}"),
    };
    n.parse::<f64>().unwrap() * scale
}

/// A job that adopts a dir and grows it, in a later step too: the next adoption line says the
/// grown size, not the first job's recorded one carried from lease to lease (the issue's
/// `Adopted job-rerun (warm, 749.4 MiB …)` three jobs in a row), nor the size the job's first
/// step left (a later step within 10 minutes does not measure again at its release).
#[test]
fn an_adoption_reports_the_size_the_last_job_left() {
    let env = Env::new();
    let ws = env.fixture("small");
    let step = |id: &str, file: &str, mib: u64| {
        let write = format!("head -c {mib}M /dev/urandom > \"$CARGO_TARGET_DIR/{file}\"");
        env.ok(
            &ws,
            [
                // Adoption, not a seed (which keeps the freshest finished dir as its source).
                "--job-id",
                id,
                "--no-seed",
                "--linger",
                "0s",
                "exec",
                "--",
                "sh",
                "-c",
                &write,
            ],
        )
    };
    step("one", "blob-one", 1);
    let two = step("two", "blob-two", 12);
    assert!(adopted_size(&two) < 2.0 * MIB as f64, "{}", describe(&two));
    let three = step("three", "blob-three", 1);
    let said = adopted_size(&three);
    assert!(
        said > 12.5 * MIB as f64,
        "job three adopted a dir of 13 MiB, the line says {said} B:\n{}",
        describe(&three)
    );
    // A later step of job three (it resumes its dir) grows it by 20 MiB.
    step("three", "blob-three-later", 20);
    let four = step("four", "blob-four", 1);
    let said = adopted_size(&four);
    assert!(
        said > 33.5 * MIB as f64,
        "job four adopted a dir of 34 MiB, the line says {said} B:\n{}",
        describe(&four)
    );
}

/// `df`'s `Use%` of `path`, as it prints it.
fn df_pcent(path: &Path) -> u64 {
    let _ = std::process::Command::new("sync")
        .arg("-f")
        .arg(path)
        .status();
    let out = std::process::Command::new("df")
        .args(["--output=pcent"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap().trim().trim_end_matches('%');
    last.parse().unwrap()
}

/// On an ext4 with 5% reserved for root, "% used" is `df`'s, and a percentage
/// threshold has the same base: with `df` at N% used, `--reclaim-below (100-N-2)%` is no
/// pressure and `--reclaim-below (100-N+2)%` is. Before, both were shares of `f_blocks`
/// (reserve included) compared with `f_bavail`: status said about 4 points more than df and
/// the first threshold already counted as pressure.
#[test]
fn percent_used_and_percentage_thresholds_are_dfs() {
    let mut env = Env::new();
    let Some(mnt) = xfs::LoopFs::mount_or_skip(
        &env.path().join("mnt"),
        "ext4",
        &["-q", "-m", "5"],
        64 << 20,
    ) else {
        return;
    };
    env.root = mnt.path.join("root");
    random_file(&mnt.path.join("filler"), 16 * MIB);
    plant_expired(&env.root, "old", |debug| {
        random_file(&debug.join("blob"), MIB)
    });
    let used = df_pcent(&mnt.path);
    assert!((20..=50).contains(&used), "df says {used}% used");

    let out = env.ok(env.path(), ["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("({used}% used)")),
        "df says {used}% used; status:\n{text}"
    );

    let removed = |pct: u64| {
        let arg = format!("{pct}%");
        let out = env.ok(
            env.path(),
            ["--reclaim-below", &arg, "gc", "--dry-run", "--json"],
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        !report["removed"].as_array().unwrap().is_empty()
    };
    let free = 100 - used;
    assert!(
        !removed(free - 2),
        "{}% free is above --reclaim-below {}%",
        free,
        free - 2
    );
    assert!(
        removed(free + 2),
        "{}% free is below --reclaim-below {}%",
        free,
        free + 2
    );
}

/// Through the binary: `--reclaim-below 15`, `--min-free 2` and `--max-warm-size 3`
/// (options and variables alike) are usage errors naming the accepted forms, never bytes; no
/// error quotes a library's own message.
#[test]
fn a_size_without_a_unit_is_a_usage_error() {
    let env = Env::new();
    let ws = env.fixture("small");
    /// Arguments, variables, the forms the error must name.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (
            &["--reclaim-below", "15", "doctor"],
            &[],
            "`2GiB`, `500MB` or `15%`",
        ),
        (
            &["--min-free", "2", "build"],
            &[],
            "`2GiB`, `500MB` or `15%`",
        ),
        (
            &["--max-warm-size", "3", "build"],
            &[],
            "`3x`, `2GiB`, `500MB` or `off`",
        ),
        (
            &["doctor"],
            &[("CARGO_GUARDED_RECLAIM_BELOW", "15")],
            "`15%`",
        ),
    ];
    for (args, vars, forms) in cases {
        let mut cmd = env.cmd(&ws);
        cmd.arg("guarded").args(args).envs(vars.iter().copied());
        let out = output(&mut cmd);
        let text = stderr(&out);
        assert!(
            !out.status.success(),
            "{args:?} {vars:?} was accepted:\n{text}"
        );
        assert!(
            text.contains("has no unit") && text.contains(forms),
            "{args:?}:\n{text}"
        );
        for internal in ["ByteSize", "cannot parse", "variations"] {
            assert!(
                !text.contains(internal),
                "{args:?} shows {internal}:\n{text}"
            );
        }
    }
    let out = env.run(&ws, ["--ttl", "soon", "status"]);
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("variations"), "{}", describe(&out));
}

/// The guard's watermark arithmetic under pressure counts what each claimed dir holds now, not
/// its recorded size: two expired dirs of 8 MiB whose leases say 40 MiB (a size recorded before
/// hard links were counted once, or jobs ago) on a full 64 MiB tmpfs, `--reclaim-to 12M`: both
/// must go. Before, the first one's recorded 40 MiB "reached" the target and the second stayed.
#[test]
fn under_pressure_the_guard_counts_measured_sizes_not_recorded_ones() {
    let mut env = Env::new();
    let Some(mnt) = tmpfs::Tmpfs::mount_or_skip(&env.path().join("mnt"), "64m") else {
        return;
    };
    env.root = mnt.0.join("root");
    for (name, age) in [("older", 7200), ("newer", 3600)] {
        let dir = plant_expired(&env.root, name, |debug| {
            random_file(&debug.join("blob"), 8 * MIB)
        });
        let mut lease = expired_lease(name);
        lease["size_bytes"] = (40 * MIB).into();
        lease["expires_at"] = ts(-age).into();
        std::fs::write(dir.join("lease.json"), lease.to_string()).unwrap();
    }
    // Lay the root out (CACHEDIR.TAG, .trash/) while there is room: a sweep that removes nothing.
    let report = gc_json_plain(&env, &["--reclaim-below", "0", "--keep-expired", "5"]);
    assert!(
        report["removed"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    tmpfs::fill(&mnt.0);
    let report = gc_json_plain(
        &env,
        &[
            "--reclaim-below",
            "4M",
            "--reclaim-to",
            "12M",
            "--keep-expired",
            "5",
        ],
    );
    let mut removed: Vec<&str> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job_id"].as_str().unwrap())
        .collect();
    removed.sort();
    assert_eq!(removed, ["newer", "older"], "{report:#}");
    for job in ["newer", "older"] {
        let bytes = removed_bytes(&report, job);
        assert!(bytes.abs_diff(8 * MIB) < MIB, "{job}: {bytes}");
    }
}

/// `gc --json` without `--all-expired`.
fn gc_json_plain(env: &Env, extra: &[&str]) -> Value {
    let mut args = vec!["gc", "--json"];
    args.extend_from_slice(extra);
    let out = env.ok(env.path(), &args);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("gc --json: {e}\n{}", describe(&out)))
}

/// After any sequence of steps, the size the lease records is within 5% of what `status
/// --sizes` measures: `env` first (it measures an empty dir), then a build, a test run, a nextest
/// run, a step that writes 20 MB into `target/`, and `clean`.
#[test]
fn the_recorded_size_follows_every_step() {
    let env = Env::new();
    let ws = env.fixture("small");
    let job = ["--job-id", "sizes"];
    let recorded_and_measured = || {
        let status = serde_json::from_slice::<Value>(
            &env.ok(env.path(), ["status", "--sizes", "--json"]).stdout,
        )
        .unwrap();
        let measured = status["leases"][0]["size_bytes"].as_u64().unwrap();
        let recorded = env.lease("sizes")["size_bytes"].as_u64().unwrap_or(0);
        (recorded, measured)
    };
    let steps: [&[&str]; 6] = [
        &["env"],
        &["build"],
        &["test"],
        &["nextest", "run", "--no-tests=pass"],
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "head -c 20000000 /dev/urandom > \"$CARGO_TARGET_DIR/blob\"",
        ],
        &["clean"],
    ];
    for step in steps {
        let args: Vec<&str> = job.iter().chain(step).copied().collect();
        env.ok(&ws, &args);
        let (recorded, measured) = recorded_and_measured();
        assert!(
            recorded.abs_diff(measured) as f64 <= measured as f64 * 0.05 + 64.0 * 1024.0,
            "after {step:?}: recorded {recorded}, status --sizes {measured}"
        );
    }
}

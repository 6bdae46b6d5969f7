//! Deletion hardening: a bind mount inside an expired dir
//! keeps its data, a tree deeper than the fd limit goes, a read-only dir of the guard's own user
//! goes (another user's stays, reported as kept), freed bytes are counted, and hostile entries in
//! `.toolchains/` do not hang or exhaust a new job.

use crate::common::mounts;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use mounts::*;
use serde_json::Value;

/// Plant a job dir `name` whose lease expired an hour ago, claiming `size_bytes`.
fn expired(root: &Path, name: &str, size_bytes: Option<u64>) -> PathBuf {
    plant_job(root, name, &expired_lease(name, size_bytes))
}

fn report_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("gc --json: {e}\n{}", describe(out)))
}

/// The only entry of the root's `.trash/`.
fn trashed(root: &Path) -> PathBuf {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(root.join(".trash"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.pop().unwrap()
}

/// Item 2: a bind mount of the root's own filesystem has the root's device; only its mount id
/// tells it apart. The file under it survives, the rest of the expired dir goes, and the dir is
/// reported as kept (not removed), with the reason.
#[test]
fn a_bind_mount_inside_an_expired_dir_keeps_its_files() {
    if !root_or_skip("bind mount test") {
        return;
    }
    let env = Env::new();
    let data = env.path().join("elsewhere/data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("precious"), "keep me").unwrap();
    let dir = expired(&env.root, "old", None);
    std::fs::write(dir.join("target/debug/artifact"), vec![7u8; 4096]).unwrap();
    let mnt = Mount::bind(&data, &dir.join("target/debug/bound"));
    let out = env.run(env.path(), ["gc", "--all-expired", "--json"]);
    // The dir moved into the trash, and its mount with it.
    let moved = Mount(trashed(&env.root).join("target/debug/bound"));
    std::mem::forget(mnt);
    assert_eq!(
        std::fs::read_to_string(data.join("precious")).unwrap(),
        "keep me",
        "{}",
        describe(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report_of(&out);
    assert!(removed_names(&report).is_empty(), "{report:#}");
    let reason = kept_reason(&report, "old");
    assert!(reason.contains("only partly deleted"), "{reason}");
    assert!(reason.contains("bind mount"), "{reason}");
    assert!(!moved.0.parent().unwrap().join("artifact").exists());
    assert!(!trashed(&env.root).join("lease.json").exists());
    drop(moved);
}

/// A job dir that is itself a mount point (here a bind mount of the root's own filesystem, which
/// only the mount id tells apart) is not a job dir the guard may touch, and the reason says what
/// it is rather than "other filesystem".
#[test]
fn a_job_dir_that_is_a_bind_mount_is_skipped_as_a_mount_point() {
    if !root_or_skip("bind mount test") {
        return;
    }
    let env = Env::new();
    let data = expired(&env.root, "data", None);
    std::fs::write(data.join("target/debug/precious"), "keep me").unwrap();
    let source = env.path().join("source");
    std::fs::rename(&data, &source).unwrap();
    let _mnt = Mount::bind(&source, &env.root.join("bound"));
    let out = env.run(env.path(), ["gc", "--all-expired", "--json"]);
    let report = report_of(&out);
    assert!(removed_names(&report).is_empty(), "{report:#}");
    assert_eq!(
        kept_reason(&report, "bound"),
        "skipped: a mount point (another filesystem or a bind mount)",
        "{report:#}"
    );
    assert_eq!(
        std::fs::read_to_string(source.join("target/debug/precious")).unwrap(),
        "keep me"
    );
}

/// Item 12: a tree deeper than the fd limit, inside an expired job dir, goes whole.
#[test]
fn a_tree_deeper_than_the_fd_limit_is_deleted() {
    if !root_or_skip("prlimit test") {
        return;
    }
    let env = Env::new();
    let dir = expired(&env.root, "deep", None);
    let mut deep = dir.join("target/debug");
    for _ in 0..300 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom"), "x").unwrap();
    let mut cmd = env.cmd(env.path());
    cmd.args(["guarded", "gc", "--all-expired"]);
    let out = output(&mut wrapped(&["prlimit", "--nofile=64:64"], &cmd));
    assert_success(&out);
    assert!(!dir.exists(), "{}", describe(&out));
    assert_eq!(
        std::fs::read_dir(env.root.join(".trash")).unwrap().count(),
        0,
        "{}",
        describe(&out)
    );
}

/// Item 12's safety: an ancestor re-opened through `..` must be the dir the walk entered. Here
/// the dir being finished is moved out of the tree just before its parent is re-opened: its `..`
/// is now a dir outside the root, whose files must survive.
#[test]
fn a_dir_moved_out_during_the_walk_does_not_lead_it_outside() {
    let env = Env::new();
    let dir = expired(&env.root, "deep", None);
    let mut deep = dir.join("target/debug");
    for i in 0..40 {
        deep.push("d");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join(format!("f{i}")), "x").unwrap();
    }
    let outside = env.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("precious"), "keep me").unwrap();
    let mut cmd = env.cmd(env.path());
    cmd.args(["guarded", "gc", "--all-expired", "--json"]);
    let paused = env.paused(cmd, "gc", "remove-tree-reopen");
    // The dir the walk just emptied is the deepest one left.
    let mut done = trashed(&env.root).join("target/debug");
    while done.join("d").exists() {
        done.push("d");
    }
    assert_ne!(
        done.file_name().unwrap(),
        "debug",
        "the walk re-opened too early"
    );
    std::fs::rename(&done, outside.join("moved")).unwrap();
    let out = paused.resume(60);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me",
        "{}",
        describe(&out)
    );
    let reason = kept_reason(&report_of(&out), "deep");
    assert!(reason.contains("was moved"), "{reason}");
    // The walk stopped there: the rest stays in the trash.
    assert!(trashed(&env.root).join("target/debug").exists());
}

/// Measuring holds no fd per pending dir either: a dry run under a low fd limit sizes a wide
/// tree (like a `.fingerprint/` of hundreds of crates) in full.
#[test]
fn a_wide_tree_is_measured_under_a_low_fd_limit() {
    if !root_or_skip("prlimit test") {
        return;
    }
    let env = Env::new();
    let dir = expired(&env.root, "wide", None);
    for i in 0..300 {
        let sub = dir.join(format!("target/debug/.fingerprint/crate-{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("f"), vec![1u8; 64 << 10]).unwrap();
    }
    let mut cmd = env.cmd(env.path());
    cmd.args(["guarded", "gc", "--all-expired", "--dry-run", "--json"]);
    let out = output(&mut wrapped(&["prlimit", "--nofile=64:64"], &cmd));
    assert_success(&out);
    let report = report_of(&out);
    let bytes = report["removed"][0]["bytes"].as_u64().unwrap();
    assert!(bytes >= 300 * (64 << 10), "measured {bytes}: {report:#}");
}

const USER: u32 = 4242;

/// A root owned by a second user, with a temp dir they can traverse.
fn env_for_user() -> Env {
    let env = Env::new();
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(&env.root).unwrap();
    chown(&env.root, USER);
    env
}

fn run_as(env: &Env, uid: u32, args: &[&str]) -> std::process::Output {
    let mut cmd = env.cmd(env.path());
    cmd.arg("guarded").args(args);
    let wrapper = as_user(uid);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    output(&mut wrapped(&wrapper, &cmd))
}

/// Item 13: a job of a non-root user leaves read-only dirs (like Go's `0555` module cache) in
/// its target dir; the same user's guard deletes them.
#[test]
fn a_read_only_dir_of_the_guards_own_user_is_deleted() {
    if !root_or_skip("second-user test") {
        return;
    }
    let env = env_for_user();
    let script = "mkdir -p \"$CARGO_TARGET_DIR/gomod/pkg/sub\" \
                  && echo x > \"$CARGO_TARGET_DIR/gomod/pkg/sub/f\" \
                  && chmod -R a-w \"$CARGO_TARGET_DIR/gomod\" \
                  && mkdir \"$CARGO_TARGET_DIR/locked\" && chmod 0 \"$CARGO_TARGET_DIR/locked\"";
    let out = run_as(
        &env,
        USER,
        &[
            "--job-id", "ro", "--linger", "0s", "exec", "--", "sh", "-c", script,
        ],
    );
    assert_success(&out);
    let ro = env.root.join("ro");
    assert_eq!(ro.metadata().unwrap().uid(), USER);
    let out = run_as(&env, USER, &["gc", "--all-expired", "--json"]);
    assert_success(&out);
    assert_eq!(
        removed_names(&report_of(&out)),
        ["ro"],
        "{}",
        describe(&out)
    );
    assert!(!ro.exists());
    assert_eq!(
        std::fs::read_dir(env.root.join(".trash")).unwrap().count(),
        0
    );
}

/// Item 13, the other side: a read-only dir of another user is never chmodded; what cannot be
/// deleted is reported as kept, with the error, never as removed.
#[test]
fn another_users_read_only_dir_is_kept_and_reported() {
    if !root_or_skip("second-user test") {
        return;
    }
    let env = env_for_user();
    let dir = expired(&env.root, "mixed", None);
    std::fs::write(dir.join("target/debug/mine"), "x").unwrap();
    chown(&dir, USER);
    // Root's own, read-only, inside the user's dir.
    let theirs = dir.join("target/debug/theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("f"), "root's").unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = run_as(&env, USER, &["gc", "--all-expired", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report_of(&out);
    assert!(removed_names(&report).is_empty(), "{report:#}");
    let reason = kept_reason(&report, "mixed");
    assert!(reason.contains("only partly deleted"), "{reason}");
    assert!(reason.contains("ermission denied"), "{reason}");
    let left = trashed(&env.root).join("target/debug/theirs");
    assert_eq!(
        left.metadata().unwrap().permissions().mode() & 0o7777,
        0o555,
        "another user's dir was chmodded"
    );
    assert!(left.join("f").exists());
    assert!(!trashed(&env.root).join("target/debug/mine").exists());
}

/// Item 20: the freed bytes are what was unlinked: on a tmpfs, a file of 8 MiB counts, a file
/// of 12 MiB still hard-linked outside the dir does not, and neither does the lease's stale size.
#[test]
fn freed_bytes_are_counted_from_what_was_unlinked() {
    if !root_or_skip("tmpfs test") {
        return;
    }
    let mut env = Env::new();
    let mnt = Mount::tmpfs(&env.path().join("mnt"), 64);
    env.root = mnt.0.join("root");
    let dir = expired(&env.root, "old", Some(30 << 20));
    std::fs::write(dir.join("target/debug/gone"), vec![1u8; 8 << 20]).unwrap();
    std::fs::write(dir.join("target/debug/linked"), vec![2u8; 12 << 20]).unwrap();
    std::fs::hard_link(dir.join("target/debug/linked"), mnt.0.join("outside")).unwrap();
    let out = env.ok(env.path(), ["gc", "--all-expired", "--json"]);
    let report = report_of(&out);
    assert_eq!(removed_names(&report), ["old"], "{report:#}");
    let bytes = report["removed"][0]["bytes"].as_u64().unwrap();
    assert!(
        (8 << 20..(8 << 20) + (64 << 10)).contains(&bytes),
        "freed {bytes}, expected 8 MiB plus a few blocks: {report:#}"
    );
    assert_eq!(
        std::fs::metadata(mnt.0.join("outside")).unwrap().len(),
        12 << 20
    );
    drop(env);
    drop(mnt);
}

/// Item 9: a FIFO and a symlink to `/dev/zero` in `.toolchains/` in place of the cached answer:
/// a new job neither hangs nor exhausts its memory; it runs, finishes, and the entry is healed.
#[test]
fn hostile_toolchain_cache_entries_do_not_stop_a_job() {
    let env = Env::new();
    let ws = env.fixture("small");
    env.ok(&ws, ["--job-id", "first", "exec", "--", "true"]);
    let cache = env.root.join(".toolchains");
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(!entries.is_empty(), "the first job cached no toolchain");
    for (i, bad) in ["fifo", "zero"].iter().enumerate() {
        for entry in &entries {
            std::fs::remove_file(entry).unwrap();
            if *bad == "fifo" {
                let made = Command::new("mkfifo").arg(entry).status().unwrap();
                assert!(made.success());
            } else {
                symlink("/dev/zero", entry).unwrap();
            }
        }
        let job = format!("job-{i}");
        let run = env.spawn(&ws, &job, ["-v", "--job-id", &job, "exec", "--", "true"]);
        let out = run.finish(60);
        assert_success(&out);
        assert!(
            stderr(&out)
                .to_lowercase()
                .contains("ignored toolchain cache entry"),
            "{}",
            describe(&out)
        );
        for entry in &entries {
            assert!(
                entry.symlink_metadata().unwrap().is_file(),
                "{bad} not replaced"
            );
        }
    }
}

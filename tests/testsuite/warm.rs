//! A warm start is exactly as right as a cold build (docs/protocol.md#warm-starts-from-elsewhere):
//! a dir built in another checkout, or at another job's path, never hands a job a unit built
//! from other sources or one that points into another job's dir; and a fresh clone of the same
//! content starts warm. Every scenario is real cargo on `fixtures/warm`, whose binary prints
//! each input it was built from.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use crate::common::*;

/// A checkout of the fixture at `<tmp>/<name>`: a git work tree with an `origin`, as CI checks
/// out, so checkouts at different paths share the workspace key.
fn checkout(env: &Env, name: &str) -> PathBuf {
    let dir = env.fixture_as("warm", name);
    git(&dir, &["init", "-q", "."]);
    git(
        &dir,
        &[
            "remote",
            "add",
            "origin",
            "https://example.com/acme/warm.git",
        ],
    );
    dir
}

fn git(dir: &Path, args: &[&str]) {
    let out = output(
        std::process::Command::new("git")
            .args(args)
            .current_dir(dir),
    );
    assert_success(&out);
}

/// A copy of `from` at `to`, every file written now: a fresh clone of the same content.
fn fresh_clone(from: &Path, to: &Path) {
    copy_dir(from, to);
}

/// Set every mtime under `dir` (files and dirs, not `.git`) `ago` in the past: a persistent
/// checkout whose files were written long before any build.
fn age(dir: &Path, ago: Duration) {
    let when = SystemTime::now() - ago;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == ".git" || entry.file_name() == "target" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            age(&entry.path(), ago);
        }
        let f = std::fs::File::open(entry.path()).unwrap();
        f.set_modified(when).unwrap();
    }
    std::fs::File::open(dir)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// Change every input of `fixtures/warm` in checkout `dir` from version `was` to `v` (and add a
/// file to the directory its build script watches).
fn change_everything(dir: &Path, was: &str, v: &str) {
    let edit = |rel: &str, from: &str, to: &str| {
        let path = dir.join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{rel} has no {from}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    };
    edit(
        "lib/src/lib.rs",
        &format!("    {was}\n"),
        &format!("    {v}\n"),
    );
    edit(
        "shared/word.txt",
        &format!("word-{was}"),
        &format!("word-{v}"),
    );
    edit("lib/data.txt", &format!("data-{was}"), &format!("data-{v}"));
    std::fs::write(dir.join(format!("lib/assets/new-{v}.txt")), "new").unwrap();
    edit(
        "plain/input.txt",
        &format!("plain-{was}"),
        &format!("plain-{v}"),
    );
    edit("mac/src/lib.rs", &format!("mac-{was}"), &format!("mac-{v}"));
}

/// What the checkout's own sources say the app prints.
fn expected(dir: &Path, v: &str, assets: usize) -> String {
    format!(
        "answer={v} word=word-{v} data=data-{v} assets={assets} plain=plain-{v} mac=mac-{v} dir={}/lib",
        dir.display()
    )
}

fn job(env: &Env, dir: &Path, job: &str, args: &[&str]) -> Output {
    let mut cmd = env.cmd(dir);
    cmd.args(["guarded", "-v", "--job-id", job]).args(args);
    output(&mut cmd)
}

/// Run the app in job `id` (its first step) and return what it printed.
fn app(env: &Env, dir: &Path, id: &str, args: &[&str]) -> (String, Output) {
    let mut all = args.to_vec();
    all.extend(["run", "-q"]);
    let out = job(env, dir, id, &all);
    assert_success(&out);
    (stdout(&out).trim().to_owned(), out)
}

#[test]
fn a_persistent_checkout_adopting_or_seeding_builds_its_own_sources() {
    let env = Env::new();
    let main = checkout(&env, "main");
    let branch = checkout(&env, "branch");
    // The main checkout's files were written days ago; the branch changes every kind of input.
    age(&main, Duration::from_secs(3 * 86400));
    change_everything(&branch, "1", "2");
    let (printed, _) = app(&env, &branch, "a", &["--linger", "0s"]);
    assert_eq!(printed, expected(&branch, "2", 3));

    // Main edits only the app, and adopts the branch's expired dir.
    let main_rs = main.join("app/src/main.rs");
    let text = std::fs::read_to_string(&main_rs).unwrap();
    std::fs::write(&main_rs, format!("// edited\n{text}")).unwrap();
    let (printed, out) = app(&env, &main, "b", &["--no-seed"]);
    assert!(stderr(&out).contains("Adopted a"), "{}", describe(&out));
    assert_eq!(printed, expected(&main, "1", 2), "{}", describe(&out));
    assert!(stderr(&out).contains("Verified"), "{}", describe(&out));
    // `status` says what verification decided, per dir and per workspace.
    let status = env.status();
    let b = status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["job_id"] == "b")
        .unwrap();
    let stale: u64 = b["verified"]["stale"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(stale >= 4, "{b}");
    assert_eq!(status["starts"][0]["units_stale"].as_u64(), Some(stale));
    let table = stdout(&env.ok(env.path(), ["status"]));
    assert!(table.contains("made stale"), "{table}");

    // The branch builds again (lingering, so not adoptable), and main seeds from it.
    change_everything(&branch, "2", "3");
    let (printed, _) = app(&env, &branch, "c", &[]);
    assert_eq!(printed, expected(&branch, "3", 4));
    let (printed, out) = app(&env, &main, "d", &[]);
    assert!(stderr(&out).contains("Seeded"), "{}", describe(&out));
    assert_eq!(printed, expected(&main, "1", 2), "{}", describe(&out));
}

#[test]
fn a_clone_made_before_the_source_job_built_gets_its_own_sources() {
    let env = Env::new();
    let main = checkout(&env, "main");
    let pod = env.path().join("pod");
    fresh_clone(&main, &pod);
    // A file deleted in the pod's checkout: the directory a build script watches.
    std::fs::remove_file(pod.join("lib/assets/b.txt")).unwrap();
    // Another runner builds changed sources after the pod checked out.
    std::thread::sleep(Duration::from_millis(20));
    change_everything(&main, "1", "2");
    app(&env, &main, "a", &[]);
    let (printed, out) = app(&env, &pod, "b", &[]);
    assert!(stderr(&out).contains("Seeded"), "{}", describe(&out));
    assert_eq!(printed, expected(&pod, "1", 1), "{}", describe(&out));
}

#[test]
fn equal_content_on_a_fresh_clone_compiles_nothing_and_another_path_only_what_names_it() {
    let env = Env::new();
    let first = checkout(&env, "w");
    let (printed, _) = app(&env, &first, "a", &[]);
    assert_eq!(printed, expected(&first, "1", 2));

    // The pod's checkout: the same path, the same content, every mtime new.
    let tmp = env.path().join("w.tmp");
    fresh_clone(&first, &tmp);
    std::fs::remove_dir_all(&first).unwrap();
    std::fs::rename(&tmp, &first).unwrap();
    let out = job(&env, &first, "b", &["--restore-mtimes", "build"]);
    assert_success(&out);
    assert!(stderr(&out).contains("Seeded"), "{}", describe(&out));
    assert_eq!(compiled(&out), Vec::<String>::new(), "{}", describe(&out));
    // Its own next step resumes the dir: cargo's rules, nothing verified again.
    let out = job(&env, &first, "b", &["build"]);
    assert_success(&out);
    assert!(!stderr(&out).contains("Verified"), "{}", describe(&out));

    // At another path: only what names the checkout's path rebuilds (`lib` reads its manifest
    // dir and includes a file by absolute path), and what depends on it.
    let other = env.path().join("elsewhere");
    fresh_clone(&first, &other);
    let out = job(&env, &other, "c", &["--restore-mtimes", "build"]);
    assert_success(&out);
    assert_eq!(compiled(&out), ["app", "lib"], "{}", describe(&out));
    let (printed, _) = app(&env, &other, "c", &[]);
    assert_eq!(printed, expected(&other, "1", 2));

    // Without mtimes given back (outside CI), a fresh clone is right, only less warm.
    let third = env.path().join("third");
    fresh_clone(&first, &third);
    let out = job(&env, &third, "d", &["--restore-mtimes=0", "build"]);
    assert!(compiled_anything(&out), "{}", describe(&out));
    let (printed, _) = app(&env, &third, "d", &[]);
    assert_eq!(printed, expected(&third, "1", 2));

    // A record that does not parse is no record: every path unit rebuilds, nothing fails.
    std::fs::write(env.root.join("d/inputs.json"), "{ not json").unwrap();
    let fourth = env.path().join("fourth");
    fresh_clone(&first, &fourth);
    let (printed, out) = app(&env, &fourth, "e", &["--restore-mtimes"]);
    assert!(stderr(&out).contains("no record"), "{}", describe(&out));
    assert_eq!(printed, expected(&fourth, "1", 2));

    // Nor does a FIFO planted as the record, or as a unit's fingerprint: no read blocks on it.
    let record = env.root.join("e/inputs.json");
    std::fs::remove_file(&record).unwrap();
    let unit = std::fs::read_dir(env.root.join("e/target/debug/.fingerprint"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("lib-"))
        .unwrap();
    let json = std::fs::read_dir(&unit)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    std::fs::remove_file(&json).unwrap();
    for fifo in [&record, &json] {
        let made = std::process::Command::new("mkfifo")
            .arg(fifo)
            .status()
            .unwrap();
        assert!(made.success());
    }
    let fifth = env.path().join("fifth");
    fresh_clone(&first, &fifth);
    let (printed, out) = app(&env, &fifth, "f", &["--restore-mtimes"]);
    assert!(stderr(&out).contains("no record"), "{}", describe(&out));
    assert_eq!(printed, expected(&fifth, "1", 2));
}

#[test]
fn tests_run_this_jobs_binary_after_an_adoption_and_after_a_reclaimed_seed() {
    let env = Env::new();
    let ws = checkout(&env, "w");
    let out = job(&env, &ws, "a", &["--linger", "0s", "test"]);
    assert_success(&out);
    // Adopted: the test binary `env!`-baked `<root>/a/target/debug/app`, renamed away.
    let out = job(&env, &ws, "b", &["--no-seed", "test"]);
    assert!(stderr(&out).contains("Adopted a"), "{}", describe(&out));
    assert_success(&out);
    assert!(env.root.join("b/target/tmp/scratch").exists());

    // Seeded from a finished dir, whose source is reclaimed before this job's tests run.
    let out = job(&env, &ws, "c", &["test"]);
    assert_success(&out);
    let out = job(&env, &ws, "d", &["build"]);
    assert!(stderr(&out).contains("Seeded"), "{}", describe(&out));
    std::fs::remove_dir_all(env.root.join("c")).unwrap();
    let out = job(&env, &ws, "d", &["test"]);
    assert_success(&out);
    assert!(env.root.join("d/target/tmp/scratch").exists());
}

#[test]
fn a_breaking_change_seeded_from_a_good_dir_fails_its_tests() {
    let env = Env::new();
    let good = checkout(&env, "main");
    let out = job(&env, &good, "a", &["test"]);
    assert_success(&out);
    // The pull request breaks `lib`'s test; its checkout's files are older than main's build.
    let pr = checkout(&env, "pr");
    let lib = pr.join("lib/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, text.replace("    1\n", "    2\n")).unwrap();
    age(&pr, Duration::from_secs(86400));
    let out = job(&env, &pr, "b", &["test"]);
    assert!(stderr(&out).contains("Seeded"), "{}", describe(&out));
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains("answer_is_one"), "{}", describe(&out));
}

#[test]
fn a_new_checkout_at_the_same_path_is_not_the_checkout_the_dir_was_built_in() {
    let env = Env::new();
    let ws = checkout(&env, "w");
    change_everything(&ws, "1", "2");
    let (printed, _) = app(&env, &ws, "a", &[]);
    assert_eq!(printed, expected(&ws, "2", 3));
    // The runner's workspace is wiped and checked out again at the same path (as every
    // container's `/__w/<repo>/<repo>`), at an older commit whose files are older than the
    // build; the same job's next step resumes its dir.
    std::fs::remove_dir_all(&ws).unwrap();
    let again = checkout(&env, "w");
    assert_eq!(again, ws);
    age(&ws, Duration::from_secs(86400));
    let (printed, out) = app(&env, &ws, "a", &[]);
    assert!(stderr(&out).contains("Verified"), "{}", describe(&out));
    assert_eq!(printed, expected(&ws, "1", 2), "{}", describe(&out));
}

#[test]
fn what_plain_cargo_built_under_hold_is_recorded_at_its_release() {
    let env = Env::new();
    let ws = checkout(&env, "w");
    let hold = env.spawn(&ws, "hold", ["--job-id", "h", "hold"]);
    assert!(
        wait_for(60, || hold.stderr_so_far().contains("Holding")),
        "{}",
        hold.stderr_so_far()
    );
    // The job's plain cargo steps, in the dir `hold` keeps leased.
    let mut cargo = std::process::Command::new("cargo");
    clean_env(&mut cargo)
        .args(["build", "-q"])
        .env("CARGO_TARGET_DIR", env.root.join("h/target"))
        .current_dir(&ws);
    assert_success(&output(&mut cargo));
    // SIGTERM: how the action's end of job stops its holder.
    send_signal(hold.pid(), 15);
    assert_success(&hold.finish(60));
    let record = std::fs::read_to_string(env.root.join("h/inputs.json")).unwrap();
    assert!(record.contains("lib/src/lib.rs"), "{record}");
    // A job at another path starts from it: `lib` and `app` name the checkout's path, and
    // `mac` and `plain`, verified by content, stay warm.
    let other = env.path().join("other");
    fresh_clone(&ws, &other);
    let out = job(&env, &other, "j", &["--restore-mtimes", "build"]);
    assert_success(&out);
    assert_eq!(compiled(&out), ["app", "lib"], "{}", describe(&out));
}

//! `cargo guarded llvm-cov` against the real cargo-llvm-cov and LLVM tools, LLVM tool discovery,
//! and `doctor`.
//!
//! Without cargo-llvm-cov or LLVM tools of rustc's major these tests print `skipped: <why>` and
//! pass — unless `CARGO_GUARDED_REQUIRE_TOOLS=1` (set by `.ci/run`), which makes that a failure.
//! Coverage runs set `CARGO_LLVM_COV_SETUP=no`: should discovery ever hand cargo-llvm-cov nothing,
//! it must fail rather than run `rustup component add` on the test machine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// What this machine has

/// `program` on the test's own PATH.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file()))
}

struct Rustc {
    path: PathBuf,
    major: u32,
    component: PathBuf,
}

fn rustc() -> Rustc {
    let path = which("rustc").expect("rustc on PATH");
    let vv = Command::new(&path).arg("-vV").output().unwrap();
    let vv = String::from_utf8(vv.stdout).unwrap();
    let field = |name: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("`rustc -vV` has no {name}:\n{vv}"))
            .trim()
            .to_owned()
    };
    let major = field("LLVM version:")
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let sysroot = Command::new(&path)
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout).unwrap().trim());
    let component = sysroot.join("lib/rustlib").join(field("host:")).join("bin");
    Rustc {
        path,
        major,
        component,
    }
}

/// The LLVM major a tool's `--version` reports (`llvm-profdata merge --version` before LLVM 15).
fn tool_major(tool: &Path) -> Option<u32> {
    let ask = |args: &[&str]| -> Option<u32> {
        let out = Command::new(tool).args(args).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let rest = text.split_once("LLVM version ")?.1;
        rest.split('.').next()?.parse().ok()
    };
    ask(&["--version"]).or_else(|| ask(&["merge", "--version"]))
}

/// A dir holding llvm-cov and llvm-profdata of rustc's major where a distribution puts them.
fn matching_llvm_dir(major: u32) -> Option<PathBuf> {
    let dir = PathBuf::from(format!("/usr/lib/llvm-{major}/bin"));
    (tool_major(&dir.join("llvm-cov")) == Some(major)
        && tool_major(&dir.join("llvm-profdata")) == Some(major))
    .then_some(dir)
}

/// `Err(why)` is a skip, or a failure under `CARGO_GUARDED_REQUIRE_TOOLS=1`.
fn require(what: Result<(), String>) -> bool {
    crate::common::require("coverage tools", what).is_some()
}

/// The real cargo-llvm-cov and LLVM tools of rustc's major (the rustup component or a distribution
/// package).
fn coverage_tools() -> bool {
    require((|| {
        let ok = Command::new("cargo-llvm-cov")
            .args(["llvm-cov", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err("cargo-llvm-cov is not installed".to_owned());
        }
        let r = rustc();
        if r.component.join("llvm-profdata").exists() || matching_llvm_dir(r.major).is_some() {
            Ok(())
        } else {
            Err(format!(
                "no LLVM {} tools (neither the rustup llvm-tools component nor /usr/lib/llvm-{}/bin)",
                r.major, r.major
            ))
        }
    })())
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The binary as `Env::cmd` makes it, never letting cargo-llvm-cov install anything.
fn cov_cmd(env: &Env, cwd: &Path) -> Command {
    let mut cmd = env.cmd(cwd);
    cmd.env("CARGO_LLVM_COV_SETUP", "no");
    cmd.arg("guarded");
    cmd
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert_success(&out);
    out
}

/// `SF:` lines of an lcov report.
fn sources(lcov: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(lcov)
        .unwrap_or_else(|e| panic!("no lcov report at {}: {e}", lcov.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("SF:"))
        .map(PathBuf::from)
        .collect()
}

/// Lines of `file` the report says ran at least once.
fn lines_hit(lcov: &Path, file: &Path) -> usize {
    let text = std::fs::read_to_string(lcov).unwrap();
    let mut in_file = false;
    let mut hit = 0;
    for line in text.lines() {
        if let Some(sf) = line.strip_prefix("SF:") {
            in_file = Path::new(sf) == file;
        } else if in_file && let Some(da) = line.strip_prefix("DA:") {
            let count: u64 = da.split(',').nth(1).unwrap().parse().unwrap();
            hit += usize::from(count > 0);
        }
    }
    hit
}

/// The report covers exactly the workspace's sources (`expected`, relative to `ws`), each with
/// lines that ran, and nothing from anywhere else.
fn assert_covers(lcov: &Path, ws: &Path, expected: &[&str]) {
    let ws = ws.canonicalize().unwrap();
    let mut got: Vec<PathBuf> = sources(lcov)
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect();
    got.sort();
    let mut want: Vec<PathBuf> = expected.iter().map(|e| ws.join(e)).collect();
    want.sort();
    assert_eq!(got, want, "sources in {}", lcov.display());
    for file in &want {
        let raw = sources(lcov)
            .into_iter()
            .find(|p| p.canonicalize().is_ok_and(|c| c == *file))
            .unwrap();
        assert!(
            lines_hit(lcov, &raw) > 0,
            "{} has no lines hit",
            raw.display()
        );
    }
}

/// `<root>/<job>/target/llvm-cov-target`, which must exist.
fn assert_llvm_cov_target_in_job_dir(env: &Env, job: &str) {
    let dir = env.root.join(job).join("target/llvm-cov-target");
    assert!(dir.is_dir(), "{} is missing", dir.display());
}

/// Add a test to the fixture's util crate that waits (at most 10 minutes, then fails) until
/// `ready` says so, so a test scenario can hold a coverage run inside its test phase.
fn add_waiting_test(ws: &Path, name: &str, body: &str) {
    let lib = ws.join("util/src/lib.rs");
    let mut text = std::fs::read_to_string(&lib).unwrap();
    text += &format!(
        r#"
#[cfg(test)]
mod {name} {{
    use std::path::PathBuf;
    use std::time::{{Duration, Instant}};

    #[test]
    fn {name}() {{
        let dir = PathBuf::from(std::env::var_os("MEET_DIR").expect("MEET_DIR is set"));
        let start = Instant::now();
        let wait = |ready: &dyn Fn() -> bool, what: &str| {{
            while !ready() {{
                assert!(start.elapsed() < Duration::from_secs(600), "gave up waiting for {{what}}");
                std::thread::sleep(Duration::from_millis(20));
            }}
        }};
        {body}
    }}
}}
"#
    );
    std::fs::write(lib, text).unwrap();
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A `rustc` that is the real one except for `rustc --print sysroot`, which names an empty dir:
/// the rustup llvm-tools component is hidden even where it is installed, so discovery must run.
fn rustc_without_component(env: &Env) -> PathBuf {
    let r = rustc();
    let fake_sysroot = env.path().join("fake-sysroot");
    std::fs::create_dir_all(&fake_sysroot).unwrap();
    let path = env.path().join("fake-rustc");
    write_script(
        &path,
        &format!(
            "if [ \"$1\" = --print ] && [ \"$2\" = sysroot ] && [ $# = 2 ]; then echo '{}'; exit 0; fi\n\
             exec '{}' \"$@\"",
            fake_sysroot.display(),
            r.path.display()
        ),
    );
    path
}

/// A dir with llvm-cov/llvm-profdata of another LLVM major, plain and versioned (Debian style).
fn other_major_tools(env: &Env, major: u32) -> PathBuf {
    let dir = env.path().join(format!("llvm-{major}-bin"));
    std::fs::create_dir_all(&dir).unwrap();
    for tool in ["llvm-cov", "llvm-profdata"] {
        for name in [tool.to_owned(), format!("{tool}-{major}")] {
            write_script(
                &dir.join(name),
                &format!("echo 'Debian LLVM version {major}.1.7'; echo '  Optimized build.'"),
            );
        }
    }
    dir
}

/// A fake `cargo-llvm-cov` (where the real one is not the point) that records the LLVM
/// variables it was started with.
fn recording_cargo_llvm_cov(env: &Env) -> (PathBuf, PathBuf) {
    let dir = env.path().join("fake-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let record = env.path().join("cargo-llvm-cov.env");
    write_script(
        &dir.join("cargo-llvm-cov"),
        &format!(
            "echo \"LLVM_COV=$LLVM_COV\" > '{0}'; echo \"LLVM_PROFDATA=$LLVM_PROFDATA\" >> '{0}'",
            record.display()
        ),
    );
    (dir, record)
}

fn path_with(first: &[&Path]) -> std::ffi::OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = first.iter().map(|p| p.to_path_buf()).collect();
    dirs.extend(std::env::split_paths(&rest));
    std::env::join_paths(dirs).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Coverage, for real

#[test]
fn lcov_report_covers_the_fixture_and_everything_lands_in_the_job_dir() {
    if !coverage_tools() {
        return;
    }
    let env = Env::new();
    let ws = env.fixture("small");
    let lcov = env.path().join("lcov.info");
    run_ok(
        cov_cmd(&env, &ws)
            .args(["--job-id", "cov", "llvm-cov", "--lcov", "--output-path"])
            .arg(&lcov),
    );
    assert_covers(&lcov, &ws, &["app/src/main.rs", "util/src/lib.rs"]);
    assert_eq!(env.job_dirs(), ["cov"]);
    assert_llvm_cov_target_in_job_dir(&env, "cov");
    assert!(!ws.join("target").exists(), "./target must not be created");
    assert_eq!(env.lease("cov")["state"], "released");
}

#[test]
fn two_workspaces_covered_at_once_in_one_root_each_report_only_their_own_sources() {
    if !coverage_tools() {
        return;
    }
    let env = Env::new();
    let meet = env.path().join("meet");
    std::fs::create_dir(&meet).unwrap();
    let alpha = env.fixture_as("small", "alpha");
    let beta = env.fixture_as("small", "beta");
    // beta has a source file alpha lacks.
    std::fs::write(
        beta.join("util/src/extra.rs"),
        "pub fn triple(x: u32) -> u32 {\n    x * 3\n}\n\n#[test]\nfn triples() {\n    assert_eq!(triple(2), 6);\n}\n",
    )
    .unwrap();
    let lib = beta.join("util/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("pub mod extra;\n{text}")).unwrap();
    // Each job's tests wait for the other's: both coverage runs are in their test phase at
    // once, after each cleaned its profiles at start. Sharing a dir, each would merge (or
    // delete) the other's profiles.
    for (ws, me, other) in [(&alpha, "alpha", "beta"), (&beta, "beta", "alpha")] {
        add_waiting_test(
            ws,
            "meet",
            &format!(
                "std::fs::write(dir.join(\"{me}\"), \"\").unwrap();\n        \
                 wait(&|| dir.join(\"{other}\").exists(), \"the other coverage job's tests\");"
            ),
        );
    }
    let spawn = |ws: &Path, job: &str| {
        let lcov = env.path().join(format!("{job}.lcov"));
        let mut cmd = cov_cmd(&env, ws);
        cmd.env("MEET_DIR", &meet)
            .args(["--job-id", job, "llvm-cov", "--lcov", "--output-path"])
            .arg(&lcov)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        (cmd.spawn().unwrap(), lcov)
    };
    let (a, a_lcov) = spawn(&alpha, "job-alpha");
    let (b, b_lcov) = spawn(&beta, "job-beta");
    assert_success(&a.wait_with_output().unwrap());
    assert_success(&b.wait_with_output().unwrap());
    assert_covers(&a_lcov, &alpha, &["app/src/main.rs", "util/src/lib.rs"]);
    assert_covers(
        &b_lcov,
        &beta,
        &["app/src/main.rs", "util/src/extra.rs", "util/src/lib.rs"],
    );
    assert_eq!(env.job_dirs(), ["job-alpha", "job-beta"]);
    assert_llvm_cov_target_in_job_dir(&env, "job-alpha");
    assert_llvm_cov_target_in_job_dir(&env, "job-beta");
}

#[test]
fn a_guard_sweeping_at_forced_pressure_during_a_coverage_run_does_not_hurt_it() {
    if !coverage_tools() {
        return;
    }
    let env = Env::new();
    let ws = env.fixture("small");
    let meet = env.path().join("meet");
    std::fs::create_dir(&meet).unwrap();
    // An expired dir of another workspace, for the guard to reclaim: proof that it is deleting.
    env.ok(
        env.path(),
        ["--job-id", "old", "--linger", "0s", "exec", "--", "true"],
    );
    assert_eq!(env.job_dirs(), ["old"]);
    // The fixture's test phase lasts until three more sweeps have finished, so sweeps run while
    // the instrumented tests write their profiles (and more run while the report is made).
    add_waiting_test(
        &ws,
        "guard_sweeps",
        "let sweeps = || std::fs::read_to_string(dir.join(\"sweeps\")).ok()\
             .and_then(|s| s.trim().parse::<usize>().ok()).unwrap_or(0);\n        \
         let at_start = sweeps();\n        \
         wait(&|| sweeps() >= at_start + 3, \"three guard sweeps\");",
    );

    let stop = AtomicBool::new(false);
    let swept = AtomicUsize::new(0);
    let lcov = env.path().join("lcov.info");
    let out = std::thread::scope(|s| {
        let guard = s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                assert_success(&env.run(env.path(), ["gc", "--reclaim-below", "100%"]));
                let n = swept.fetch_add(1, Ordering::SeqCst) + 1;
                std::fs::write(meet.join("sweeps.tmp"), n.to_string()).unwrap();
                std::fs::rename(meet.join("sweeps.tmp"), meet.join("sweeps")).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let out = output(
            cov_cmd(&env, &ws)
                .env("MEET_DIR", &meet)
                .args(["--job-id", "cov", "llvm-cov", "--lcov", "--output-path"])
                .arg(&lcov),
        );
        stop.store(true, Ordering::SeqCst);
        guard.join().expect("every guard sweep succeeded");
        out
    });
    assert_success(&out);
    assert!(swept.load(Ordering::SeqCst) >= 3);
    assert_covers(&lcov, &ws, &["app/src/main.rs", "util/src/lib.rs"]);
    assert_eq!(env.job_dirs(), ["cov"], "the guard reclaimed `old` only");
    assert_llvm_cov_target_in_job_dir(&env, "cov");
}

#[test]
fn report_in_a_later_step_of_the_same_job_finds_the_profiles() {
    if !coverage_tools() {
        return;
    }
    let env = Env::new();
    let ws = env.fixture("small");
    let lcov = env.path().join("lcov.info");
    run_ok(cov_cmd(&env, &ws).args(["--job-id", "steps", "llvm-cov", "--no-report"]));
    assert!(!lcov.exists());
    // Between steps a guard runs at full pressure: the released lease lingers, so it stays.
    env.ok(env.path(), ["gc", "--reclaim-below", "100%"]);
    run_ok(
        cov_cmd(&env, &ws)
            .args([
                "--job-id",
                "steps",
                "llvm-cov",
                "report",
                "--lcov",
                "--output-path",
            ])
            .arg(&lcov),
    );
    assert_covers(&lcov, &ws, &["app/src/main.rs", "util/src/lib.rs"]);
    assert_eq!(env.job_dirs(), ["steps"]);
    // The profiles are the job's: another job id has none to report.
    let other = output(
        cov_cmd(&env, &ws)
            .args([
                "--job-id",
                "other",
                "llvm-cov",
                "report",
                "--lcov",
                "--output-path",
            ])
            .arg(env.path().join("other.lcov")),
    );
    assert!(!other.status.success(), "{}", describe(&other));
}

// ---------------------------------------------------------------------------------------------
// LLVM tool discovery

#[test]
fn with_the_variables_unset_the_tools_of_rustcs_major_are_found_and_passed_on() {
    let r = rustc();
    let Some(real_dir) = matching_llvm_dir(r.major) else {
        require(Err(format!(
            "no LLVM {} tools in /usr/lib/llvm-{}/bin to discover",
            r.major, r.major
        )));
        return;
    };
    let env = Env::new();
    let ws = env.fixture("small");
    let fake_rustc = rustc_without_component(&env);
    let (fake_bin, record) = recording_cargo_llvm_cov(&env);
    let other = other_major_tools(&env, r.major - 3);
    // Built-in search dirs; then an explicit list whose first dir (and PATH's first dir) holds
    // another major, which must be passed over.
    let runs: [(Option<std::ffi::OsString>, std::ffi::OsString); 2] = [
        (None, path_with(&[&fake_bin])),
        (
            Some(std::env::join_paths([&other, &real_dir]).unwrap()),
            path_with(&[&other, &fake_bin]),
        ),
    ];
    for (dirs, path) in runs {
        let _ = std::fs::remove_file(&record);
        let mut cmd = cov_cmd(&env, &ws);
        cmd.env("RUSTC", &fake_rustc).env("PATH", &path);
        if let Some(dirs) = &dirs {
            cmd.env("CARGO_GUARDED_LLVM_SEARCH_DIRS", dirs);
        }
        let out = run_ok(cmd.args(["-v", "llvm-cov", "--lcov"]));
        let seen = std::fs::read_to_string(&record).unwrap();
        for (var, tool) in [("LLVM_COV", "llvm-cov"), ("LLVM_PROFDATA", "llvm-profdata")] {
            let value = seen
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{var}=")))
                .unwrap();
            let path = Path::new(value);
            assert!(path.ends_with(tool), "{var}={value}");
            assert_eq!(tool_major(path), Some(r.major), "{var}={value}");
            assert!(!path.starts_with(&other), "{var}={value}");
            // `-v` says what was set.
            assert!(
                stderr(&out).contains(&format!("{var}={value}")),
                "{}",
                describe(&out)
            );
        }
    }
}

#[test]
fn with_only_another_major_available_it_fails_with_the_install_hint() {
    let r = rustc();
    let env = Env::new();
    let ws = env.fixture("small");
    let fake_rustc = rustc_without_component(&env);
    let (fake_bin, record) = recording_cargo_llvm_cov(&env);
    let other = other_major_tools(&env, r.major - 3);
    // Nothing else on PATH and no built-in dirs: only the other major's tools are visible.
    let out = output(
        cov_cmd(&env, &ws)
            .env("RUSTC", &fake_rustc)
            .env("PATH", std::env::join_paths([&fake_bin, &other]).unwrap())
            .env("CARGO_GUARDED_LLVM_SEARCH_DIRS", &other)
            .args(["llvm-cov", "--lcov", "--output-path", "x.lcov"]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    for needle in [
        format!("LLVM {}", r.major),
        format!("apt-get install llvm-{}", r.major),
        "rustup component add llvm-tools".to_owned(),
        format!(
            "{} is LLVM {}",
            other.canonicalize().unwrap().join("llvm-cov").display(),
            r.major - 3
        ),
    ] {
        assert!(err.contains(&needle), "no `{needle}` in:\n{err}");
    }
    assert!(
        !record.exists(),
        "cargo-llvm-cov must not have been started"
    );
    assert!(
        env.job_dirs().is_empty(),
        "no lease is taken for a run that cannot start"
    );
    // `clean` needs no LLVM tools and still runs.
    run_ok(
        cov_cmd(&env, &ws)
            .env("RUSTC", &fake_rustc)
            .env("PATH", std::env::join_paths([&fake_bin, &other]).unwrap())
            .env("CARGO_GUARDED_LLVM_SEARCH_DIRS", &other)
            .args(["llvm-cov", "clean"]),
    );
    assert!(record.exists());
}

/// Only one variable set, to a real LLVM 14 tool (Debian's llvm-14, not rustc's major): its
/// partner is LLVM 14's too, never rustc's LLVM's, and `-v` says which major it is. And a tool of rustc's major gets its partner from its own dir.
#[test]
fn a_users_tool_is_paired_with_a_partner_of_its_own_major() {
    let r = rustc();
    let old = PathBuf::from("/usr/lib/llvm-14/bin");
    if !require(
        if tool_major(&old.join("llvm-cov")) == Some(14) && r.major != 14 {
            Ok(())
        } else {
            Err("no LLVM 14 tools in /usr/lib/llvm-14/bin (install llvm-14)".to_owned())
        },
    ) {
        return;
    }
    let env = Env::new();
    let ws = env.fixture("small");
    let (fake_bin, record) = recording_cargo_llvm_cov(&env);
    let seen = |var: &str| -> String {
        let text = std::fs::read_to_string(&record).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{var}=")))
            .unwrap()
            .to_owned()
    };
    for (var, tool, partner_var, partner) in [
        ("LLVM_COV", "llvm-cov", "LLVM_PROFDATA", "llvm-profdata"),
        ("LLVM_PROFDATA", "llvm-profdata", "LLVM_COV", "llvm-cov"),
    ] {
        let _ = std::fs::remove_file(&record);
        let mine = old.join(tool);
        let out = run_ok(
            cov_cmd(&env, &ws)
                .env("PATH", path_with(&[&fake_bin]))
                .env(var, &mine)
                .args(["-v", "llvm-cov", "--lcov"]),
        );
        assert_eq!(seen(var), mine.to_str().unwrap());
        let got = PathBuf::from(seen(partner_var));
        assert_eq!(
            tool_major(&got),
            Some(14),
            "{partner_var}={}",
            got.display()
        );
        assert_eq!(got, old.join(partner));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{var}={} (LLVM 14) is set", mine.display())),
            "{}",
            describe(&out)
        );
        assert!(!err.contains("rustc's LLVM major"), "{}", describe(&out));
        assert!(
            err.contains(&format!("is LLVM 14, but rustc's LLVM is {}", r.major)),
            "{}",
            describe(&out)
        );
    }
    if let Some(dir) = matching_llvm_dir(r.major) {
        let _ = std::fs::remove_file(&record);
        let out = run_ok(
            cov_cmd(&env, &ws)
                .env("PATH", path_with(&[&fake_bin]))
                .env("LLVM_COV", dir.join("llvm-cov"))
                .args(["-v", "llvm-cov", "--lcov"]),
        );
        assert_eq!(
            PathBuf::from(seen("LLVM_PROFDATA")),
            dir.join("llvm-profdata")
        );
        assert!(!stderr(&out).contains("warning"), "{}", describe(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// doctor

fn doctor_json(env: &Env, cwd: &Path, extra: &[&str], vars: &[(&str, &str)]) -> (Value, Output) {
    let mut cmd = env.cmd(cwd);
    cmd.arg("guarded").args(extra).args(["doctor", "--json"]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = output(&mut cmd);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}):\n{}", describe(&out)));
    (json, out)
}

fn problems(json: &Value) -> Vec<(String, String, String)> {
    json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_owned();
            (s("severity"), s("problem"), s("fix"))
        })
        .collect()
}

#[test]
fn doctor_reports_a_root_that_does_not_exist_yet_without_creating_it() {
    let r = rustc();
    let env = Env::new();
    let ws = env.fixture("small");
    let (json, out) = doctor_json(&env, &ws, &["--job-id", "my-job"], &[]);
    assert!(!env.root.exists(), "doctor must not create the root");
    let root = &json["root"];
    assert_eq!(root["path"], env.root.to_str().unwrap());
    assert_eq!(root["exists"], false);
    assert_eq!(root["checked"], env.path().to_str().unwrap());
    assert!(root["filesystem"].is_string());
    assert!(root["lock_trust"].is_null());
    let total = root["total_bytes"].as_u64().unwrap();
    assert!(root["free_bytes"].as_u64().unwrap() <= total);
    // Defaults: 15%, 20%, 2 GiB; percentages of df's base (used plus available).
    assert_eq!(
        root["reclaim_below_bytes"].as_u64().unwrap(),
        (df_base(env.path()) as f64 * 15.0 / 100.0).ceil() as u64
    );
    assert_eq!(root["min_free_bytes"], 2u64 << 30);
    assert_eq!(json["toolchain"]["llvm_major"], r.major);
    assert!(
        json["toolchain"]["cargo"]
            .as_str()
            .unwrap()
            .starts_with("cargo ")
    );
    assert_eq!(json["ci"]["detected"], Value::Null);
    assert_eq!(json["ci"]["job_id"], "my-job");
    assert_eq!(
        json["ci"]["job_dir"],
        env.root.join("my-job").to_str().unwrap()
    );
    assert_eq!(
        json["cargo_llvm_cov"].is_null(),
        which("cargo-llvm-cov").is_none()
    );
    assert_eq!(
        json["cargo_nextest"].is_null(),
        which("cargo-nextest").is_none()
    );
    // The LLVM tools: of rustc's major if any, else a problem naming the package.
    match json["llvm_tools"]["llvm_cov"].as_str() {
        Some(cov) => assert_eq!(tool_major(Path::new(cov)), Some(r.major), "{json:#}"),
        None => assert!(
            problems(&json)
                .iter()
                .any(|p| p.2.contains(&format!("apt-get install llvm-{}", r.major))),
            "{json:#}"
        ),
    }
    let errors = problems(&json).iter().filter(|p| p.0 == "error").count();
    assert_eq!(out.status.success(), errors == 0, "{}", describe(&out));

    let text = env.run(&ws, ["--job-id", "my-job", "doctor"]);
    let text = stdout(&text);
    for needle in [
        env.root.to_str().unwrap(),
        "does not exist yet",
        &format!("LLVM {}", r.major),
        "job id",
        "my-job",
        "cargo-llvm-cov",
        "cargo-nextest",
        "LLVM tools",
    ] {
        assert!(text.contains(needle), "no `{needle}` in:\n{text}");
    }
    assert!(!env.root.exists(), "doctor must not create the root");
}

#[test]
fn doctor_checks_locks_free_space_and_ci_of_an_existing_root() {
    let env = Env::new();
    let ws = env.fixture("small");
    env.ok(&ws, ["exec", "--", "true"]);
    let (json, _) = doctor_json(&env, &ws, &[], &[]);
    assert_eq!(json["root"]["exists"], true);
    let trust = json["root"]["lock_trust"].as_str().unwrap();
    assert!(
        trust == "trusted (self-test passed)" || trust.starts_with("untrusted ("),
        "{trust}"
    );

    // Forced untrusted locks: reported, with a fix.
    let (json, _) = doctor_json(&env, &ws, &[], &[("CARGO_GUARDED_LOCKS", "untrusted")]);
    assert_eq!(
        json["root"]["lock_trust"],
        "untrusted (forced by CARGO_GUARDED_LOCKS)"
    );
    assert!(
        problems(&json)
            .iter()
            .any(|p| p.1.contains("locks on") && p.2.contains("local filesystem")),
        "{json:#}"
    );

    // Free space below --reclaim-below: a warning; below --min-free: an error and exit 1.
    let (json, out) = doctor_json(
        &env,
        &ws,
        &["--reclaim-below", "100%", "--min-free", "0"],
        &[],
    );
    assert_eq!(
        json["root"]["reclaim_below_bytes"].as_u64().unwrap(),
        df_base(&env.root)
    );
    assert!(
        problems(&json)
            .iter()
            .any(|p| p.0 == "warning" && p.1.contains("--reclaim-below")),
        "{json:#}"
    );
    assert!(!problems(&json).iter().any(|p| p.1.contains("--min-free")));
    assert!(out.status.success(), "{}", describe(&out));
    let (json, out) = doctor_json(&env, &ws, &["--min-free", "100%"], &[]);
    assert!(
        problems(&json)
            .iter()
            .any(|p| p.0 == "error" && p.1.contains("--min-free")),
        "{json:#}"
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    // CI: GitHub Actions is recognised and its job id derived; an unknown CI is a warning.
    let gh = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_REPOSITORY", "acme/widgets"),
        ("GITHUB_RUN_ID", "42"),
        ("GITHUB_JOB", "coverage"),
    ];
    let (json, _) = doctor_json(&env, &ws, &[], &gh);
    assert_eq!(json["ci"]["detected"], "GitHub Actions");
    assert!(
        json["ci"]["job_id"]
            .as_str()
            .unwrap()
            .starts_with("gh-acme/widgets-42-1-coverage"),
        "{json:#}"
    );
    let (json, _) = doctor_json(&env, &ws, &[], &[("CI", "true")]);
    assert!(
        problems(&json)
            .iter()
            .any(|p| p.1.contains("CI is set") && p.2.contains("CARGO_GUARDED_JOB_ID")),
        "{json:#}"
    );
    let (json, _) = doctor_json(&env, &ws, &["--job-id", "x"], &[("CI", "true")]);
    assert!(!problems(&json).iter().any(|p| p.1.contains("CI is set")));
}

/// What percentages are of, as df's Use% counts it: used plus available to unprivileged users
/// (`f_blocks - f_bfree + f_bavail`), without the blocks reserved for root. Constant while the
/// disk fills and empties, so other processes writing meanwhile do not change it.
fn df_base(path: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-f", "-c", "%b %f %a %S"])
        .arg(path)
        .output()
        .unwrap();
    let n: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (n[0] - n[1] + n[2]) * n[3]
}

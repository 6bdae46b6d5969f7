//! Bad input: each mistake is one line on stderr and exit 1, before any cargo runs, and nothing
//! is created outside the root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::common::*;

/// Run `cargo guarded ARGS build`-like commands with extra environment, in a fresh fixture.
fn run_with(env: &Env, ws: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = env.cmd(ws);
    cmd.envs(vars.iter().copied()).arg("guarded").args(args);
    output(&mut cmd)
}

/// Exit 1, exactly one `error:` line that contains every one of `needles`, cargo never started.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", describe(out));
    let line = one_line_error(out);
    for n in needles {
        assert!(line.contains(n), "the error should name {n:?}: {line}");
    }
    assert!(!compiled_anything(out), "{}", describe(out));
    assert!(out.stdout.is_empty(), "{}", describe(out));
}

/// Exit 1, clap's own rendering: an `error:` first line, then clap's tips and usage; the message
/// names every one of `needles`; cargo never started.
fn assert_clap_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", describe(out));
    let err = stderr(out);
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "{}", describe(out));
    for n in needles {
        assert!(err.contains(n), "the error should name {n:?}: {err}");
    }
    assert!(
        err.contains("For more information, try '--help'."),
        "{}",
        describe(out)
    );
    assert!(!compiled_anything(out), "{}", describe(out));
    assert!(out.stdout.is_empty(), "{}", describe(out));
}

#[test]
fn bad_arguments_and_environment_are_one_line_errors() {
    // (environment, arguments, what the error must name)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        (&[], &["--frobnicate", "build"], &["--frobnicate"]),
        (&[], &["--ttl", "soon", "build"], &["soon"]),
        (&[], &["--linger=forever", "build"], &["forever"]),
        (&[], &["--min-free", "lots", "build"], &["lots"]),
        (&[], &["--reclaim-below", "150%", "build"], &["150%"]),
        (
            &[("CARGO_GUARDED_TTL", "abc")],
            &["build"],
            &["CARGO_GUARDED_TTL", "abc"],
        ),
        (
            &[("CARGO_GUARDED_MIN_FREE", "lots")],
            &["build"],
            &["CARGO_GUARDED_MIN_FREE", "lots"],
        ),
        (
            &[("CARGO_GUARDED_WAIT", "a while")],
            &["exec", "--", "true"],
            &["CARGO_GUARDED_WAIT", "a while"],
        ),
        (&[], &["--color", "sometimes", "build"], &["sometimes"]),
        (&[], &["--job-id=", "build"], &["--job-id"]),
        (&[], &["exec"], &["<PROGRAM>"]),
        (&[], &[], &["no command given"]),
        (
            &[("CARGO_GUARDED_ADOPT", "maybe")],
            &["build"],
            &["CARGO_GUARDED_ADOPT", "maybe"],
        ),
        (
            &[("CARGO_GUARDED_LOCKS", "sometimes")],
            &["build"],
            &["CARGO_GUARDED_LOCKS", "sometimes"],
        ),
        (
            &[("CARGO_GUARDED_KEEP_EXPIRED", "many")],
            &["build"],
            &["CARGO_GUARDED_KEEP_EXPIRED", "many"],
        ),
    ];
    for (vars, args, needles) in cases {
        let env = Env::new();
        let ws = env.fixture("small");
        let before = env.outside_root();
        let out = run_with(&env, &ws, vars, args);
        if vars.is_empty() && !args.is_empty() {
            assert_clap_error(&out, needles);
        } else {
            assert_one_line_error(&out, needles);
        }
        assert!(!ws.join("target").exists());
        assert_eq!(
            env.outside_root(),
            before,
            "{args:?}: created outside the root"
        );
        assert!(
            env.job_dirs().is_empty(),
            "{vars:?} {args:?}: a lease was taken for invalid input"
        );
    }
}

#[test]
fn a_root_that_is_a_file_is_a_one_line_error() {
    let env = Env::new();
    let ws = env.fixture("small");
    let file = env.path().join("root-file");
    std::fs::write(&file, "not a dir").unwrap();
    let before = env.outside_root();
    for root in [file.clone(), file.join("root")] {
        let out = run_with(
            &env,
            &ws,
            &[("CARGO_GUARDED_ROOT", root.to_str().unwrap())],
            &["build"],
        );
        assert_one_line_error(&out, &[root.to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a dir");
        assert!(!ws.join("target").exists());
        assert_eq!(
            env.outside_root(),
            before,
            "{root:?}: created outside the root"
        );
    }
}

/// Makes directories unwritable for as long as it lives: `chmod 555`, or as root (whom
/// permissions do not stop) the immutable attribute, `chattr +i`.
struct ReadOnly(Vec<std::path::PathBuf>);

impl ReadOnly {
    /// `Err(reason)` when this machine cannot make a directory unwritable for us.
    fn make(dirs: &[&Path]) -> Result<ReadOnly, String> {
        let guard = ReadOnly(Vec::new());
        let mut guard = guard;
        for dir in dirs {
            if is_root() {
                let out = std::process::Command::new("chattr")
                    .arg("+i")
                    .arg(dir)
                    .output()
                    .map_err(|e| format!("running as root and chattr is unavailable ({e})"))?;
                if !out.status.success() {
                    return Err(format!(
                        "running as root and `chattr +i` failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            } else {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            }
            guard.0.push(dir.to_path_buf());
        }
        Ok(guard)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        for dir in &self.0 {
            if is_root() {
                let _ = std::process::Command::new("chattr")
                    .arg("-i")
                    .arg(dir)
                    .status();
            } else {
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            }
        }
    }
}

#[test]
fn an_unwritable_root_is_a_one_line_error() {
    let env = Env::new();
    let ws = env.fixture("small");
    // A root that cannot be created, and an existing root that cannot be written.
    let parent = env.path().join("read-only");
    let existing = env.path().join("read-only-root");
    std::fs::create_dir(&parent).unwrap();
    std::fs::create_dir(&existing).unwrap();
    // Where it cannot run, `a_root_that_is_a_file_is_a_one_line_error` still covers a root
    // that cannot be created.
    let Some(_read_only) = require("an unwritable dir", ReadOnly::make(&[&parent, &existing]))
    else {
        return;
    };
    let before = env.outside_root();
    for root in [parent.join("root"), existing.clone()] {
        let out = run_with(
            &env,
            &ws,
            &[("CARGO_GUARDED_ROOT", root.to_str().unwrap())],
            &["build"],
        );
        assert_one_line_error(&out, &[root.to_str().unwrap()]);
        assert!(!ws.join("target").exists());
        assert_eq!(
            env.outside_root(),
            before,
            "{root:?}: created outside the root"
        );
    }
}

#[test]
fn a_program_that_cannot_start_is_one_error_and_releases_the_lease() {
    let env = Env::new();
    let ws = env.fixture("small");
    let missing = env.path().join("no-such-program");
    let out = env.run(
        &ws,
        [
            "--job-id".as_ref(),
            "missing".as_ref(),
            "exec".as_ref(),
            "--".as_ref(),
            missing.as_os_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{}", describe(&out));
    assert!(
        errors[0].contains(missing.to_str().unwrap()),
        "{}",
        describe(&out)
    );
    assert_eq!(env.lease("missing")["state"], "released");
    assert!(!is_locked(&env.root.join("missing")));
}

/// Limits that make no sense: a TTL the heartbeat cannot keep is refused with the floor named;
/// a negative size or duration says it cannot be negative (not clap's "unexpected argument");
/// a lease longer than a day is taken, with a warning; `--help` says what `G` and `GiB` mean.
#[test]
fn limits_that_make_no_sense_are_refused_or_warned_about() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--ttl", "0s", "build"], &["--ttl", "0s", "floor of 1s"]),
        (&["--ttl", "500ms", "build"], &["500ms", "floor of 1s"]),
        (
            &["--min-free", "-5GiB", "build"],
            &["--min-free", "-5GiB", "sizes cannot be negative"],
        ),
        (
            &["--max-root-size", "-1G", "gc"],
            &["-1G", "sizes cannot be negative"],
        ),
        (
            &["--reclaim-below", "-5%", "gc"],
            &["-5%", "cannot be negative"],
        ),
        (&["--linger", "-1h", "build"], &["-1h", "negative"]),
    ];
    for (args, needles) in cases {
        let env = Env::new();
        let ws = env.fixture("small");
        let out = run_with(&env, &ws, &[], args);
        assert_clap_error(&out, needles);
        assert!(
            !stderr(&out).contains("unexpected argument"),
            "{}",
            describe(&out)
        );
        assert!(env.job_dirs().is_empty(), "{args:?}: a lease was taken");
    }
    let env = Env::new();
    let ws = env.fixture("small");
    let out = run_with(&env, &ws, &[("CARGO_GUARDED_TTL", "0s")], &["build"]);
    assert_one_line_error(&out, &["CARGO_GUARDED_TTL", "floor of 1s"]);

    for (flag, what) in [
        ("--ttl", "a dir whose job died"),
        ("--linger", "a released dir"),
    ] {
        let out = env.run(&ws, ["--job-id", "long", flag, "30d", "exec", "--", "true"]);
        assert_success(&out);
        let warning = stderr(&out)
            .lines()
            .find(|l| l.starts_with("warning: ") && l.contains(flag))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no warning for {flag} 30d: {}", describe(&out)));
        assert!(
            warning.contains("30days") && warning.contains("beyond 1day") && warning.contains(what),
            "{warning}"
        );
    }
    let help = stdout(&env.ok(&ws, ["--help"]));
    assert!(
        help.contains("`2GiB` (or `2Gi`) is 2 x 1024^3 bytes, `2GB` (or `2G`) is 2 x 1000^3"),
        "{help}"
    );
}

/// `gc --hook` runs before every job on a runner: whatever is wrong, it exits 0 with a warning
/// naming the problem (as its help and the README say), never an `error:`, and changes nothing.
#[test]
fn gc_hook_exits_0_with_a_warning_whatever_is_wrong() {
    let env = Env::new();
    let foreign = env.path().join("home");
    std::fs::create_dir_all(foreign.join("docs")).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let file = env.path().join("root-file");
    std::fs::write(&file, "not a dir").unwrap();
    let read_only = env.path().join("read-only-root");
    std::fs::create_dir(&read_only).unwrap();
    let unwritable = require("an unwritable dir", ReadOnly::make(&[&read_only]));
    let good = env.path().join("root");
    std::fs::create_dir(&good).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    // (root, extra environment, what the warning must name)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, Vec<String>);
    let mut cases: Vec<Case> = vec![
        (
            path(&foreign),
            vec![],
            vec![path(&foreign), "not a cargo-guarded root".into()],
        ),
        (path(&file), vec![], vec![path(&file)]),
        (
            path(&good),
            vec![("CARGO_GUARDED_TTL", "abc")],
            vec!["CARGO_GUARDED_TTL".into(), "abc".into()],
        ),
        (
            path(&good),
            vec![("CARGO_GUARDED_LOCKS", "sometimes")],
            vec!["CARGO_GUARDED_LOCKS".into(), "sometimes".into()],
        ),
    ];
    if unwritable.is_some() {
        cases.push((path(&read_only), vec![], vec![path(&read_only)]));
    }
    for (root, vars, needles) in &cases {
        let before = env.outside_root();
        let mut cmd = env.cmd(env.path());
        cmd.env("CARGO_GUARDED_ROOT", root)
            .envs(vars.iter().copied())
            .args(["guarded", "gc", "--hook"]);
        let out = output(&mut cmd);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{root} {vars:?}: {}",
            describe(&out)
        );
        let err = stderr(&out);
        assert!(!err.contains("error:"), "{root} {vars:?}: {err}");
        let warning = err
            .lines()
            .find(|l| l.starts_with("warning: "))
            .unwrap_or_else(|| panic!("{root} {vars:?}: no warning: {err}"));
        for n in needles {
            assert!(
                warning.contains(n.as_str()),
                "{root} {vars:?}: should name {n}: {warning}"
            );
        }
        assert_eq!(
            env.outside_root(),
            before,
            "{root} {vars:?}: changed something"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a dir");
    assert_eq!(std::fs::read_dir(&read_only).unwrap().count(), 0);
}

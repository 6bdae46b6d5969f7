//! contrib/: the runner hook and the systemd units, run as the runner and systemd run them.

use super::*;

#[test]
fn hook_run_twice_at_once_with_live_leases_exits_0_and_removes_nothing_live() {
    let env = Env::new();
    let ws = env.fixture("small");
    expired_dir(&env, "old");
    let mut live = env.live_holder(&ws, "live");
    let live_dir = job_dir(&env, "live");
    let ws2 = env.fixture_as("small", "other");
    let mut live2 = env.live_holder(&ws2, "live-2");
    let live2_dir = job_dir(&env, "live-2");

    let hook = |name: &str| -> Child {
        let mut cmd = hook_cmd(&env);
        cmd.env("CARGO_GUARDED_BIN", BIN)
            .env("CARGO_GUARDED_RECLAIM_BELOW", "100%")
            .env("RUNNER_NAME", name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let (a, b) = (hook("runner-1"), hook("runner-2"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_success(&a);
    assert_success(&b);
    let both = format!("{}{}", stderr(&a), stderr(&b));
    assert_eq!(
        both.matches("Removed old").count(),
        1,
        "exactly one sweep removes the expired dir\n{}\n{}",
        describe(&a),
        describe(&b)
    );

    assert!(
        live.running() && live2.running(),
        "a live build was disturbed"
    );
    assert!(live_dir.join("lease.json").exists() && live2_dir.join("lease.json").exists());
    assert_eq!(lease_state(&env, "live").as_deref(), Some("active"));
    assert_eq!(lease_state(&env, "live-2").as_deref(), Some("active"));
    assert_eq!(lease_state(&env, "old"), None);
}

/// The runner runs the hook as `bash -e {path}` (and fails the job if it exits non-zero): the
/// command to run it exactly so, in the test's clean environment.
fn hook_cmd(env: &Env) -> Command {
    let base = env.cmd(env.path());
    let mut cmd = Command::new("bash");
    cmd.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.arg("-e")
        .arg(Path::new(SOURCE).join("contrib/runner-job-started.sh"))
        .current_dir(env.path());
    cmd
}

/// The hook run as the runner runs it, with `extra` variables set and `remove` unset.
fn run_hook(env: &Env, extra: &[(&str, &str)], remove: &[&str]) -> Output {
    let mut cmd = hook_cmd(env);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    output(&mut cmd)
}

#[test]
fn hook_never_fails_the_job() {
    let env = Env::new();
    let warned = |out: &Output, what: &str| {
        assert_success(out);
        assert!(
            stdout(out).contains("::warning::cargo-guarded hook:") && stdout(out).contains(what),
            "{}",
            describe(out)
        );
    };
    // A root that cannot be a root (a file): the sweep fails, the job does not.
    let file_root = env.path().join("not-a-dir");
    std::fs::write(&file_root, "x").unwrap();
    let root = file_root.to_str().unwrap();
    let out = run_hook(
        &env,
        &[("CARGO_GUARDED_BIN", BIN), ("CARGO_GUARDED_ROOT", root)],
        &[],
    );
    // `gc --hook` says so with a warning and exits 0; the script makes it an annotation.
    warned(
        &out,
        "is not a directory; gc --hook did nothing; the job goes on",
    );
    assert!(
        !stdout(&out).contains("exited with status"),
        "{}",
        describe(&out)
    );

    // A bad setting.
    let out = run_hook(
        &env,
        &[
            ("CARGO_GUARDED_BIN", BIN),
            ("CARGO_GUARDED_RECLAIM_BELOW", "lots"),
        ],
        &[],
    );
    warned(&out, "CARGO_GUARDED_RECLAIM_BELOW");
    warned(&out, "the job goes on");

    // A binary that is not there (127).
    let out = run_hook(
        &env,
        &[("CARGO_GUARDED_BIN", "/nonexistent/cargo-guarded")],
        &[],
    );
    warned(&out, "exited with status 127; the job goes on");

    // A sweep that times out (124): a stand-in binary that hangs.
    let hang = env.path().join("hang");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = run_hook(
        &env,
        &[
            ("CARGO_GUARDED_BIN", hang.to_str().unwrap()),
            ("CARGO_GUARDED_HOOK_TIMEOUT", "0.2s"),
        ],
        &[],
    );
    warned(&out, "exited with status 124; the job goes on");

    // No binary anywhere: it says so and lets the job run.
    let empty = env.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let path = format!("{}:/usr/bin:/bin", empty.display());
    let out = run_hook(
        &env,
        &[("PATH", &path), ("HOME", env.path().to_str().unwrap())],
        &[],
    );
    warned(&out, "cargo-guarded not found");
}

/// Without CARGO_GUARDED_ROOT the hook sweeps the CLI's default root, the one the runner user's
/// jobs use, not a fixed path of its own.
#[test]
fn hook_default_root_is_the_clis() {
    let env = Env::new();
    let home = env.path().join("home");
    let ws = env.fixture("small");
    let job = |args: &[&str]| {
        let mut cmd = env.cmd(&ws);
        cmd.env_remove("CARGO_GUARDED_ROOT")
            .env("HOME", &home)
            .env_remove("XDG_CACHE_HOME")
            .arg("guarded")
            .args(args);
        output(&mut cmd)
    };
    // Released with no linger: expired at once.
    assert_success(&job(&[
        "--job-id", "old", "--linger", "0s", "exec", "--", "true",
    ]));
    let default_root = home.join(".cache/cargo-guarded");
    assert!(default_root.join("old").is_dir());
    let out = run_hook(
        &env,
        &[
            ("CARGO_GUARDED_BIN", BIN),
            ("HOME", home.to_str().unwrap()),
            ("CARGO_GUARDED_RECLAIM_BELOW", "100%"),
        ],
        &["CARGO_GUARDED_ROOT", "XDG_CACHE_HOME"],
    );
    assert_success(&out);
    assert!(!stdout(&out).contains("::warning::"), "{}", describe(&out));
    assert!(!default_root.join("old").exists(), "{}", describe(&out));
}

#[test]
fn systemd_units_verify() {
    // CI installs it (.ci/run) and turns this skip into a failure.
    let found = which("systemd-analyze").map_err(|_| "not installed (install systemd)".to_owned());
    let Some(analyze) = require("systemd-analyze", found) else {
        return;
    };
    let env = Env::new();
    let dir = env.path().join("units");
    std::fs::create_dir_all(&dir).unwrap();
    let contrib = Path::new(SOURCE).join("contrib");
    let service = std::fs::read_to_string(contrib.join("cargo-guarded-gc.service")).unwrap();
    // A plain `gc`: a scheduled sweep keeps the warm reserve (`guard::the_shipped_sweeps_keep_…` runs
    // this very command line on a real small disk).
    assert!(service.contains("ExecStart=/usr/local/bin/cargo-guarded guarded gc\n"));
    // verify insists that the ExecStart binary exists: point it at the built one.
    std::fs::write(
        dir.join("cargo-guarded-gc.service"),
        service.replace("/usr/local/bin/cargo-guarded", BIN),
    )
    .unwrap();
    std::fs::copy(
        contrib.join("cargo-guarded-gc.timer"),
        dir.join("cargo-guarded-gc.timer"),
    )
    .unwrap();
    let out = output(Command::new(&analyze).arg("verify").args([
        dir.join("cargo-guarded-gc.service"),
        dir.join("cargo-guarded-gc.timer"),
    ]));
    assert_success(&out);
    // verify exits 0 on unknown keys and bad values; it only says so on stderr.
    assert_eq!(stderr(&out), "", "{}", describe(&out));

    // Hardened: the sandbox lets it write the root and nothing else, and
    // systemd's own exposure score stays low.
    assert!(
        service.contains("Environment=CARGO_GUARDED_ROOT=/srv/cargo-guarded")
            && service.contains("ReadWritePaths=/srv/cargo-guarded")
            && service.contains("ProtectSystem=strict")
    );
    let out = output(
        Command::new(&analyze)
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(dir.join("cargo-guarded-gc.service")),
    );
    let text = stdout(&out);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for cargo-guarded-gc.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score\n{}", describe(&out)));
    assert!(score <= 1.5, "exposure {score} > 1.5\n{text}");
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn sccache_wrapper_keeps_per_job_variables_out_of_the_cache_key() {
    let env = Env::new();
    let ws = env.fixture("small");
    // A stand-in sccache that records the CARGO_* environment it is given (what sccache would
    // hash) and runs the compiler.
    let bin = env.path().join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let seen = env.path().join("seen");
    std::fs::create_dir_all(&seen).unwrap();
    let fake = bin.join("sccache");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nenv | grep '^CARGO_' | sort > '{}/'$$\nexec \"$@\"\n",
            seen.display()
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&fake, perm).unwrap();

    let mut cmd = env.cmd(&ws);
    let mut path = OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    cmd.env("PATH", path)
        .env(
            "RUSTC_WRAPPER",
            Path::new(SOURCE).join("contrib/sccache-wrapper.sh"),
        )
        .args(["guarded", "--job-id", "job-1", "build"]);
    let out = output(&mut cmd);
    assert_success(&out);
    assert!(job_dir(&env, "job-1").join("target/debug/app").exists());

    let mut compiles = 0;
    for e in std::fs::read_dir(&seen).unwrap().flatten() {
        let vars = std::fs::read_to_string(e.path()).unwrap();
        if !vars.contains("CARGO_CRATE_NAME=") {
            continue; // `rustc -vV` and other queries
        }
        compiles += 1;
        for line in vars.lines() {
            assert!(
                !line.starts_with("CARGO_GUARDED_") && !line.starts_with("CARGO_TARGET_DIR="),
                "a per-job variable reached sccache: {line}"
            );
        }
    }
    assert!(compiles >= 2, "the fake sccache saw {compiles} compiles");
}

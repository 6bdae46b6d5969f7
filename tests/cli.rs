//! The command line as a user meets it (issue 11): `help <cmd>`, typos and non-projects that fail
//! before any lease, clap's own error rendering, cargo-style output, one colour decision passed on
//! to the wrapped command, and workspace detection that reads TOML (`gc` saying why it reclaims
//! nothing is pinned whole in tests/snapshots.rs).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use snapbox::assert_data_eq;

/// No job dir was taken: the root was never even created.
fn assert_no_lease(env: &Env, what: &str) {
    assert!(
        !env.root.exists() || env.job_dirs().is_empty(),
        "{what}: a lease was taken: {:?}",
        env.job_dirs()
    );
}

#[test]
fn help_for_a_command_is_ours_and_takes_no_lease() {
    let env = Env::new();
    let ws = env.fixture("small");
    // The same text as `gc --help` and `--help` (tests/snapshots.rs pins those).
    let out = env.ok(&ws, ["help", "gc"]);
    assert_data_eq!(raw_transcript(&out), snapshot_file("help/gc.txt"));
    let out = env.ok(&ws, ["help"]);
    assert_data_eq!(raw_transcript(&out), snapshot_file("help/guarded.txt"));
    assert_no_lease(&env, "help");
}

#[test]
fn a_mistyped_command_fails_before_any_lease_with_clap_s_tip() {
    let env = Env::new();
    let ws = env.fixture("small");
    for (typo, meant) in [("biuld", "build"), ("stauts", "status"), ("tset", "test")] {
        let out = env.run(&ws, [typo]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("error: unrecognized subcommand '{typo}'")),
            "{err}"
        );
        assert!(
            err.contains(&format!("tip: a similar subcommand exists: '{meant}'")),
            "{err}"
        );
        assert!(!compiled_anything(&out), "{}", describe(&out));
        assert_no_lease(&env, typo);
    }
}

#[test]
fn installed_subcommands_and_config_aliases_are_known() {
    let env = Env::new();
    let ws = env.fixture("small");
    // A third-party `cargo-frob` on PATH, as `cargo install` would put it.
    let bin = env.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let frob = bin.join("cargo-frob");
    std::fs::write(
        &frob,
        "#!/bin/sh\nprintf '%s' \"$CARGO_TARGET_DIR\" > \"$0.ran\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&frob, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = env.cmd(&ws);
    cmd.env("PATH", &path).args(["guarded", "frob"]);
    let out = output(&mut cmd);
    assert_success(&out);
    let target = std::fs::read_to_string(bin.join("cargo-frob.ran")).unwrap();
    assert!(target.starts_with(env.root.to_str().unwrap()), "{target}");
    // A typo of it gets it as the tip.
    let mut cmd = env.cmd(&ws);
    cmd.env("PATH", &path).args(["guarded", "frbo"]);
    let out = output(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("tip: a similar subcommand exists: 'frob'"),
        "{}",
        describe(&out)
    );
    // An `[alias]` of the project's cargo config, in dotted-key spelling.
    std::fs::create_dir(ws.join(".cargo")).unwrap();
    std::fs::write(ws.join(".cargo/config.toml"), "alias.bb = \"build\"\n").unwrap();
    let out = env.ok(&ws, ["bb"]);
    assert!(compiled_anything(&out), "{}", describe(&out));
}

#[test]
fn a_build_outside_any_project_fails_before_any_lease() {
    let env = Env::new();
    let empty = env.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = env.run(&empty, ["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let line = one_line_error(&out);
    assert!(
        line.contains("could not find `Cargo.toml` in") && line.contains(empty.to_str().unwrap()),
        "{line}"
    );
    assert_no_lease(&env, "build outside a project");
    // Commands that need no project still run, under a lease.
    env.ok(&empty, ["exec", "--", "true"]);
    assert_eq!(env.job_dirs().len(), 1);
}

#[test]
fn clap_renders_its_own_errors_with_their_hints() {
    let env = Env::new();
    let ws = env.fixture("small");
    for (args, needles) in [
        (
            &["gc", "--dry-rn"][..],
            &[
                "unexpected argument '--dry-rn'",
                "tip: a similar argument exists: '--dry-run'",
            ][..],
        ),
        (
            &["--color", "sometimes", "build"],
            &["[possible values: auto, always, never]"],
        ),
        (
            &["--keep-expired", "-1", "build"],
            &["invalid value '-1' for '--keep-expired <N>'"],
        ),
    ] {
        let out = env.run(&ws, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{}", describe(&out));
        let err = stderr(&out);
        for n in needles {
            assert!(err.contains(n), "{args:?}: missing {n:?}\n{err}");
        }
        assert_no_lease(&env, &format!("{args:?}"));
    }
}

#[test]
fn a_workspace_header_with_a_comment_is_still_one_workspace() {
    let env = Env::new();
    let ws = env.fixture("small");
    std::fs::write(
        ws.join("Cargo.toml"),
        "[workspace] # root\nmembers = [\"app\", \"util\"]\nresolver = \"2\"\n",
    )
    .unwrap();
    env.ok(&ws, ["build"]);
    let out = env.ok(&ws.join("app"), ["build"]);
    assert!(!compiled_anything(&out), "{}", describe(&out));
    assert_eq!(env.job_dirs().len(), 1, "{:?}", env.job_dirs());
}

/// What the wrapped command sees as `CARGO_TERM_COLOR`, and whether our own lines were coloured.
fn colour_seen(env: &Env, ws: &Path, vars: &[(&str, &str)], args: &[&str]) -> (String, bool) {
    let seen = env.path().join("seen");
    let mut cmd = env.cmd(ws);
    cmd.env_remove("NO_COLOR").env_remove("CARGO_TERM_COLOR");
    cmd.envs(vars.iter().copied())
        .arg("guarded")
        .args(args)
        .args(["exec", "--", "sh", "-c"])
        .arg(format!(
            "printf '%s' \"$CARGO_TERM_COLOR\" > '{}'",
            seen.display()
        ));
    let out = output(&mut cmd);
    assert_success(&out);
    (
        std::fs::read_to_string(&seen).unwrap(),
        stderr(&out).contains('\u{1b}'),
    )
}

#[test]
fn one_colour_decision_reaches_the_wrapped_command() {
    let env = Env::new();
    let ws = env.fixture("small");
    // CI sets CARGO_TERM_COLOR=always: cargo colours, and so do we.
    let (child, ours) = colour_seen(&env, &ws, &[("CARGO_TERM_COLOR", "always")], &[]);
    assert_eq!(child, "always");
    assert!(
        ours,
        "our lines were not coloured under CARGO_TERM_COLOR=always"
    );
    // The flag wins over the environment, for cargo too.
    let (child, ours) = colour_seen(
        &env,
        &ws,
        &[("CARGO_TERM_COLOR", "always")],
        &["--color", "never"],
    );
    assert_eq!(child, "never");
    assert!(!ours);
    // Not a terminal, NO_COLOR: no colour anywhere.
    let (child, ours) = colour_seen(&env, &ws, &[("NO_COLOR", "1")], &[]);
    assert_eq!(child, "never");
    assert!(!ours);
}

/// An expired job dir of another job, as cargo-guarded would have left it.
fn plant_expired(env: &Env, name: &str) {
    let dir = plant_job(&env.root, name, &expired_lease(name, None));
    std::fs::write(dir.join("target/debug/artifact"), vec![7u8; 4096]).unwrap();
}

#[test]
fn gc_help_lists_only_what_applies_to_gc() {
    let env = Env::new();
    let out = env.ok(env.path(), ["gc", "--help"]);
    let help = stdout(&out);
    for applies in [
        "--dry-run",
        "--all-expired",
        "--reclaim-below",
        "--root",
        "--color",
    ] {
        assert!(help.contains(applies), "{applies} missing:\n{help}");
    }
    for job_only in ["--job-id", "--no-adopt", "--wait", "--linger", "--min-free"] {
        assert!(!help.contains(job_only), "{job_only} listed:\n{help}");
    }
    let out = env.run(env.path(), ["gc", "--job-id", "x"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    // Still accepted where they apply: before a wrapped command and after exec.
    let ws = env.fixture("small");
    env.ok(&ws, ["--job-id", "before", "exec", "--", "true"]);
    env.ok(
        &ws,
        ["exec", "--job-id", "after", "--linger", "0s", "--", "true"],
    );
    let mut dirs = env.job_dirs();
    dirs.sort();
    assert_eq!(dirs, ["after", "before"]);
}

/// Every key anywhere in `v`.
fn keys(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[test]
fn json_outputs_are_versioned_and_every_field_is_documented() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("## JSON output")
        .expect("README has a JSON section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];

    let env = Env::new();
    let ws = env.fixture("small");
    env.ok(&ws, ["exec", "--", "true"]);
    plant_expired(&env, "old");
    std::fs::create_dir(env.root.join("no-lease")).unwrap();
    let runs = [
        env.run(&ws, ["status", "--json", "--sizes"]),
        env.run(&ws, ["gc", "--json", "--dry-run", "--all-expired"]),
        env.run(&ws, ["doctor", "--json"]),
    ];
    for out in &runs {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}\n{}", describe(out)));
        assert_eq!(v["version"], 1, "{v:#}");
        let mut found = std::collections::BTreeSet::new();
        keys(&v, &mut found);
        for k in found {
            assert!(
                [format!("`{k}`"), format!(".{k}`"), format!("`{k}[]`")]
                    .iter()
                    .any(|form| section.contains(form.as_str())),
                "field `{k}` is not documented in README's JSON section\n{v:#}"
            );
        }
    }
}

#[test]
fn status_is_a_table_sorted_by_state_with_totals_and_stale_sizes_marked() {
    let env = Env::new();
    let ws = env.fixture("small");
    // A lingering dir whose lease recorded 0 bytes, then gained a file: its size is stale.
    env.ok(&ws, ["--job-id", "lingering", "exec", "--", "true"]);
    std::fs::write(env.root.join("lingering/target/blob"), vec![1u8; 64 * 1024]).unwrap();
    plant_expired(&env, "zz-expired");
    plant_expired(&env, "aa-expired");
    let out = env.ok(&ws, ["status"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].starts_with("STATE ") && lines[1].contains("SIZE"),
        "{text}"
    );
    let states: Vec<&str> = lines[2..5]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(states, ["released", "expired", "expired"], "{text}");
    // Columns line up: every row's job id starts where the header's JOB does.
    let col = lines[1].find("JOB").unwrap();
    for l in &lines[2..5] {
        assert!(
            l[col..].starts_with("lingering") || l[col..].contains("-expired"),
            "{text}"
        );
        assert_eq!(&l[col - 2..col], "  ", "{text}");
    }
    assert!(
        text.contains("total: live 0 dirs, 0 B; lingering 1 dir, 0 B; reclaimable 2 dirs, "),
        "{text}"
    );
    assert!(lines[2].contains("0 B*"), "{text}");
    assert!(text.contains("`--sizes` measures now"), "{text}");
    // --sizes measures: the file shows, nothing is marked stale.
    let out = env.ok(&ws, ["status", "--sizes"]);
    let text = stdout(&out);
    assert!(!text.contains("B*"), "{text}");
    assert!(
        text.contains("lingering 1 dir, ") && !text.contains("lingering 1 dir, 0 B"),
        "{text}"
    );
}

#[test]
fn completions_and_man_page_come_from_the_clap_definitions() {
    let env = Env::new();
    let out = env.ok(env.path(), ["completions", "bash"]);
    let script = env.path().join("completion.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // Real bash completes `cargo-guarded g` to `gc`.
    let completed = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}'; COMP_WORDS=(cargo-guarded g); COMP_CWORD=1; \
             _cargo__guarded cargo-guarded g cargo-guarded; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&completed.stdout).trim(),
        "gc",
        "{completed:?}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = env.ok(env.path(), ["completions", shell]);
        assert!(stdout(&out).contains("dry-run"), "{shell}");
    }
    let out = env.ok(env.path(), ["man"]);
    let page = stdout(&out);
    assert!(page.contains(".TH cargo-guarded 1"), "{page}");
    assert!(page.contains("completions"), "{page}");
    assert_no_lease(&env, "completions and man");
}

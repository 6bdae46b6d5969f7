//! The command line as a user meets it: `help <cmd>`, typos and non-projects that fail
//! before any lease, clap's own error rendering, cargo-style output, one colour decision passed on
//! to the wrapped command, and workspace detection that reads TOML (`gc` saying why it reclaims
//! nothing is pinned whole in tests/snapshots.rs).

use crate::common::tmux;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;
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
    // A cargo command's help is cargo's (`cargo help build`), not clap's
    // "unrecognized subcommand".
    let out = env.ok(&ws, ["help", "build"]);
    let text = stdout(&out);
    assert!(
        text.contains("cargo build") && text.contains("Compile"),
        "{}",
        describe(&out)
    );
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

/// Tips as cargo gives them: by its edit distance (no `'b'` for a long word that is like no
/// command), with its `cargo --list` pointer; and an alias from the environment runs as
/// `cargo xb` does.
#[test]
fn typo_tips_and_env_aliases_are_cargo_s() {
    let env = Env::new();
    let ws = env.fixture("small");
    let out = env.run(&ws, ["frobnicate"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    assert!(!err.contains("similar"), "{err}");
    assert!(
        err.contains("tip: view all installed commands with `cargo --list`"),
        "{err}"
    );
    assert_no_lease(&env, "frobnicate");
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_ALIAS_XB", "build").args(["guarded", "xb"]);
    let out = output(&mut cmd);
    assert_success(&out);
    assert!(compiled_anything(&out), "{}", describe(&out));
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

/// A subcommand's `-h` offers what applies to it: `doctor` reads the job id and `--min-free` of
/// the job options and tells no events; `status` tells none either. Where `--events` applies it
/// is still taken, the flag winning over its variable wherever it is typed.
#[test]
fn subcommand_help_lists_only_the_options_that_apply() {
    let env = Env::new();
    let help = |sub: &str| stdout(&env.ok(env.path(), [sub, "-h"]));
    let doctor = help("doctor");
    for absent in [
        "--warm-budget",
        "--wait",
        "--no-adopt",
        "--linger",
        "--events",
    ] {
        assert!(
            !doctor.contains(absent),
            "doctor -h offers {absent}:\n{doctor}"
        );
    }
    for present in ["--job-id", "--min-free", "--json", "--root"] {
        assert!(
            doctor.contains(present),
            "doctor -h lacks {present}:\n{doctor}"
        );
    }
    assert!(!help("status").contains("--events"), "{}", help("status"));
    for sub in ["gc", "exec", "env", "hold"] {
        assert!(
            help(sub).contains("--events <PATH>"),
            "{sub}:\n{}",
            help(sub)
        );
    }
    // doctor still takes what it reads, after its name.
    let ws = env.fixture("small");
    let out = env.run(&ws, ["doctor", "--job-id", "d", "--min-free", "1B"]);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        describe(&out)
    );
    // `--events` typed before or after `gc` wins over the variable.
    env.ok(&ws, ["exec", "--", "true"]);
    let (typed, var) = (env.path().join("typed.jsonl"), env.path().join("var.jsonl"));
    for args in [
        vec!["--events", typed.to_str().unwrap(), "gc"],
        vec!["gc", "--events", typed.to_str().unwrap()],
    ] {
        let mut cmd = env.cmd(&ws);
        cmd.env("CARGO_GUARDED_EVENTS", &var)
            .arg("guarded")
            .args(&args);
        assert_success(&output(&mut cmd));
    }
    let lines = std::fs::read_to_string(&typed).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(!var.exists());
    // The variable alone still reaches `gc` and `exec`, and `status` ignores it.
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_GUARDED_EVENTS", &var)
        .args(["guarded", "exec", "--", "true"]);
    assert_success(&output(&mut cmd));
    assert!(var.exists());
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_GUARDED_EVENTS", env.path().join("none.jsonl"))
        .args(["guarded", "status"]);
    assert_success(&output(&mut cmd));
    assert!(!env.path().join("none.jsonl").exists());
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
    let section = doc_section("docs/json.md", "## JSON output");

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
                "field `{k}` is not documented in docs/json.md's JSON section\n{v:#}"
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
    // Recorded at release: the empty target dir (its own blocks, as `du -s` counts them).
    let recorded = env.lease("lingering")["size_bytes"].as_u64().unwrap();
    assert!(recorded < 64 * 1024, "{recorded}");
    assert!(
        text.contains("total: live 0 dirs, 0 B; lingering 1 dir, ")
            && text.contains("; reclaimable 2 dirs, "),
        "{text}"
    );
    assert!(
        lines[2].contains(" B*") || lines[2].contains("KiB*"),
        "{text}"
    );
    assert!(text.contains("`--sizes` measures now"), "{text}");
    // --sizes measures: the file shows, nothing is marked stale.
    let out = env.ok(&ws, ["status", "--sizes"]);
    let text = stdout(&out);
    assert!(!text.contains("B*"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&env.ok(&ws, ["status", "--sizes", "--json"]).stdout).unwrap();
    let measured = json["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["job_id"] == "lingering")
        .and_then(|l| l["size_bytes"].as_u64())
        .unwrap_or_else(|| panic!("{json:#}"));
    assert!(measured >= recorded + 64 * 1024, "{measured} {text}");
}

/// The table fits the terminal's width (`COLUMNS`, as a terminal gives it) with GitHub-style
/// job ids, wrapping inside its columns; piped with no width, rows stay whole.
#[test]
fn status_table_fits_a_narrow_terminal() {
    let env = Env::new();
    for run in ["19161108462-1", "19161108462-2"] {
        plant_expired(
            &env,
            &format!("acme-widgets-{run}-build-and-test-ubuntu-latest"),
        );
    }
    let table = |text: &str| -> Vec<String> {
        text.lines()
            .skip(1)
            .take_while(|l| !l.starts_with("total:"))
            .map(str::to_owned)
            .collect()
    };
    let wide = stdout(&env.ok(env.path(), ["status"]));
    let widest = table(&wide)
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap();
    assert!(widest > 100, "{wide}");
    let mut cmd = env.cmd(env.path());
    cmd.env("COLUMNS", "72").args(["guarded", "status"]);
    let out = output(&mut cmd);
    assert_success(&out);
    let narrow = stdout(&out);
    let lines = table(&narrow);
    assert!(lines.len() > 3, "rows wrap inside their columns:\n{narrow}");
    for l in &lines {
        assert!(
            l.chars().count() <= 72,
            "{} columns:\n{narrow}",
            l.chars().count()
        );
    }
    assert!(lines[0].starts_with("STATE"), "{narrow}");
}

/// The width comes from the terminal itself (its window size) when `COLUMNS` is not set.
#[test]
fn status_table_fits_the_terminal_it_is_shown_on() {
    let tmux = which::which("tmux").map_err(|_| "tmux not installed".to_owned());
    if require("tmux", tmux).is_none() {
        return;
    }
    let env = Env::new();
    for run in ["19161108462-1", "19161108462-2"] {
        plant_expired(
            &env,
            &format!("acme-widgets-{run}-build-and-test-ubuntu-latest"),
        );
    }
    let t = tmux::Tmux::start(&env, env.path());
    t.line(&format!(
        "clear; unset COLUMNS; stty cols 64; '{BIN}' guarded status; echo status-$((1 + 1))"
    ));
    assert!(t.wait_for_text(20, "status-2"), "{}", t.pane());
    let pane = t.pane();
    let table: Vec<&str> = pane
        .lines()
        .skip_while(|l| !l.starts_with("STATE"))
        .take_while(|l| !l.starts_with("total:"))
        .collect();
    assert!(table.len() > 3, "{pane}");
    for l in table {
        assert!(l.trim_end().chars().count() <= 64, "{pane}");
    }
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

/// One page per command, and no page names another that is not there; the main page lists
/// every `CARGO_GUARDED_*` variable the source reads or sets, and the exit statuses.
#[test]
fn man_pages_name_only_pages_that_exist_and_every_variable() {
    let env = Env::new();
    let dir = env.path().join("man1");
    std::fs::create_dir(&dir).unwrap();
    env.ok(env.path(), ["man", "--out-dir", dir.to_str().unwrap()]);
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .replace("\\-", "-")
    };
    for sub in [
        "env",
        "status",
        "gc",
        "exec",
        "hold",
        "doctor",
        "completions",
        "man",
    ] {
        let page = read(&format!("cargo-guarded-{sub}.1"));
        assert!(
            page.contains(&format!(".TH cargo-guarded-{sub} 1")),
            "{page}"
        );
        let printed = stdout(&env.ok(env.path(), ["man", sub])).replace("\\-", "-");
        assert_eq!(
            printed, page,
            "`man {sub}` prints the page --out-dir writes"
        );
    }
    assert_eq!(
        stdout(&env.ok(env.path(), ["man"])).replace("\\-", "-"),
        read("cargo-guarded.1")
    );
    let reference = regex::Regex::new(r"\b(cargo-guarded[a-z-]*)\((\d)\)").unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        for r in reference.captures_iter(&read(&name)) {
            let page = format!("{}.{}", &r[1], &r[2]);
            assert!(
                dir.join(&page).exists(),
                "{name} names {page}, which is not there"
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "each command's page, both ways: {checked}");
    let main = read("cargo-guarded.1");
    let environment = &main[main.find(".SH ENVIRONMENT").expect("ENVIRONMENT")..];
    let exit = &main[main.find(".SH \"EXIT STATUS\"").expect("EXIT STATUS")..];
    for code in ["0", "1", "75", "128+N"] {
        assert!(
            exit.contains(&format!("\n\\fB{code}\\fR")),
            "{code}:\n{exit}"
        );
    }
    let variable = regex::Regex::new(r"_?CARGO_GUARDED_[A-Z_]*[A-Z]").unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for var in variable.find_iter(&text) {
            assert!(
                environment.contains(var.as_str()),
                "{} ({}) is not in the man page's ENVIRONMENT",
                var.as_str(),
                path.display()
            );
        }
    }
}

/// A root that is not there is a misconfiguration (a timer and the runners
/// pointed at different paths), not an empty root: `gc` and `status` fail naming the path with a
/// hint; the hook mode warns and never fails the job.
#[test]
fn a_root_that_does_not_exist_is_an_error_except_in_the_hook() {
    let env = Env::new();
    let missing = env.root.display().to_string();
    for args in [
        &["gc"][..],
        &["gc", "--dry-run"],
        &["status"],
        &["status", "--json"],
    ] {
        let out = env.run(env.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        let line = one_line_error(&out);
        assert!(
            line.starts_with(&format!("error: root {missing} does not exist")),
            "{line}"
        );
        assert!(line.contains("CARGO_GUARDED_ROOT"), "the hint: {line}");
        assert!(stdout(&out).is_empty(), "{}", describe(&out));
    }
    let out = env.ok(env.path(), ["gc", "--hook"]);
    assert!(
        stderr(&out).starts_with(&format!("warning: root {missing} does not exist")),
        "{}",
        describe(&out)
    );
    assert!(!env.root.exists(), "neither creates the root");
}

/// Every exit code the wrapper returns itself is named in `src/exit.rs`
/// and has a row in README's one exit-status table.
#[test]
fn every_exit_code_of_the_wrapper_is_in_the_readme_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let start = readme
        .find("### Exit status")
        .expect("README has the table");
    let table: Vec<&str> = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    let codes = std::fs::read_to_string(dir.join("src/exit.rs")).unwrap();
    let mut found = 0;
    for line in codes.lines() {
        // The codes themselves (`pub(crate) const TRY_LATER: u8 = 75;`), not `Exit`'s names.
        let Some(rest) = line
            .trim()
            .strip_prefix("pub(crate) const ")
            .filter(|r| r.contains(": u8 = "))
        else {
            continue;
        };
        let value = rest.rsplit("= ").next().unwrap().trim_end_matches(';');
        assert!(
            table
                .iter()
                .any(|row| row.starts_with(&format!("| `{value}` |"))),
            "exit code {value} ({rest}) has no row in README's table:\n{}",
            table.join("\n")
        );
        found += 1;
    }
    assert!(found >= 3, "no codes found in src/exit.rs");
    assert!(table.iter().any(|row| row.starts_with("| `128+N` |")));
}

/// The exit-75 message said "after reclaiming every expired job dir; no live
/// leases hold space" while a warm expired dir and lingering dirs held space. It says what the
/// sweep reclaimed, what each kind of dir still holds, and what frees it: a short `error:` line,
/// then a `note:` line each, as cargo words a multi-part error. A live dir whose lease recorded
/// no size yet says so (not `at least 0 B live`, not `size unknown`).
#[test]
fn exit_75_says_what_was_reclaimed_and_what_still_holds_space() {
    let env = Env::new();
    let ws = env.fixture("small");
    // Two expired dirs of one workspace: the older goes (beyond --keep-expired 1), the newer is
    // kept warm. One released dir still lingers; one job of another runner is live, its size
    // not recorded yet.
    let mut older = expired_lease("old-1", Some(7 << 20));
    for time in ["created_at", "renewed_at"] {
        older[time] = ts(-9000).into();
    }
    older["expires_at"] = ts(-8000).into();
    plant_job(&env.root, "old-1", &older);
    plant_job(&env.root, "old-2", &expired_lease("old-2", Some(5 << 20)));
    let mut lingering = expired_lease("lingers", Some(3 << 20));
    lingering["expires_at"] = ts(3000).into();
    plant_job(&env.root, "lingers", &lingering);
    let mut live = expired_lease("k9", None);
    live["state"] = "active".into();
    live["renewed_at"] = ts(0).into();
    live["expires_at"] = ts(600).into();
    plant_job(&env.root, "k9", &live);

    let out = env.run(&ws, ["--min-free", "100%", "--job-id", "refused", "build"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("error: "))
        .collect();
    let (error, notes) = lines
        .split_first()
        .unwrap_or_else(|| panic!("{}", describe(&out)));
    assert!(
        error.starts_with("error: not enough free disk space on ")
            && error.ends_with(" bytes) by --min-free")
            && !error.contains(';'),
        "{error}"
    );
    assert_eq!(notes.len(), 4, "{}", describe(&out));
    assert!(notes.iter().all(|l| l.starts_with("note: ")), "{err}");
    // What was really unlinked (the planted dirs are nearly empty, whatever their leases say).
    assert!(
        notes[0].starts_with("note: reclaimed ") && notes[0].ends_with(" from 1 expired dir"),
        "{err}"
    );
    assert_eq!(
        notes[1],
        "note: 1 live dir, its size not recorded yet (biggest: k9 by runner-9 (pid 4121)), \
         freed when its job ends"
    );
    assert!(
        notes[2].starts_with(
            "note: 1 lingering dir holds 3.0 MiB (released; they expire after --linger, the \
             first in"
        ),
        "{err}"
    );
    assert!(
        notes[3].starts_with(
            "note: 1 expired dir holds 5.0 MiB, kept warm for reuse (`cargo guarded gc \
             --all-expired` reclaims them"
        ),
        "{err}"
    );
    assert!(
        !err.contains("0 B") && !err.contains("size unknown"),
        "{err}"
    );
    assert_eq!(env.job_dirs(), ["k9", "lingers", "old-2", "refused"]);
}

/// `-q` or `-v` given to the wrapped cargo command quiets or raises the
/// wrapper's own lines too; a flag of ours still wins.
#[test]
fn quiet_and_verbose_given_to_cargo_apply_to_the_wrapper_too() {
    let env = Env::new();
    let ws = env.fixture("small");
    let out = env.ok(&ws, ["build", "-q"]);
    assert_eq!(
        stderr(&out),
        "",
        "nothing of ours either\n{}",
        describe(&out)
    );
    assert_eq!(env.job_dirs().len(), 1);
    let mut cmd = env.cmd(&ws);
    cmd.env("CARGO_TARGET_DIR", env.path().join("shared"))
        .args(["guarded", "check", "--quiet"]);
    let out = output(&mut cmd);
    assert_success(&out);
    assert_eq!(stderr(&out), "", "{}", describe(&out));
    // `-v` to cargo: our decisions are explained as with our own `-v`.
    let out = env.ok(&ws, ["build", "-v"]);
    assert!(
        stderr(&out).contains("Tracking the command's process tree"),
        "{}",
        describe(&out)
    );
    // Ours wins over cargo's.
    let out = env.ok(&ws, ["--verbose", "build", "-q"]);
    assert!(
        stderr(&out).contains("Tracking the command's process tree"),
        "{}",
        describe(&out)
    );
}

/// `gc --workspace PATH` drops one workspace's expired and lingering dirs
/// (its dry run first), reports its live dirs without touching them, and leaves every other
/// workspace's dirs alone, whatever their state.
#[test]
fn gc_workspace_reclaims_only_that_workspace_s_expired_and_lingering_dirs() {
    let env = Env::new();
    let gone = env.fixture_as("small", "gone");
    let other = env.fixture_as("small", "other");
    // In `gone`: one live dir (first: it would adopt), one expired, one lingering (released,
    // protected for an hour). `--no-adopt`: each job takes a dir of its own.
    let _live = env.live_holder(&gone, "g-live");
    let job = |ws: &Path, id: &str, linger: &str| {
        env.ok(
            ws,
            [
                "--job-id",
                id,
                "exec",
                "--linger",
                linger,
                "--no-adopt",
                "--",
                "true",
            ],
        );
    };
    job(&gone, "g-expired", "0s");
    job(&gone, "g-lingering", "1h");
    // In `other`: an expired and a lingering dir, which are not asked about.
    job(&other, "o-expired", "0s");
    job(&other, "o-lingering", "1h");
    let all = [
        "g-expired",
        "g-lingering",
        "g-live",
        "o-expired",
        "o-lingering",
    ];
    assert_eq!(env.job_dirs(), all);

    let ws = gone.to_str().unwrap();
    let out = env.ok(env.path(), ["gc", "--workspace", ws, "--dry-run", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        removed_names(&report),
        ["g-expired", "g-lingering"],
        "{report:#}"
    );
    assert!(
        kept_reason(&report, "g-live").contains("lease held by"),
        "{report:#}"
    );
    assert_eq!(report["kept"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(env.job_dirs(), all, "a dry run removes nothing");

    let out = env.ok(env.path(), ["gc", "--workspace", ws]);
    let err = stderr(&out);
    assert!(err.contains("Removed g-expired (expired "), "{err}");
    assert!(
        err.contains("Removed g-lingering (released, lingering, "),
        "{err}"
    );
    assert!(err.contains("Kept g-live (lease held by "), "{err}");
    assert!(
        !err.contains("o-"),
        "another workspace's dirs are not reported: {err}"
    );
    assert_eq!(env.job_dirs(), ["g-live", "o-expired", "o-lingering"]);
    assert_eq!(env.lease("g-live")["state"], "active");
}

/// No nested parentheses (doctor's nextest line, a warm dir's reason), `exec`'s
/// program described, and global options under their own heading in a command's help.
#[test]
fn help_and_reports_read_cleanly() {
    let env = Env::new();
    let ws = env.fixture("small");
    // nextest's `--version` carries its commit and date in parentheses (a fake on PATH: the
    // line doctor prints is the point, not nextest).
    let bin = env.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let nextest = bin.join("cargo-nextest");
    std::fs::write(
        &nextest,
        "#!/bin/sh\necho 'cargo-nextest 0.9.143 (60fa45f63 2026-08-04)'\n",
    )
    .unwrap();
    std::fs::set_permissions(&nextest, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = env.cmd(&ws);
    cmd.env("PATH", &path).args(["guarded", "doctor"]);
    let out = output(&mut cmd);
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("cargo-nextest"))
        .unwrap_or_else(|| panic!("{}", describe(&out)));
    assert!(
        line.ends_with(&format!("0.9.143 ({})", nextest.display())),
        "{line}"
    );

    // A warm dir's reason.
    env.ok(&ws, ["exec", "--", "true"]);
    plant_job(&env.root, "old2", &expired_lease("old2", Some(1 << 20)));
    let out = env.ok(env.path(), ["gc"]);
    assert!(
        stderr(&out).contains("Kept old2 (expired, warm for reuse: --keep-expired 1)"),
        "{}",
        describe(&out)
    );

    // `exec -h` says what `<PROGRAM>...` is.
    let help = stdout(&env.ok(env.path(), ["exec", "-h"]));
    let program = help
        .lines()
        .find(|l| l.trim_start().starts_with("<PROGRAM>..."))
        .unwrap_or_else(|| panic!("{help}"));
    assert!(program.contains("The program to run"), "{help}");

    // Global options apart from the command's own.
    for sub in ["gc", "status"] {
        let help = stdout(&env.ok(env.path(), [sub, "--help"]));
        let own = help
            .find("\nOptions:\n")
            .unwrap_or_else(|| panic!("{help}"));
        let global = help
            .find("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("{help}"));
        let root = help.find("--root").unwrap();
        assert!(own < global && global < root, "{sub}:\n{help}");
        let json = help.find("--json").unwrap();
        assert!(own < json && json < global, "{sub}:\n{help}");
    }
}

/// `cargo guarded <Tab>` completes in a real interactive bash with the
/// bash-completion this machine has (Debian 12's 2.11 hands `cargo <cmd>` over to `cargo-<cmd>`'s
/// completion only from 2.12 on), set up as docs/wrapping.md says: cargo's completion where
/// bash-completion loads it on demand (rustup's, when the toolchain ships it), ours sourced.
#[test]
fn bash_completes_cargo_guarded_through_cargo() {
    let tmux = which::which("tmux").map_err(|_| "tmux not installed".to_owned());
    let lib = Path::new("/usr/share/bash-completion/bash_completion");
    let lib = lib.exists().then_some(lib).ok_or_else(|| {
        format!(
            "{} not found (apt-get install bash-completion)",
            lib.display()
        )
    });
    if require("tmux", tmux).is_none() || require("bash-completion", lib).is_none() {
        return;
    }
    let env = Env::new();
    let ws = env.fixture("small");
    let completions = env.path().join("bash-completion/completions");
    std::fs::create_dir_all(&completions).unwrap();
    let ours = completions.join("cargo-guarded");
    std::fs::write(&ours, env.ok(env.path(), ["completions", "bash"]).stdout).unwrap();
    let sysroot = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let rustup_cargo = Path::new(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("etc/bash_completion.d/cargo");
    if rustup_cargo.exists() {
        std::fs::copy(&rustup_cargo, completions.join("cargo")).unwrap();
    }
    // A third-party command's own completion (cargo-nextest's is not the point: a stand-in).
    std::fs::write(
        completions.join("cargo-nextest"),
        "_cargo_nextest() { COMPREPLY=($(compgen -W 'run list archive' -- \"$2\")); }\n\
         complete -F _cargo_nextest cargo-nextest\n",
    )
    .unwrap();
    let t = tmux::Tmux::start(&env, &ws);
    t.line(&format!(
        "export BASH_COMPLETION_USER_DIR='{}'; source /usr/share/bash-completion/bash_completion; \
         source '{}'; clear",
        env.path().join("bash-completion").display(),
        ours.display()
    ));
    t.keys(&["-l", "cargo guarded sta"]);
    t.keys(&["Tab"]);
    assert!(t.wait_for_text(10, "cargo guarded status "), "{}", t.pane());
    t.keys(&["C-u"]);
    t.keys(&["-l", "cargo guarded gc --dry"]);
    t.keys(&["Tab"]);
    assert!(
        t.wait_for_text(10, "cargo guarded gc --dry-run "),
        "{}",
        t.pane()
    );
    // `cargo-guarded <Tab>` still completes, and other cargo commands are left to cargo's own.
    t.keys(&["C-u"]);
    t.keys(&["-l", "cargo-guarded doct"]);
    t.keys(&["Tab"]);
    assert!(t.wait_for_text(10, "cargo-guarded doctor "), "{}", t.pane());
    if rustup_cargo.exists() {
        t.keys(&["C-u"]);
        t.keys(&["-l", "cargo buil"]);
        t.keys(&["Tab"]);
        assert!(t.wait_for_text(10, "cargo build "), "{}", t.pane());
    }
    // At the command word, cargo's commands are offered too, not file names.
    t.keys(&["C-u"]);
    t.keys(&["-l", "cargo guarded b"]);
    t.keys(&["Tab", "Tab"]);
    assert!(
        t.wait_for_text(10, "bench") && t.wait_for_text(10, "build"),
        "{}",
        t.pane()
    );
    t.keys(&["C-u"]);
    t.line("clear");
    t.keys(&["-l", "cargo guarded --job-id x bui"]);
    t.keys(&["Tab"]);
    assert!(
        t.wait_for_text(10, "cargo guarded --job-id x build "),
        "{}",
        t.pane()
    );
    // After `exec --`, the program's words: a command name first.
    t.keys(&["C-u"]);
    t.keys(&["-l", "cargo guarded exec -- rustu"]);
    t.keys(&["Tab"]);
    assert!(
        t.wait_for_text(10, "cargo guarded exec -- rustup "),
        "{}",
        t.pane()
    );
    t.keys(&["C-u"]);
    t.keys(&["-l", "cargo-guarded exec -- rustu"]);
    t.keys(&["Tab"]);
    assert!(
        t.wait_for_text(10, "cargo-guarded exec -- rustup "),
        "{}",
        t.pane()
    );
    // A wrapped command's own words: cargo's completion, or the `cargo-<cmd>`'s own.
    t.keys(&["C-u"]);
    t.keys(&["-l", "cargo guarded nextest r"]);
    t.keys(&["Tab"]);
    assert!(
        t.wait_for_text(10, "cargo guarded nextest run "),
        "{}",
        t.pane()
    );
    if rustup_cargo.exists() {
        t.keys(&["C-u"]);
        t.keys(&["-l", "cargo guarded -v build --rel"]);
        t.keys(&["Tab"]);
        assert!(
            t.wait_for_text(10, "cargo guarded -v build --release "),
            "{}",
            t.pane()
        );
    }
    // Hidden words are never offered: `--seed-` is `--seed-max-size` alone.
    t.keys(&["C-u"]);
    t.keys(&["-l", "cargo guarded --seed-"]);
    t.keys(&["Tab"]);
    assert!(
        t.wait_for_text(10, "cargo guarded --seed-max-size "),
        "{}",
        t.pane()
    );
}

/// README's first screen gives what works today on a fresh machine: the install from a checkout
/// first (crates.io and binstall only "once released"), a run on a real project, this project's
/// test command, a real run's output, the workflow step and the runner hook; and says that
/// `./target` stays empty and where the build's outputs are.
#[test]
fn readme_first_screen_works_on_a_fresh_machine_and_says_where_outputs_are() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let first: String = readme
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(first.lines().count() <= 50, "{first}");
    let at = |needle: &str| {
        first
            .find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` on README's first screen:\n{first}"))
    };
    let commands: Vec<&str> = first
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with("cargo "))
        .collect();
    assert_eq!(
        commands.first(),
        Some(&"cargo install --locked --path ."),
        "{first}"
    );
    assert!(at("--path .") < at("cargo guarded build"), "{first}");
    assert!(at("cargo guarded build") < at("\ncargo test"), "{first}");
    assert!(at("--path .") < at("Once released"), "{first}");
    at("cargo binstall cargo-guarded");
    at("Seeded ");
    at("uses: cargo-guarded/cargo-guarded@");
    at("ACTIONS_RUNNER_HOOK_JOB_STARTED=");
    at("this\nproject's** tests");
    at("`./target` stays empty");
    at("cargo guarded env");
}

/// Zsh: rustup's `_cargo` calls `_cargo-<cmd>` for `cargo <cmd>`, which is the
/// function our script defines when it is installed in `fpath` as `_cargo-guarded` (docs/wrapping.md).
#[test]
fn zsh_completes_cargo_guarded_through_cargo() {
    let tmux = which::which("tmux").map_err(|_| "tmux not installed".to_owned());
    let zsh = which::which("zsh").map_err(|_| "zsh not installed (apt-get install zsh)".to_owned());
    if require("tmux", tmux).is_none() || require("zsh", zsh).is_none() {
        return;
    }
    let env = Env::new();
    let fpath = env.path().join("site-functions");
    std::fs::create_dir_all(&fpath).unwrap();
    std::fs::write(
        fpath.join("_cargo-guarded"),
        env.ok(env.path(), ["completions", "zsh"]).stdout,
    )
    .unwrap();
    let sysroot = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let rustup_cargo = Path::new(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("share/zsh/site-functions/_cargo");
    let found = rustup_cargo
        .exists()
        .then_some(())
        .ok_or_else(|| format!("{} not found", rustup_cargo.display()));
    if require("rustup's zsh completion for cargo", found).is_none() {
        return;
    }
    std::fs::copy(&rustup_cargo, fpath.join("_cargo")).unwrap();
    // A third-party command's own completion (a stand-in: cargo-nextest's is not the point).
    std::fs::write(
        fpath.join("_cargo-nextest"),
        "#compdef cargo-nextest\n_arguments '1: :(run list archive)'\n",
    )
    .unwrap();
    let socket = env.path().join("zsh-tmux.sock");
    let tmux = |args: &[&str]| {
        let status = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "tmux {args:?}");
    };
    let pane = || {
        let out = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let path = std::env::var("PATH").unwrap_or_default();
    // rustup's proxies find their toolchains (for `cargo --list`) through these, not HOME.
    let home = std::env::var("HOME").unwrap_or_default();
    let rustup_home = std::env::var("RUSTUP_HOME").unwrap_or(format!("{home}/.rustup"));
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or(format!("{home}/.cargo"));
    let shell = format!(
        "env -i PATH='{path}' HOME='{}' RUSTUP_HOME='{rustup_home}' CARGO_HOME='{cargo_home}' \
         TERM=screen zsh -f -i",
        env.path().display()
    );
    tmux(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-x",
        "150",
        "-y",
        "30",
        &shell,
    ]);
    let setup = format!(
        "fpath=('{}' $fpath); autoload -Uz compinit; compinit -u; clear",
        fpath.display()
    );
    tmux(&["send-keys", "-l", &setup]);
    tmux(&["send-keys", "Enter"]);
    tmux(&["send-keys", "-l", "cargo guarded sta"]);
    tmux(&["send-keys", "Tab"]);
    // (`capture-pane` drops the space completion adds.)
    let ok = wait_for(10, || pane().contains("cargo guarded status"));
    let first = pane();
    tmux(&["send-keys", "C-u"]);
    tmux(&["send-keys", "-l", "cargo guarded gc --dry"]);
    tmux(&["send-keys", "Tab"]);
    let ok2 = wait_for(10, || pane().contains("cargo guarded gc --dry-run"));
    let second = pane();
    // Cargo's commands at the command word, cargo's completion for a wrapped command (and the
    // `_cargo-<cmd>` it calls for a third-party one), the program's after `exec --`.
    let mut more = Vec::new();
    for (typed, completed) in [
        ("cargo guarded bui", "cargo guarded build"),
        (
            "cargo guarded --job-id x build --rel",
            "cargo guarded --job-id x build --release",
        ),
        ("cargo guarded nextest r", "cargo guarded nextest run"),
        (
            "cargo guarded exec -- rustu",
            "cargo guarded exec -- rustup",
        ),
        (
            "cargo-guarded exec -- rustu",
            "cargo-guarded exec -- rustup",
        ),
        ("cargo guarded --seed-", "cargo guarded --seed-max-size"),
    ] {
        tmux(&["send-keys", "C-u"]);
        tmux(&["send-keys", "-l", typed]);
        tmux(&["send-keys", "Tab"]);
        more.push((
            wait_for(10, || pane().contains(completed)),
            completed,
            pane(),
        ));
    }
    tmux(&["kill-server"]);
    assert!(ok, "{first}");
    assert!(ok2, "{second}");
    for (ok, completed, pane) in more {
        assert!(ok, "{completed}:\n{pane}");
    }
}

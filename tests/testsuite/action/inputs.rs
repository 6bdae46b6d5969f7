//! action.yml: every input reaches the CLI through the environment, never spliced into a shell.

use super::*;

#[test]
fn action_yml_passes_every_input_through_env_and_never_splices_expressions_into_shell() {
    let m = Manifest::load();
    let inputs: Vec<&str> = m.defaults.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        inputs,
        [
            "command",
            "working-directory",
            "root",
            "job-id",
            "min-free",
            "reclaim-below",
            "ttl",
            "linger",
            "reclaim-to",
            "keep-expired",
            "no-adopt",
            "no-prune",
            "prune-after",
            "max-warm-size",
            "warm-budget",
            "max-root-size",
            "no-seed",
            "seed-max-size",
            "warm-from",
            "default-branch",
            "restore-mtimes",
            "store",
            "store-push",
            "store-timeout",
            "wait",
            "events",
            "quiet",
            "verbose",
            "color",
            "sccache",
            "export-target-dir"
        ]
    );
    for input in &inputs {
        let var = format!("INPUT_{}", input.to_uppercase().replace('-', "_"));
        let mapped: Vec<_> = m
            .run_env
            .iter()
            .filter(|(_, s)| matches!(s, Source::Input(n) if n == input))
            .map(|(v, _)| v.as_str())
            .collect();
        assert_eq!(
            mapped,
            [var.as_str()],
            "input `{input}` must reach run.sh as {var}"
        );
    }
    for line in m
        .text
        .lines()
        .filter(|l| l.trim_start().starts_with("run:"))
    {
        assert!(
            !line.contains("${{"),
            "an expression in a shell line: {line}"
        );
    }
    for output in ["target-dir", "job-id", "reclaimed-bytes", "origin", "warm"] {
        assert!(
            m.text
                .contains(&format!("value: ${{{{ steps.run.outputs.{output} }}}}")),
            "output `{output}` must come from the run step"
        );
    }
}

/// Every option of the CLI is an input, through one table in run.sh; the
/// table, the CLI's options and action.yml's inputs cannot drift apart.
#[test]
fn every_cli_option_is_an_input_through_one_table() {
    let run_sh = std::fs::read_to_string(Path::new(SOURCE).join("action/run.sh")).unwrap();
    let table = run_sh
        .split("options='\n")
        .nth(1)
        .and_then(|t| t.split("\n'").next())
        .expect("run.sh has its options table");
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split(' ').collect()).collect();
    let mut from_table: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    from_table.sort();
    // docs/action.md's inputs table names each of them.
    let readme = std::fs::read_to_string(Path::new(SOURCE).join("docs/action.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| every option of the CLI"))
        .expect("docs/action.md's inputs table has the CLI options' row");
    let missing: Vec<&&str> = from_table
        .iter()
        .filter(|input| !row.contains(&format!("`{input}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/action.md's inputs row lacks {missing:?}"
    );

    let env = Env::new();
    let help = stdout(&env.ok(env.path(), ["--help"]));
    // Each option's line: `      --ttl <DURATION>  …` or `  -q, --quiet  …`.
    let mut from_cli: Vec<&str> = help
        .lines()
        .map(str::trim_start)
        .filter_map(|l| match l.split_once(", --") {
            Some((short, rest)) if short.len() == 2 && short.starts_with('-') => Some(rest),
            _ => l.strip_prefix("--"),
        })
        .filter_map(|rest| rest.split_whitespace().next())
        // `--restore-mtimes[=<BOOL>]`: an optional value.
        .filter_map(|name| name.split('[').next())
        .filter(|name| !["help", "version"].contains(name))
        .collect();
    from_cli.sort();
    from_cli.dedup();
    assert_eq!(
        from_table, from_cli,
        "run.sh's table against `cargo guarded --help`"
    );

    let m = Manifest::load();
    for row in &rows {
        let (input, kind, target) = (row[0], row[1], row[2]);
        assert!(
            m.defaults.iter().any(|(n, _)| n == input),
            "no input `{input}` in action.yml"
        );
        match kind {
            // The variable the CLI reads for it, as its help names it.
            "value" | "off" => assert!(
                help.contains(&format!("[env: {target}]")),
                "{input}: the CLI reads no {target}"
            ),
            "flag" | "arg" => assert_eq!(target, format!("--{input}")),
            other => panic!("unknown kind {other}"),
        }
    }
}

/// Inputs that were reachable only through variables, the `warm` output, and
/// `sccache: true` setting RUSTC_WRAPPER to the wrapper the action ships.
#[test]
fn new_inputs_reach_the_cli_and_warm_says_whether_the_dir_was_new() {
    let mut job = Job::new();
    let events = job.ws.join("events.jsonl");
    let a = job.action(&[
        (
            "command",
            r#"exec -- sh -c 'printf "%s" "$RUSTC_WRAPPER" > wrapper.txt'"#,
        ),
        ("verbose", "true"),
        ("sccache", "true"),
        ("wait", "5s"),
        ("events", events.to_str().unwrap()),
    ]);
    assert_success(&a.run);
    assert_eq!(a.step.outputs()["warm"], "false", "a fresh dir");
    // The events reached the file: the last line is the command's exit.
    let text = std::fs::read_to_string(&events).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "exited", "{text}");
    let wrapper = std::fs::read_to_string(job.ws.join("wrapper.txt")).unwrap();
    assert_eq!(
        Path::new(&wrapper),
        Path::new(SOURCE).join("contrib/sccache-wrapper.sh")
    );
    // -v reached the CLI: it explains how it tracks the command's processes.
    assert!(
        stderr(&a.run).contains("Tracking the command's process tree"),
        "{}",
        describe(&a.run)
    );
    // The same job's next step resumes its dir: warm.
    let b = job.action(&[("command", "exec -- true"), ("quiet", "true")]);
    assert_success(&b.run);
    assert_eq!(b.step.outputs()["warm"], "true");
    assert_eq!(b.step.outputs()["origin"], "resumed");
    // A boolean input that is not one fails the step, naming it.
    let c = job.action(&[("command", "exec -- true"), ("no-prune", "yes please")]);
    assert_eq!(c.run.status.code(), Some(1), "{}", describe(&c.run));
    assert!(
        stdout(&c.run).contains("::error title=cargo-guarded::no-prune must be true or false"),
        "{}",
        describe(&c.run)
    );
}

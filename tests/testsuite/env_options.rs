//! Options given through their environment variables (clap's `env =`): the flag wins wherever
//! it is typed, an empty variable is unset, and `--help` names each variable. And what `env`
//! exports for scripts.

use crate::common::tmux;

use crate::common::*;
use tmux::Tmux;

/// `cargo guarded ARGS env` with extra variables; its `NAME=value` lines.
fn job_env(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Vec<String> {
    let ws = env.fixture("small");
    let mut cmd = env.cmd(&ws);
    cmd.envs(vars.iter().copied()).arg("guarded").args(args);
    let out = output(&mut cmd);
    assert_success(&out);
    stdout(&out).lines().map(str::to_owned).collect()
}

#[test]
fn a_flag_before_the_subcommand_wins_over_the_variable() {
    let env = Env::new();
    let vars = [("CARGO_GUARDED_JOB_ID", "from-env")];
    // The subcommand's own job options read the variable too; the typed flag must still win.
    let lines = job_env(&env, &vars, &["--job-id", "typed", "env"]);
    assert!(
        lines.iter().any(|l| l == "CARGO_GUARDED_JOB_ID=typed"),
        "{lines:?}"
    );
    let lines = job_env(&env, &vars, &["env", "--job-id", "after"]);
    assert!(
        lines.iter().any(|l| l == "CARGO_GUARDED_JOB_ID=after"),
        "{lines:?}"
    );
    let lines = job_env(&env, &vars, &["env"]);
    assert!(
        lines.iter().any(|l| l == "CARGO_GUARDED_JOB_ID=from-env"),
        "{lines:?}"
    );
}

#[test]
fn a_typed_flag_wins_over_an_invalid_variable() {
    let env = Env::new();
    let vars = [
        ("CARGO_GUARDED_TTL", "soon"),
        ("CARGO_GUARDED_WAIT", "a while"),
    ];
    job_env(&env, &vars, &["--ttl", "10m", "env", "--wait=5s"]);
    // `gc` needs a root that exists: let one job lay it out.
    env.ok(env.path(), ["exec", "--", "true"]);
    let mut cmd = env.cmd(env.path());
    cmd.env("CARGO_GUARDED_RECLAIM_BELOW", "lots").args([
        "guarded",
        "gc",
        "--dry-run",
        "--reclaim-below",
        "0%",
    ]);
    assert_success(&output(&mut cmd));
}

#[test]
fn an_empty_variable_is_unset() {
    let env = Env::new();
    let vars = [
        ("CARGO_GUARDED_JOB_ID", ""),
        ("CARGO_GUARDED_TTL", ""),
        ("CARGO_GUARDED_ADOPT", ""),
        ("CARGO_GUARDED_PRUNE_AFTER", ""),
    ];
    let lines = job_env(&env, &vars, &["env"]);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("CARGO_GUARDED_JOB_ID=") && l.len() > 21),
        "a derived job id: {lines:?}"
    );
}

#[test]
fn help_names_each_variable_once() {
    let env = Env::new();
    // Lines are wrapped to the terminal: compare the words.
    let words = |args: &[&str]| -> String {
        let text = stdout(&env.ok(env.path(), args));
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let help = words(&["--help"]);
    let exec = words(&["exec", "--help"]);
    for var in ["ROOT", "TTL", "RECLAIM_BELOW", "RECLAIM_TO", "KEEP_EXPIRED"] {
        let tag = format!("[env: CARGO_GUARDED_{var}]");
        assert_eq!(help.matches(&tag).count(), 1, "{tag}:\n{help}");
    }
    for var in [
        "JOB_ID",
        "LINGER",
        "MIN_FREE",
        "ADOPT",
        "PRUNE",
        "PRUNE_AFTER",
        "MAX_WARM_SIZE",
        "WAIT",
    ] {
        let tag = format!("[env: CARGO_GUARDED_{var}]");
        assert_eq!(exec.matches(&tag).count(), 1, "{tag}:\n{exec}");
    }
}

#[test]
fn an_invalid_variable_stops_only_what_reads_it() {
    let env = Env::new();
    let run = |args: &[&str]| {
        let mut cmd = env.cmd(env.path());
        cmd.env("CARGO_GUARDED_TTL", "soon")
            .arg("guarded")
            .args(args);
        output(&mut cmd)
    };
    // `man` and `completions` read no option.
    assert_success(&run(&["man"]));
    assert_success(&run(&["completions", "bash"]));
    // A mistake on the command line is told first, as clap renders it.
    let out = run(&["--frobnicate", "gc"]);
    assert!(stderr(&out).contains("--frobnicate"), "{}", describe(&out));
    // Anything that reads the options names the variable.
    let out = run(&["gc"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        one_line_error(&out).contains("CARGO_GUARDED_TTL: "),
        "{}",
        describe(&out)
    );
    assert!(!env.root.exists(), "nothing may be created");
}

/// On a terminal, `env --shell` exports what locates the job's dir and nothing
/// else: not the wrapper's colour decision (`CARGO_TERM_COLOR=always` on a tty), which would
/// fill a script's later `cargo build 2>&1 | tee log` with escape codes.
#[test]
fn env_shell_on_a_terminal_exports_only_what_locates_the_dir() {
    let env = Env::new();
    let ws = env.fixture("small");
    let t = Tmux::start(&env, &ws);
    // The terminal decides the colour: nothing in the environment does.
    t.line("unset NO_COLOR CARGO_TERM_COLOR");
    t.line(&format!(
        "'{BIN}' guarded --job-id tty env --shell > vars.sh; eval \"$(cat vars.sh)\"; \
         echo \"[colour=${{CARGO_TERM_COLOR-unset}}] [dir=$CARGO_TARGET_DIR] done-$((40+2))\""
    ));
    assert!(t.wait_for_text(60, "done-42"), "{}", t.pane());
    let target = env.root.join("tty/target");
    assert!(
        t.pane()
            .contains(&format!("[colour=unset] [dir={}]", target.display())),
        "{}",
        t.pane()
    );
    let text = std::fs::read_to_string(ws.join("vars.sh")).unwrap();
    let mut names: Vec<&str> = text
        .lines()
        .map(|l| {
            let l = l.strip_prefix("export ").expect("an export line");
            l.split_once('=').expect("NAME=value").0
        })
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "CARGO_GUARDED_JOB_ID",
            "CARGO_GUARDED_LEASE",
            "CARGO_GUARDED_TARGET_DIR",
            "CARGO_TARGET_DIR"
        ],
        "{text}"
    );
}

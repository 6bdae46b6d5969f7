//! The GitHub Action, the runner hook and the systemd units, run the way a runner (or systemd)
//! runs them: a temp workspace, `GITHUB_ACTIONS=true`, fresh `GITHUB_OUTPUT`/`GITHUB_ENV`/
//! `GITHUB_STEP_SUMMARY` files per step, the runner's variables, and the action's inputs mapped
//! into `INPUT_*` variables exactly as action.yml maps them. The scripts under `action/` and
//! `contrib/` run for real with bash, with the built binary on PATH.

use crate::common::github_env;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::common::*;

const SOURCE: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const RUN_ID: &str = "7001";
const JOB_ID: &str = "gh-octo/app-7001-1-build-runner-1";
/// A bound on one step (`timeout` signals the step's whole process group), so a step that
/// would wait forever, say for a lease holder it failed to stop, fails the test instead.
const STEP_TIMEOUT: [&str; 2] = ["--kill-after=10s", "300"];

/// One job on a fake runner: its workspace, the runner's temp dirs, and a bin dir with
/// `cargo-guarded` on PATH.
struct Job {
    env: Env,
    ws: PathBuf,
    bin_dir: PathBuf,
    runner_temp: PathBuf,
    tool_cache: PathBuf,
    /// Lines later steps get from `GITHUB_ENV`, as the runner applies them.
    exported: Vec<(String, String)>,
    steps: usize,
}

/// One step's files, fresh per step as the runner makes them.
struct Step {
    output: PathBuf,
    summary: PathBuf,
    env_file: PathBuf,
    path_file: PathBuf,
}

impl Step {
    fn outputs(&self) -> HashMap<String, String> {
        parse_outputs(&std::fs::read_to_string(&self.output).unwrap_or_default())
    }

    fn summary(&self) -> String {
        std::fs::read_to_string(&self.summary).unwrap_or_default()
    }

    /// `GITHUB_ENV` as the runner parses it (heredoc values included).
    fn env_lines(&self) -> Vec<(String, String)> {
        github_env::read(&self.env_file)
    }
}

impl Job {
    fn new() -> Job {
        let env = Env::new();
        let ws = env.fixture("small");
        let bin_dir = env.path().join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::os::unix::fs::symlink(BIN, bin_dir.join("cargo-guarded")).unwrap();
        let runner_temp = env.path().join("runner-temp");
        let tool_cache = env.path().join("tool-cache");
        std::fs::create_dir_all(&runner_temp).unwrap();
        std::fs::create_dir_all(&tool_cache).unwrap();
        // action/install.sh trusts a cargo-guarded on PATH only if it is the release binary
        // (action/checksums.txt); this test build stands in for it through a checksum list of
        // its own (the variable is for tests only).
        let sha = Command::new("sha256sum").arg(BIN).output().unwrap();
        let sha = String::from_utf8_lossy(&sha.stdout);
        let arch = if cfg!(target_arch = "aarch64") {
            "aarch64"
        } else {
            "x86_64"
        };
        std::fs::write(
            env.path().join("checksums.txt"),
            format!(
                "{}  cargo-guarded-v{VERSION}-{arch}-unknown-linux-musl/cargo-guarded\n",
                sha.split_whitespace().next().unwrap()
            ),
        )
        .unwrap();
        Job {
            env,
            ws,
            bin_dir,
            runner_temp,
            tool_cache,
            exported: Vec::new(),
            steps: 0,
        }
    }

    fn step(&mut self) -> Step {
        self.steps += 1;
        let dir = self.env.path().join(format!("step-{}", self.steps));
        std::fs::create_dir_all(&dir).unwrap();
        let touch = |name: &str| {
            let p = dir.join(name);
            std::fs::write(&p, "").unwrap();
            p
        };
        Step {
            output: touch("output"),
            summary: touch("summary"),
            env_file: touch("env"),
            path_file: touch("path"),
        }
    }

    /// `program` in `cwd` with the cleaned test environment plus what a runner sets for a step.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, cwd: &Path, step: &Step) -> Command {
        let base = self.env.cmd(cwd);
        let mut cmd = Command::new(program);
        cmd.env_clear().current_dir(cwd);
        for (k, v) in base.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        let mut path = OsString::from(&self.bin_dir);
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        cmd.env("PATH", path)
            .env("GITHUB_ACTIONS", "true")
            .env("CI", "true")
            .env("GITHUB_OUTPUT", &step.output)
            .env("GITHUB_STEP_SUMMARY", &step.summary)
            .env("GITHUB_ENV", &step.env_file)
            .env("GITHUB_PATH", &step.path_file)
            .env("GITHUB_RUN_ID", RUN_ID)
            .env("GITHUB_RUN_ATTEMPT", "1")
            .env("GITHUB_JOB", "build")
            .env("GITHUB_REPOSITORY", "octo/app")
            .env("RUNNER_NAME", "runner-1")
            .env("RUNNER_TEMP", &self.runner_temp)
            .env("RUNNER_TOOL_CACHE", &self.tool_cache)
            .env("GITHUB_ACTION_PATH", SOURCE)
            .env(
                "CARGO_GUARDED_INSTALL_CHECKSUMS",
                self.env.path().join("checksums.txt"),
            );
        for (k, v) in &self.exported {
            cmd.env(k, v);
        }
        cmd
    }

    /// The binary itself as a step runs it: `cargo-guarded guarded ARGS`.
    fn binary(&self, cwd: &Path, step: &Step, args: &[&str]) -> Output {
        let mut cmd = self.command(BIN, cwd, step);
        cmd.arg("guarded").args(args);
        output(&mut cmd)
    }

    /// The action, step by step, as the runner runs a composite action: each step's env is
    /// built from action.yml's `env:` mapping, with the inputs' defaults from action.yml.
    fn action(&mut self, inputs: &[(&str, &str)]) -> ActionRun {
        let manifest = Manifest::load();
        let mut given: HashMap<&str, &str> = inputs.iter().copied().collect();
        for (name, default) in &manifest.defaults {
            given.entry(name.as_str()).or_insert(default.as_str());
        }
        // `plan`: with a release binary at hand (this build, trusted through the test's
        // checksum list) no source build is coming, and the cache steps do not run.
        let plan_step = self.step();
        let mut plan = self.command("timeout", &self.ws, &plan_step);
        plan.args(STEP_TIMEOUT)
            .arg("bash")
            .arg(Path::new(SOURCE).join("action/install.sh"))
            .arg("plan");
        let plan_out = output(&mut plan);
        assert_success(&plan_out);
        let outputs = HashMap::from([("plan".to_owned(), plan_step.outputs())]);
        for id in ["restore", "save"] {
            assert!(
                !step_runs(manifest.step(id), &outputs),
                "{id} runs beside a release binary\n{}",
                describe(&plan_out)
            );
        }
        let install_step = self.step();
        let mut install = self.command("timeout", &self.ws, &install_step);
        install
            .args(STEP_TIMEOUT)
            .arg("bash")
            .arg(Path::new(SOURCE).join("action/install.sh"));
        let install_out = output(&mut install);
        assert_success(&install_out);
        let bin = install_step.outputs().remove("bin").unwrap_or_default();
        // GITHUB_PATH applies to the next steps.
        let added_path = std::fs::read_to_string(&install_step.path_file).unwrap();

        let run_step = self.step();
        let mut run = self.command("timeout", &self.ws, &run_step);
        run.args(STEP_TIMEOUT)
            .arg("bash")
            .arg(Path::new(SOURCE).join("action/run.sh"));
        for (var, source) in &manifest.run_env {
            let value = match source {
                Source::Input(name) => given.get(name.as_str()).copied().unwrap_or("").to_owned(),
                Source::InstallOutput(name) => {
                    assert_eq!(name, "bin", "action.yml reads an unknown install output");
                    bin.clone()
                }
            };
            run.env(var, value);
        }
        if let Some(dir) = added_path.lines().next() {
            let mut path = OsString::from(dir);
            path.push(":");
            path.push(
                run.get_envs()
                    .find(|(k, _)| *k == "PATH")
                    .unwrap()
                    .1
                    .unwrap(),
            );
            run.env("PATH", path);
        }
        let run_out = output(&mut run);
        // GITHUB_ENV applies to the job's later steps.
        self.exported.extend(run_step.env_lines());
        ActionRun {
            install: install_out,
            install_bin: bin,
            run: run_out,
            step: run_step,
        }
    }

    /// The pid of the live background lease holder, if the action started one (the holder
    /// exports its pid to `GITHUB_ENV`).
    fn hold_pids(&self) -> Vec<i32> {
        self.exported_pid("CARGO_GUARDED_HOLD_PID")
    }

    /// The pid of the live job holder (`hold --job-only`), if the action started one.
    fn job_hold_pids(&self) -> Vec<i32> {
        self.exported_pid("CARGO_GUARDED_JOB_HOLD_PID")
    }

    fn exported_pid(&self, key: &str) -> Vec<i32> {
        self.exported
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .filter(|pid| alive(*pid))
            .into_iter()
            .collect()
    }
}

impl Drop for Job {
    /// A failed test must not leave a lease holder behind.
    fn drop(&mut self) {
        for pid in self.hold_pids().into_iter().chain(self.job_hold_pids()) {
            kill(pid, "KILL");
        }
    }
}

struct ActionRun {
    install: Output,
    install_bin: String,
    run: Output,
    step: Step,
}

/// Where a step's env value comes from, as action.yml says.
enum Source {
    Input(String),
    InstallOutput(String),
}

/// What the tests need of action.yml, read with a line parser that knows its (our) layout.
struct Manifest {
    text: String,
    /// Every input and its default.
    defaults: Vec<(String, String)>,
    /// The `run` step's `env:` mapping.
    run_env: Vec<(String, Source)>,
    /// Every step in order: its id, `if:` and `uses:`.
    steps: Vec<ManifestStep>,
}

struct ManifestStep {
    id: String,
    condition: Option<String>,
    uses: Option<String>,
}

impl Manifest {
    fn step(&self, id: &str) -> &ManifestStep {
        self.steps
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("action.yml has no step `{id}`"))
    }
}

/// Whether a step runs, as the runner decides from its `if:`: a conjunction of
/// `steps.ID.outputs.NAME == 'VALUE'`, the one form action.yml uses (anything else fails the
/// test rather than being guessed at), against the outputs of the steps before it.
fn step_runs(step: &ManifestStep, outputs: &HashMap<String, HashMap<String, String>>) -> bool {
    let Some(condition) = &step.condition else {
        return true;
    };
    condition.split(" && ").all(|term| {
        let (lhs, rhs) = term
            .split_once(" == ")
            .unwrap_or_else(|| panic!("unexpected condition in action.yml: {condition}"));
        let value = rhs
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or_else(|| panic!("unexpected condition in action.yml: {condition}"));
        let (id, name) = lhs
            .strip_prefix("steps.")
            .and_then(|l| l.split_once(".outputs."))
            .unwrap_or_else(|| panic!("unexpected condition in action.yml: {condition}"));
        outputs
            .get(id)
            .and_then(|o| o.get(name))
            .map(String::as_str)
            == Some(value)
    })
}

impl Manifest {
    fn load() -> Manifest {
        let text = std::fs::read_to_string(Path::new(SOURCE).join("action.yml")).unwrap();
        let mut defaults = Vec::new();
        let mut run_env = Vec::new();
        let mut section = "";
        let mut current_input: Option<String> = None;
        let mut in_run_env = false;
        let mut step_id = String::new();
        let mut steps: Vec<ManifestStep> = Vec::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            if !line.starts_with(' ') && line.ends_with(':') {
                section = line.trim_end_matches(':');
                continue;
            }
            if section == "inputs" {
                if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
                    && !name.starts_with(' ')
                {
                    current_input = Some(name.to_owned());
                    defaults.push((name.to_owned(), String::new()));
                } else if let Some(d) = line.trim().strip_prefix("default: ") {
                    assert!(current_input.is_some());
                    defaults.last_mut().unwrap().1 = d.trim_matches('\'').to_owned();
                }
            }
            if section == "runs" {
                let t = line.trim();
                if let Some(id) = t.strip_prefix("- id: ") {
                    step_id = id.to_owned();
                    in_run_env = false;
                    steps.push(ManifestStep {
                        id: id.to_owned(),
                        condition: None,
                        uses: None,
                    });
                } else if let Some(c) = t.strip_prefix("if: ") {
                    steps.last_mut().unwrap().condition = Some(c.to_owned());
                } else if let Some(u) = t.strip_prefix("uses: ") {
                    steps.last_mut().unwrap().uses = Some(u.to_owned());
                } else if t == "env:" {
                    in_run_env = step_id == "run";
                } else if in_run_env && let Some((var, value)) = t.split_once(": ${{ ") {
                    let expr = value.strip_suffix(" }}").expect("one expression per value");
                    let source = if let Some(name) = expr.strip_prefix("inputs.") {
                        Source::Input(name.to_owned())
                    } else if let Some(name) = expr.strip_prefix("steps.install.outputs.") {
                        Source::InstallOutput(name.to_owned())
                    } else {
                        panic!("unexpected expression in action.yml: {expr}")
                    };
                    run_env.push((var.to_owned(), source));
                } else if t.starts_with("run:") {
                    in_run_env = false;
                }
            }
        }
        Manifest {
            text,
            defaults,
            run_env,
            steps,
        }
    }
}

/// `GITHUB_OUTPUT`'s two record forms: `name=value` and `name<<DELIM` … `DELIM`.
fn parse_outputs(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_owned(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            out.insert(name.to_owned(), value.to_owned());
        }
    }
    out
}

/// Whether someone holds the kernel lock on `dir` (tried without blocking, released at once).
fn dir_locked(dir: &Path) -> bool {
    let f = std::fs::File::open(dir).unwrap();
    match f.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(e)) => panic!("failed to try the lock on {dir:?}: {e}"),
    }
}

fn kill(pid: i32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// A job's lease state as `status --json` reports it.
fn lease_state(env: &Env, job_id: &str) -> Option<String> {
    if !env.root.exists() {
        return None;
    }
    env.status()["leases"]
        .as_array()?
        .iter()
        .find(|l| l["job_id"] == job_id)
        .and_then(|l| l["state"].as_str().map(str::to_owned))
}

/// The job dir of `job_id`, from `status --json`.
fn job_dir(env: &Env, job_id: &str) -> PathBuf {
    let status = env.status();
    let lease = status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["job_id"] == job_id)
        .unwrap_or_else(|| panic!("no lease for {job_id}: {status:#}"));
    PathBuf::from(lease["dir"].as_str().unwrap())
}

/// An expired job dir of another workspace holding 1 MiB: `--linger 0s` expires it at release.
fn expired_dir(env: &Env, job_id: &str) {
    let elsewhere = env.path().join(format!("elsewhere-{job_id}"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    env.ok(
        &elsewhere,
        [
            "--job-id",
            job_id,
            "--linger",
            "0s",
            "exec",
            "--",
            "sh",
            "-c",
            "head -c 1048576 /dev/zero > \"$CARGO_TARGET_DIR/blob\"",
        ],
    );
    assert_eq!(lease_state(env, job_id).as_deref(), Some("expired"));
}

/// The lines between `::group::TITLE` and the next `::endgroup::` on stderr.
fn group<'a>(stderr: &'a str, title: &str) -> Vec<&'a str> {
    let start = format!("::group::{title}");
    let mut lines = stderr.lines().skip_while(|l| *l != start);
    assert!(lines.next().is_some(), "no `{start}` in:\n{stderr}");
    let inside: Vec<&str> = lines
        .by_ref()
        .take_while(|l| *l != "::endgroup::")
        .collect();
    inside
}

// ---------------------------------------------------------------------------------------------
// action.yml

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

// ---------------------------------------------------------------------------------------------
// The action end to end

/// A later step of the job resumes its dir with plenty of space: no sweep runs, and the summary
/// gives the free space the precheck read.
#[test]
fn a_step_without_a_sweep_summarizes_the_free_space() {
    let mut job = Job::new();
    assert_success(&job.action(&[("command", "build")]).run);
    let a = job.action(&[("command", "build")]);
    assert_success(&a.run);
    assert_eq!(a.step.outputs()["origin"], "resumed");
    let summary = a.step.summary();
    let root = job.env.root.display().to_string();
    assert!(
        summary.contains(&format!("Free space on `{root}`"))
            && summary.contains("% used); no sweep was needed."),
        "{summary}"
    );
}

#[test]
fn build_step_sets_outputs_and_a_summary() {
    let mut job = Job::new();
    let a = job.action(&[("command", "build")]);
    assert_success(&a.run);
    assert!(
        stdout(&a.install).contains("from PATH"),
        "the matching cargo-guarded on PATH must be used\n{}",
        describe(&a.install)
    );
    assert_eq!(
        a.install_bin,
        job.bin_dir.join("cargo-guarded").display().to_string()
    );

    let outputs = a.step.outputs();
    let dir = job_dir(&job.env, JOB_ID);
    assert_eq!(outputs["job-id"], JOB_ID);
    assert_eq!(
        outputs["target-dir"],
        dir.join("target").display().to_string()
    );
    assert_eq!(outputs["reclaimed-bytes"], "0");
    assert!(
        dir.join("target/debug/app").exists(),
        "{}",
        describe(&a.run)
    );

    let summary = a.step.summary();
    for want in [
        "### cargo guarded `build`",
        &format!("Job `{JOB_ID}`"),
        &outputs["target-dir"],
        "a fresh dir",
        "| before |",
        "| after |",
        "Reclaimed nothing",
        "(this job)",
    ] {
        assert!(summary.contains(want), "summary lacks {want:?}:\n{summary}");
    }
    let err = stderr(&a.run);
    assert!(
        !err.contains("::warning") && !err.contains("::error"),
        "{}",
        describe(&a.run)
    );
    assert_eq!(lease_state(&job.env, JOB_ID).as_deref(), Some("released"));
}

#[test]
fn precheck_reclaims_in_a_log_group_keeps_live_leases_and_warns_when_disk_stays_low() {
    let mut job = Job::new();
    expired_dir(&job.env, "old");
    let live_ws = job.env.fixture_as("small", "live-ws");
    let mut live = job.env.live_holder(&live_ws, "live");
    let live_dir = job_dir(&job.env, "live");

    // Every share of the disk is "low" at 100%, so the sweep runs under pressure, takes every
    // expired dir, and still cannot reach the target.
    let a = job.action(&[("command", "build"), ("reclaim-below", "100%")]);
    assert_success(&a.run);
    let err = stderr(&a.run);
    let grouped = group(&err, "cargo-guarded: disk precheck");
    assert!(
        grouped.iter().any(|l| l.contains("Removed old")),
        "the sweep's lines belong in the group\n{}",
        describe(&a.run)
    );
    assert!(
        err.lines().any(
            |l| l.starts_with("::warning title=cargo-guarded%3A disk still low::")
                && l.contains("below the reclaim target")
        ),
        "{}",
        describe(&a.run)
    );

    let outputs = a.step.outputs();
    let reclaimed: u64 = outputs["reclaimed-bytes"].parse().unwrap();
    assert!(reclaimed >= 1 << 20, "reclaimed {reclaimed} bytes");
    let summary = a.step.summary();
    assert!(summary.contains("**Reclaimed "), "{summary}");
    // `old` and `live` are not this repository's jobs (octo/app's ids are `gh-octo/app-…`): a
    // shared root's other tenants are counted in the summary, never named.
    assert!(
        summary.contains("1 of them (") && summary.contains("belonged to other repositories' jobs"),
        "{summary}"
    );
    assert!(
        !summary.contains("`old`") && !summary.contains("`live`"),
        "{summary}"
    );
    assert!(
        summary.contains("Kept 1 job dir(s): 1 live."),
        "the live lease is counted as kept:\n{summary}"
    );

    assert!(live.running(), "the live build was disturbed");
    assert!(live_dir.exists(), "a live job dir was removed");
    assert_eq!(lease_state(&job.env, "live").as_deref(), Some("active"));
    assert_eq!(lease_state(&job.env, "old"), None, "the expired dir stayed");
}

#[test]
fn low_disk_fails_the_step_with_an_error_annotation_and_exit_75() {
    let mut job = Job::new();
    let a = job.action(&[("command", "build"), ("min-free", "100%")]);
    assert_eq!(a.run.status.code(), Some(75), "{}", describe(&a.run));
    let err = stderr(&a.run);
    let annotation = err
        .lines()
        .find(|l| l.starts_with("::error title=cargo-guarded%3A not enough disk space::"))
        .unwrap_or_else(|| panic!("no ::error:: annotation\n{}", describe(&a.run)));
    assert!(annotation.contains("required by min-free"), "{annotation}");
    assert!(
        annotation.contains(" bytes)") && annotation.contains(" < "),
        "the annotation carries the numbers: {annotation}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: not enough free disk space")),
        "{}",
        describe(&a.run)
    );
    let summary = a.step.summary();
    assert!(summary.contains("refused to start"), "{summary}");
    assert!(summary.contains("Exit status 75"), "{summary}");
    // Exit 75 still sets every output: what was reclaimed, the dir the job would have
    // used, how it came by it.
    let outputs = a.step.outputs();
    for name in ["target-dir", "job-id", "reclaimed-bytes", "origin"] {
        assert!(outputs.contains_key(name), "no {name} output: {outputs:?}");
    }
    assert_eq!(outputs["origin"], "fresh");

    // The same from the CLI flag, without the action around it.
    let step = job.step();
    let out = job.binary(&job.ws, &step, &["--min-free", "100%", "build"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(
        stderr(&out).contains("::error title="),
        "{}",
        describe(&out)
    );
}

#[test]
fn exit_75_names_only_live_leases_and_only_this_repository_s() {
    let mut job = Job::new();
    // A released (lingering) dir of this repository: its process is gone, it is not live.
    let lint_ws = job.env.fixture_as("small", "lint-ws");
    job.env.ok(
        &lint_ws,
        ["--job-id", "gh-octo/app-4-1-lint-r3", "exec", "--", "true"],
    );
    let ours_ws = job.env.fixture_as("small", "ours-ws");
    let _ours = job.env.live_holder(&ours_ws, "gh-octo/app-5-1-test-r2");
    let theirs_ws = job.env.fixture_as("small", "theirs-ws");
    let _theirs = job.env.live_holder(&theirs_ws, "gh-other/secret-1-1-b-r9");
    let a = job.action(&[("command", "build"), ("min-free", "100%")]);
    assert_eq!(a.run.status.code(), Some(75), "{}", describe(&a.run));
    let summary = a.step.summary();
    assert!(
        summary.contains("Live leases holding the most space"),
        "{summary}"
    );
    assert!(summary.contains("gh-octo/app-5-1-test-r2"), "{summary}");
    assert!(
        !summary.contains("lint-r3"),
        "a released lease listed as live:\n{summary}"
    );
    assert!(
        !summary.contains("other/secret"),
        "another repository's job named:\n{summary}"
    );
    assert!(
        summary.contains("1 live lease(s) of other repositories' jobs"),
        "{summary}"
    );
}

#[test]
fn command_words_split_like_a_shell_but_nothing_is_expanded() {
    let mut job = Job::new();
    let a = job.action(&[
        (
            "command",
            r#"exec -- sh -c 'printf "%s\n" "$CARGO_TARGET_DIR" "$1" > words.txt' sh '$HOME *'"#,
        ),
        ("working-directory", "app"),
    ]);
    assert_success(&a.run);
    let words = std::fs::read_to_string(job.ws.join("app/words.txt")).unwrap();
    let target = &a.step.outputs()["target-dir"];
    assert_eq!(words, format!("{target}\n$HOME *\n"));

    let bad = job.action(&[("command", "build 'unbalanced")]);
    assert_eq!(bad.run.status.code(), Some(1), "{}", describe(&bad.run));
    assert!(stdout(&bad.run).contains("::error title=cargo-guarded::cannot split"));
}

/// The splitting the action runs (`cargo-guarded __split-words`) is a shell's: for lines with
/// nothing to expand, the words bash itself makes of them; what bash would expand stays literal.
#[test]
fn command_input_is_split_by_the_binary_as_bash_splits_it() {
    let split = |line: &str| {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd).args(["__split-words", "--", line]);
        output(&mut cmd)
    };
    let words = |out: &Output| -> Vec<String> {
        assert_success(out);
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        let mut words: Vec<String> = text.split('\0').map(str::to_owned).collect();
        assert_eq!(
            words.pop().as_deref(),
            Some(""),
            "each word ends with a NUL"
        );
        words
    };
    for line in [
        "build --release",
        "  test\t--features 'a b'  -- --exact x ",
        r#"exec -- sh -c 'printf "%s\n" "it'\''s"' sh"#,
        r#"nextest run -E "test(=a\"b)" back\ slash 'x\y' "x\\y""#,
        "build --config 'build.rustflags=[\"-C\", \"debuginfo=0\"]' # a comment",
    ] {
        let bash = Command::new("bash")
            .args([
                "-c",
                "eval \"set -- $1\"; printf '%s\\0' \"$@\"",
                "bash",
                line,
            ])
            .output()
            .unwrap();
        assert_success(&bash);
        let expected: Vec<String> = String::from_utf8(bash.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(str::to_owned)
            .collect();
        assert_eq!(words(&split(line)), expected, "{line}");
    }
    // A line break (a YAML block scalar) separates words, as before: one command, not two.
    assert_eq!(
        words(&split("clippy --all-targets\n-- -D warnings\n")),
        ["clippy", "--all-targets", "--", "-D", "warnings"]
    );
    // Nothing is expanded: no variables, globs, command substitutions or `~`.
    assert_eq!(
        words(&split(r#"exec -- echo $HOME * $(id) ~ "$X""#)),
        ["exec", "--", "echo", "$HOME", "*", "$(id)", "~", "$X"]
    );
    for bad in ["build 'unbalanced", "build \"x", "build x\\"] {
        let out = split(bad);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", describe(&out));
        assert!(stderr(&out).contains("cannot split"), "{}", describe(&out));
    }
}

#[test]
fn export_target_dir_keeps_the_lease_live_for_later_plain_cargo_steps() {
    let mut job = Job::new();
    let a = job.action(&[
        ("command", "build"),
        ("export-target-dir", "true"),
        ("ttl", "3s"),
    ]);
    assert_success(&a.run);
    let target = a.step.outputs()["target-dir"].clone();
    let exported: HashMap<_, _> = a.step.env_lines().into_iter().collect();
    assert_eq!(exported.get("CARGO_TARGET_DIR"), Some(&target));
    assert_eq!(
        exported.get("CARGO_GUARDED_JOB_ID").map(String::as_str),
        Some(JOB_ID)
    );
    let pids = job.hold_pids();
    assert_eq!(pids.len(), 1, "one lease holder");
    let first = pids[0];
    assert!(alive(first));
    assert_eq!(lease_state(&job.env, JOB_ID).as_deref(), Some("active"));
    let dir = job_dir(&job.env, JOB_ID);
    assert!(dir_locked(&dir));

    // A later plain cargo step builds in the exported dir, warm; a sibling's guard meanwhile
    // reclaims every expired dir and leaves this one alone.
    let step = job.step();
    let mut cargo = job.command("cargo", &job.ws, &step);
    cargo.arg("build");
    let out = output(&mut cargo);
    assert_success(&out);
    assert!(!compiled_anything(&out), "{}", describe(&out));
    job.env.ok(job.env.path(), ["gc", "--all-expired"]);
    assert!(dir.join("target/debug/app").exists());

    // Using the action again in the same job stops the holder first (else this step would
    // wait for the lease forever), then holds the lease again.
    let again = job.action(&[("command", "build"), ("export-target-dir", "true")]);
    assert_success(&again.run);
    assert!(
        stdout(&again.run).contains("stopping the lease holder"),
        "{}",
        describe(&again.run)
    );
    assert!(!alive(first), "the first holder is still running");
    let second = job.hold_pids();
    assert_eq!(second.len(), 1);
    assert_ne!(second[0], first);
    assert_eq!(lease_state(&job.env, JOB_ID).as_deref(), Some("active"));

    // The runner's end-of-job orphan cleanup SIGKILLs it: the lock goes with the process, while
    // the lease (this step's TTL is the default 10m) still protects the dir for a while.
    kill(second[0], "KILL");
    assert!(wait_for(30, || !alive(second[0])));
    // Its other threads may still be exiting for a moment after the main one is a zombie.
    assert!(
        wait_for(30, || !dir_locked(&dir)),
        "a dead holder's lock must be free"
    );
    // `status` tries the locks: the holder is gone. Its heartbeat is recent,
    // so the dir stays protected until the TTL passes.
    assert_eq!(lease_state(&job.env, JOB_ID).as_deref(), Some("gone"));
    job.env.ok(job.env.path(), ["gc", "--all-expired"]);
    assert!(dir.join("target/debug/app").exists());
}

#[test]
fn a_killed_holder_expires_one_ttl_after_its_last_heartbeat() {
    let mut job = Job::new();
    let a = job.action(&[
        ("command", "build"),
        ("export-target-dir", "true"),
        ("ttl", "2s"),
        ("linger", "1h"),
    ]);
    assert_success(&a.run);
    let pid = job.hold_pids()[0];
    let dir = job_dir(&job.env, JOB_ID);
    kill(pid, "KILL");
    assert!(wait_for(30, || !alive(pid)));
    // Not the 1h linger: a SIGKILLed holder never released, so its TTL is what ends it.
    assert!(
        wait_for(60, || lease_state(&job.env, JOB_ID).as_deref()
            == Some("expired")),
        "{:#}",
        job.env.status()
    );
    job.env.ok(job.env.path(), ["gc", "--all-expired"]);
    assert!(
        !dir.exists(),
        "the expired dir of a finished job is reclaimed"
    );
}

// ---------------------------------------------------------------------------------------------
// The binary's GitHub output, outside the action

#[test]
fn outside_github_actions_no_files_are_written_and_no_workflow_commands_printed() {
    let mut job = Job::new();
    expired_dir(&job.env, "old");
    let step = job.step();
    let mut cmd = job.command(BIN, &job.ws, &step);
    cmd.env_remove("GITHUB_ACTIONS")
        .args(["guarded", "--reclaim-below", "100%", "build"]);
    let out = output(&mut cmd);
    assert_success(&out);
    assert!(stderr(&out).contains("Removed old"), "{}", describe(&out));
    assert!(!stderr(&out).contains("::"), "{}", describe(&out));
    assert_eq!(std::fs::read_to_string(&step.output).unwrap(), "");
    assert_eq!(step.summary(), "");
}

#[test]
fn machine_readable_stdout_stays_clean_on_github() {
    let mut job = Job::new();
    expired_dir(&job.env, "old");
    let step = job.step();
    let env_out = job.binary(&job.ws, &step, &["--reclaim-below", "100%", "env"]);
    assert_success(&env_out);
    let text = stdout(&env_out);
    assert!(text.contains("CARGO_TARGET_DIR="), "{text}");
    for line in text.lines() {
        assert!(
            line.split_once('=')
                .is_some_and(|(k, _)| !k.is_empty() && !k.contains(':')),
            "not a KEY=VALUE line on stdout: {line:?}"
        );
    }
    // The warning went to stderr, where the runner reads workflow commands too.
    assert!(stderr(&env_out).contains("::warning title="));

    for args in [
        &["--reclaim-below", "100%", "gc", "--json"][..],
        &["status", "--json"],
    ] {
        let step = job.step();
        let out = job.binary(&job.ws, &step, args);
        assert_success(&out);
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out.stdout);
        assert!(
            parsed.is_ok(),
            "{args:?}: stdout is not JSON\n{}",
            describe(&out)
        );
    }
}

#[test]
fn gc_on_github_groups_its_log_sets_reclaimed_bytes_and_summarises() {
    let mut job = Job::new();
    expired_dir(&job.env, "old");
    let step = job.step();
    let out = job.binary(job.env.path(), &step, &["--reclaim-below", "100%", "gc"]);
    assert_success(&out);
    let err = stderr(&out);
    let grouped = group(&err, "cargo-guarded: gc");
    assert!(grouped.iter().any(|l| l.contains("Removed old")), "{err}");
    assert!(err.contains("::warning title=cargo-guarded%3A disk still low::"));
    let reclaimed: u64 = step.outputs()["reclaimed-bytes"].parse().unwrap();
    assert!(reclaimed >= 1 << 20, "reclaimed {reclaimed}");
    let summary = step.summary();
    assert!(summary.starts_with("### cargo guarded gc\n"), "{summary}");
    assert!(
        !summary.contains("`old`"),
        "another repository's job named:\n{summary}"
    );
    assert!(
        summary.contains("belonged to other repositories' jobs"),
        "{summary}"
    );

    // A dry run reclaims nothing and so warns about nothing.
    expired_dir(&job.env, "old2");
    let step = job.step();
    let out = job.binary(
        job.env.path(),
        &step,
        &["--reclaim-below", "100%", "gc", "--dry-run"],
    );
    assert_success(&out);
    assert!(!stderr(&out).contains("::warning"), "{}", describe(&out));
    assert_eq!(step.outputs()["reclaimed-bytes"], "0");
    assert!(step.summary().contains("Would reclaim"));
}

// ---------------------------------------------------------------------------------------------
// action/install.sh

#[test]
fn install_prefers_path_then_the_runner_cache_then_cargo_install() {
    let mut job = Job::new();
    // An older cargo-guarded on PATH, and a cargo that records what it is asked to do and
    // "installs" by linking the built binary into the requested root.
    let fake = job.env.path().join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let log = job.env.path().join("cargo.log");
    std::fs::write(
        fake.join("cargo-guarded"),
        "#!/bin/sh\necho 'cargo-guarded 0.0.1'\n",
    )
    .unwrap();
    let fake_cargo = r#"#!/bin/sh
printf '%s\n' "$*" >> 'LOG'
while [ $# -gt 0 ]; do
  if [ "$1" = --root ]; then mkdir -p "$2/bin" && ln -s 'BIN' "$2/bin/cargo-guarded"; fi
  shift
done
"#;
    std::fs::write(
        fake.join("cargo"),
        fake_cargo
            .replace("LOG", &log.display().to_string())
            .replace("BIN", BIN),
    )
    .unwrap();
    for f in ["cargo-guarded", "cargo"] {
        let p = fake.join(f);
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).unwrap();
    }
    std::fs::remove_file(job.bin_dir.join("cargo-guarded")).unwrap();
    std::os::unix::fs::symlink(
        fake.join("cargo-guarded"),
        job.bin_dir.join("cargo-guarded"),
    )
    .unwrap();
    std::os::unix::fs::symlink(fake.join("cargo"), job.bin_dir.join("cargo")).unwrap();

    let run_install = |job: &mut Job| {
        let step = job.step();
        let mut cmd = job.command("bash", &job.ws, &step);
        cmd.arg(Path::new(SOURCE).join("action/install.sh"));
        let out = output(&mut cmd);
        assert_success(&out);
        let bin = step.outputs()["bin"].clone();
        let path = std::fs::read_to_string(&step.path_file).unwrap();
        (out, bin, path)
    };

    let (_, bin, path) = run_install(&mut job);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.lines().count(), 1, "{calls}");
    assert!(
        calls.starts_with(&format!(
            "install --locked --features store --path {SOURCE} --root "
        )),
        "{calls}"
    );
    let cache = job.tool_cache.join("cargo-guarded");
    assert!(
        Path::new(&bin).starts_with(&cache),
        "{bin} is not in the tool cache"
    );
    assert!(
        bin.contains(&format!("/{VERSION}-")),
        "keyed by version: {bin}"
    );
    assert_eq!(
        path.trim(),
        Path::new(&bin).parent().unwrap().display().to_string()
    );
    let version = Command::new(&bin).args(["guarded", "--version"]).output();
    assert_eq!(
        String::from_utf8_lossy(&version.unwrap().stdout).trim(),
        format!("cargo-guarded {VERSION}")
    );

    // The next job on this runner finds it in the cache: no second install.
    let (out, bin2, _) = run_install(&mut job);
    assert_eq!(bin2, bin);
    assert!(
        stdout(&out).contains("cached on this runner"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
}

/// What the action's install steps did on one runner.
struct InstallSteps {
    /// Each step's outputs by id, for the steps that ran.
    outputs: HashMap<String, HashMap<String, String>>,
    /// The ids of the steps that ran, in order.
    ran: Vec<String>,
    install: Output,
}

impl Job {
    /// The action's install steps (`plan`, `restore`, `install`, `save`) as the runner runs them,
    /// each only when its `if:` holds, on a fresh runner (an empty tool cache), with the event's
    /// variables. `service` stands in for the repository's Actions cache: a dir per key, which
    /// `restore` copies to the entry's path and `save` fills from it (once per key, as the
    /// service keeps the first entry saved under a key).
    fn install_steps(&mut self, event: &[(&str, &str)], service: &Path) -> InstallSteps {
        let manifest = Manifest::load();
        self.tool_cache = self.env.path().join(format!("tool-cache-{}", self.steps));
        std::fs::create_dir_all(&self.tool_cache).unwrap();
        let mut outputs: HashMap<String, HashMap<String, String>> = HashMap::new();
        let mut ran = Vec::new();
        let mut install = None;
        for step in &manifest.steps {
            if step.id == "run" || !step_runs(step, &outputs) {
                continue;
            }
            ran.push(step.id.clone());
            let mut out = HashMap::new();
            let entry = |outputs: &HashMap<String, HashMap<String, String>>| {
                let plan = &outputs["plan"];
                (
                    service.join(&plan["cache-key"]),
                    PathBuf::from(&plan["cache-path"]),
                )
            };
            match step.id.as_str() {
                "plan" | "install" => {
                    let s = self.step();
                    let mut cmd = self.command("bash", &self.ws, &s);
                    cmd.arg(Path::new(SOURCE).join("action/install.sh"))
                        .args((step.id == "plan").then_some("plan"))
                        .envs(event.iter().copied());
                    let o = output(&mut cmd);
                    assert_success(&o);
                    out = s.outputs();
                    if step.id == "install" {
                        install = Some(o);
                    }
                }
                "restore" => {
                    let (saved, path) = entry(&outputs);
                    let hit = saved.exists();
                    if hit {
                        std::fs::create_dir_all(&path).unwrap();
                        copy_tree(&saved, &path);
                    }
                    out.insert("cache-hit".to_owned(), hit.to_string());
                }
                "save" => {
                    let (saved, path) = entry(&outputs);
                    if !saved.exists() {
                        std::fs::create_dir_all(&saved).unwrap();
                        copy_tree(&path, &saved);
                    }
                }
                other => panic!("action.yml has a step this test does not know: {other}"),
            }
            outputs.insert(step.id.clone(), out);
        }
        InstallSteps {
            outputs,
            ran,
            install: install.expect("the install step ran"),
        }
    }
}

/// `cp -a FROM/. TO`: a dir's content, modes and times kept, as the cache's tar keeps them.
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// A `cargo` on the job's PATH that logs each call and "installs" by copying the built binary
/// into `--root DIR`'s `bin/` (what `cargo install --path` leaves there); returns the log.
fn fake_cargo_install(job: &Job) -> PathBuf {
    let log = job.env.path().join("cargo.log");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = --root ]; then mkdir -p \"$2/bin\" && cp '{BIN}' \"$2/bin/cargo-guarded\"; fi\n  shift\ndone\n",
        log.display()
    );
    let cargo = job.bin_dir.join("cargo");
    std::fs::write(&cargo, script).unwrap();
    let mut perm = std::fs::metadata(&cargo).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&cargo, perm).unwrap();
    log
}

fn builds(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("install "))
        .count()
}

/// The cache steps are actions/cache's restore and save, pinned by full commit.
#[test]
fn the_cache_steps_are_actions_cache_pinned_by_commit() {
    let m = Manifest::load();
    let ids: Vec<&str> = m.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["plan", "restore", "install", "save", "run"]);
    for (id, action) in [("restore", "restore"), ("save", "save")] {
        let uses = m.step(id).uses.as_deref().unwrap_or_default();
        let (name, rest) = uses.split_once('@').unwrap_or_default();
        assert_eq!(name, format!("actions/cache/{action}"), "{uses}");
        let (sha, tag) = rest.split_once(" # ").unwrap_or_default();
        assert!(
            sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
            "`{id}` is not pinned by a full commit SHA: {uses}"
        );
        assert!(tag.starts_with("v4."), "{uses}");
    }
    assert!(
        m.text
            .contains("EVENT_DEFAULT_BRANCH: ${{ github.event.repository.default_branch }}"),
        "the plan step reads the default branch from the event"
    );
}

/// Until a release exists the binary is built from source, once: a run of the default branch
/// saves the build to the Actions cache, and every later runner, a pull request's included,
/// restores it instead of compiling. A pull request's run, even `pull_request_target` (which
/// runs with the base branch's ref), and a push to another branch never save.
#[test]
fn a_source_build_is_saved_by_the_default_branch_and_restored_by_later_runners() {
    let mut job = Job::new();
    // No release binary: an empty checksum list, as in an unreleased commit.
    std::fs::write(job.env.path().join("checksums.txt"), "").unwrap();
    let log = fake_cargo_install(&job);
    let service = job.env.path().join("cache-service");
    std::fs::create_dir_all(&service).unwrap();
    let pr = [
        ("GITHUB_EVENT_NAME", "pull_request"),
        ("GITHUB_REF", "refs/pull/7/merge"),
        ("EVENT_DEFAULT_BRANCH", "main"),
    ];
    let pr_target = [
        ("GITHUB_EVENT_NAME", "pull_request_target"),
        ("GITHUB_REF", "refs/heads/main"),
        ("EVENT_DEFAULT_BRANCH", "main"),
    ];
    let branch = [
        ("GITHUB_EVENT_NAME", "push"),
        ("GITHUB_REF", "refs/heads/feature"),
        ("EVENT_DEFAULT_BRANCH", "main"),
    ];
    let main = [
        ("GITHUB_EVENT_NAME", "push"),
        ("GITHUB_REF", "refs/heads/main"),
        ("EVENT_DEFAULT_BRANCH", "main"),
    ];

    // Nothing cached yet: each of these restores (a miss), builds, and does not save.
    for (n, event) in [&pr[..], &pr_target, &branch].into_iter().enumerate() {
        let run = job.install_steps(event, &service);
        assert_eq!(run.ran, ["plan", "restore", "install"], "{event:?}");
        assert_eq!(run.outputs["plan"]["cache-save"], "false", "{event:?}");
        assert_eq!(run.outputs["install"]["built"], "true", "{event:?}");
        assert_eq!(builds(&log), n + 1);
        assert_eq!(std::fs::read_dir(&service).unwrap().count(), 0, "{event:?}");
    }

    // The default branch's run builds and saves.
    let run = job.install_steps(&main, &service);
    assert_eq!(run.ran, ["plan", "restore", "install", "save"]);
    assert_eq!(builds(&log), 4);
    let key = &run.outputs["plan"]["cache-key"];
    assert!(
        key.starts_with(&format!("cargo-guarded-{VERSION}-")) && key.contains("-rustc-"),
        "{key}"
    );
    let saved = service.join(key).join("bin");
    assert!(saved.join("cargo-guarded").is_file(), "{key}");
    assert!(saved.join("cargo-guarded.sha256").is_file(), "{key}");

    // A pull request's run on a fresh runner restores it: no build, nothing saved.
    let run = job.install_steps(&pr, &service);
    assert_eq!(run.ran, ["plan", "restore", "install"]);
    assert_eq!(run.outputs["restore"]["cache-hit"], "true");
    assert_eq!(builds(&log), 4, "{}", describe(&run.install));
    assert!(!run.outputs["install"].contains_key("built"));
    let bin = &run.outputs["install"]["bin"];
    assert_eq!(
        Path::new(bin),
        Path::new(&run.outputs["plan"]["cache-path"]).join("bin/cargo-guarded")
    );
    assert!(
        stdout(&run.install).contains("restored from the Actions cache"),
        "{}",
        describe(&run.install)
    );
    let version = Command::new(bin).args(["guarded", "--version"]).output();
    assert_eq!(
        String::from_utf8_lossy(&version.unwrap().stdout).trim(),
        format!("cargo-guarded {VERSION}")
    );

    // The default branch's next run restores too, and saves nothing (it built nothing).
    let run = job.install_steps(&main, &service);
    assert_eq!(run.ran, ["plan", "restore", "install"]);
    assert_eq!(builds(&log), 4);
}

/// A restored entry whose binary no longer matches the SHA-256 recorded beside it (a truncated
/// download, a disk error) is built again, never run.
#[test]
fn a_restored_build_that_fails_its_recorded_sum_is_built_again() {
    let mut job = Job::new();
    std::fs::write(job.env.path().join("checksums.txt"), "").unwrap();
    let log = fake_cargo_install(&job);
    let service = job.env.path().join("cache-service");
    std::fs::create_dir_all(&service).unwrap();
    let main = [
        ("GITHUB_EVENT_NAME", "push"),
        ("GITHUB_REF", "refs/heads/main"),
        ("EVENT_DEFAULT_BRANCH", "main"),
    ];
    let run = job.install_steps(&main, &service);
    let saved = service.join(&run.outputs["plan"]["cache-key"]);
    let bin = saved.join("bin/cargo-guarded");
    let len = std::fs::metadata(&bin).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bin)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let run = job.install_steps(&main, &service);
    assert_eq!(run.outputs["restore"]["cache-hit"], "true");
    assert_eq!(builds(&log), 2, "{}", describe(&run.install));
    assert!(
        stdout(&run.install).contains("does not match the SHA-256 recorded"),
        "{}",
        describe(&run.install)
    );
}

// ---------------------------------------------------------------------------------------------
// contrib/: the runner hook and the systemd units

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

// ---------------------------------------------------------------------------------------------
// Hostile inputs and the lease holder

#[test]
fn a_newline_in_the_job_id_defines_no_variable_in_github_env() {
    let mut job = Job::new();
    let id = "pr-7\nBASH_ENV=/x";
    let a = job.action(&[
        ("command", "exec -- true"),
        ("job-id", id),
        ("export-target-dir", "true"),
    ]);
    assert_success(&a.run);
    // Parsed as the runner parses it, heredoc values included.
    let vars: HashMap<_, _> = a.step.env_lines().into_iter().collect();
    assert!(!vars.contains_key("BASH_ENV"), "{vars:?}");
    assert_eq!(
        vars.get("CARGO_GUARDED_JOB_ID").map(String::as_str),
        Some(id)
    );
    // The holder holds the very dir that CARGO_TARGET_DIR names.
    let target = PathBuf::from(&vars["CARGO_TARGET_DIR"]);
    assert!(dir_locked(target.parent().unwrap()), "{vars:?}");
    assert_eq!(job.hold_pids().len(), 1);
    for line in stdout(&a.run).lines().chain(stderr(&a.run).lines()) {
        assert!(!line.starts_with("BASH_ENV"), "{}", describe(&a.run));
    }
}

#[test]
fn a_later_use_without_export_keeps_the_holder_and_runs_inside_its_lease() {
    let mut job = Job::new();
    let a = job.action(&[("command", "exec -- true"), ("export-target-dir", "true")]);
    assert_success(&a.run);
    assert_eq!(a.step.outputs()["origin"], "fresh");
    let target = a.step.outputs()["target-dir"].clone();
    let pid = job.hold_pids()[0];

    let b = job.action(&[("command", "exec -- sh -c 'echo \"$CARGO_TARGET_DIR\"'")]);
    assert_success(&b.run);
    assert_eq!(stdout(&b.run).trim(), target, "{}", describe(&b.run));
    assert!(
        !stdout(&b.run).contains("stopping the lease holder"),
        "{}",
        describe(&b.run)
    );
    assert_eq!(b.step.outputs()["origin"], "resumed");
    // CARGO_TARGET_DIR stays exported, so the holder stays.
    assert!(alive(pid), "the holder was stopped");
    assert_eq!(lease_state(&job.env, JOB_ID).as_deref(), Some("active"));
    assert!(dir_locked(&job_dir(&job.env, JOB_ID)));
}

#[test]
fn the_holder_is_stopped_only_when_it_is_this_jobs_own() {
    let mut job = Job::new();
    // A pid that GITHUB_ENV names, but that is some other process (a recycled pid).
    let mut other = Command::new("sleep").arg("300").spawn().unwrap();
    job.exported
        .push(("CARGO_GUARDED_HOLD_PID".into(), other.id().to_string()));
    job.exported
        .push(("CARGO_GUARDED_HOLD_ID".into(), "not-its-id".into()));
    let a = job.action(&[("command", "exec -- true"), ("export-target-dir", "true")]);
    let still_alive = alive(other.id() as i32);
    let _ = other.kill();
    let _ = other.wait();
    assert_success(&a.run);
    assert!(still_alive, "an unrelated process was killed");
    assert!(!stdout(&a.run).contains("stopping the lease holder"));
    // No pid file anywhere: nothing predictable in /tmp or the runner's temp dir.
    for e in std::fs::read_dir(&job.runner_temp).unwrap().flatten() {
        assert!(
            !e.file_name().to_string_lossy().ends_with(".pid"),
            "{:?}",
            e.path()
        );
    }
}

#[test]
fn inputs_in_error_lines_cannot_start_a_workflow_command() {
    let mut job = Job::new();
    for inputs in [
        vec![
            ("command", "build"),
            ("export-target-dir", "x\n::error::pwned"),
        ],
        vec![
            ("command", "build"),
            ("working-directory", "nope\n::error::pwned"),
        ],
        vec![("command", "build 'unbalanced\n::error::pwned")],
    ] {
        let a = job.action(&inputs);
        assert_eq!(a.run.status.code(), Some(1), "{}", describe(&a.run));
        let all = format!("{}{}", stdout(&a.run), stderr(&a.run));
        assert!(all.contains("::error title=cargo-guarded::"), "{all}");
        for line in all.lines() {
            assert!(!line.starts_with("::error::pwned"), "{}", describe(&a.run));
        }
    }
}

#[test]
fn a_run_that_fails_before_it_has_a_dir_still_sets_its_job_id_output() {
    let mut job = Job::new();
    let step = job.step();
    let file = job.env.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let mut cmd = job.command(BIN, &job.ws, &step);
    cmd.env("CARGO_GUARDED_ROOT", &file)
        .args(["guarded", "exec", "--", "true"]);
    let out = output(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let outputs = step.outputs();
    assert_eq!(outputs.get("job-id").map(String::as_str), Some(JOB_ID));
    assert_eq!(
        outputs.get("reclaimed-bytes").map(String::as_str),
        Some("0")
    );
}

/// A job that starts from a copy of a finished job's dir says so in its outputs and
/// its step summary.
#[test]
fn a_seeded_job_has_origin_seeded_and_says_so_in_its_summary() {
    let mut job = Job::new();
    let a = job.action(&[("command", "build"), ("job-id", "first")]);
    assert_success(&a.run);
    assert_eq!(a.step.outputs()["origin"], "fresh");
    // Another runner, while the first job's dir lingers (its job holder still runs): a seed.
    job.exported
        .push(("RUNNER_NAME".to_owned(), "runner-2".to_owned()));
    let b = job.action(&[("command", "build"), ("job-id", "second")]);
    assert_success(&b.run);
    assert_eq!(b.step.outputs()["origin"], "seeded", "{}", describe(&b.run));
    let summary = b.step.summary();
    assert!(
        summary.contains("seeded warm from finished job `first`"),
        "{summary}"
    );
    // What content verification decided, in the summary too.
    assert!(
        summary.contains("Built elsewhere: 2 units warm by content, 0 made stale"),
        "{summary}"
    );
    assert!(!compiled_anything(&b.run), "{}", describe(&b.run));
}

/// Without export-target-dir the action leaves one job holder (`hold
/// --job-only`) running; the runner's end-of-job cleanup (SIGKILL) ends the job dir's linger.
#[test]
fn the_job_holder_ends_the_linger_at_the_end_of_the_job() {
    let mut job = Job::new();
    let a = job.action(&[("command", "exec -- true")]);
    assert_success(&a.run);
    let holders = job.job_hold_pids();
    assert_eq!(holders.len(), 1, "{}", describe(&a.run));
    let b = job.action(&[("command", "exec -- true")]);
    assert_success(&b.run);
    assert_eq!(job.job_hold_pids(), holders, "a second holder was started");
    let lease = job_dir(&job.env, JOB_ID).join("lease.json");
    assert!(
        wait_for(30, || std::fs::read_to_string(&lease)
            .is_ok_and(|t| t.contains("\"job_lock\": true"))),
        "{}",
        describe(&b.run)
    );
    let gc = |env: &Env| {
        let out = env.ok(env.path(), ["gc", "--json", "--all-expired"]);
        removed_names(&serde_json::from_slice(&out.stdout).unwrap())
    };
    assert!(gc(&job.env).is_empty());
    kill(holders[0], "KILL");
    assert!(wait_for(30, || !alive(holders[0])));
    assert_eq!(gc(&job.env).len(), 1);
}

/// Every origin a lease records (`lease::Origin`'s names) is described wherever the origin is:
/// action.yml's `origin` output and docs/action.md's outputs paragraph.
#[test]
fn every_origin_is_documented_where_the_origin_output_is() {
    let request = std::fs::read_to_string(Path::new(SOURCE).join("src/lease/request.rs")).unwrap();
    let origins: Vec<&str> = request
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub(crate) const "))
        .filter_map(|l| l.split_once(": &str = \""))
        .filter_map(|(_, v)| v.strip_suffix("\";"))
        .collect();
    assert!(origins.len() >= 4, "{origins:?}");
    let action = std::fs::read_to_string(Path::new(SOURCE).join("action.yml")).unwrap();
    let output = action
        .split("\n  origin:\n")
        .nth(1)
        .and_then(|o| o.split("\n  warm:").next())
        .expect("action.yml has an origin output");
    let readme = std::fs::read_to_string(Path::new(SOURCE).join("docs/action.md")).unwrap();
    let outputs = readme
        .split("\nOutputs: ")
        .nth(1)
        .and_then(|o| o.split("\n\n").next())
        .expect("docs/action.md has the action's outputs paragraph");
    for origin in origins {
        let named = format!("`{origin}`");
        assert!(output.contains(&named), "action.yml's origin lacks {named}");
        assert!(
            outputs.contains(&named),
            "docs/action.md's outputs lack {named}"
        );
    }
}

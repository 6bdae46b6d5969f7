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

mod contrib;
mod github_output;
mod holder;
mod inputs;
mod install;
mod steps;

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

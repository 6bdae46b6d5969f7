//! Shared helpers for the integration tests: a temp dir with a root, fixture workspaces copied
//! out of `fixtures/`, and the built binary run with a cleaned environment. Failures print the
//! command, its stdout and its stderr.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod github_env;
mod github_step;
mod holder;
pub mod mounts;
pub mod moving;
pub mod release;
mod require;
mod shared;
mod snap;
pub mod tmpfs;
pub mod tmux;
pub mod users;
pub mod xfs;
#[allow(unused_imports)] // Not every test file needs them.
pub use github_step::*;
#[allow(unused_imports)]
pub use holder::*;
#[allow(unused_imports)]
pub use require::*;
#[allow(unused_imports)] // Only the store's tests start one.
pub use shared::Moto;
pub use shared::{clean_env, copy_dir};
#[allow(unused_imports)]
pub use snap::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_cargo-guarded");

pub struct Env {
    pub tmp: tempfile::TempDir,
    /// The cargo-guarded root under test.
    pub root: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("cg-test-")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("root");
        Env { tmp, root }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Copy `fixtures/<name>` to `<tmp>/<as_name>` and return its path.
    pub fn fixture_as(&self, name: &str, as_name: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        let dst = self.path().join(as_name);
        copy_dir(&src, &dst);
        dst
    }

    pub fn fixture(&self, name: &str) -> PathBuf {
        self.fixture_as(name, name)
    }

    /// The binary with a clean environment: no CI variables, no inherited target dir, this
    /// test's root, no colour.
    pub fn cmd(&self, cwd: &Path) -> Command {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd)
            .env("CARGO_GUARDED_ROOT", &self.root)
            .current_dir(cwd);
        cmd
    }

    /// Run `cargo-guarded ARGS` in `cwd` (as cargo would: with the `guarded` word).
    pub fn run<I, S>(&self, cwd: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd(cwd);
        cmd.arg("guarded").args(args);
        output(&mut cmd)
    }

    /// Like `run`, asserting success.
    pub fn ok<I, S>(&self, cwd: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(cwd, args);
        assert_success(&out);
        out
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> Value {
        let out = self.ok(self.path(), ["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The job dirs in the root (names), sorted.
    pub fn job_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.') && n != "CACHEDIR.TAG")
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A job dir's lease, parsed.
    pub fn lease(&self, job_dir: &str) -> Value {
        let text = std::fs::read_to_string(self.root.join(job_dir).join("lease.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// Run a command, capturing its output (stdin closed).
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(std::process::Stdio::null());
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("failed to run {cmd:?}: {e}"),
    }
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        out.status,
        describe(out)
    );
}

pub fn describe(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether cargo compiled anything in this run (its "Compiling" lines).
pub fn compiled_anything(out: &Output) -> bool {
    stderr(out)
        .lines()
        .any(|l| l.trim_start().starts_with("Compiling "))
}

/// The packages cargo compiled in this run (its "Compiling" lines), sorted, each once.
pub fn compiled(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = stderr(out)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Compiling "))
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Poll `cond` every 20 ms for up to `secs` seconds (a bound on a wait, never a timing
/// assertion).
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cond()
}

/// Whether we run as root (tmpfs mounts need it).
pub fn is_root() -> bool {
    rustix_uid_is_root()
}

fn rustix_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Background runs, processes and signals (core, signal and bad-input tests).

/// A `cargo-guarded` run in the background, its stdout and stderr going to files so a test can
/// watch them while it runs.
pub struct Spawned {
    pub child: std::process::Child,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    pub what: String,
}

impl Env {
    /// Start `cargo-guarded guarded ARGS` in `cwd` in the background; `name` names its log files
    /// (`<tmp>/<name>.stdout`, `<tmp>/<name>.stderr`).
    pub fn spawn<I, S>(&self, cwd: &Path, name: &str, args: I) -> Spawned
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd(cwd);
        cmd.arg("guarded").args(args);
        spawn_logged(&mut cmd, &self.path().join(name))
    }

    /// Every path under the temp dir outside the root (relative, sorted): what a run must not
    /// change.
    pub fn outside_root(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        list_tree(self.path(), self.path(), &mut |p| p != self.root, &mut out);
        out.sort();
        out
    }
}

/// Start `cmd` with stdout/stderr to `<base>.stdout` / `<base>.stderr` (stdin closed).
pub fn spawn_logged(cmd: &mut Command, base: &Path) -> Spawned {
    let stdout_path = base.with_extension("stdout");
    let stderr_path = base.with_extension("stderr");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let what = format!("{cmd:?}");
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("failed to start {what}: {e}"),
    };
    Spawned {
        child,
        stdout_path,
        stderr_path,
        what,
    }
}

impl Spawned {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Wait (at most `secs`) for the run to end and return its output. Past the bound it is
    /// killed and the test fails, printing what it said.
    pub fn finish(mut self, secs: u64) -> Output {
        let mut status = None;
        wait_for(secs, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        let out = |status| Output {
            status,
            stdout: std::fs::read(&self.stdout_path).unwrap_or_default(),
            stderr: std::fs::read(&self.stderr_path).unwrap_or_default(),
        };
        match status {
            Some(s) => out(s),
            None => {
                let _ = self.child.kill();
                let s = self.child.wait().unwrap();
                panic!(
                    "{} did not finish within {secs}s\n{}",
                    self.what,
                    describe(&out(s))
                );
            }
        }
    }
}

impl Drop for Spawned {
    /// A failed test must not leave a wrapper (and its `sleep 300`) behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Send `sig` to `pid` (a real `kill(2)`).
pub fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}) failed: {}",
        std::io::Error::last_os_error()
    );
}

/// Whether `pid` is a running process. A zombie counts as dead: it runs nothing and holds no
/// files, and an orphan's zombie lingers where PID 1 does not reap.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the `(comm)` field, which may itself contain spaces or parens.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A pid a test's child wrote to `path`, once the file is complete (ends with a newline).
pub fn read_pid(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    if !text.ends_with('\n') {
        return None;
    }
    text.trim().parse().ok()
}

/// Whether someone holds the kernel lock on `dir` (a non-blocking `flock` attempt that is
/// released at once).
pub fn is_locked(dir: &Path) -> bool {
    let f = std::fs::File::open(dir).unwrap();
    match f.try_lock() {
        Ok(()) => {
            f.unlock().unwrap();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(e)) => panic!("failed to try the lock on {dir:?}: {e}"),
    }
}

fn list_tree(base: &Path, dir: &Path, keep: &mut dyn FnMut(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        let p = entry.path();
        if !keep(&p) {
            continue;
        }
        out.push(p.strip_prefix(base).unwrap().to_owned());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            list_tree(base, &p, keep, out);
        }
    }
}

/// The section of the document `file` (relative to the source, e.g. `docs/json.md`) that starts
/// at `heading` (a `## ` or `### ` line), up to the next `## `.
pub fn doc_section(file: &str, heading: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap_or_else(|e| panic!("failed to read {file}: {e}"));
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("{file} has a section `{heading}`"));
    let section = &readme[start..];
    section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)].to_owned()
}

/// The only line of `out`'s stderr, asserting there is exactly one.
pub fn one_line_error(out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stderr\n{}",
        describe(out)
    );
    assert!(
        lines[0].starts_with("error: "),
        "expected an `error: ` line\n{}",
        describe(out)
    );
    lines[0].to_owned()
}

impl Env {
    /// `sh -c SCRIPT` in `cwd` with the same cleaned environment as the binary gets.
    pub fn shell(&self, cwd: &Path, script: &str) -> Output {
        let cmd = self.cmd(cwd);
        let envs: Vec<_> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
            .collect();
        let mut sh = Command::new("sh");
        sh.env_clear()
            .envs(envs)
            .current_dir(cwd)
            .args(["-c", script]);
        output(&mut sh)
    }
}

/// A run stopped at one of cargo-guarded's fault points (`CARGO_GUARDED_PAUSE=<step>:<file>`):
/// it waits there until `resume` deletes the file, so a test can act between two steps.
pub struct Paused {
    run: Spawned,
    file: PathBuf,
}

impl Env {
    /// Start `cmd` (from `Env::cmd`, arguments included) and return once it is paused at `step`.
    pub fn paused(&self, mut cmd: Command, name: &str, step: &str) -> Paused {
        let file = self.path().join(format!("{name}.paused"));
        cmd.env("CARGO_GUARDED_PAUSE", format!("{step}:{}", file.display()));
        let run = spawn_logged(&mut cmd, &self.path().join(name));
        assert!(
            wait_for(30, || file.exists()),
            "{name} never reached {step}\n{}",
            run.stderr_so_far()
        );
        Paused { run, file }
    }
}

impl Paused {
    /// Let it go on, and wait (at most `secs`) for it to finish.
    pub fn resume(self, secs: u64) -> Output {
        self.let_go().finish(secs)
    }

    /// Let it go on without waiting: several paused runs go on together.
    pub fn let_go(self) -> Spawned {
        std::fs::remove_file(&self.file).unwrap();
        self.run
    }
}

/// RFC 3339 for `secs` seconds from now (negative: in the past), as leases record times.
pub fn ts(secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let t = if secs >= 0 {
        now + std::time::Duration::from_secs(secs as u64)
    } else {
        now - std::time::Duration::from_secs((-secs) as u64)
    };
    humantime::format_rfc3339_millis(t).to_string()
}

/// The reason `gc --json` gives for keeping the job dir `name`.
pub fn kept_reason(report: &Value, name: &str) -> String {
    report["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["dir"].as_str().unwrap().ends_with(&format!("/{name}")))
        .map(|k| k["reason"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{name} not among kept: {report:#}"))
}

/// The names of the job dirs `gc --json` removed, sorted.
pub fn removed_names(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let dir = r["dir"].as_str().unwrap();
            dir.rsplit('/').next().unwrap().to_owned()
        })
        .collect();
    v.sort();
    v
}

/// A released lease, as cargo guarded writes it, of another runner's job that expired an hour ago.
pub fn expired_lease(job: &str, size_bytes: Option<u64>) -> Value {
    serde_json::json!({
        "protocol": 1, "job_id": job, "token": "t", "workspace": "planted", "toolchain": null,
        "host": "elsewhere", "boot_id": null, "runner": "runner-9", "pid": 4121,
        "created_at": ts(-7200), "renewed_at": ts(-7200), "expires_at": ts(-3600),
        "heartbeat_secs": 1, "ttl_secs": 600, "state": "released", "size_bytes": size_bytes,
        "command": []
    })
}

/// Plant job dir `name` with `lease` and an empty `target/debug` in `root`, which proves it is a
/// root as one laid out by cargo guarded does.
pub fn plant_job(root: &Path, name: &str, lease: &Value) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("target/debug")).unwrap();
    std::fs::write(root.join(".cargo-guarded-root"), "").unwrap();
    std::fs::write(
        dir.join("lease.json"),
        serde_json::to_vec_pretty(lease).unwrap(),
    )
    .unwrap();
    dir
}

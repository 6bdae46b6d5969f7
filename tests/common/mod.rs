//! Shared helpers for the integration tests: a temp dir with a root, fixture workspaces copied
//! out of `fixtures/`, and the built binary run with a cleaned environment. Failures print the
//! command, its stdout and its stderr.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_cargo-guarded");

/// Variables kept from the outer environment: enough for rustup and cargo to work offline.
const KEEP: &[&str] = &[
    "PATH",
    "HOME",
    "RUSTUP_HOME",
    "CARGO_HOME",
    "RUSTUP_TOOLCHAIN",
    "TMPDIR",
    "LANG",
];

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
        cmd.env_clear();
        for k in KEEP {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.env("CARGO_GUARDED_ROOT", &self.root)
            .env("NO_COLOR", "1")
            .env("CARGO_TERM_COLOR", "never")
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

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &to);
            }
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
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

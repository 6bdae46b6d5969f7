//! Real mounts, second users and lowered limits for the hardening tests (`fs_hardening`):
//! included with `#[path]`, so `common/mod.rs` stays as it is. Everything here needs root; as
//! root (and always in CI, `CARGO_GUARDED_REQUIRE_TOOLS=1`) a failure to set up fails the test
//! (`common::require_root`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether a root-only test can run here; `false` (with the reason printed) only when not root
/// and not required.
pub fn root_or_skip(what: &str) -> bool {
    super::require_root(what, || Ok(())).is_some()
}

/// A mount, lazily unmounted when dropped (before the temp dir holding it goes).
pub struct Mount(pub PathBuf);

impl Mount {
    /// A tmpfs of `mib` MiB at `at`.
    pub fn tmpfs(at: &Path, mib: u64) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at));
        Mount(at.to_owned())
    }

    /// `mount --bind src at`.
    pub fn bind(src: &Path, at: &Path) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        run(Command::new("mount").arg("--bind").arg(src).arg(at));
        Mount(at.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `wrapper… cmd`: the same program, arguments, environment and directory as `cmd`, run through
/// `wrapper` (e.g. `setpriv …` or `prlimit …`).
pub fn wrapped(wrapper: &[&str], cmd: &Command) -> Command {
    let mut out = Command::new(wrapper[0]);
    out.args(&wrapper[1..])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            out.env(k, v);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        out.current_dir(dir);
    }
    out
}

/// `setpriv` arguments that run a command as the numeric `uid` (and the same gid, no groups).
pub fn as_user(uid: u32) -> Vec<String> {
    [
        "setpriv".to_owned(),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".to_owned(),
    ]
    .into()
}

/// `chown -R uid:uid path`.
pub fn chown(path: &Path, uid: u32) {
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(path));
}

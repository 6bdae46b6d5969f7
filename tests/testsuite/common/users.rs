//! Running cargo-guarded (and real cargo) as a second, unprivileged user: a numeric uid via
//! `setpriv`, with the toolchain bind-mounted where that uid can reach it (rustup's home is
//! usually under root's private home directory).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{BIN, Env};

/// The active toolchain, readable by any uid; unmounted when dropped.
pub struct Toolchain {
    pub bin: PathBuf,
    mount: PathBuf,
}

impl Toolchain {
    /// Bind-mount `rustc --print sysroot` at `<env>/toolchain`. Needs root.
    pub fn share(env: &Env) -> Toolchain {
        let sysroot = Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .expect("rustc --print sysroot");
        let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout).unwrap().trim());
        let mount = env.path().join("toolchain");
        std::fs::create_dir_all(&mount).unwrap();
        let st = Command::new("mount")
            .arg("--bind")
            .arg(&sysroot)
            .arg(&mount)
            .status()
            .unwrap();
        assert!(st.success(), "mount --bind {}", sysroot.display());
        // The test's temp dir is private to root: let other uids through.
        chmod(env.path(), 0o755);
        Toolchain {
            bin: mount.join("bin"),
            mount,
        }
    }
}

impl Drop for Toolchain {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `chown -R uid:uid path`.
pub fn chown_r(path: &Path, uid: u32) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A copy of fixture `name` owned by `uid` (cargo writes `Cargo.lock` into it), with a home and
/// a cargo home of its own.
pub fn fixture_for(env: &Env, name: &str, uid: u32) -> PathBuf {
    let ws = env.fixture_as(name, &format!("{name}-{uid}"));
    let home = env.path().join(format!("home-{uid}"));
    std::fs::create_dir_all(home.join(".cargo")).unwrap();
    chown_r(&ws, uid);
    chown_r(&home, uid);
    ws
}

/// `cargo-guarded` as `uid` (same group id, no supplementary groups) in `cwd`, with the root of
/// `env`, the shared toolchain first on PATH and no rustup.
pub fn cmd_as(env: &Env, tc: &Toolchain, uid: u32, cwd: &Path) -> Command {
    let home = env.path().join(format!("home-{uid}"));
    let mut cmd = Command::new("setpriv");
    cmd.env_clear()
        .args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
        ])
        .arg(BIN)
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", tc.bin.display()),
        )
        .env("HOME", &home)
        .env("CARGO_HOME", home.join(".cargo"))
        .env("CARGO_GUARDED_ROOT", &env.root)
        .env("NO_COLOR", "1")
        .env("CARGO_TERM_COLOR", "never")
        .current_dir(cwd);
    cmd
}

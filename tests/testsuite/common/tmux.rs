//! A real terminal for job-control tests: an interactive `bash` in a detached tmux session on
//! its own server socket, driven with `send-keys` and read with `capture-pane`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Env, wait_for};

pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// An interactive bash (no rc files, prompt `$ `) in `cwd`, with the environment the
    /// binary gets from `Env::cmd` and the test binary's dir first on PATH.
    pub fn start(env: &Env, cwd: &Path) -> Tmux {
        let socket = env.path().join("tmux.sock");
        let cmd = env.cmd(cwd);
        let mut shell = vec!["env".to_owned(), "-i".to_owned()];
        for (k, v) in cmd.get_envs() {
            if let (k, Some(v)) = (k.to_string_lossy(), v) {
                shell.push(format!("{k}={}", v.to_string_lossy()));
            }
        }
        shell.extend(
            [
                "PS1=$ ",
                "TERM=screen",
                "bash",
                "--norc",
                "--noprofile",
                "-i",
            ]
            .map(String::from),
        );
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "50",
                "-c",
            ])
            .arg(cwd)
            .args(&shell)
            .status()
            .expect("failed to run tmux");
        assert!(status.success(), "tmux new-session failed");
        let t = Tmux { socket };
        assert!(t.wait_for_text(30, "$ "), "no prompt:\n{}", t.pane());
        t
    }

    /// `tmux send-keys`: literal text, or key names such as `Enter` and `C-z`.
    pub fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["send-keys", "-t", "0"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Type `line` (literally) and press Enter.
    pub fn line(&self, line: &str) {
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["send-keys", "-t", "0", "-l", line])
            .status()
            .unwrap();
        assert!(status.success());
        self.keys(&["Enter"]);
    }

    /// The screen and its scrollback.
    pub fn pane(&self) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["capture-pane", "-p", "-J", "-S", "-500", "-t", "0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn wait_for_text(&self, secs: u64, text: &str) -> bool {
        wait_for(secs, || self.pane().contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

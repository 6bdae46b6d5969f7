//! What the tests and the benches share (`bench/common` includes this file by path): the one
//! clean environment they run commands in — enough for rustup and cargo to work offline, nothing
//! else (no `CARGO_TARGET_DIR` of the outer `cargo test`/`cargo bench`, no `RUSTFLAGS`, no CI
//! variables) and no colour — and copying a fixture.

use std::path::Path;
use std::process::Command;

/// Variables kept from the outer environment.
const KEEP: &[&str] = &[
    "PATH",
    "HOME",
    "RUSTUP_HOME",
    "CARGO_HOME",
    "RUSTUP_TOOLCHAIN",
    "TMPDIR",
    "LANG",
];

/// Clear `cmd`'s environment but for [`KEEP`], and turn colour off.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    for k in KEEP {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("NO_COLOR", "1").env("CARGO_TERM_COLOR", "never")
}

/// Copy a directory tree (regular files and dirs only), skipping any `target/`.
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

/// moto's S3 server (`moto_server`, PyPI `moto[server]`) on a free loopback port, with the
/// bucket `cache`: what the object store's tests and its bench run against. Stopped when dropped.
pub struct Moto {
    child: std::process::Child,
    pub port: u16,
}

impl Moto {
    /// `moto_server` on PATH.
    pub fn program() -> Option<std::path::PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    }

    /// Start `program`, logging to `log`, wait (at most a minute) until it listens, and create
    /// the bucket: moto takes any credentials, and an unsigned request too.
    pub fn start(program: &Path, log: &Path) -> Moto {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let moto = Moto { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not listen on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "PUT /cache HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

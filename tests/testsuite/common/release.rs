//! Release archives and a loopback HTTP server for the action's install tests and bench:
//! archives come from `scripts/package-release.sh`, checksums from `scripts/update-checksums.sh`,
//! both run for real.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const SOURCE: &str = env!("CARGO_MANIFEST_DIR");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The release target action/install.sh picks on this machine.
pub fn host_release_target() -> String {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "aarch64",
        _ => "x86_64",
    };
    format!("{arch}-unknown-linux-musl")
}

pub fn stem(target: &str) -> String {
    format!("cargo-guarded-v{VERSION}-{target}")
}

/// `scripts/package-release.sh TARGET DIST` packaging `binary` (no build); the archive's path.
pub fn package(target: &str, binary: &Path, dist: &Path) -> PathBuf {
    let out = Command::new("bash")
        .arg(Path::new(SOURCE).join("scripts/package-release.sh"))
        .arg(target)
        .arg(dist)
        .env("CARGO_GUARDED_PREBUILT", binary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "package-release.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = dist.join(format!("{}.tar.gz", stem(target)));
    assert!(archive.is_file(), "{} was not written", archive.display());
    archive
}

/// `scripts/update-checksums.sh DIST` writing into `checksums`.
pub fn update_checksums(dist: &Path, checksums: &Path) {
    let out = Command::new("bash")
        .arg(Path::new(SOURCE).join("scripts/update-checksums.sh"))
        .arg(dist)
        .env("CHECKSUMS", checksums)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "update-checksums.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A copy of what the action ships (action/, the crate's source) at `dir`, so a test can give it
/// its own action/checksums.txt.
pub fn action_copy(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("action")).unwrap();
    for f in ["Cargo.toml", "Cargo.lock", "action.yml"] {
        std::fs::copy(Path::new(SOURCE).join(f), dir.join(f)).unwrap();
    }
    for f in ["install.sh", "checksums.txt"] {
        std::fs::copy(
            Path::new(SOURCE).join("action").join(f),
            dir.join("action").join(f),
        )
        .unwrap();
    }
    let status = Command::new("cp")
        .arg("-r")
        .arg(Path::new(SOURCE).join("src"))
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    dir.to_path_buf()
}

/// A std-only HTTP/1.1 server on 127.0.0.1 serving `files` (URL path → bytes), 404 otherwise.
pub struct Server {
    pub base: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    requests: Arc<AtomicUsize>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let (f, r) = (files.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // Drain the headers.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                r.fetch_add(1, Ordering::SeqCst);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let body = f.lock().unwrap().get(&path).cloned();
                let _ = match body {
                    Some(body) => stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| stream.write_all(&body)),
                    None => stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        Server {
            base,
            files,
            requests,
        }
    }

    /// Serve `bytes` at `/vVERSION/NAME`, where action/install.sh looks for a release asset.
    pub fn serve(&self, name: &str, bytes: Vec<u8>) {
        self.files
            .lock()
            .unwrap()
            .insert(format!("/v{VERSION}/{name}"), bytes);
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

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

//! What runs under a job's lease: cargo, cargo-llvm-cov, cargo-nextest or any program, the
//! process that starts it, and the arguments a wrapped cargo may not be given.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::llvm;
use crate::process::ProcessBuilder;

/// What runs under the lease.
#[derive(Debug)]
pub(crate) enum Tool {
    /// `cargo <args>`: build, test, clippy, …
    Cargo(Vec<OsString>),
    /// `cargo-llvm-cov llvm-cov <args>`
    LlvmCov(Vec<OsString>),
    /// `cargo nextest <args>`
    Nextest(Vec<OsString>),
    /// `exec -- PROGRAM ARGS`
    Exec(Vec<OsString>),
}

impl Tool {
    /// Dispatch an external subcommand by its first word.
    pub(crate) fn from_external(mut args: Vec<OsString>) -> Tool {
        match args.first().and_then(|a| a.to_str()) {
            Some("llvm-cov") => Tool::LlvmCov(args.split_off(1)),
            Some("nextest") => Tool::Nextest(args.split_off(1)),
            _ => Tool::Cargo(args),
        }
    }

    /// The tool's word, as the lease, the `ready` event and the job's shape record it: `cargo`,
    /// `llvm-cov`, `nextest` or `exec`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Tool::Cargo(_) => "cargo",
            Tool::LlvmCov(_) => "llvm-cov",
            Tool::Nextest(_) => "nextest",
            Tool::Exec(_) => "exec",
        }
    }

    pub(crate) fn args(&self) -> &[OsString] {
        match self {
            Tool::Cargo(a) | Tool::LlvmCov(a) | Tool::Nextest(a) | Tool::Exec(a) => a,
        }
    }

    /// A cargo-driven tool given its own `--target-dir` would build outside the lease; so would a
    /// `--config` (inline `KEY=VALUE`, or a config file) that sets `build.target-dir` or
    /// `build.build-dir`, which outranks the job's `CARGO_TARGET_DIR`.
    pub(crate) fn check_args(&self) -> Result<()> {
        if matches!(self, Tool::Exec(_)) {
            return Ok(());
        }
        let args: Vec<&OsString> = self.args().iter().take_while(|a| *a != "--").collect();
        let names_a_dir = |v: &[u8]| {
            v.windows(10).any(|w| w == b"target-dir") || v.windows(9).any(|w| w == b"build-dir")
        };
        let mut config_moves_dir = false;
        for (i, a) in args.iter().enumerate() {
            let bytes = a.as_encoded_bytes();
            let value = match bytes.strip_prefix(b"--config=") {
                Some(v) => Some(OsStr::from_bytes(v)),
                None if bytes == b"--config" => args.get(i + 1).map(|v| v.as_os_str()),
                None => None,
            };
            let Some(value) = value else { continue };
            // As cargo decides: an existing path is a config file, anything else `KEY=VALUE`.
            let path = std::path::Path::new(value);
            if !value.is_empty() && path.exists() {
                config_moves_dir |= config_file_moves_dir(path)?;
            } else {
                let v = value.as_encoded_bytes();
                config_moves_dir |= v.contains(&b'=') && names_a_dir(v);
            }
        }
        let explicit = args.iter().any(|a| {
            let a = a.as_encoded_bytes();
            a == b"--target-dir" || a.starts_with(b"--target-dir=")
        });
        if explicit || config_moves_dir {
            anyhow::bail!(
                "`--target-dir` (or a `--config` that sets the target or build dir) cannot be used \
                 with cargo guarded: every job builds in its own leased dir under the root, so a guard never deletes a live build; drop the flag (run \
                 `cargo guarded env` to see the job's dir)"
            );
        }
        Ok(())
    }

    pub(crate) fn process(&self, cfg: &Config) -> Result<ProcessBuilder> {
        Ok(match self {
            Tool::Cargo(args) => {
                let mut pb = ProcessBuilder::new(&cfg.cargo);
                pb.args(args);
                pb
            }
            Tool::Nextest(args) => {
                let mut pb = ProcessBuilder::new(&cfg.cargo);
                pb.args(["nextest"]).args(args);
                pb
            }
            Tool::LlvmCov(args) => {
                let cwd = std::env::current_dir().unwrap_or_default();
                let exe = which::which_in("cargo-llvm-cov", cfg.llvm.path.as_ref(), cwd).map_err(
                    |_| {
                        anyhow::anyhow!(
                            "cargo-llvm-cov is not installed (not found on PATH); install it with \
                         `cargo install cargo-llvm-cov --locked`"
                        )
                    },
                )?;
                // Cargo runs subcommands as `cargo-llvm-cov llvm-cov ARGS`; so do we.
                let mut pb = ProcessBuilder::new(exe);
                pb.args(["llvm-cov"]).args(args);
                if llvm::needs_tools(args) {
                    for (var, path) in llvm::child_env(&cfg.rustc, &cfg.llvm)? {
                        pb.env(var, path);
                    }
                }
                pb
            }
            Tool::Exec(args) => {
                let (program, rest) = args.split_first().context("exec needs a program to run")?;
                let mut pb = ProcessBuilder::new(program);
                pb.args(rest);
                pb
            }
        })
    }
}

/// Whether a `--config FILE` sets `build.target-dir` or `build.build-dir`, in whatever TOML
/// spelling (a `[build]` table, dotted keys, an inline table): parsed with a real TOML parser,
/// since a text search would miss `build = { "target-dir" = … }` and friends.
fn config_file_moves_dir(path: &std::path::Path) -> Result<bool> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("failed to parse config file {}", path.display()))?;
    Ok(table
        .get("build")
        .and_then(|b| b.as_table())
        .is_some_and(|b| b.contains_key("target-dir") || b.contains_key("build-dir")))
}

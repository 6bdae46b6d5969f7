//! What rustc says about itself (`rustc -vV`, `--print sysroot`): the one parser of it and the
//! one type of its facts, for the warm-reuse key, for finding LLVM tools and for `doctor`.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// The lines of `rustc -vV` cargo-guarded uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Version {
    /// `release:`, e.g. `1.95.0`.
    pub(crate) release: String,
    /// `host:`, e.g. `x86_64-unknown-linux-gnu`.
    pub(crate) host: String,
    /// `LLVM version:`, e.g. `22.1.2`; absent for a rustc built without LLVM.
    pub(crate) llvm_version: Option<String>,
}

impl Version {
    /// The LLVM major version (`22` of `22.1.2`), which LLVM tools must match.
    pub(crate) fn llvm_major(&self) -> Option<u32> {
        leading_number(self.llvm_version.as_deref()?)
    }
}

/// The major version a version line starts with: `22` of `22.1.2`, as rustc and the LLVM tools
/// print them.
pub(crate) fn leading_number(s: &str) -> Option<u32> {
    let digits: &str = &s[..s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len())];
    digits.parse().ok()
}

/// `Version` and the sysroot: what finding LLVM tools (and `doctor`) needs. A separate type
/// because the warm-reuse key, on every run, must not pay for a second rustc process.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rustc {
    #[serde(flatten)]
    pub(crate) version: Version,
    /// `rustc --print sysroot`.
    pub(crate) sysroot: PathBuf,
}

impl Rustc {
    pub(crate) fn query(rustc: &Path) -> Result<Rustc> {
        Ok(Rustc {
            version: version(rustc)?,
            sysroot: PathBuf::from(output(rustc, &["--print", "sysroot"])?.trim()),
        })
    }

    /// `Rustc::llvm_major` as a path, for `Option::and_then`.
    pub(crate) fn llvm_major(&self) -> Option<u32> {
        self.version.llvm_major()
    }

    /// Where rustup's `llvm-tools` component puts the tools (and cargo-llvm-cov looks).
    pub(crate) fn component_dir(&self) -> PathBuf {
        self.sysroot
            .join("lib/rustlib")
            .join(&self.version.host)
            .join("bin")
    }
}

/// A `Rustc` is its `Version` plus a sysroot: `rustc.release` reads as it says.
impl Deref for Rustc {
    type Target = Version;

    fn deref(&self) -> &Version {
        &self.version
    }
}

/// Run `rustc ARGS` and return its stdout.
pub(crate) fn output(rustc: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(rustc)
        .args(args)
        .output()
        .with_context(|| format!("failed to run `{} {}`", rustc.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            rustc.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `rustc -vV` and parse it.
pub(crate) fn version(rustc: &Path) -> Result<Version> {
    parse(&output(rustc, &["-vV"])?)
        .with_context(|| format!("unexpected output from `{} -vV`", rustc.display()))
}

fn parse(vv: &str) -> Result<Version> {
    let field = |name: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let missing = |name: &str| anyhow::anyhow!("no `{name}` line");
    Ok(Version {
        release: field("release:").ok_or_else(|| missing("release:"))?,
        host: field("host:").ok_or_else(|| missing("host:"))?,
        llvm_version: field("LLVM version:"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rustc_vv() {
        let v = parse(
            "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\n\
             release: 1.95.0\nLLVM version: 22.1.2\n",
        )
        .unwrap();
        assert_eq!(v.release, "1.95.0");
        assert_eq!(v.host, "x86_64-unknown-linux-gnu");
        assert_eq!(v.llvm_version.as_deref(), Some("22.1.2"));
        assert!(parse("rustc 1.0\n").is_err());
        assert_eq!(v.llvm_major(), Some(22));
        let no_llvm = Version {
            llvm_version: None,
            ..v
        };
        assert_eq!(no_llvm.llvm_major(), None);
    }
}

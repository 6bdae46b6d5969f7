//! What `rustc -vV` says: the one parser of it, for the warm-reuse key and for finding LLVM tools.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The lines of `rustc -vV` cargo-guarded uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    /// `release:`, e.g. `1.95.0`.
    pub(crate) release: String,
    /// `host:`, e.g. `x86_64-unknown-linux-gnu`.
    pub(crate) host: String,
    /// `LLVM version:`, e.g. `22.1.2`; absent for a rustc built without LLVM.
    pub(crate) llvm_version: Option<String>,
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
    }
}

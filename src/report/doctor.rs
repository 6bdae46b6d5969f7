//! `cargo guarded doctor` for people (one line per fact, then the problems with their fixes)
//! and programs (`--json`).

use std::fmt::Write as _;

use serde::Serialize;
use serde::ser::Serializer;

use crate::doctor::{Installed, Report, RootReport};
use crate::fs::fs_kind;
use crate::llvm::Source;
use crate::locks::LockTrust;
use crate::quantity::Bytes;

/// A fact's label, padded so the values line up.
fn label(l: &str) -> String {
    format!("{l:<16}")
}

/// The report as text, one fact a line, then the problems.
pub(crate) fn render(r: &Report) -> String {
    let mut out = String::new();
    root_lines(&mut out, &r.root);
    tool_lines(&mut out, r);
    let _ = writeln!(
        out,
        "{}{}",
        label("CI"),
        r.ci.detected.unwrap_or("none detected (local)")
    );
    let _ = writeln!(
        out,
        "{}{} (dir {})",
        label("job id"),
        r.ci.job_id,
        r.ci.job_dir.display()
    );
    if r.problems.is_empty() {
        out.push_str("\nno problems found\n");
        return out;
    }
    let _ = writeln!(out, "\n{} problem(s):", r.problems.len());
    for p in &r.problems {
        let _ = writeln!(out, "  {}: {}", p.severity, p.problem);
        let _ = writeln!(out, "    fix: {}", p.fix);
    }
    out
}

fn root_lines(out: &mut String, root: &RootReport) {
    let fs = filesystem(root).unwrap_or_else(|| "unknown filesystem".into());
    if root.exists {
        let _ = writeln!(out, "{}{} ({fs})", label("root"), root.path.display());
    } else {
        let _ = writeln!(
            out,
            "{}{} (does not exist yet: created on first use; {} is {fs})",
            label("root"),
            root.path.display(),
            root.checked.display()
        );
    }
    let _ = writeln!(
        out,
        "{}{}",
        label("locks"),
        lock_trust(root).unwrap_or_else(|| {
            "not tested (the self-test runs in the root, which does not exist yet)".into()
        })
    );
    match (root.space, root.limits) {
        (Some(space), Some(limits)) => {
            let _ = writeln!(
                out,
                "{}{} free of {}; reclaims expired dirs below {} up to {}; refuses to start \
                 below {}",
                label("free space"),
                Bytes(space.free),
                Bytes(space.total),
                Bytes(limits.reclaim_below),
                Bytes(limits.reclaim_to),
                Bytes(limits.min_free),
            );
        }
        _ => {
            let _ = writeln!(out, "{}unknown", label("free space"));
        }
    }
}

fn tool_lines(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "{}{}",
        label("cargo"),
        r.toolchain.cargo.as_deref().unwrap_or("not found")
    );
    let _ = match &r.toolchain.rustc {
        Some(rustc) => writeln!(
            out,
            "{}{} {}, LLVM {}",
            label("rustc"),
            rustc.release,
            rustc.host,
            rustc.llvm_version.as_deref().unwrap_or("unknown")
        ),
        None => writeln!(out, "{}not found", label("rustc")),
    };
    for (name, tool) in [
        ("cargo-llvm-cov", &r.cargo_llvm_cov),
        ("cargo-nextest", &r.cargo_nextest),
    ] {
        let _ = match tool {
            Some(Installed { path, version }) => writeln!(
                out,
                "{}{} ({})",
                label(name),
                version.as_deref().unwrap_or("version unknown"),
                path.display()
            ),
            None => writeln!(out, "{}not installed", label(name)),
        };
    }
    let _ = match &r.llvm_tools {
        Some(t) => writeln!(
            out,
            "{}{}, {} ({})",
            label("LLVM tools"),
            t.llvm_cov.display(),
            t.llvm_profdata.display(),
            match t.source {
                Source::Env => "from LLVM_COV and LLVM_PROFDATA",
                Source::Component => "the rustup llvm-tools component",
                Source::Found => "found by cargo-guarded and passed to cargo-llvm-cov",
            }
        ),
        None => writeln!(out, "{}none usable", label("LLVM tools")),
    };
}

/// `ext2/3/4`, `xfs`, `nfs`, … or the magic number in hex.
fn filesystem(root: &RootReport) -> Option<String> {
    let magic = root.filesystem?;
    Some(fs_kind(magic).map_or_else(
        || format!("unknown (statfs type {magic:#x})"),
        |k| k.name.to_owned(),
    ))
}

/// `trusted (…)`, `untrusted (<why>)`; `None` until the root exists.
fn lock_trust(root: &RootReport) -> Option<String> {
    Some(match (root.lock_trust?, root.locks_forced) {
        (LockTrust::Trusted, true) => "trusted (forced by CARGO_GUARDED_LOCKS)".to_owned(),
        (LockTrust::Trusted, false) => "trusted (self-test passed)".to_owned(),
        (t, _) => t.to_string(),
    })
}

/// `doctor --json`, in the shape docs/json.md's "JSON output" documents.
impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            root: JsonRoot<'a>,
            toolchain: &'a crate::doctor::Toolchain,
            cargo_llvm_cov: &'a Option<Installed>,
            cargo_nextest: &'a Option<Installed>,
            llvm_tools: &'a Option<crate::llvm::Tools>,
            ci: &'a crate::doctor::Ci,
            problems: Vec<JsonProblem<'a>>,
        }
        #[derive(Serialize)]
        struct JsonRoot<'a> {
            path: &'a std::path::Path,
            exists: bool,
            checked: &'a std::path::Path,
            filesystem: Option<String>,
            lock_trust: Option<String>,
            free_bytes: Option<u64>,
            total_bytes: Option<u64>,
            reclaim_below_bytes: Option<u64>,
            reclaim_to_bytes: Option<u64>,
            min_free_bytes: Option<u64>,
        }
        #[derive(Serialize)]
        struct JsonProblem<'a> {
            /// `error`: wrapped commands will fail; `warning`: something will not work or is
            /// at risk.
            severity: String,
            problem: &'a str,
            fix: &'a str,
        }
        let root = &self.root;
        Json {
            root: JsonRoot {
                path: &root.path,
                exists: root.exists,
                checked: &root.checked,
                filesystem: filesystem(root),
                lock_trust: lock_trust(root),
                free_bytes: root.space.map(|s| s.free),
                total_bytes: root.space.map(|s| s.total),
                reclaim_below_bytes: root.limits.map(|l| l.reclaim_below),
                reclaim_to_bytes: root.limits.map(|l| l.reclaim_to),
                min_free_bytes: root.limits.map(|l| l.min_free),
            },
            toolchain: &self.toolchain,
            cargo_llvm_cov: &self.cargo_llvm_cov,
            cargo_nextest: &self.cargo_nextest,
            llvm_tools: &self.llvm_tools,
            ci: &self.ci,
            problems: self
                .problems
                .iter()
                .map(|p| JsonProblem {
                    severity: p.severity.to_string(),
                    problem: &p.problem,
                    fix: &p.fix,
                })
                .collect(),
        }
        .serialize(s)
    }
}

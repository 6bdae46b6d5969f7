//! The LLVM tools cargo-llvm-cov needs (`llvm-cov`, `llvm-profdata`), found for the user.
//!
//! cargo-llvm-cov takes them from `LLVM_COV`/`LLVM_PROFDATA`, else from rustup's `llvm-tools`
//! component, and when that is missing it offers to run `rustup component add` — which a CI
//! machine without network, or a toolchain not managed by rustup, cannot do. Distribution
//! packages (Debian's `llvm-<major>`) install the same tools; they only work if their LLVM major
//! is rustc's: the raw profiles rustc's LLVM writes are unreadable to another major's
//! `llvm-profdata`. So we look for tools of exactly that major and hand them to cargo-llvm-cov,
//! and never use another major.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::rustc::Rustc;
use crate::term;

/// Where to look, resolved from the environment once (in `config.rs`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Search {
    /// `$LLVM_COV`, as cargo-llvm-cov reads it.
    pub(crate) llvm_cov: Option<PathBuf>,
    /// `$LLVM_PROFDATA`, as cargo-llvm-cov reads it.
    pub(crate) llvm_profdata: Option<PathBuf>,
    /// `$CARGO_GUARDED_LLVM_SEARCH_DIRS`: searched before PATH *instead of* the built-in list of
    /// distribution dirs (`/usr/lib/llvm-<major>/bin`, …). For unusual installs, and for tests
    /// that must hide the system's tools.
    pub(crate) dirs: Option<Vec<PathBuf>>,
    /// `$PATH`.
    pub(crate) path: Option<OsString>,
}

/// Where cargo-llvm-cov's tools come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Source {
    /// `LLVM_COV` and `LLVM_PROFDATA`, as the user set them.
    Env,
    /// rustup's `llvm-tools` component, which cargo-llvm-cov finds by itself.
    Component,
    /// Found here, of rustc's LLVM major, and passed to cargo-llvm-cov.
    Found,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Tools {
    pub(crate) source: Source,
    pub(crate) llvm_cov: PathBuf,
    pub(crate) llvm_profdata: PathBuf,
    /// Variables to set for cargo-llvm-cov; empty when it finds the tools by itself.
    #[serde(skip)]
    pub(crate) child_env: Vec<(&'static str, PathBuf)>,
    /// What `-v` says when the user set one variable and we chose its partner.
    #[serde(skip)]
    pub(crate) paired: Option<String>,
}

/// No tools of rustc's LLVM major anywhere we looked. Its message names what to install.
#[derive(Debug)]
pub(crate) struct Missing {
    pub(crate) major: u32,
    /// Tools found with another LLVM major (or none readable), never used: `(path, major)`.
    pub(crate) mismatched: Vec<(PathBuf, Option<u32>)>,
    pub(crate) component_dir: PathBuf,
    /// The install dirs searched before PATH.
    pub(crate) dirs: Vec<PathBuf>,
}

impl Missing {
    /// What is missing and what was found instead, without the fix.
    pub(crate) fn describe(&self) -> String {
        let mut s = format!(
            "cargo-llvm-cov needs llvm-cov and llvm-profdata of LLVM {m} (rustc's LLVM major), \
             and none were found: LLVM_COV and LLVM_PROFDATA are not both set, the rustup llvm-tools \
             component is not installed ({component} has no llvm-profdata), and none of LLVM {m} \
             are in {dirs}or on PATH",
            m = self.major,
            component = self.component_dir.display(),
            dirs = self
                .dirs
                .iter()
                .map(|d| format!("{}, ", d.display()))
                .collect::<String>()
        );
        for (path, major) in &self.mismatched {
            match major {
                Some(m) => s += &format!("; {} is LLVM {m}", path.display()),
                None => s += &format!("; {} reports no LLVM version", path.display()),
            }
        }
        if !self.mismatched.is_empty() {
            s += " (not used: another major cannot read the profiles rustc's LLVM writes)";
        }
        s
    }

    /// How to fix it, as one sentence.
    pub(crate) fn fix(&self) -> String {
        format!(
            "install LLVM {m}'s tools: `apt-get install llvm-{m}` (Debian, Ubuntu), or \
             `rustup component add llvm-tools`; or set LLVM_COV and LLVM_PROFDATA to LLVM {m}'s \
             llvm-cov and llvm-profdata",
            m = self.major
        )
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.describe(), self.fix())
    }
}

impl std::error::Error for Missing {}

/// Whether cargo-llvm-cov will need the tools for these arguments: not for `clean`, `--help` or
/// `--version`, which must work on a machine without them.
pub(crate) fn needs_tools(args: &[OsString]) -> bool {
    let before_dashes = || args.iter().take_while(|a| *a != "--");
    let first_word = before_dashes().find(|a| !a.as_encoded_bytes().starts_with(b"-"));
    if first_word.is_some_and(|w| w == "clean") {
        return false;
    }
    !before_dashes().any(|a| ["-h", "--help", "-V", "--version"].iter().any(|f| a == *f))
}

/// The variables to set for cargo-llvm-cov, saying at `-v` where the tools come from.
pub(crate) fn child_env(rustc: &Path, search: &Search) -> Result<Vec<(&'static str, PathBuf)>> {
    let tools = find(rustc, search)?;
    match tools.source {
        Source::Env => term::verbose(
            "Note",
            format_args!(
                "LLVM_COV={} and LLVM_PROFDATA={} are set: cargo-llvm-cov uses them as given",
                tools.llvm_cov.display(),
                tools.llvm_profdata.display()
            ),
        ),
        Source::Component => term::verbose(
            "Note",
            format_args!(
                "cargo-llvm-cov uses the rustup llvm-tools component in {}",
                tools.llvm_cov.parent().unwrap_or(Path::new("")).display()
            ),
        ),
        Source::Found if tools.paired.is_some() => {
            term::verbose("Note", tools.paired.as_deref().unwrap_or_default());
        }
        Source::Found => {
            let set: Vec<String> = tools
                .child_env
                .iter()
                .map(|(k, v)| format!("{k}={}", v.display()))
                .collect();
            term::verbose(
                "Note",
                format_args!(
                    "the rustup llvm-tools component is not installed: setting {} \
                     (rustc's LLVM major)",
                    set.join(" ")
                ),
            );
        }
    }
    Ok(tools.child_env)
}

/// The tools cargo-llvm-cov would use. Runs rustc only if `LLVM_COV` or `LLVM_PROFDATA` is unset.
pub(crate) fn find(rustc: &Path, search: &Search) -> Result<Tools> {
    match from_env(search) {
        Some(tools) => Ok(tools),
        None => find_for(&Rustc::query(rustc)?, search),
    }
}

/// `find` for a rustc already queried.
pub(crate) fn find_for(rustc: &Rustc, search: &Search) -> Result<Tools> {
    if let Some(tools) = from_env(search) {
        return Ok(tools);
    }
    if let Some(tools) = partner_of_users_tool(rustc, search)? {
        return Ok(tools);
    }
    let component = rustc.component_dir();
    let (cov, profdata) = (component.join("llvm-cov"), component.join("llvm-profdata"));
    if is_executable(&cov) && is_executable(&profdata) {
        return Ok(Tools {
            source: Source::Component,
            llvm_cov: search.llvm_cov.clone().unwrap_or(cov),
            llvm_profdata: search.llvm_profdata.clone().unwrap_or(profdata),
            child_env: Vec::new(),
            paired: None,
        });
    }
    let Some(major) = rustc.llvm_major() else {
        bail!(
            "rustc {} reports no LLVM version (`rustc -vV` has no `LLVM version:` line), so \
             cargo-llvm-cov's tools cannot be matched to it; set LLVM_COV and LLVM_PROFDATA",
            rustc.release
        );
    };
    let dirs = search.dirs.clone().unwrap_or_else(|| builtin_dirs(major));
    let mut mismatched = Vec::new();
    let found = candidates(major, &dirs, search.path.as_deref())
        .into_iter()
        .find(|(cov, profdata)| {
            [cov, profdata].into_iter().all(|tool| {
                let m = tool_major(tool);
                if m != Some(major) {
                    // Named once, by what it is (`/usr/bin/llvm-cov` is often LLVM 14's).
                    let real = tool.canonicalize().unwrap_or_else(|_| tool.clone());
                    if !mismatched.iter().any(|(p, _)| *p == real) {
                        mismatched.push((real, m));
                    }
                }
                m == Some(major)
            })
        });
    let Some((cov, profdata)) = found else {
        return Err(Missing {
            major,
            mismatched,
            component_dir: component,
            dirs,
        }
        .into());
    };
    // A variable the user set wins; we fill in only what is missing.
    let mut child_env = Vec::new();
    if search.llvm_cov.is_none() {
        child_env.push(("LLVM_COV", cov.clone()));
    }
    if search.llvm_profdata.is_none() {
        child_env.push(("LLVM_PROFDATA", profdata.clone()));
    }
    Ok(Tools {
        source: Source::Found,
        llvm_cov: search.llvm_cov.clone().unwrap_or(cov),
        llvm_profdata: search.llvm_profdata.clone().unwrap_or(profdata),
        child_env,
        paired: None,
    })
}

/// Exactly one of `LLVM_COV` and `LLVM_PROFDATA` set: the other must be of the same LLVM major
/// as the user's tool, or llvm-profdata writes profiles that llvm-cov cannot read (and LLVM 14's
/// llvm-cov next to LLVM 22's llvm-profdata is what cargo-llvm-cov would otherwise get). So the
/// partner is of the user's tool's major: from the same dir first (`llvm-cov-14` pairs with
/// `llvm-profdata-14`), else wherever that major is installed. A user's tool of another major
/// than rustc's is used as asked, with a warning; one that reports no version is paired with
/// rustc's major, and `-v` says so.
fn partner_of_users_tool(rustc: &Rustc, search: &Search) -> Result<Option<Tools>> {
    let (user, user_var, want, want_var) = match (&search.llvm_cov, &search.llvm_profdata) {
        (Some(cov), None) => (cov, "LLVM_COV", "llvm-profdata", "LLVM_PROFDATA"),
        (None, Some(profdata)) => (profdata, "LLVM_PROFDATA", "llvm-cov", "LLVM_COV"),
        _ => return Ok(None),
    };
    let user_major = tool_major(user);
    let rustc_major = rustc.llvm_major();
    let Some(major) = user_major.or(rustc_major) else {
        bail!(
            "{user_var}={} reports no LLVM version and neither does rustc {}, so its {want} \
             cannot be matched to it; set {want_var} too",
            user.display(),
            rustc.release
        );
    };
    if let (Some(u), Some(r)) = (user_major, rustc_major)
        && u != r
    {
        term::warn(format_args!(
            "{user_var}={} is LLVM {u}, but rustc's LLVM is {r}: tools of another major may not \
             read the profiles rustc writes; set {user_var} to LLVM {r}'s {} or unset it",
            user.display(),
            user.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    let mut options = siblings(user, want);
    if Some(major) == rustc_major {
        options.push(rustc.component_dir().join(want));
    }
    let dirs = search.dirs.clone().unwrap_or_else(|| builtin_dirs(major));
    for (cov, profdata) in candidates(major, &dirs, search.path.as_deref()) {
        options.push(if want == "llvm-cov" { cov } else { profdata });
    }
    let Some(partner) = options
        .into_iter()
        .find(|p| is_executable(p) && tool_major(p) == Some(major))
    else {
        bail!(
            "{user_var}={} is LLVM {major}'s, and no {want} of LLVM {major} was found next to it, \
             in {}or on PATH; set {want_var} to LLVM {major}'s {want} too",
            user.display(),
            dirs.iter()
                .map(|d| format!("{}, ", d.display()))
                .collect::<String>()
        );
    };
    let paired = match user_major {
        Some(m) => format!(
            "{user_var}={} (LLVM {m}) is set: setting {want_var}={} (LLVM {m}, the same major)",
            user.display(),
            partner.display()
        ),
        None => format!(
            "{user_var}={} is set and reports no LLVM version: setting {want_var}={} (LLVM \
             {major}, rustc's major)",
            user.display(),
            partner.display()
        ),
    };
    let (llvm_cov, llvm_profdata) = if want == "llvm-cov" {
        (partner.clone(), user.clone())
    } else {
        (user.clone(), partner.clone())
    };
    Ok(Some(Tools {
        source: Source::Found,
        llvm_cov,
        llvm_profdata,
        child_env: vec![(want_var, partner)],
        paired: Some(paired),
    }))
}

/// `want` next to `tool`, named the same way (`llvm-cov-14` → `llvm-profdata-14`), then plain.
fn siblings(tool: &Path, want: &str) -> Vec<PathBuf> {
    let Some(dir) = tool.parent() else {
        return Vec::new();
    };
    let name = tool.file_name().unwrap_or_default().to_string_lossy();
    let other = if want == "llvm-cov" {
        "llvm-profdata"
    } else {
        "llvm-cov"
    };
    let mut out = Vec::new();
    if name.contains(other) {
        out.push(dir.join(name.replacen(other, want, 1)));
    }
    if !out.contains(&dir.join(want)) {
        out.push(dir.join(want));
    }
    out
}

/// Both variables set: cargo-llvm-cov uses them, whatever they are.
fn from_env(search: &Search) -> Option<Tools> {
    Some(Tools {
        source: Source::Env,
        llvm_cov: search.llvm_cov.clone()?,
        llvm_profdata: search.llvm_profdata.clone()?,
        child_env: Vec::new(),
        paired: None,
    })
}

/// Where distributions install one LLVM major's tools side by side with others.
fn builtin_dirs(major: u32) -> Vec<PathBuf> {
    [
        format!("/usr/lib/llvm-{major}/bin"), // Debian, Ubuntu (apt.llvm.org too)
        format!("/usr/lib64/llvm{major}/bin"), // Fedora, RHEL
        format!("/usr/lib/llvm{major}/bin"),  // Alpine, Arch's llvmNN packages
        format!("/usr/lib/llvm/{major}/bin"), // Gentoo
        format!("/opt/homebrew/opt/llvm@{major}/bin"), // Homebrew, Apple silicon
        format!("/usr/local/opt/llvm@{major}/bin"), // Homebrew, Intel
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// `(llvm-cov, llvm-profdata)` pairs to try, best first: the install dirs, then `llvm-cov-<major>`
/// on PATH (Debian's versioned names), then plain `llvm-cov` on PATH. Only pairs that exist.
fn candidates(major: u32, dirs: &[PathBuf], path: Option<&OsStr>) -> Vec<(PathBuf, PathBuf)> {
    let versioned = (
        format!("llvm-cov-{major}"),
        format!("llvm-profdata-{major}"),
    );
    let plain = ("llvm-cov".to_owned(), "llvm-profdata".to_owned());
    let path: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut add = |dir: &Path, (cov, profdata): &(String, String)| {
        let pair = (dir.join(cov), dir.join(profdata));
        if is_executable(&pair.0) && is_executable(&pair.1) && !out.contains(&pair) {
            out.push(pair);
        }
    };
    for dir in dirs {
        add(dir, &versioned);
        add(dir, &plain);
    }
    for names in [&versioned, &plain] {
        for dir in &path {
            add(dir, names);
        }
    }
    out
}

/// The LLVM major a tool's `--version` reports (`Debian LLVM version 22.1.8`, `LLVM version
/// 19.1.7`, `Homebrew LLVM version 20.1.0`).
///
/// Before LLVM 15, `llvm-profdata --version` is an "Unknown command!": its version is printed by
/// a subcommand's `--version` (`llvm-profdata merge --version`), which is tried second.
pub(crate) fn tool_major(tool: &Path) -> Option<u32> {
    let ask = |args: &[&str]| {
        let out = Command::new(tool).args(args).output().ok()?;
        version_major(&String::from_utf8_lossy(&out.stdout))
    };
    ask(&["--version"]).or_else(|| {
        let profdata = tool
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("llvm-profdata"));
        if profdata {
            ask(&["merge", "--version"])
        } else {
            None
        }
    })
}

fn version_major(text: &str) -> Option<u32> {
    let (_, rest) = text.split_once("LLVM version ")?;
    crate::rustc::leading_number(rest.trim_start())
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    /// A fake tool printing `--version` like Debian's.
    fn fake_tool(dir: &Path, name: &str, major: u32) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho 'Debian LLVM version {major}.1.8'\necho '  Optimized build.'\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn rustc(sysroot: &Path, llvm: Option<&str>) -> Rustc {
        Rustc {
            version: crate::rustc::Version {
                release: "1.95.0".into(),
                host: "x86_64-unknown-linux-gnu".into(),
                llvm_version: llvm.map(str::to_owned),
            },
            sysroot: sysroot.to_owned(),
        }
    }

    #[test]
    fn versions_are_parsed() {
        assert_eq!(
            version_major("Debian LLVM version 22.1.8\n  Optimized build.\n"),
            Some(22)
        );
        assert_eq!(version_major("Homebrew LLVM version 19.1.7\n"), Some(19));
        assert_eq!(
            version_major("LLVM (http://llvm.org/):\n  LLVM version 14.0.6\n"),
            Some(14)
        );
        assert_eq!(version_major("llvm-cov: unknown option"), None);
        assert_eq!(
            rustc(Path::new("/s"), Some("22.1.2")).llvm_major(),
            Some(22)
        );
        assert_eq!(rustc(Path::new("/s"), None).llvm_major(), None);
    }

    #[test]
    fn clean_help_and_version_need_no_tools() {
        assert!(needs_tools(&args(&[])));
        assert!(needs_tools(&args(&["--lcov", "--output-path", "x"])));
        assert!(needs_tools(&args(&["report", "--lcov"])));
        assert!(needs_tools(&args(&["run", "--", "--help"])));
        assert!(!needs_tools(&args(&["clean", "--workspace"])));
        assert!(!needs_tools(&args(&["--help"])));
        assert!(!needs_tools(&args(&["report", "-h"])));
        assert!(!needs_tools(&args(&["--version"])));
    }

    #[test]
    fn the_matching_major_is_found_and_others_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("old");
        let new = t.path().join("new");
        let on_path = t.path().join("bin");
        fake_tool(&old, "llvm-cov", 19);
        fake_tool(&old, "llvm-profdata", 19);
        fake_tool(&new, "llvm-cov", 22);
        fake_tool(&new, "llvm-profdata", 22);
        fake_tool(&on_path, "llvm-cov-22", 22);
        fake_tool(&on_path, "llvm-profdata-22", 22);
        let search = Search {
            dirs: Some(vec![old.clone(), new.clone()]),
            path: Some(on_path.clone().into_os_string()),
            ..Search::default()
        };
        let tools = find_for(&rustc(t.path(), Some("22.1.2")), &search).unwrap();
        assert_eq!(tools.source, Source::Found);
        assert_eq!(tools.llvm_cov, new.join("llvm-cov"));
        assert_eq!(
            tools.child_env,
            [
                ("LLVM_COV", new.join("llvm-cov")),
                ("LLVM_PROFDATA", new.join("llvm-profdata"))
            ]
        );
        // Without the dirs, PATH's versioned names.
        let search = Search {
            dirs: Some(vec![old.clone()]),
            ..search
        };
        let tools = find_for(&rustc(t.path(), Some("22.1.2")), &search).unwrap();
        assert_eq!(tools.llvm_profdata, on_path.join("llvm-profdata-22"));
    }

    #[test]
    fn a_mismatched_major_is_never_used() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("old");
        fake_tool(&old, "llvm-cov", 19);
        fake_tool(&old, "llvm-profdata", 19);
        fake_tool(&old, "llvm-cov-22", 21);
        fake_tool(&old, "llvm-profdata-22", 21);
        let search = Search {
            dirs: Some(vec![]),
            path: Some(old.clone().into_os_string()),
            ..Search::default()
        };
        let err = find_for(&rustc(t.path(), Some("22.1.2")), &search).unwrap_err();
        let missing = err.downcast_ref::<Missing>().expect("a Missing error");
        assert_eq!(missing.major, 22);
        let msg = format!("{err:#}");
        assert!(msg.contains("apt-get install llvm-22"), "{msg}");
        assert!(msg.contains("rustup component add llvm-tools"), "{msg}");
        assert!(msg.contains("is LLVM 19"), "{msg}");
        assert!(msg.contains("is LLVM 21"), "{msg}");
    }

    #[test]
    fn the_component_and_the_users_variables_come_first() {
        let t = tempfile::tempdir().unwrap();
        let r = rustc(t.path(), Some("22.1.2"));
        let mine = fake_tool(&t.path().join("mine"), "llvm-profdata", 19);
        let search = Search {
            llvm_cov: Some("/x/llvm-cov".into()),
            llvm_profdata: Some(mine.clone()),
            dirs: Some(vec![]),
            path: None,
        };
        // Both set: used as given, whatever they are.
        assert_eq!(find_for(&r, &search).unwrap().source, Source::Env);
        // The component: cargo-llvm-cov finds it itself; nothing to set.
        fake_tool(&r.component_dir(), "llvm-cov", 22);
        fake_tool(&r.component_dir(), "llvm-profdata", 22);
        let tools = find_for(&r, &Search::default()).unwrap();
        assert_eq!(tools.source, Source::Component);
        assert!(tools.child_env.is_empty());
    }

    #[test]
    fn a_user_variable_is_kept_and_only_the_other_one_is_set() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        fake_tool(&dir, "llvm-cov", 22);
        fake_tool(&dir, "llvm-profdata", 22);
        let search = Search {
            llvm_cov: Some("/my/llvm-cov".into()),
            dirs: Some(vec![dir.clone()]),
            ..Search::default()
        };
        let tools = find_for(&rustc(t.path(), Some("22.1.2")), &search).unwrap();
        assert_eq!(tools.llvm_cov, Path::new("/my/llvm-cov"));
        assert_eq!(
            tools.child_env,
            [("LLVM_PROFDATA", dir.join("llvm-profdata"))]
        );
    }

    #[test]
    fn a_users_tool_is_paired_with_its_own_major() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("old");
        let new = t.path().join("new");
        let mine = fake_tool(&old, "llvm-cov-19", 19);
        fake_tool(&old, "llvm-profdata-19", 19);
        fake_tool(&old, "llvm-profdata", 19);
        fake_tool(&new, "llvm-cov", 22);
        fake_tool(&new, "llvm-profdata", 22);
        let r = rustc(t.path(), Some("22.1.2"));
        let search = Search {
            llvm_cov: Some(mine.clone()),
            dirs: Some(vec![new.clone()]),
            ..Search::default()
        };
        // LLVM 19's llvm-cov: its partner is LLVM 19's, named alike, never rustc's LLVM 22.
        let tools = find_for(&r, &search).unwrap();
        assert_eq!(tools.llvm_cov, mine);
        assert_eq!(
            tools.child_env,
            [("LLVM_PROFDATA", old.join("llvm-profdata-19"))]
        );
        assert!(tools.paired.unwrap().contains("(LLVM 19)"));
        // LLVM 22's llvm-profdata alone: llvm-cov from its own dir.
        let search = Search {
            llvm_profdata: Some(new.join("llvm-profdata")),
            dirs: Some(vec![old.clone()]),
            ..Search::default()
        };
        let tools = find_for(&r, &search).unwrap();
        assert_eq!(tools.child_env, [("LLVM_COV", new.join("llvm-cov"))]);
        // No partner of that major anywhere: an error naming the major, not a mixed pair.
        let lone = fake_tool(&t.path().join("lone"), "llvm-cov", 17);
        let search = Search {
            llvm_cov: Some(lone),
            dirs: Some(vec![old, new]),
            ..Search::default()
        };
        let err = format!("{:#}", find_for(&r, &search).unwrap_err());
        assert!(err.contains("no llvm-profdata of LLVM 17"), "{err}");
    }
}

//! Which words `cargo guarded <word>` accepts as a command, decided before any lease is taken, so a
//! typo (`biuld`) or a build outside any project fails at once instead of leaving a job dir that
//! lingers for an hour.
//!
//! Known: our own subcommands (clap knows those), cargo's built-in commands and aliases, a
//! `cargo-<word>` executable on PATH or in `$CARGO_HOME/bin` (how cargo finds third-party
//! subcommands), `[alias]` entries of the cargo config files, and `CARGO_ALIAS_<NAME>` variables
//! (cargo's environment spelling of `alias.<name>`). No cargo subprocess: `cargo --list` alone
//! costs more than our whole start-up. Not read: files named by a config's `include` and cargo's
//! own `--config` (given to cargo before its command, which `cargo guarded` has no place for);
//! an alias defined only there is refused with the `cargo --list` hint, where `exec -- cargo
//! <alias>` runs it.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// cargo's built-in commands and built-in aliases (`cargo --list`, cargo 1.9x), plus the
/// subcommands rustup installs with every toolchain and the two tools this crate drives.
const BUILTIN: &[&str] = &[
    "add",
    "b",
    "bench",
    "build",
    "c",
    "check",
    "clean",
    "clippy",
    "config",
    "d",
    "doc",
    "fetch",
    "fix",
    "fmt",
    "generate-lockfile",
    "help",
    "info",
    "init",
    "install",
    "llvm-cov",
    "locate-project",
    "login",
    "logout",
    "metadata",
    "miri",
    "new",
    "nextest",
    "owner",
    "package",
    "pkgid",
    "publish",
    "r",
    "read-manifest",
    "remove",
    "report",
    "rm",
    "run",
    "rustc",
    "rustdoc",
    "search",
    "t",
    "test",
    "tree",
    "uninstall",
    "update",
    "vendor",
    "verify-project",
    "version",
    "yank",
];

/// Built-in commands that work outside any Cargo project; every other built-in needs a
/// `Cargo.toml` (and so does a command with `--manifest-path`, which cargo checks itself).
const NO_MANIFEST: &[&str] = &[
    "config",
    "help",
    "info",
    "init",
    "install",
    "login",
    "logout",
    "new",
    "owner",
    "report",
    "search",
    "uninstall",
    "version",
    "yank",
];

/// Where cargo looks for a `cargo-<name>` executable.
#[derive(Debug, Clone, Default)]
pub(crate) struct Search<'a> {
    /// `PATH`
    pub(crate) path: Option<&'a OsStr>,
    /// `$CARGO_HOME` (cargo also searches its `bin/`).
    pub(crate) cargo_home: Option<&'a Path>,
}

impl Search<'_> {
    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .path
            .map(|p| std::env::split_paths(p).collect())
            .unwrap_or_default();
        if let Some(home) = self.cargo_home {
            dirs.push(home.join("bin"));
        }
        dirs
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `name` is a command cargo would run. Costs nothing for a built-in, one `stat` per
/// PATH entry otherwise, and reads the cargo config files only for a word that is neither.
pub(crate) fn is_known(name: &str, search: &Search, aliases: impl FnOnce() -> Vec<String>) -> bool {
    BUILTIN.contains(&name)
        || search
            .dirs()
            .iter()
            .any(|d| is_executable(&d.join(format!("cargo-{name}"))))
        || aliases().iter().any(|a| a == name)
}

/// Whether `name` is a cargo built-in that fails outside a Cargo project.
pub(crate) fn needs_manifest(name: &str) -> bool {
    BUILTIN.contains(&name) && !NO_MANIFEST.contains(&name)
}

/// Every command name cargo would accept: for suggestions on the error path only.
fn all_known(ours: &clap::Command, search: &Search, aliases: Vec<String>) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN.iter().map(|s| (*s).to_owned()).collect();
    names.extend(ours.get_subcommands().map(|c| c.get_name().to_owned()));
    for dir in search.dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if let Some(sub) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("cargo-"))
                && is_executable(&e.path())
            {
                names.push(sub.to_owned());
            }
        }
    }
    names.extend(aliases);
    names.sort();
    names.dedup();
    names
}

/// The name closest to `name`, as cargo picks it for its own "a command with a similar name
/// exists" help (`closest` in cargo's `util/edit_distance.rs`): the optimal-string-alignment
/// distance (edits and adjacent transpositions) of the lowercased words, at most 3, the first of
/// the sorted names at the least distance. A measure of likeness would tie a long typo to a
/// one-letter alias (`frobnicate` to `b`); a bounded edit count does not.
fn similar(name: &str, candidates: &[String]) -> Vec<String> {
    let name = name.to_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::osa_distance(&name, &c.to_lowercase()), c))
        .filter(|(distance, _)| *distance <= 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c.clone())
        .into_iter()
        .collect()
}

/// The aliases cargo reads from the environment: `CARGO_ALIAS_XB=build` makes `cargo xb` work
/// (cargo looks up `alias.<command>` as `CARGO_ALIAS_<COMMAND>`, `-` spelled `_`).
pub(crate) fn env_aliases(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<String> {
    vars.filter_map(|(k, _)| {
        let name = k.to_str()?.strip_prefix("CARGO_ALIAS_")?;
        (!name.is_empty()).then(|| name.to_lowercase().replace('_', "-"))
    })
    .collect()
}

/// clap's own "unrecognized subcommand" error, rendered like any other, with its "a similar
/// subcommand exists" tip.
pub(crate) fn unknown(
    mut ours: clap::Command,
    name: &str,
    search: &Search,
    aliases: Vec<String>,
) -> clap::Error {
    let candidates = all_known(&ours, search, aliases);
    let usage = ours.render_usage();
    let mut err = clap::Error::new(ErrorKind::InvalidSubcommand).with_cmd(&ours);
    err.insert(
        ContextKind::InvalidSubcommand,
        ContextValue::String(name.to_owned()),
    );
    let tips = similar(name, &candidates);
    if !tips.is_empty() {
        err.insert(
            ContextKind::SuggestedSubcommand,
            ContextValue::Strings(tips),
        );
    }
    // cargo's own pointer to what is installed, after the tip as cargo prints it.
    err.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![
            "view all installed commands with `cargo --list`".into(),
        ]),
    );
    err.insert(ContextKind::Usage, ContextValue::StyledStr(usage));
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_nearest_command() {
        let names: Vec<String> = ["build", "status", "test", "gc", "check"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(similar("biuld", &names), ["build"]);
        assert_eq!(similar("stauts", &names), ["status"]);
        assert!(similar("zzzzzz", &names).is_empty());
        // cargo's measure: a long word is not "similar" to a one-letter alias, a swapped pair of
        // letters is one edit, case does not count.
        let names: Vec<String> = ["b", "build", "c", "check"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert!(similar("frobnicate", &names).is_empty());
        assert_eq!(similar("BUILD", &names), ["build"]);
        assert_eq!(similar("chekc", &names), ["check"]);
    }

    #[test]
    fn aliases_are_read_from_the_environment_as_cargo_reads_them() {
        let vars = [
            ("CARGO_ALIAS_XB", "build"),
            ("CARGO_ALIAS_MY_CHECK", "check"),
            ("CARGO_HOME", "/x"),
            ("CARGO_ALIAS_", "x"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        assert_eq!(env_aliases(vars.into_iter()), ["xb", "my-check"]);
    }

    #[test]
    fn built_ins_aliases_and_path_commands_are_known() {
        let t = tempfile::tempdir().unwrap();
        let tool = t.path().join("cargo-frob");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(t.path().join("cargo-plain"), "not executable").unwrap();
        let path = t.path().as_os_str();
        let search = Search {
            path: Some(path),
            cargo_home: None,
        };
        assert!(is_known("build", &search, Vec::new));
        assert!(is_known("frob", &search, Vec::new));
        assert!(!is_known("plain", &search, Vec::new));
        assert!(!is_known("biuld", &search, Vec::new));
        assert!(is_known("biuld", &search, || vec!["biuld".into()]));
        assert!(needs_manifest("build") && !needs_manifest("new") && !needs_manifest("frob"));
    }
}

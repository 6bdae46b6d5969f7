//! Facts about the workspace being built, found without running `cargo metadata` (which alone
//! costs most of a no-op build): its root, the checkout it lives in, and the key that says which
//! job dirs hold "the same build" for warm reuse.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root cargo would use from `start`: the nearest ancestor whose `Cargo.toml` has a
/// `[workspace]` table, else the nearest `Cargo.toml`, else `start` itself (e.g. `exec` outside a
/// Rust project).
pub(crate) fn find_root(start: &Path) -> PathBuf {
    let mut nearest = None;
    for dir in start.ancestors() {
        let manifest = dir.join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else {
            continue;
        };
        if nearest.is_none() {
            nearest = Some(dir.to_path_buf());
        }
        if text.lines().any(|l| l.trim() == "[workspace]") {
            return dir.to_path_buf();
        }
    }
    nearest.unwrap_or_else(|| start.to_path_buf())
}

/// Where cargo will start looking: the dir of `--manifest-path` if the arguments name one.
pub(crate) fn start_dir(args: &[OsString], cwd: &Path) -> PathBuf {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        let path = if a == "--manifest-path" {
            it.next().map(|p| PathBuf::from(p.clone()))
        } else {
            a.strip_prefix("--manifest-path=").map(PathBuf::from)
        };
        if let Some(p) = path {
            let p = cwd.join(p);
            return p.parent().map(Path::to_path_buf).unwrap_or(p);
        }
    }
    cwd.to_path_buf()
}

/// Identifies "the same build" across jobs (the warm-reuse key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkspaceKey {
    /// Repository identity and the workspace's path inside it, e.g. `acme/widgets:crates/app`.
    pub(crate) workspace: String,
    /// `rustc -vV` release and host, e.g. `1.95.0 x86_64-unknown-linux-gnu`.
    pub(crate) toolchain: Option<String>,
}

/// Compute the key. `repo_hint` is the CI's repository name (`GITHUB_REPOSITORY`) if any.
pub(crate) fn key(root: &Path, repo_hint: Option<&str>, rustc: &Path) -> WorkspaceKey {
    let checkout = root.ancestors().find(|d| d.join(".git").exists());
    let (repo, rel) = match checkout {
        Some(top) => {
            let rel = root.strip_prefix(top).unwrap_or(Path::new(""));
            let repo = repo_hint
                .map(str::to_owned)
                .or_else(|| git_remote(top))
                .unwrap_or_else(|| top.display().to_string());
            (repo, rel.display().to_string())
        }
        None => (
            repo_hint.map_or_else(|| root.display().to_string(), str::to_owned),
            String::new(),
        ),
    };
    WorkspaceKey {
        workspace: if rel.is_empty() {
            repo
        } else {
            format!("{repo}:{rel}")
        },
        toolchain: toolchain(rustc),
    }
}

/// The `origin` URL from `.git/config`, read as text (no git process on the start-up path).
fn git_remote(top: &Path) -> Option<String> {
    let config = fs::read_to_string(top.join(".git").join("config")).ok()?;
    let mut in_origin = false;
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_origin = line == "[remote \"origin\"]";
        } else if in_origin && let Some(url) = line.strip_prefix("url") {
            let url = url.trim_start().strip_prefix('=')?.trim();
            // `git@host:acme/widgets.git` and `https://host/acme/widgets` name one repository.
            let url = url.trim_end_matches('/').trim_end_matches(".git");
            let tail: Vec<&str> = url.rsplit(['/', ':']).take(2).collect();
            return Some(tail.into_iter().rev().collect::<Vec<_>>().join("/"));
        }
    }
    None
}

/// `rustc -vV`'s release and host line, e.g. `1.95.0 x86_64-unknown-linux-gnu`.
pub(crate) fn toolchain(rustc: &Path) -> Option<String> {
    let out = Command::new(rustc).arg("-vV").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    Some(format!("{} {}", field("release:")?, field("host:")?))
}

/// Whether cargo is configured with a separate build dir (`build.build-dir`), found by reading
/// the config files cargo would read from `start` upwards and in `$CARGO_HOME`.
pub(crate) fn build_dir_configured(start: &Path, cargo_home: Option<&Path>) -> bool {
    let mentions = |dir: &Path| {
        ["config.toml", "config"].iter().any(|f| {
            fs::read_to_string(dir.join(f)).is_ok_and(|t| {
                t.lines().any(|l| {
                    let l = l.trim_start();
                    l.starts_with("build-dir") || l.starts_with("build.build-dir")
                })
            })
        })
    };
    start.ancestors().any(|d| mentions(&d.join(".cargo"))) || cargo_home.is_some_and(mentions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_workspace_above_a_member() {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path();
        fs::write(ws.join("Cargo.toml"), "[workspace]\nmembers = [\"a\"]\n").unwrap();
        fs::create_dir_all(ws.join("a/src")).unwrap();
        fs::write(ws.join("a/Cargo.toml"), "[package]\nname = \"a\"\n").unwrap();
        assert_eq!(find_root(&ws.join("a/src")), ws);
    }

    #[test]
    fn manifest_path_moves_the_start() {
        let args: Vec<OsString> = ["build", "--manifest-path", "x/Cargo.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(start_dir(&args, Path::new("/w")), Path::new("/w/x"));
        let args: Vec<OsString> = ["test", "--", "--manifest-path=y/Cargo.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(start_dir(&args, Path::new("/w")), Path::new("/w"));
    }

    #[test]
    fn remotes_name_the_repository() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join(".git")).unwrap();
        fs::write(
            t.path().join(".git/config"),
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = git@github.com:acme/widgets.git\n",
        )
        .unwrap();
        assert_eq!(git_remote(t.path()).as_deref(), Some("acme/widgets"));
        let k = key(&t.path().join("sub"), None, Path::new("/nonexistent-rustc"));
        assert_eq!(k.workspace, "acme/widgets:sub");
        assert_eq!(k.toolchain, None);
    }
}

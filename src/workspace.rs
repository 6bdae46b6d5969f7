//! Facts about the workspace being built, found without running `cargo metadata` (which alone
//! costs most of a no-op build): its root, the checkout it lives in, and the key that says which
//! job dirs hold "the same build" for warm reuse.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// The workspace root cargo would use from `start`: the nearest ancestor whose `Cargo.toml` has a
/// `[workspace]` table (or the dir a member's `package.workspace` names), else the nearest
/// `Cargo.toml`, else `start` itself (e.g. `exec` outside a Rust project).
pub(crate) fn find_root(start: &Path) -> PathBuf {
    let mut nearest = None;
    for dir in start.ancestors() {
        let Some(manifest) = manifest(dir) else {
            continue;
        };
        if nearest.is_none() {
            nearest = Some(dir.to_path_buf());
            // A member that names its workspace: cargo goes there, not to the nearest one above.
            if let Some(ws) = manifest
                .get("package")
                .and_then(|p| p.get("workspace"))
                .and_then(|w| w.as_str())
            {
                return dir.join(ws);
            }
        }
        if manifest.contains_key("workspace") {
            return dir.to_path_buf();
        }
    }
    nearest.unwrap_or_else(|| start.to_path_buf())
}

/// Whether `start` or a dir above it holds a `Cargo.toml` (what cargo looks for before anything).
pub(crate) fn has_manifest(start: &Path) -> bool {
    start.ancestors().any(|d| d.join("Cargo.toml").is_file())
}

/// `dir/Cargo.toml` parsed as TOML, so `[workspace] # root`, `workspace = { … }` and every other
/// spelling read as cargo reads them. A manifest that is not valid TOML counts as a manifest
/// without a workspace table: cargo reports its syntax error itself.
fn manifest(dir: &Path) -> Option<toml::Table> {
    let text = fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    Some(text.parse::<toml::Table>().unwrap_or_default())
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
    /// Repository identity (host and full path) and the workspace's path inside it, e.g.
    /// `github.com/acme/widgets:crates/app`.
    pub(crate) workspace: String,
    /// `rustc -vV` release and host, e.g. `1.95.0 x86_64-unknown-linux-gnu`.
    pub(crate) toolchain: Option<String>,
}

/// Compute the key. `repo_hint` is the CI's repository ([`ci_repository`]) if any; `toolchain`
/// comes from [`toolchain`].
pub(crate) fn key(root: &Path, repo_hint: Option<&str>, toolchain: Option<String>) -> WorkspaceKey {
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
        toolchain,
    }
}

/// The repository the CI says it builds, as host and full path (`github.com/acme/widgets`,
/// `gitlab.example.com/a/x/repo`): the same key [`repository_of`] makes of the checkout's remote,
/// read from the CI's variables, without a subprocess. GitHub: `GITHUB_REPOSITORY` on the host of
/// `GITHUB_SERVER_URL` (github.com when unset); GitLab: `CI_PROJECT_PATH` (with its subgroups) on
/// `CI_SERVER_HOST`; Buildkite: the remote in `BUILDKITE_REPO`. `var`: an environment variable,
/// empty counting as unset.
pub(crate) fn ci_repository(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let host_of = |url: String| {
        gix_url::parse(url.as_str())
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase))
    };
    if let Some(repo) = var("GITHUB_REPOSITORY") {
        let host = var("GITHUB_SERVER_URL")
            .and_then(host_of)
            .unwrap_or_else(|| "github.com".into());
        return Some(format!("{host}/{}", repo.trim_matches('/')));
    }
    if let Some(path) = var("CI_PROJECT_PATH") {
        let host = var("CI_SERVER_HOST").or_else(|| var("CI_SERVER_URL").and_then(host_of));
        let path = path.trim_matches('/');
        return Some(match host {
            Some(host) => format!("{}/{path}", host.to_ascii_lowercase()),
            None => path.to_owned(),
        });
    }
    var("BUILDKITE_REPO").and_then(|url| repository_of(&url))
}

/// `origin`'s repository (`github.com/acme/widgets`), asked of `git` itself: a `.git` that is a file
/// (worktrees, submodules: `gitdir: …`, `commondir`), `include.path` and `includeIf` are read
/// exactly as git reads them. This runs only when a job creates or adopts a dir, never on the
/// resume path of a no-op build. Without git, or in a checkout git cannot read, the checkout's
/// path is the key instead (a new job then starts cold rather than adopting a wrong dir).
fn git_remote(top: &Path) -> Option<String> {
    let mut git = std::process::Command::new("git");
    // `config --get` runs nothing from the repository (no hooks, no fsmonitor), so a checkout
    // owned by another uid (a container's bind mount) may be read: `safe.directory` only guards
    // commands that would execute what its config names.
    git.args(["-c", "safe.directory=*", "-C"])
        .arg(top)
        .args(["config", "--get", "remote.origin.url"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // The checkout is `top`, not whatever repository the environment points git at.
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_COMMON_DIR",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
    ] {
        git.env_remove(var);
    }
    let out = git.output().ok()?;
    if !out.status.success() {
        return None;
    }
    repository_of(String::from_utf8(out.stdout).ok()?.trim())
}

/// The repository a remote URL names, as host and full path: `git@host:acme/widgets.git`,
/// `ssh://git@host:2222/acme/widgets`, `https://user@host/acme/widgets/` all name
/// `host/acme/widgets`, and GitLab's subgroups stay apart (`host/a/x/repo`, `host/b/x/repo`), as
/// do two hosts' `acme/widgets`. gitoxide's parser reads every form git accepts. The port and the
/// user are left out: one repository reached over ssh on 2222 and over https on 443 is one
/// build. A local path (no host) is kept whole.
fn repository_of(url: &str) -> Option<String> {
    let parsed = gix_url::parse(url.trim()).ok()?;
    let path = std::str::from_utf8(&parsed.path).ok()?;
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    match parsed.host() {
        Some(host) => {
            let path = path.trim_start_matches('/');
            (!path.is_empty()).then(|| format!("{}/{path}", host.to_ascii_lowercase()))
        }
        None => (!path.is_empty()).then(|| path.to_owned()),
    }
}

/// What rustup picks a toolchain by, for a `rustc` that is its proxy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rustup {
    /// `RUSTUP_TOOLCHAIN`
    pub(crate) toolchain: Option<OsString>,
    /// `RUSTUP_HOME` (default `~/.rustup`): its `settings.toml` and `toolchains/` change when the
    /// default or an installed toolchain does.
    pub(crate) home: Option<PathBuf>,
}

/// `rustc -vV`'s release and host, e.g. `1.95.0 x86_64-unknown-linux-gnu`, cached in `cache`.
///
/// Running `rustc -vV` through rustup's proxy costs about 10 ms, most of an adopting job's
/// start-up, so the answer is cached under a stamp of everything that decides it:
/// - the real compiler binary's path, size and mtime, when it is known: `rustc` is absolute
///   (`$RUSTC`), or cargo ran us (`$CARGO` is the toolchain's own cargo; its sibling `rustc` is
///   the toolchain's compiler);
/// - otherwise the `rustc` found on PATH (usually the proxy) plus what rustup resolves a
///   toolchain by: `RUSTUP_TOOLCHAIN`, the nearest `rust-toolchain(.toml)` above the workspace,
///   and the state of `RUSTUP_HOME`.
///
/// A stale hit could only make a job adopt a dir built by another toolchain, which cargo then
/// rebuilds: slower, never wrong.
pub(crate) fn toolchain(
    rustc: &Path,
    cargo: &OsStr,
    rustup: &Rustup,
    workspace: &Path,
    cache: &Path,
) -> Option<String> {
    let sibling = Path::new(cargo).with_file_name("rustc");
    let (compiler, stamp) = if rustc.is_absolute() {
        (rustc.to_owned(), file_stamp(rustc))
    } else if Path::new(cargo).is_absolute() && sibling.is_file() {
        let stamp = file_stamp(&sibling);
        (sibling, stamp)
    } else {
        let found = which::which(rustc).ok();
        let mut stamp = found.as_deref().map(file_stamp).unwrap_or_default();
        stamp.push_str(&format!("\0{:?}", rustup.toolchain));
        let pinned = workspace
            .ancestors()
            .flat_map(|d| [d.join("rust-toolchain.toml"), d.join("rust-toolchain")])
            .find_map(|f| fs::read_to_string(f).ok());
        stamp.push_str(&format!("\0{pinned:?}"));
        if let Some(home) = &rustup.home {
            stamp.push_str(&file_stamp(&home.join("settings.toml")));
            stamp.push_str(&file_stamp(&home.join("toolchains")));
        }
        (rustc.to_owned(), stamp)
    };
    let entry = crate::job_id::short_hash(stamp.as_bytes());
    if let Some(cached) = read_cached(cache, &entry) {
        return Some(cached);
    }
    let found = rustc_version(&compiler)?;
    // Best effort: a cache that cannot be written only costs the next job 10 ms.
    if fs::create_dir_all(cache).is_ok()
        && let Ok(dir) = open_cache(cache)
    {
        let _ = crate::fs::write_atomic(dir.as_fd(), &entry, found.as_bytes());
    }
    Some(found)
}

/// A cache entry is one short line; anything larger is not one we wrote.
const MAX_CACHE_ENTRY: u64 = 1024;

/// The toolchain cache dir, opened without following a symlink: the root is shared, and what is
/// in it was written by someone else.
fn open_cache(cache: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        cache,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The cached answer `name` in `cache`, read like a lease: relative to the cache dir's fd,
/// no-follow, a regular file only, size-capped, never blocking. A FIFO there would otherwise
/// hang every new job, and a symlink to `/dev/zero` exhaust its memory. A bad entry is ignored
/// (the answer is recomputed and replaces it).
fn read_cached(cache: &Path, name: &str) -> Option<String> {
    let dir = open_cache(cache).ok()?;
    let bad = |why: &dyn std::fmt::Display| {
        crate::term::verbose(
            "Ignored",
            format_args!(
                "toolchain cache entry {}: {why}; asking rustc",
                cache.join(name).display()
            ),
        );
        None
    };
    match crate::fs::read_capped(dir.as_fd(), OsStr::new(name), MAX_CACHE_ENTRY) {
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
            Ok(_) => bad(&"empty"),
            Err(_) => bad(&"not UTF-8"),
        },
        Ok(None) => bad(&format_args!("larger than {MAX_CACHE_ENTRY} bytes")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bad(&e),
    }
}

/// Path, size and modification time of a file or dir (empty if it is missing).
fn file_stamp(path: &Path) -> String {
    let meta = fs::metadata(path).ok();
    format!(
        "\0{}\0{:?}\0{:?}",
        path.display(),
        meta.as_ref().map(|m| m.len()),
        meta.and_then(|m| m.modified().ok())
    )
}

/// `rustc -vV`, parsed.
fn rustc_version(rustc: &Path) -> Option<String> {
    let v = crate::rustc::version(rustc).ok()?;
    Some(format!("{} {}", v.release, v.host))
}

/// What the cargo config files say that matters before cargo runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CargoConfig {
    /// `build.build-dir` is set (a separate build dir that must be job-scoped too).
    pub(crate) build_dir: bool,
    /// `[alias]` names: commands `cargo guarded <alias>` must accept.
    pub(crate) aliases: Vec<String>,
}

/// Read the config files cargo would read from `start` upwards and in `$CARGO_HOME`, as TOML:
/// `[build] build-dir = …`, `build.build-dir = …` and `build = { build-dir = … }` are one key.
/// A file that is not valid TOML is skipped; cargo reports it when it runs.
pub(crate) fn cargo_config(start: &Path, cargo_home: Option<&Path>) -> CargoConfig {
    let mut found = CargoConfig::default();
    let dirs = start
        .ancestors()
        .map(|d| d.join(".cargo"))
        .chain(cargo_home.map(Path::to_path_buf));
    for dir in dirs {
        for name in ["config.toml", "config"] {
            let Ok(text) = fs::read_to_string(dir.join(name)) else {
                continue;
            };
            let Ok(table) = text.parse::<toml::Table>() else {
                continue;
            };
            let build_dir = table
                .get("build")
                .and_then(|b| b.as_table())
                .is_some_and(|b| b.contains_key("build-dir"));
            found.build_dir |= build_dir;
            if let Some(aliases) = table.get("alias").and_then(|a| a.as_table()) {
                found.aliases.extend(aliases.keys().cloned());
            }
        }
    }
    found
}

/// Whether cargo is configured with a separate build dir (`build.build-dir`), found by reading
/// the config files cargo would read from `start` upwards and in `$CARGO_HOME`.
pub(crate) fn build_dir_configured(start: &Path, cargo_home: Option<&Path>) -> bool {
    cargo_config(start, cargo_home).build_dir
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

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    #[test]
    fn remotes_name_the_repository() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("repo");
        fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q"]);
        git(
            &repo,
            &["remote", "add", "origin", "git@github.com:acme/widgets.git"],
        );
        assert_eq!(
            git_remote(&repo).as_deref(),
            Some("github.com/acme/widgets")
        );
        let k = key(&repo.join("sub"), None, None);
        assert_eq!(k.workspace, "github.com/acme/widgets:sub");
        assert_eq!(k.toolchain, None);

        // A linked worktree: `.git` is a file (`gitdir: …/worktrees/wt`), the remote lives in
        // the common dir. The old line reader found no remote and keyed by path.
        git(&repo, &["commit", "-q", "--allow-empty", "-m", "x"]);
        let wt = t.path().join("wt");
        git(&repo, &["worktree", "add", "-q", wt.to_str().unwrap()]);
        assert!(wt.join(".git").is_file());
        assert_eq!(key(&wt, None, None).workspace, "github.com/acme/widgets");

        // A submodule's `.git` file points into the superproject's `.git/modules/`.
        let sub = t.path().join("sub");
        let modules = t.path().join("modules/sub");
        fs::create_dir_all(&sub).unwrap();
        fs::create_dir_all(&modules).unwrap();
        git(&modules, &["init", "-q", "--bare"]);
        git(
            &modules,
            &[
                "config",
                "remote.origin.url",
                "https://github.com/acme/sub/",
            ],
        );
        git(&modules, &["config", "core.bare", "false"]);
        fs::write(sub.join(".git"), "gitdir: ../modules/sub\n").unwrap();
        assert_eq!(key(&sub, None, None).workspace, "github.com/acme/sub");
    }

    /// The key keeps the host and the whole path: GitLab subgroups and two hosts' same-named
    /// repositories stay apart; the ssh, scp-like and https forms of one remote agree, ports and
    /// users aside; the CI's own variables give the same key as the checkout's remote.
    #[test]
    fn the_repository_key_is_host_and_full_path() {
        let of = |u| repository_of(u).unwrap_or_else(|| panic!("{u}"));
        // One repository, every form.
        for url in [
            "git@gitlab.example.com:a/x/repo.git",
            "ssh://git@gitlab.example.com/a/x/repo.git",
            "ssh://git@gitlab.example.com:2222/a/x/repo",
            "https://gitlab.example.com/a/x/repo.git",
            "https://ci-token:secret@GitLab.Example.com:8443/a/x/repo/",
            "git://gitlab.example.com/a/x/repo",
        ] {
            assert_eq!(of(url), "gitlab.example.com/a/x/repo", "{url}");
        }
        // Subgroups with one name under two groups are two repositories.
        assert_ne!(
            of("git@gitlab.example.com:a/x/repo.git"),
            of("git@gitlab.example.com:b/x/repo.git")
        );
        // Two hosts' acme/widgets are two repositories.
        assert_eq!(
            of("git@github.com:acme/widgets.git"),
            "github.com/acme/widgets"
        );
        assert_eq!(
            of("https://git.example.org/acme/widgets"),
            "git.example.org/acme/widgets"
        );
        // A local remote keeps its path.
        assert_eq!(of("/srv/git/widgets.git"), "/srv/git/widgets");
        assert_eq!(repository_of(""), None);
        assert_eq!(repository_of("https://host/"), None);

        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let github = env(&[
            ("GITHUB_REPOSITORY", "acme/widgets"),
            ("GITHUB_SERVER_URL", "https://github.com"),
        ]);
        assert_eq!(
            ci_repository(&github).as_deref(),
            Some("github.com/acme/widgets")
        );
        let ghes = env(&[
            ("GITHUB_REPOSITORY", "acme/widgets"),
            ("GITHUB_SERVER_URL", "https://ghe.example.com"),
        ]);
        assert_eq!(
            ci_repository(&ghes).as_deref(),
            Some("ghe.example.com/acme/widgets")
        );
        let gitlab = env(&[
            ("CI_PROJECT_PATH", "a/x/repo"),
            ("CI_SERVER_HOST", "gitlab.example.com"),
        ]);
        assert_eq!(
            ci_repository(&gitlab),
            Some(of("git@gitlab.example.com:a/x/repo.git"))
        );
        let other_group = env(&[
            ("CI_PROJECT_PATH", "b/x/repo"),
            ("CI_SERVER_HOST", "gitlab.example.com"),
        ]);
        assert_ne!(ci_repository(&gitlab), ci_repository(&other_group));
        let buildkite = env(&[("BUILDKITE_REPO", "git@github.com:acme/widgets.git")]);
        assert_eq!(ci_repository(&buildkite), ci_repository(&github));
        assert_eq!(ci_repository(&env(&[])), None);
    }

    #[test]
    fn workspace_tables_are_read_as_toml() {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path();
        // A comment after the header made the line matcher miss the workspace.
        fs::write(
            ws.join("Cargo.toml"),
            "[workspace] # root\nmembers = [\"a\"]\n",
        )
        .unwrap();
        fs::create_dir_all(ws.join("a/src")).unwrap();
        fs::write(ws.join("a/Cargo.toml"), "[package]\nname = \"a\"\n").unwrap();
        assert_eq!(find_root(&ws.join("a/src")), ws);
        // `workspace.members = […]` as a dotted key.
        fs::write(ws.join("Cargo.toml"), "workspace.members = [\"a\"]\n").unwrap();
        assert_eq!(find_root(&ws.join("a")), ws);
        // A member that names its workspace elsewhere.
        let other = t.path().join("other");
        fs::create_dir_all(other.join("m")).unwrap();
        fs::write(
            other.join("m/Cargo.toml"),
            "[package]\nname = \"m\"\nworkspace = \"../../\"\n",
        )
        .unwrap();
        assert_eq!(find_root(&other.join("m")), other.join("m/../../"));
    }

    #[test]
    fn build_dir_and_aliases_are_read_in_every_toml_spelling() {
        for (text, build_dir) in [
            ("[build]\nbuild-dir = \"b\"\n", true),
            ("build.build-dir = \"b\"\n", true),
            ("build = { build-dir = \"b\" }\n", true),
            ("[build]\n\"build-dir\" = \"b\"\n", true),
            // The old prefix match took a comment or another table's key for the setting.
            ("[alias]\nbuild-dirs = \"build\"\n", false),
            ("# build-dir = \"b\"\n", false),
            ("[profile.dev]\nbuild-dir = 1\n", false),
        ] {
            let t = tempfile::tempdir().unwrap();
            fs::create_dir(t.path().join(".cargo")).unwrap();
            fs::write(t.path().join(".cargo/config.toml"), text).unwrap();
            assert_eq!(build_dir_configured(t.path(), None), build_dir, "{text}");
        }
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("config.toml"), "alias.biuld = \"build\"\n").unwrap();
        let found = cargo_config(t.path(), Some(t.path()));
        assert_eq!(found.aliases, ["biuld"]);
    }

    #[test]
    fn the_toolchain_is_asked_once_per_compiler_binary() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let calls = t.path().join("calls");
        let rustc = t.path().join("rustc");
        fs::write(
            &rustc,
            format!(
                "#!/bin/sh\necho x >> '{}'\nprintf 'release: 9.9.9\\nhost: test-host\\n'\n",
                calls.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&rustc, fs::Permissions::from_mode(0o755)).unwrap();
        let cache = t.path().join("cache");
        for _ in 0..3 {
            let found = toolchain(
                &rustc,
                OsStr::new("cargo"),
                &Rustup::default(),
                t.path(),
                &cache,
            );
            assert_eq!(found.as_deref(), Some("9.9.9 test-host"));
        }
        assert_eq!(fs::read_to_string(&calls).unwrap().lines().count(), 1);
        // Via `$CARGO`: its sibling `rustc` is the compiler, cached under the same key.
        let cargo = t.path().join("cargo");
        let found = toolchain(
            Path::new("rustc"),
            cargo.as_os_str(),
            &Rustup::default(),
            t.path(),
            &cache,
        );
        assert_eq!(found.as_deref(), Some("9.9.9 test-host"));
        assert_eq!(fs::read_to_string(&calls).unwrap().lines().count(), 1);
    }
}

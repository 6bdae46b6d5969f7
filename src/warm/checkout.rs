//! The checkout a job builds from, as content verification sees it: its root and identity, its
//! packages (by name, from their manifests), the files of a package and of a `rerun-if-changed`
//! path, and giving a verified file its recorded mtime back.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Entries walked at most when listing a checkout's packages or a package's files: a checkout
/// that large is not listed (its path units are then unverifiable: rebuilt, never wrong).
const MAX_ENTRIES: usize = 200_000;

/// Where a dir was built: the checkout's root and what tells two checkouts at one path apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkout {
    pub(crate) path: PathBuf,
    /// Device and inode of the root, and its birth time where the file system keeps one: inode
    /// numbers are reused after `rm -rf`, birth times are not.
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) btime_ns: Option<u64>,
}

impl Checkout {
    /// The checkout holding `workspace_root`: the nearest ancestor with a `.git` (a git
    /// checkout's files outside the workspace, `include_str!("../../x")`, are its files too),
    /// else the workspace root itself.
    pub(crate) fn of(workspace_root: &Path) -> Option<Checkout> {
        let root = workspace_root
            .ancestors()
            .find(|d| d.join(".git").symlink_metadata().is_ok())
            .unwrap_or(workspace_root);
        let st = rustix::fs::statx(
            rustix::fs::CWD,
            root,
            rustix::fs::AtFlags::empty(),
            rustix::fs::StatxFlags::INO | rustix::fs::StatxFlags::BTIME,
        )
        .ok()?;
        let btime = (st.stx_mask & rustix::fs::StatxFlags::BTIME.bits() != 0)
            .then(|| super::digest::ns(st.stx_btime.tv_sec, u64::from(st.stx_btime.tv_nsec)));
        Some(Checkout {
            path: root.to_path_buf(),
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            btime_ns: btime,
        })
    }

    /// `path` relative to this checkout's root, after resolving `.` and `..` lexically (cargo
    /// records `…/src/../../shared.txt` as rustc was given it).
    pub(crate) fn relative(&self, path: &Path) -> Option<String> {
        normalize(path)
            .strip_prefix(&self.path)
            .ok()
            .and_then(|p| p.to_str())
            .map(str::to_owned)
    }
}

pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether the walk for manifests skips this entry: VCS data, target dirs, JavaScript packages.
fn skipped(name: &str) -> bool {
    name == ".git" || name == "target" || name == "node_modules"
}

/// The checkout's packages: name → package roots relative to the checkout root. `None`: the
/// checkout is too large to list (its path units are then neither recorded nor kept).
pub(crate) fn packages(checkout: &Path) -> Option<BTreeMap<String, Vec<String>>> {
    #[derive(Deserialize)]
    struct Manifest {
        package: Option<Package>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let complete = walk(checkout, "", &mut |rel, is_dir| {
        if is_dir || !(rel == "Cargo.toml" || rel.ends_with("/Cargo.toml")) {
            return true;
        }
        // A regular file of a sane size only: never a FIFO a read would block on.
        let path = checkout.join(rel);
        let text = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && m.len() <= 1 << 20 => {
                std::fs::read_to_string(&path).unwrap_or_default()
            }
            _ => String::new(),
        };
        if let Ok(Manifest { package: Some(p) }) = toml::from_str::<Manifest>(&text) {
            let dir = rel.strip_suffix("Cargo.toml").unwrap_or_default();
            let dir = dir.strip_suffix('/').unwrap_or(dir);
            out.entry(p.name).or_default().push(dir.to_owned());
        }
        true
    });
    complete.then_some(out)
}

/// Every entry under `rel` (itself included), relative to the checkout root, with whether it is
/// a directory, as cargo's `mtime_recursive` walks a `rerun-if-changed` directory. `None`: more
/// than `MAX_ENTRIES`.
pub(crate) fn tree(checkout: &Path, rel: &str) -> Option<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let meta = std::fs::metadata(checkout.join(rel)).ok();
    match meta {
        None => return Some(vec![(rel.to_owned(), false)]),
        Some(m) if !m.is_dir() => return Some(vec![(rel.to_owned(), false)]),
        Some(_) => out.push((rel.to_owned(), true)),
    }
    let complete = walk_raw(checkout, rel, true, &mut |r, is_dir| {
        out.push((r.to_owned(), is_dir));
        true
    });
    complete.then_some(out)
}

/// A package's files (not its directories), as a superset of what cargo lists for it
/// (`PathSource::list_files`): every file under its root, through symlinked directories as cargo
/// resolves them, filtered by the manifest's `include` or `exclude` exactly as cargo filters them
/// (gitignore patterns), but for VCS data, target dirs and nested packages. Cargo also leaves out
/// what git ignores; listing it too only makes a differing untracked file count. `None`: more
/// than `MAX_ENTRIES`, or a manifest that does not parse.
pub(crate) fn package_files(checkout: &Path, pkg: &str) -> Option<Vec<String>> {
    let root = checkout.join(pkg);
    let filter = PackageFilter::of(&root)?;
    let mut out = Vec::new();
    let complete = walk_raw(&root, "", true, &mut |rel, is_dir| {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if !is_dir {
            if filter.keeps(Path::new(rel), false) {
                out.push(if pkg.is_empty() {
                    rel.to_owned()
                } else {
                    format!("{pkg}/{rel}")
                });
            }
            return false;
        }
        // Cargo leaves out the package's own `target/` (not a source dir of that name), VCS
        // data, and nested packages (their own packages).
        let own_target = rel == "target";
        name != ".git"
            && !own_target
            && !root.join(rel).join("Cargo.toml").exists()
            && filter.keeps(Path::new(rel), true)
    });
    out.sort();
    complete.then_some(out)
}

/// The manifest's `include` / `exclude`, as cargo applies them to a package's files.
struct PackageFilter {
    include: Option<ignore::gitignore::Gitignore>,
    exclude: ignore::gitignore::Gitignore,
}

impl PackageFilter {
    fn of(root: &Path) -> Option<PackageFilter> {
        #[derive(Deserialize)]
        struct Manifest {
            package: Option<Package>,
        }
        #[derive(Deserialize)]
        struct Package {
            #[serde(default)]
            include: Vec<String>,
            #[serde(default)]
            exclude: Vec<String>,
        }
        let text = std::fs::read_to_string(root.join("Cargo.toml")).ok()?;
        let package = toml::from_str::<Manifest>(&text).ok()?.package?;
        let build = |rules: &[String]| {
            let mut b = ignore::gitignore::GitignoreBuilder::new(root);
            for rule in rules {
                b.add_line(None, rule).ok()?;
            }
            b.build().ok()
        };
        Some(PackageFilter {
            include: if package.include.is_empty() {
                None
            } else {
                Some(build(&package.include)?)
            },
            exclude: build(&package.exclude)?,
        })
    }

    fn keeps(&self, rel: &Path, is_dir: bool) -> bool {
        if rel == Path::new("Cargo.toml") || rel == Path::new("Cargo.lock") {
            return true;
        }
        match &self.include {
            // Include patterns name files: every directory is walked.
            Some(_) if is_dir => true,
            Some(include) => include.matched_path_or_any_parents(rel, false).is_ignore(),
            None => !self
                .exclude
                .matched_path_or_any_parents(rel, is_dir)
                .is_ignore(),
        }
    }
}

/// Walk `rel` under `checkout` for manifests, without following symlinks (a package reached only
/// through a link is not found: its units are rebuilt, never kept unverified), skipping `skipped`;
/// `visit` returns whether to descend into a directory. `false`: stopped at `MAX_ENTRIES`.
fn walk(checkout: &Path, rel: &str, visit: &mut dyn FnMut(&str, bool) -> bool) -> bool {
    walk_raw(checkout, rel, false, &mut |r, is_dir| {
        let name = r.rsplit('/').next().unwrap_or(r);
        if skipped(name) {
            return false;
        }
        visit(r, is_dir)
    })
}

fn walk_raw(
    checkout: &Path,
    rel: &str,
    follow: bool,
    visit: &mut dyn FnMut(&str, bool) -> bool,
) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![rel.to_owned()];
    let mut count = 0;
    while let Some(dir) = stack.pop() {
        let path = checkout.join(&dir);
        // Symlinked directories are walked, as cargo walks them (`mtime_recursive` follows
        // links, and so does its listing of a package), each once: a link cycle ends here.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            count += 1;
            if count > MAX_ENTRIES {
                return false;
            }
            let r = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let meta = if follow {
                std::fs::metadata(checkout.join(&r))
            } else {
                std::fs::symlink_metadata(checkout.join(&r))
            };
            let is_dir = meta.is_ok_and(|m| m.is_dir());
            if visit(&r, is_dir) && is_dir {
                stack.push(r);
            }
        }
    }
    true
}

/// Give `rel` the mtime it had when its unit was recorded (the atime is left as it is).
pub(crate) fn set_mtime(checkout: &Path, rel: &str, mtime_ns: u64) -> bool {
    let t = rustix::fs::Timespec {
        tv_sec: (mtime_ns / 1_000_000_000) as i64,
        tv_nsec: (mtime_ns % 1_000_000_000) as _,
    };
    let omit = rustix::fs::Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_OMIT,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        checkout.join(rel),
        &rustix::fs::Timestamps {
            last_access: omit,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_package_s_files_as_cargo_lists_them() {
        let dir = tempfile::tempdir().unwrap();
        let co = dir.path();
        write(
            co,
            "p/Cargo.toml",
            "[package]\nname = \"p\"\nexclude = [\"/pkg/brew\", \"*.log\"]\n",
        );
        write(co, "p/src/lib.rs", "");
        write(co, "p/pkg/brew/f.rb", "");
        write(co, "p/pkg/other.txt", "");
        write(co, "p/x.log", "");
        write(co, "p/target/debug/junk", "");
        write(co, "p/src/target/mod.rs", "");
        write(co, "p/nested/Cargo.toml", "[package]\nname = \"n\"\n");
        write(co, "p/nested/src/lib.rs", "");
        // Through a symlinked directory, as cargo resolves it; a link cycle is walked once.
        std::os::unix::fs::symlink("pkg/brew", co.join("p/Formula")).unwrap();
        std::os::unix::fs::symlink(".", co.join("p/src/again")).unwrap();
        assert_eq!(
            package_files(co, "p").unwrap(),
            [
                "p/Cargo.toml",
                "p/Formula/f.rb",
                "p/pkg/other.txt",
                "p/src/lib.rs",
                "p/src/target/mod.rs",
            ]
        );
        // `include` names files; Cargo.toml always counts.
        write(
            co,
            "q/Cargo.toml",
            "[package]\nname = \"q\"\ninclude = [\"src/**\"]\n",
        );
        write(co, "q/src/main.rs", "");
        write(co, "q/README.md", "");
        assert_eq!(
            package_files(co, "q").unwrap(),
            ["q/Cargo.toml", "q/src/main.rs"]
        );
        // A manifest that does not parse: no listing (its units are not recorded).
        write(co, "r/Cargo.toml", "[package");
        assert_eq!(package_files(co, "r"), None);
    }
}

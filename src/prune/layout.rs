//! Cargo's layout of a target dir as pruning sees it: profile dirs, units named `<pkg>-<hash>`,
//! the outputs carrying a unit's hash, and the one place pruning deletes through.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType};

use crate::fs::{self, Usage};

/// Where cargo puts per-unit outputs named `…-<hash>…` inside a profile dir.
const OUTPUT_DIRS: &[&str] = &["deps", "build", "examples"];

/// The 16-hex-digit hash of a unit dir named `<pkg>-<hash>`.
pub(super) fn unit_hash(name: &str) -> Option<&str> {
    let (_, hash) = name.rsplit_once('-')?;
    is_hash(hash).then_some(hash)
}

fn is_hash(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The hash an output is named by: `-<hash>` followed by the end of the name or a `.`
/// (`libdep-<hash>.rlib`, `app-<hash>`, `dep-<hash>.d`, `build/app-<hash>/`).
pub(crate) fn output_hash(name: &str) -> Option<&str> {
    name.match_indices('-').find_map(|(i, _)| {
        let rest = name.get(i + 1..)?;
        let hash = rest.get(..16)?;
        let after = &rest[16..];
        (is_hash(hash) && (after.is_empty() || after.starts_with('.'))).then_some(hash)
    })
}

/// Per hash, the `(subdir, name)` of every output of a profile dir carrying it.
pub(super) fn outputs_by_hash(
    profile: BorrowedFd<'_>,
) -> BTreeMap<String, Vec<(&'static str, OsString)>> {
    let mut out: BTreeMap<String, Vec<(&'static str, OsString)>> = BTreeMap::new();
    for sub in OUTPUT_DIRS {
        let Some(dir) = open_sub(profile, sub) else {
            continue;
        };
        for (name, _) in list(dir.as_fd()) {
            if let Some(hash) = name.to_str().and_then(output_hash) {
                out.entry(hash.to_owned()).or_default().push((sub, name));
            }
        }
    }
    out
}

/// Profile dirs (those holding a `.fingerprint/`) under `target/`, to a depth of three:
/// `debug`, `release`, `<triple>/debug`, `llvm-cov-target/debug`,
/// `llvm-cov-target/<triple>/debug`.
pub(crate) fn profile_dirs(target: BorrowedFd<'_>) -> Vec<(String, OwnedFd)> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, OwnedFd, usize)> = Vec::new();
    for (name, ty) in list(target) {
        // `doc/` holds no units (its fingerprints are in the profile dirs) and many dirs.
        if let (Some(n), FileType::Directory) = (name.to_str(), ty)
            && n != "doc"
            && let Some(fd) = open_sub(target, n)
        {
            stack.push((n.to_owned(), fd, 1));
        }
    }
    while let Some((rel, fd, depth)) = stack.pop() {
        let entries = list(fd.as_fd());
        if entries
            .iter()
            .any(|(n, t)| n == ".fingerprint" && *t == FileType::Directory)
        {
            out.push((rel, fd));
            continue;
        }
        if depth >= 3 {
            continue;
        }
        for (name, ty) in entries {
            if let (Some(n), FileType::Directory) = (name.to_str(), ty)
                && !n.starts_with('.')
                && n != "doc"
                && let Some(sub) = open_sub(fd.as_fd(), n)
            {
                stack.push((format!("{rel}/{n}"), sub, depth + 1));
            }
        }
    }
    out
}

pub(super) fn open_sub(dir: BorrowedFd<'_>, name: impl AsRef<OsStr>) -> Option<OwnedFd> {
    fs::open_dir_nofollow(dir, name.as_ref()).ok()
}

pub(super) fn list(dir: BorrowedFd<'_>) -> Vec<(OsString, FileType)> {
    fs::list(dir).unwrap_or_default()
}

/// Remove one entry (a tree or a file) and return the bytes it held. The one place pruning
/// deletes through, so a change of `fs::remove_tree`'s signature is adapted here.
pub(super) fn remove(parent: BorrowedFd<'_>, name: &OsStr, dev: fs::MountId) -> io::Result<u64> {
    let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        fs::remove_tree(parent, name, dev).result()
    } else {
        rustix::fs::unlinkat(parent, name, AtFlags::empty())?;
        // A file with another link (cargo hard-links outputs: `deps/app-<hash>` and `app`)
        // frees nothing until its last link goes.
        Ok(if st.st_nlink <= 1 {
            st.st_blocks as u64 * 512
        } else {
            0
        })
    }
}

/// Bytes of one unit: its fingerprint dir and every output carrying its hash (`outputs`, from
/// [`outputs_by_hash`]), each inode once across `usage`'s whole pass.
pub(super) fn unit_bytes(
    profile: BorrowedFd<'_>,
    unit: &str,
    outputs: &BTreeMap<String, Vec<(&'static str, OsString)>>,
    usage: &mut Usage,
) -> u64 {
    let mut bytes = 0;
    if let Some(fp) = open_sub(profile, ".fingerprint") {
        bytes += entry_bytes(fp.as_fd(), OsStr::new(unit), usage);
    }
    let hash = unit_hash(unit).unwrap_or_default();
    for (sub, name) in outputs.get(hash).into_iter().flatten() {
        if let Some(dir) = open_sub(profile, sub) {
            bytes += entry_bytes(dir.as_fd(), name, usage);
        }
    }
    bytes
}

/// Bytes of one entry (a file, or a tree such as a build script's `build/<pkg>-<hash>/`).
pub(super) fn entry_bytes(parent: BorrowedFd<'_>, name: &OsStr, usage: &mut Usage) -> u64 {
    let Ok(st) = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return 0;
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        fs::tree_size(parent, name, None).unwrap_or(0)
    } else {
        usage.add(&st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_of_units_and_outputs() {
        assert_eq!(unit_hash("app-97532eca4de05c2f"), Some("97532eca4de05c2f"));
        assert_eq!(
            unit_hash("my-crate-97532eca4de05c2f"),
            Some("97532eca4de05c2f")
        );
        assert_eq!(unit_hash("app"), None);
        assert_eq!(unit_hash("app-97532eca4de05c2"), None);
        assert_eq!(
            output_hash("libdep-9dec66c2b9db0a41.rlib"),
            Some("9dec66c2b9db0a41")
        );
        assert_eq!(output_hash("it-007597780e491eda"), Some("007597780e491eda"));
        assert_eq!(
            output_hash("app-8001e15a8f46b33b.app.abc-cgu.0.rcgu.o"),
            Some("8001e15a8f46b33b")
        );
        assert_eq!(output_hash("app-8001e15a8f46b33bx"), None);
        assert_eq!(output_hash("app"), None);
    }
}

//! A manifest: what one push of a finished dir stored, at
//! `manifests/<workspace hash>/<toolchain>/<scope>/<unix ms>-<job>.json`: keyed by workspace and
//! toolchain first, so a pull lists only its own key's prefix, however large the store. Every file
//! of the dir's `target/` and `build/` with its content's digest and size (the content stored
//! zstd-compressed at `objects/<sha256>.zst`), mode, mtime to the nanosecond (an object store keeps
//! none, and cargo orders units by mtime) and hard-link group; the dir's `inputs.json` as an
//! object; the writers' scopes, the workspace key, the toolchain and `CARGO_HOME` (registry units'
//! fingerprints hash their path under it). Read back as untrusted input: every path and digest is
//! checked before anything is laid out.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scope::Scope;

/// 2: objects stored zstd-compressed, as `objects/<sha256>.zst` (1 stored them as they were).
/// A build that reads another version refuses the manifest, and the two never share an object.
pub(crate) const VERSION: u32 = 2;
/// A manifest of a few hundred thousand files is tens of MiB; a larger one is not ours.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 256 << 20;
pub(crate) const MANIFESTS: &str = "manifests/";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) version: u32,
    pub(crate) job_id: String,
    pub(crate) workspace: String,
    pub(crate) toolchain: Option<String>,
    /// `CARGO_HOME` of the host that built the dir.
    pub(crate) cargo_home: Option<String>,
    /// Every writer of the dir, as its lease recorded them: the scope rule judges them all.
    pub(crate) scopes: Vec<Scope>,
    pub(crate) created_ms: u64,
    /// The dir's `inputs.json` (content verification's record), if it had one.
    pub(crate) inputs: Option<Object>,
    pub(crate) files: Vec<File>,
}

/// An object: its content's digest and size (what it must decompress to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Object {
    pub(crate) sha256: String,
    pub(crate) size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct File {
    /// Relative to the job dir, under `target/` or `build/`.
    pub(crate) path: String,
    #[serde(flatten)]
    pub(crate) object: Object,
    /// Permission bits (`0o777` at most: a pull never makes a setuid file).
    pub(crate) mode: u32,
    pub(crate) mtime_s: i64,
    pub(crate) mtime_ns: u32,
    /// Files of one group are hard links to one inode in the dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) link: Option<u32>,
}

/// Where the object whose content has this digest lives, zstd-compressed.
pub(crate) fn object_path(sha256: &str) -> String {
    format!("objects/{sha256}.zst")
}

/// The directory of manifests for one workspace, toolchain and scope.
pub(crate) fn dir(scope: &Scope, workspace: &str, toolchain: Option<&str>) -> String {
    format!(
        "{}{}/",
        key_dir(workspace, toolchain),
        segment(&scope.to_string())
    )
}

/// `manifests/<workspace hash>/<toolchain>/`: what a pull lists (every scope under it).
pub(crate) fn key_dir(workspace: &str, toolchain: Option<&str>) -> String {
    format!(
        "{}{}/",
        workspace_dir(workspace),
        segment(toolchain.unwrap_or("unknown"))
    )
}

/// `manifests/<workspace hash>/`: every toolchain's manifests of one workspace.
pub(crate) fn workspace_dir(workspace: &str) -> String {
    let hash = Sha256::digest(workspace.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{MANIFESTS}{hex}/")
}

/// A manifest's name: newest sorts last by its unix milliseconds.
pub(crate) fn name(created_ms: u64, job_id: &str) -> String {
    format!("{created_ms:013}-{}.json", segment(job_id))
}

/// The unix milliseconds a manifest's name starts with, if it is one.
pub(crate) fn created_ms(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".json")?;
    let (ms, _) = stem.split_once('-')?;
    ms.parse().ok()
}

/// One path segment from any string: ASCII letters, digits, `.`, `_` and `-` kept, every other
/// byte as `%XX` (a ref may hold `/`, a toolchain spaces).
fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

impl Manifest {
    /// Parse a manifest read from the store; `Err` says what is wrong with it.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.version != VERSION {
            return Err(format!(
                "version {} (this build reads {VERSION})",
                m.version
            ));
        }
        for f in &m.files {
            if !safe_path(&f.path) {
                return Err(format!("a path outside target/ and build/: {:?}", f.path));
            }
            if !is_digest(&f.object.sha256) {
                return Err(format!("not a digest: {:?}", f.object.sha256));
            }
        }
        if let Some(o) = &m.inputs
            && !is_digest(&o.sha256)
        {
            return Err(format!("not a digest: {:?}", o.sha256));
        }
        Ok(m)
    }

    /// The bytes the files take.
    pub(crate) fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.object.size).sum()
    }
}

/// A relative path of plain components under `target/` or `build/`: nothing a manifest says
/// can make a pull write anywhere else.
fn safe_path(p: &str) -> bool {
    let parts: Vec<&str> = p.split('/').collect();
    matches!(parts.first(), Some(&"target" | &"build"))
        && parts.len() > 1
        && parts
            .iter()
            .all(|s| !s.is_empty() && *s != "." && *s != ".." && !s.contains('\0'))
}

pub(crate) fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_segment_each_and_sort_by_time() {
        assert_eq!(segment("pr:pull/12->main"), "pr%3Apull%2F12-%3Emain");
        assert_eq!(segment(".."), "%2E.");
        assert_eq!(name(1_700_000_000_000, "a/b"), "1700000000000-a%2Fb.json");
        assert_eq!(created_ms(&name(42, "j")), Some(42));
        assert!(name(9, "z") < name(10, "a"));
        assert!(key_dir("acme/w", Some("1.90.0 x86_64")).ends_with("/1.90.0%20x86_64/"));
    }

    #[test]
    fn paths_outside_the_dirs_are_refused() {
        for ok in ["target/debug/app", "build/x"] {
            assert!(safe_path(ok), "{ok}");
        }
        for bad in [
            "target",
            "/etc/passwd",
            "target/../lease.json",
            "lease.json",
            "src/x",
            "target/./x",
            "./target/x",
        ] {
            assert!(!safe_path(bad), "{bad}");
        }
    }
}

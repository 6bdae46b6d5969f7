//! The two dep-info files of a compiled unit, as read-only inputs: cargo's own binary one
//! (`.fingerprint/<unit>/dep-<kind>-<target>`, the files and tracked env vars cargo checks) and
//! rustc's makefile one (`deps/<crate>-<hash>.d`, whose `# env-dep:` lines also list the
//! variables cargo sets itself and does not track: `CARGO_MANIFEST_DIR`, `OUT_DIR`,
//! `CARGO_BIN_EXE_*`, `CARGO_TARGET_TMPDIR`). Both are written by whoever built the dir: a
//! parse failure is `None` (the unit is then unverifiable), never a panic.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// How cargo recorded a path (`DepInfoPathType`): relative to the package root, or relative to
/// the build root (the target dir), where an absolute path is stored as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DepPath {
    Package(PathBuf),
    /// Relative to the build root, or absolute (a file outside the package).
    Build(PathBuf),
}

/// Cargo's dep-info: what a unit's freshness is judged on.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct CargoDepInfo {
    pub(super) files: Vec<DepPath>,
}

/// The format version cargo 1.83+ writes after its magic marker (`EncodedDepInfo`).
const VERSION: u8 = 1;

/// Parse cargo's `EncodedDepInfo` (marker `[1,0,0,0,0xff]`, version, files, env vars). Only the
/// files are kept: the env vars cargo tracks are compared by cargo itself, by value.
pub(super) fn parse_cargo(bytes: &[u8]) -> Option<CargoDepInfo> {
    let mut r = Reader(bytes);
    // The marker: "one file of an invalid path type", which stops older cargoes.
    if r.u32()? != 1 || r.u8()? != u8::MAX || r.u8()? != VERSION {
        return None;
    }
    let n = r.u32()?;
    let mut files = Vec::with_capacity(n.min(4096) as usize);
    for _ in 0..n {
        let ty = r.u8()?;
        let path = PathBuf::from(OsString::from_vec(r.bytes()?.to_vec()));
        if r.u8()? != 0 {
            r.u64()?;
            r.bytes()?;
        }
        files.push(match ty {
            0 => DepPath::Package(path),
            1 => DepPath::Build(path),
            _ => return None,
        });
    }
    // The env section is read only to see that the file is whole.
    let n = r.u32()?;
    for _ in 0..n {
        r.bytes()?;
        if r.u8()? == 1 {
            r.bytes()?;
        }
    }
    Some(CargoDepInfo { files })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&[u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// The `# env-dep:NAME=value` lines of rustc's `.d` file: every `env!`/`option_env!` the unit
/// read, with the value it was compiled with (`None`: read, unset). Values are unescaped as
/// rustc escapes them (`\n`, `\\`).
pub(super) fn rustc_env_deps(text: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# env-dep:"))
        .map(|dep| match dep.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(unescape(value))),
            None => (dep.to_owned(), None),
        })
        .collect()
}

/// The relative prerequisites of the `.d` file's first rule (`<output>: src/lib.rs …`), spaces
/// escaped as make escapes them (`\ `).
pub(super) fn rustc_relative_sources(text: &str) -> Vec<String> {
    let Some(line) = text.lines().find(|l| !l.is_empty() && !l.starts_with('#')) else {
        return Vec::new();
    };
    // The output path ends at the first unescaped `: `.
    let Some((_, deps)) = line.split_once(": ") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = deps.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            ' ' => out.push(std::mem::take(&mut word)),
            c => word.push(c),
        }
    }
    out.push(word);
    out.retain(|w| !w.is_empty() && !w.starts_with('/'));
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cargo's serialization (`EncodedDepInfo::serialize`), for the round trip.
    fn encode(files: &[(u8, &str)], env: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut v = vec![1, 0, 0, 0, 0xff, VERSION];
        let bytes = |v: &mut Vec<u8>, b: &[u8]| {
            v.extend((b.len() as u32).to_le_bytes());
            v.extend(b);
        };
        v.extend((files.len() as u32).to_le_bytes());
        for (ty, p) in files {
            v.push(*ty);
            bytes(&mut v, p.as_bytes());
            v.push(0);
        }
        v.extend((env.len() as u32).to_le_bytes());
        for (k, val) in env {
            bytes(&mut v, k.as_bytes());
            match val {
                Some(val) => {
                    v.push(1);
                    bytes(&mut v, val.as_bytes());
                }
                None => v.push(0),
            }
        }
        v
    }

    #[test]
    fn cargo_dep_info_round_trip_and_truncation() {
        let bytes = encode(
            &[
                (1, "/w/lib/src/../../shared.txt"),
                (1, "debug/build/lib-c0942fc594cda41e/out/gen.rs"),
                (0, "src/lib.rs"),
            ],
            &[("FOO", Some("1")), ("BAR", None)],
        );
        let info = parse_cargo(&bytes).unwrap();
        assert_eq!(
            info.files,
            vec![
                DepPath::Build("/w/lib/src/../../shared.txt".into()),
                DepPath::Build("debug/build/lib-c0942fc594cda41e/out/gen.rs".into()),
                DepPath::Package("src/lib.rs".into()),
            ]
        );
        for cut in 0..bytes.len() {
            assert_eq!(parse_cargo(&bytes[..cut]), None, "cut at {cut}");
        }
        // The pre-1.83 format (no marker) and a bad path type are not ours to guess at.
        assert_eq!(parse_cargo(&[1, 0, 0, 0, 0, 1, 0, 0, 0, b'x']), None);
        let mut bad = encode(&[(7, "x")], &[]);
        assert_eq!(parse_cargo(&bad), None);
        bad.clear();
        assert_eq!(parse_cargo(&bad), None);
    }

    #[test]
    fn rustc_sources_are_the_first_rule_s_relative_paths() {
        let text = "/r/a/target/debug/deps/twin-1.d: twin2/src/lib.rs /r/a/target/debug/build/x/out/g.rs my\\ dir/a.rs\n\n/r/x.rlib: twin2/src/lib.rs\n";
        assert_eq!(
            rustc_relative_sources(text),
            ["twin2/src/lib.rs", "my dir/a.rs"]
        );
        assert!(rustc_relative_sources("").is_empty());
    }

    #[test]
    fn rustc_env_deps_are_unescaped() {
        let text = "deps/t-1.d: tests/t.rs\n\ntests/t.rs:\n\n# env-dep:CARGO_BIN_EXE_app=/r/a/target/debug/app\n# env-dep:X=a\\nb\n# env-dep:UNSET\n";
        assert_eq!(
            rustc_env_deps(text),
            vec![
                (
                    "CARGO_BIN_EXE_app".to_owned(),
                    Some("/r/a/target/debug/app".to_owned())
                ),
                ("X".to_owned(), Some("a\nb".to_owned())),
                ("UNSET".to_owned(), None),
            ]
        );
    }
}

//! Snapshots of what users see (snapbox, as cargo's own test suite): a run's exit, stdout and
//! stderr as one transcript, with what varies between runs and machines redacted to placeholders
//! (`[ROOT]`, `[TMP]`, `[SIZE]`, `[BYTES]`, `[PCT]`, `[AGE]`, `[ELAPSED]`, `[PID]`, `[HOST]`,
//! `[TIMESTAMP]`, `[UUID]`, `[HASH]`), so that a wording change shows up as a reviewable diff.
//!
//! Bless after an intended change with `SNAPSHOTS=overwrite cargo test --test testsuite snapshots::`: snapbox
//! rewrites the inline `str![[…]]` literals and the files under `tests/snapshots/`.

use std::path::Path;
use std::process::Output;

use regex::Regex;
use snapbox::Redactions;

use super::Env;

/// The placeholders for `env`'s paths and for everything a run or a machine varies in.
pub fn redactions(env: &Env) -> Redactions {
    let mut r = Redactions::new();
    // Paths: the longer one wins where one is inside the other (snapbox tries longer first).
    r.insert("[ROOT]", env.root.clone()).unwrap();
    r.insert("[TMP]", env.path().to_owned()).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = regex::escape(host.trim());
    let patterns: &[(&'static str, &str)] = &[
        // cargo's own: `Finished … in 0.45s`.
        ("[ELAPSED]", r"in (?<redacted>\d+\.\d+)s\b"),
        // Human sizes, whichever unit: `9.4 MiB`, `0 B`.
        ("[SIZE]", r"\b\d+(\.\d+)? (B|KiB|MiB|GiB|TiB|PiB)\b"),
        // Raw byte counts: `(76327731200 bytes)`, `(1 < 2 bytes)`, JSON fields that count bytes,
        // the action's `reclaimed-bytes=` output.
        ("[BYTES]", r"\((?<redacted>\d+) bytes\)"),
        ("[BYTES]", r"\((?<redacted>\d+) < \d+ bytes\)"),
        ("[BYTES]", r"< (?<redacted>\d+) bytes\)"),
        (
            "[BYTES]",
            r#""([a-z_]*(bytes|free|freed)[a-z_]*|size|budget|working_set)": (?<redacted>\d+)"#,
        ),
        ("[BYTES]", r"reclaimed-bytes=(?<redacted>\d+)"),
        // Shares of the disk: `72% used`, `| 72% |`.
        ("[PCT]", r"\b\d+(\.\d+)?%"),
        // Short durations (`0s ago`, `expires in 59m`), as a whole word only.
        ("[AGE]", r"(?:^|[ (\[])(?<redacted>\d+[smhd])\b"),
        // What warmth saved: wall times and their estimates (`0.5s per compiled unit`, `saved
        // ~1m`, `"command_secs": 0.94`); longer than the patterns above, so applied first.
        (
            "[ELAPSED]",
            r"(?<redacted>\d+\.\d+)s per (?:compiled )?unit\b",
        ),
        (
            "[ELAPSED]",
            r"saved ~(?<redacted>\d+\.\d+s|\d+[smhd])(?:\s|$)",
        ),
        (
            "[ELAPSED]",
            r#""(?:command_secs|secs|cold_secs_per_unit|saved_secs_estimate)": (?<redacted>\d+\.\d+(?:e-?\d+)?)"#,
        ),
        // Whole seconds in JSON (`"expired_for_secs": 3600` can be 3601 on a slow run).
        ("[AGE]", r#""[a-z_]*_secs": (?<redacted>\d+)"#),
        ("[PID]", r"\bpid (?<redacted>\d+)"),
        ("[PID]", r#""pid": (?<redacted>\d+)"#),
        ("[TIMESTAMP]", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"),
        (
            "[UUID]",
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
        ),
        // A local job id ends in a hash of its workspace's path (`local-small-92bf8185`).
        (
            "[HASH]",
            r"\blocal-[A-Za-z0-9_.-]+?-(?<redacted>[0-9a-f]{8})\b",
        ),
    ];
    for (placeholder, pattern) in patterns {
        r.insert(placeholder, Regex::new(pattern).unwrap()).unwrap();
    }
    r.insert("[HOST]", Regex::new(&format!(r"\b{host}\b")).unwrap())
        .unwrap();
    r
}

/// `text` redacted for `env`.
pub fn redact(env: &Env, text: &str) -> String {
    redactions(env).redact(text)
}

/// A run as one redacted transcript: its exit, then stdout and stderr (each only if not empty).
/// cargo's own `Blocking waiting for file lock on …` lines are left out: whether they appear
/// depends on what else runs on the machine.
pub fn transcript(env: &Env, out: &Output) -> String {
    let cargo_waits = Regex::new(r"(?m)^ +Blocking waiting for file lock on (the )?(package cache|build directory|artifact directory)\n").unwrap();
    redact(env, &cargo_waits.replace_all(&raw_transcript(out), ""))
}

/// [`transcript`] unredacted, for what does not vary (help).
pub fn raw_transcript(out: &Output) -> String {
    let exit = match out.status.code() {
        Some(code) => format!("exit {code}"),
        None => format!("{}", out.status),
    };
    let mut text = format!("[{exit}]\n");
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if !bytes.is_empty() {
            text.push_str(&format!("--- {name}\n{}", String::from_utf8_lossy(bytes)));
        }
    }
    text
}

/// A table's columns padded to a run's widths (pids, host names and paths vary in length) as
/// two spaces: the cells and their order are pinned, not the padding.
pub fn columns(text: &str) -> String {
    let gaps = Regex::new(r" {2,}").unwrap();
    text.lines()
        .map(|l| gaps.replace_all(l.trim_end(), "  ").into_owned() + "\n")
        .collect()
}

/// The file `tests/snapshots/<rel>` as an expected snapshot (created on the first bless).
pub fn snapshot_file(rel: &str) -> snapbox::Data {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(rel);
    snapbox::Data::read_from(&path, None)
}

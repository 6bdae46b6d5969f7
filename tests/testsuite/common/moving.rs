//! Edits of `fixtures/moving` that make a job's history: its path dependency's version (and so
//! every dependent's unit hash) and its app's source. Shared by `tests/prune.rs` and
//! `bench/prune.rs` (by path).
#![allow(dead_code)] // Not every includer edits both.

use std::path::Path;

/// Set `dep`'s version to `v` (its hash, and every dependent's, moves with it).
pub fn set_dep_version(ws: &Path, v: &str) {
    let toml = ws.join("dep/Cargo.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("version = ") {
                format!("version = \"{v}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    write_if_changed(&toml, &text);
}

/// Edit the workspace crate's source (its `EDIT` constant), as a commit would.
pub fn set_edit(ws: &Path, n: u32) {
    let main = ws.join("app/src/main.rs");
    let text = std::fs::read_to_string(&main).unwrap();
    let start = text.find("const EDIT: u32 = ").unwrap();
    let end = start + text[start..].find(';').unwrap();
    let text = format!("{}const EDIT: u32 = {n}{}", &text[..start], &text[end..]);
    write_if_changed(&main, &text);
}

/// Rename `dep`'s package to `name`, the app still calling it `dep` (`package = "…"` in its
/// `Cargo.toml`), as a history that swaps `jemalloc-sys` for `tikv-jemalloc-sys` does: another
/// package name is another identity, so the old units are not replaced by the new ones.
pub fn set_dep_name(ws: &Path, name: &str) {
    let toml = ws.join("dep/Cargo.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("name = ") {
                format!("name = \"{name}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    write_if_changed(&toml, &text);
    let app = ws.join("app/Cargo.toml");
    let text = std::fs::read_to_string(&app).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("dep = ") {
                format!("dep = {{ path = \"../dep\", package = \"{name}\" }}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    write_if_changed(&app, &text);
}

/// Write `text` unless the file holds it already: as a checkout of the same commit, an unchanged
/// file keeps its mtime (cargo would rebuild a crate whose source looks newer).
fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}

//! The code's shape, checked (issue 10): every `use crate::…` arrow between the top-level modules
//! points one way (no import cycles), and no function runs past `MAX_FN_LINES` lines unless a
//! `// Long: <reason>` comment right above it says why. Reads `src/` as text: a module is a file
//! (`src/guard.rs`) or a directory (`src/lease/`, whose files all count as `lease`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 80;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, with the top-level module it belongs to.
fn files() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src()).unwrap();
                let first = rel
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy();
                let module = first.trim_end_matches(".rs").to_owned();
                out.push((module, path));
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without comments and string/char literals (their contents replaced by
/// spaces, line breaks kept), so that braces and `crate::` inside them do not count.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if text[i..].starts_with("//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if text[i..].starts_with("/*") {
            while i < b.len() && !text[i..].starts_with("*/") {
                out.push(if b[i] == b'\n' { '\n' } else { ' ' });
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (text[i..].starts_with("r\"") || text[i..].starts_with("r#")) {
            // Raw string: r"…", r#"…"#, …
            let hashes = text[i + 1..].bytes().take_while(|&h| h == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let end = format!("\"{}", "#".repeat(hashes));
            i += 2 + hashes;
            while i < b.len() && !text[i..].starts_with(&end) {
                out.push(if b[i] == b'\n' { '\n' } else { ' ' });
                i += 1;
            }
            i += end.len();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{7b}') or a lifetime ('a): only the former is skipped.
            let rest = &text[i + 1..];
            let len = if rest.starts_with('\\') {
                rest.find('\'').map(|n| n + 1)
            } else {
                rest.chars()
                    .next()
                    .filter(|_| rest.chars().nth(1) == Some('\''))
                    .map(|ch| ch.len_utf8() + 1)
            };
            match len {
                Some(n) => {
                    i += 1 + n;
                    out.push_str("' '");
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Module → the other top-level modules it names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in files() {
        let code = code_only(&fs::read_to_string(&path).unwrap());
        let deps = graph.entry(module.clone()).or_default();
        let mut add = |name: &str| {
            if !name.is_empty() && name != module {
                deps.insert(name.to_owned());
            }
        };
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c, d::{e}}`: the first segment of each top-level entry.
                let mut depth = 0;
                let mut start = true;
                for (n, ch) in group.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && (c.is_alphanumeric() || c == '_') => {
                            let name: String = group[n..]
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            add(&name);
                            start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                add(&name);
            }
        }
    }
    graph
}

/// A cycle in the graph, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn module_imports_have_no_cycles() {
    let graph = imports();
    for (module, deps) in &graph {
        let deps: Vec<_> = deps.iter().map(String::as_str).collect();
        println!("{module} -> {}", deps.join(", "));
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(m, d)| (m.to_owned(), BTreeSet::from([d.to_owned()])))
        .collect();
    assert_eq!(
        find_cycle(&graph).unwrap(),
        ["a", "b", "c", "a"].map(String::from)
    );
}

/// Functions longer than `MAX_FN_LINES` without a `// Long:` comment above them.
fn long_functions(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    let code = code_only(&text);
    let raw: Vec<&str> = text.lines().collect();
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "const fn ",
        ]
        .iter()
        .any(|p| t.starts_with(p))
            || (t.starts_with("pub(crate) const fn ") || t.starts_with("unsafe fn "));
        if !is_fn {
            continue;
        }
        // From the first `{` after the signature to the brace that closes it.
        let mut depth = 0i32;
        let mut opened = false;
        let mut end = None;
        'body: for (m, l) in lines.iter().enumerate().skip(n) {
            for ch in l.chars() {
                match ch {
                    ';' if !opened && depth == 0 => break 'body, // a declaration
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => {
                        depth -= 1;
                        if opened && depth == 0 {
                            end = Some(m);
                            break 'body;
                        }
                    }
                    _ => {}
                }
            }
        }
        let Some(end) = end else { continue };
        let len = end - n + 1;
        let justified = raw[..n]
            .iter()
            .rev()
            .take_while(|l| {
                let l = l.trim_start();
                l.starts_with("//") || l.starts_with("#[")
            })
            .any(|l| l.trim_start().starts_with("// Long:"));
        if len > MAX_FN_LINES && !justified {
            let name: String = t
                .split("fn ")
                .nth(1)
                .unwrap_or("")
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(format!("{}:{} {name}: {len} lines", path.display(), n + 1));
        }
    }
    found
}

#[test]
fn no_function_is_long_without_a_reason() {
    let long: Vec<String> = files()
        .iter()
        .flat_map(|(_, path)| long_functions(path))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines without a `// Long: <reason>` comment:\n{}",
        long.join("\n")
    );
}

#[test]
fn comments_and_strings_do_not_count() {
    let code =
        code_only("let a = \"{ crate::x\"; // crate::y {\nlet c = '{'; /* } */ fn f<'a>() {}");
    assert!(!code.contains("crate::"), "{code}");
    assert_eq!(
        code.matches('{').count(),
        code.matches('}').count(),
        "{code}"
    );
    assert!(code.contains("fn f<'a>() {}"), "{code}");
}

//! The code's shape, checked: every arrow between the top-level modules points
//! one way (no import cycles) and down the layers of `docs/architecture.md`, whose module table
//! lists exactly the imports the code has, no two files of a directory module (`lease/`, `prune/`,
//! …) import each other, round about or directly, and no function runs past `MAX_FN_LINES` lines
//! unless a `// Long: <reason>` comment right above it says why.
//!
//! Reads `src/` as text. A module is a file (`src/guard.rs`) or a directory (`src/lease/`, whose
//! files all count as `lease`). An import is any path that names a module of the crate, however it
//! is written: `use crate::a::{b, c::d}`, `crate::a::f()` inline in code, `super::…` (inside a
//! module's own subtree it stays internal; from a top-level file it names the crate root), and a
//! bare `a::…` where `a` is declared by `mod a;` in the same file (in `main.rs`, the crate root,
//! that is every top-level module; in `lease/mod.rs`, its files). Comments and strings never count.
//! Not seen: names brought in by a glob (`use super::*` in a test module) and macro-generated paths.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 80;

/// The doc whose layers and module tables the checks hold to the code.
const ARCHITECTURE: &str = "docs/architecture.md";
/// The header of the table's column that lists each module's imports.
const IMPORTS_COLUMN: &str = "imports (crate modules)";

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A source file: where it sits in the module tree, and its code without comments and strings.
struct Source {
    path: PathBuf,
    /// `src/main.rs` is the crate root `[]`, `src/guard.rs` is `[guard]`, `src/lease/mod.rs`
    /// `[lease]`, `src/lease/acquire.rs` `[lease, acquire]`.
    module: Vec<String>,
    code: String,
}

impl Source {
    fn new(path: PathBuf, module: Vec<String>, text: &str) -> Source {
        Source {
            path,
            module,
            code: code_only(text),
        }
    }

    /// The top-level module the file belongs to; `main` for the crate root.
    fn top(&self) -> &str {
        self.module.first().map_or("main", String::as_str)
    }
}

/// The module path of a file, from its path under `src/`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = segs.pop().unwrap();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && !(segs.is_empty() && stem == "main") {
        segs.push(stem.to_owned());
    }
    segs
}

/// Every `.rs` file under `src/`.
fn sources() -> Vec<Source> {
    let mut out = Vec::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let module = module_path(path.strip_prefix(src()).unwrap());
                let text = fs::read_to_string(&path).unwrap();
                out.push(Source::new(path, module, &text));
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
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

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifier that starts at `i` (empty if none).
fn ident_at(s: &str, i: usize) -> &str {
    let end = s[i..]
        .find(|c: char| !is_ident(c))
        .map_or(s.len(), |n| i + n);
    &s[i..end]
}

fn skip_ws(s: &str, i: usize) -> usize {
    s[i..]
        .find(|c: char| !c.is_whitespace())
        .map_or(s.len(), |n| i + n)
}

/// A path as written: its segments (`crate`, `super`, `self` or names; a group `{a, b::c}` gives
/// one path per entry, `{self}` the path before it), and its `as` name, if any.
type Written = (Vec<String>, Option<String>);

/// The paths of the path tree that starts at `i`, and where it ends.
fn parse_tree(s: &str, mut i: usize) -> (Vec<Written>, usize) {
    let mut segs: Vec<String> = Vec::new();
    loop {
        i = skip_ws(s, i);
        if s[i..].starts_with('{') {
            let mut out = Vec::new();
            i += 1;
            loop {
                i = skip_ws(s, i);
                if i >= s.len() || s[i..].starts_with('}') {
                    return (out, (i + 1).min(s.len()));
                }
                if s[i..].starts_with(',') {
                    i += 1;
                    continue;
                }
                let (inner, end) = parse_tree(s, i);
                if end == i {
                    return (out, i);
                }
                for (tail, alias) in inner {
                    let mut full = segs.clone();
                    if tail != ["self"] {
                        full.extend(tail);
                    }
                    out.push((full, alias));
                }
                i = end;
            }
        }
        if s[i..].starts_with('*') {
            segs.push("*".into());
            i += 1;
            break;
        }
        let start = if s[i..].starts_with("$crate") {
            i + 1
        } else {
            i
        };
        let name = ident_at(s, start);
        if name.is_empty() {
            break;
        }
        segs.push(name.to_owned());
        i = start + name.len();
        if !s[i..].starts_with("::") || s[i + 2..].starts_with('<') {
            break;
        }
        i += 2;
    }
    if segs.is_empty() {
        return (Vec::new(), i);
    }
    let mut alias = None;
    let j = skip_ws(s, i);
    if s[j..].starts_with("as ") {
        let k = skip_ws(s, j + 2);
        let name = ident_at(s, k);
        if !name.is_empty() {
            alias = Some(name.to_owned());
            i = k + name.len();
        }
    }
    (vec![(segs, alias)], i)
}

/// Every path of two or more segments in `code` (`a::b`, `use a::{b, c}`), with where it
/// starts and whether it is a `use` item's.
fn written_paths(code: &str) -> Vec<(usize, bool, Written)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let c = code[i..].chars().next().unwrap();
        let after_path = code[..i]
            .chars()
            .next_back()
            .is_some_and(|p| is_ident(p) || p == ':' || p == '$');
        let start = if code[i..].starts_with("$crate") {
            i + 1
        } else {
            i
        };
        let name = ident_at(code, start);
        if after_path || name.is_empty() {
            i += c.len_utf8();
            continue;
        }
        let rest = &code[start + name.len()..];
        if !rest.starts_with("::") || rest[2..].starts_with('<') {
            i = start + name.len();
            continue;
        }
        let before = code[..i].trim_end();
        let in_use = before.ends_with("use")
            && !before[..before.len() - 3]
                .chars()
                .next_back()
                .is_some_and(is_ident);
        let (paths, end) = parse_tree(code, i);
        out.extend(paths.into_iter().map(|p| (i, in_use, p)));
        i = end.max(i + 1);
    }
    out
}

/// The modules a file declares: `mod a;` (a file of its own, named bare as `a::…` in this
/// file) and `mod a { … }` (inline, with the byte range of its body).
fn declared_mods(code: &str) -> (BTreeSet<String>, Vec<(String, Range<usize>)>) {
    let mut files = BTreeSet::new();
    let mut inline = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let n = skip_ws(code, at + 4);
        let name = ident_at(code, n);
        let after = skip_ws(code, n + name.len());
        if name.is_empty() {
            continue;
        }
        if code[after..].starts_with(';') {
            files.insert(name.to_owned());
        } else if code[after..].starts_with('{') {
            let mut depth = 0;
            for (k, ch) in code[after..].char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    inline.push((name.to_owned(), after..after + k));
                    break;
                }
            }
        }
    }
    (files, inline)
}

/// A path that names something of this crate: the absolute module path it names (`crate::a::b`
/// → `[a, b]`), its `as` name, and whether a `use` item wrote it.
struct Named {
    abs: Vec<String>,
    alias: Option<String>,
    in_use: bool,
}

/// `segs` written in module `at` (of a file that declares the file modules `children`, when
/// `at` is that file's own module), as an absolute path; `None` if it is not the crate's.
fn resolve(
    at: &[String],
    children: Option<&BTreeSet<String>>,
    segs: &[String],
) -> Option<Vec<String>> {
    let (mut base, rest) = match segs[0].as_str() {
        "crate" => (Vec::new(), &segs[1..]),
        "self" => (at.to_vec(), &segs[1..]),
        "super" => {
            let ups = segs.iter().take_while(|s| *s == "super").count();
            let base = at.get(..at.len().checked_sub(ups)?)?.to_vec();
            (base, &segs[ups..])
        }
        name if children.is_some_and(|c| c.contains(name)) => (at.to_vec(), segs),
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Every path in a file that names something of this crate, resolved.
fn crate_paths(source: &Source) -> Vec<Named> {
    let (children, inline) = declared_mods(&source.code);
    written_paths(&source.code)
        .into_iter()
        .filter_map(|(pos, in_use, (segs, alias))| {
            let mut at = source.module.clone();
            let mut enclosing: Vec<_> = inline.iter().filter(|(_, r)| r.contains(&pos)).collect();
            enclosing.sort_by_key(|(_, r)| r.start);
            at.extend(enclosing.iter().map(|(name, _)| name.clone()));
            let own = enclosing.is_empty().then_some(&children);
            let abs = resolve(&at, own, &segs)?;
            Some(Named { abs, alias, in_use })
        })
        .collect()
}

/// Top-level module → the other top-level modules it names.
fn imports(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let top: BTreeSet<&str> = sources
        .iter()
        .filter_map(|s| s.module.first())
        .map(String::as_str)
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources {
        let deps = graph.entry(source.top().to_owned()).or_default();
        for named in crate_paths(source) {
            if let Some(first) = named.abs.first()
                && top.contains(first.as_str())
                && first != source.top()
            {
                deps.insert(first.clone());
            }
        }
    }
    graph
}

/// Within the directory module `dir` (`lease`, `prune`, …): file → the other files of `dir` it
/// names, directly (`super::adopt::…`, `crate::lease::adopt::…`) or through a name that
/// `dir`'s `mod.rs` re-exports from that file (`super::Lease`, re-exported from `record`).
/// Items of `mod.rs` itself are the parent's and do not count.
fn file_imports(sources: &[Source], dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let files: BTreeSet<&str> = sources
        .iter()
        .filter(|s| s.module.len() == 2 && s.module[0] == dir)
        .map(|s| s.module[1].as_str())
        .collect();
    let mut reexported: BTreeMap<String, String> = BTreeMap::new();
    for parent in sources.iter().filter(|s| s.module == [dir]) {
        for named in crate_paths(parent) {
            if let [d, file, item] = &named.abs[..]
                && named.in_use
                && d == dir
                && files.contains(file.as_str())
            {
                reexported.insert(named.alias.unwrap_or(item.clone()), file.clone());
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources
        .iter()
        .filter(|s| s.module.len() == 2 && s.module[0] == dir)
    {
        let me = &source.module[1];
        let deps = graph.entry(me.clone()).or_default();
        for named in crate_paths(source) {
            let [d, name, ..] = &named.abs[..] else {
                continue;
            };
            let file = if files.contains(name.as_str()) {
                Some(name)
            } else {
                reexported.get(name)
            };
            if let Some(file) = file
                && d == dir
                && file != me
            {
                deps.insert(file.clone());
            }
        }
    }
    graph
}

/// The directory modules: those with files of their own under `src/<dir>/`.
fn dirs(sources: &[Source]) -> BTreeSet<String> {
    sources
        .iter()
        .filter(|s| s.module.len() == 2)
        .map(|s| s.module[0].clone())
        .collect()
}

/// A module's row in the architecture doc's module table: its name as written (`` `lease/` ``)
/// and its imports cell, parsed.
struct Row {
    written: String,
    cell: String,
    imports: BTreeSet<String>,
}

/// The cells of a markdown table's row.
fn cells(line: &str) -> Vec<String> {
    let line = line.trim().trim_start_matches('|').trim_end_matches('|');
    line.split('|').map(|c| c.trim().to_owned()).collect()
}

/// The body rows of the first table in `doc` whose header `header` accepts, as cells.
fn table(doc: &str, header: impl Fn(&[String]) -> bool) -> Option<Vec<Vec<String>>> {
    let mut lines = doc
        .lines()
        .skip_while(|l| !(l.trim_start().starts_with('|') && header(&cells(l))));
    lines.next()?;
    let rows = lines
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('|'));
    Some(rows.map(cells).collect())
}

/// A module as a table names it: `` `lease/` `` → `lease`.
fn module_name(written: &str) -> String {
    written
        .trim()
        .trim_matches('`')
        .trim_end_matches('/')
        .to_owned()
}

/// The modules of a cell: `` `a`, `b/` `` or `a, b`; `—` for none.
fn module_list(cell: &str) -> BTreeSet<String> {
    cell.split(',')
        .map(module_name)
        .filter(|m| !m.is_empty() && m != "—")
        .collect()
}

/// The doc's module table, module → row; `Err` if it has no table with the imports column.
fn documented_imports(doc: &str) -> Result<BTreeMap<String, Row>, String> {
    let rows = table(doc, |h| h.last().is_some_and(|c| c == IMPORTS_COLUMN))
        .ok_or_else(|| format!("no table whose last column is \"{IMPORTS_COLUMN}\""))?;
    let mut out = BTreeMap::new();
    for cells in rows {
        let (Some(written), Some(cell)) = (cells.first(), cells.last()) else {
            continue;
        };
        let row = Row {
            written: written.clone(),
            cell: cell.clone(),
            imports: module_list(cell),
        };
        if out.insert(module_name(written), row).is_some() {
            return Err(format!("module {written} has two rows"));
        }
    }
    Ok(out)
}

/// The doc's layers table (`| 6. app | `main`, `run` | … |`), module → layer number.
fn documented_layers(doc: &str) -> Result<BTreeMap<String, u32>, String> {
    let rows = table(doc, |h| h.first().is_some_and(|c| c == "layer"))
        .ok_or("no table whose first column is \"layer\"")?;
    let mut out = BTreeMap::new();
    for cells in rows {
        let [layer, modules, ..] = &cells[..] else {
            continue;
        };
        let digits: String = layer.chars().take_while(char::is_ascii_digit).collect();
        let n = digits
            .parse()
            .map_err(|_| format!("layer `{layer}` does not start with its number"))?;
        for module in module_list(modules) {
            if out.insert(module.clone(), n).is_some() {
                return Err(format!("module `{module}` is in two layers"));
            }
        }
    }
    Ok(out)
}

/// Each import that points up the doc's layers, and each module that is in no layer or in no
/// code; empty when the layers table is true.
fn layer_breaks(
    layers: &BTreeMap<String, u32>,
    code: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (module, deps) in code {
        let Some(&at) = layers.get(module) else {
            out.push(format!("module `{module}` is in no layer: add it to a row"));
            continue;
        };
        for dep in deps {
            if let Some(&to) = layers.get(dep)
                && to > at
            {
                out.push(format!(
                    "`{module}` (layer {at}) imports `{dep}` (layer {to}): arrows point down"
                ));
            }
        }
    }
    for module in layers.keys().filter(|m| !code.contains_key(*m)) {
        out.push(format!(
            "`{module}` is in a layer but there is no such module in src/"
        ));
    }
    out
}

/// A set of modules as the imports cell writes it.
fn cell(modules: &BTreeSet<String>) -> String {
    if modules.is_empty() {
        "—".to_owned()
    } else {
        modules
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Each change the doc's table needs to say what the code does (empty when they agree), naming
/// the row and the cell, as the one who fixes it needs to read it.
fn doc_changes(
    doc: &BTreeMap<String, Row>,
    code: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (module, imports) in code {
        let Some(row) = doc.get(module) else {
            out.push(format!(
                "module `{module}` has no row: add one whose \"{IMPORTS_COLUMN}\" cell is `{}`",
                cell(imports)
            ));
            continue;
        };
        if &row.imports != imports {
            let mut what = Vec::new();
            let added: BTreeSet<_> = imports.difference(&row.imports).cloned().collect();
            if !added.is_empty() {
                what.push(format!("new: {}", cell(&added)));
            }
            let dropped: BTreeSet<_> = row.imports.difference(imports).cloned().collect();
            if !dropped.is_empty() {
                what.push(format!("gone: {}", cell(&dropped)));
            }
            out.push(format!(
                "row {}, column \"{IMPORTS_COLUMN}\": change `{}` to `{}` ({})",
                row.written,
                row.cell,
                cell(imports),
                what.join("; ")
            ));
        }
    }
    for (module, row) in doc {
        if !code.contains_key(module) {
            out.push(format!(
                "row {}: there is no module `{module}` in src/; remove the row",
                row.written
            ));
        }
    }
    out
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
    let graph = imports(&sources());
    for (module, deps) in &graph {
        println!("{module} -> {}", cell(deps));
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

/// docs/architecture.md's text.
fn architecture() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(ARCHITECTURE)).unwrap()
}

#[test]
fn module_imports_match_the_architecture_doc() {
    let doc = documented_imports(&architecture()).unwrap_or_else(|e| panic!("{ARCHITECTURE}: {e}"));
    let changes = doc_changes(&doc, &imports(&sources()));
    assert!(
        changes.is_empty(),
        "{ARCHITECTURE}'s module table disagrees with the imports in src/:\n{}",
        changes.join("\n")
    );
}

#[test]
fn module_imports_point_down_the_layers() {
    let layers =
        documented_layers(&architecture()).unwrap_or_else(|e| panic!("{ARCHITECTURE}: {e}"));
    let breaks = layer_breaks(&layers, &imports(&sources()));
    assert!(
        breaks.is_empty(),
        "{ARCHITECTURE}'s layers table disagrees with the imports in src/:\n{}",
        breaks.join("\n")
    );
}

#[test]
fn files_of_a_directory_module_import_each_other_one_way() {
    let sources = sources();
    for dir in dirs(&sources) {
        let graph = file_imports(&sources, &dir);
        for (module, deps) in &graph {
            println!("{dir}/{module} -> {}", cell(deps));
        }
        if let Some(cycle) = find_cycle(&graph) {
            panic!("file import cycle in src/{dir}/: {}", cycle.join(" -> "));
        }
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

/// Whether a line starts a function: any visibility (`pub`, `pub(crate)`, `pub(super)`,
/// `pub(in …)`), then any of `const`, `async`, `unsafe`, `extern "…"`, then `fn `.
fn fn_signature(line: &str) -> bool {
    let mut t = line;
    if let Some(rest) = t.strip_prefix("pub") {
        t = if let Some(inner) = rest.strip_prefix('(') {
            inner.split_once(')').map_or("", |(_, after)| after)
        } else if rest.starts_with(char::is_whitespace) {
            rest
        } else {
            return false; // `pubfn`, `pub_x`: not a visibility
        }
        .trim_start();
    }
    loop {
        let next = ["const ", "async ", "unsafe "]
            .iter()
            .find_map(|q| t.strip_prefix(q))
            .or_else(|| {
                let rest = t.strip_prefix("extern ")?;
                Some(match rest.strip_prefix('"') {
                    Some(abi) => abi.split_once('"').map_or("", |(_, after)| after),
                    None => rest,
                })
            });
        match next {
            Some(rest) => t = rest.trim_start(),
            None => return t.starts_with("fn "),
        }
    }
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
        let is_fn = fn_signature(t);
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
    let long: Vec<String> = sources()
        .iter()
        .flat_map(|s| long_functions(&s.path))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines without a `// Long: <reason>` comment:\n{}",
        long.join("\n")
    );
}

#[test]
fn every_function_signature_counts() {
    for sig in [
        "fn f() {",
        "pub fn f() {",
        "pub(crate) fn f() {",
        "pub(super) fn f() {",
        "pub(in crate::lease) fn f() {",
        "const fn f() {",
        "async fn f() {",
        "unsafe fn f() {",
        "pub(super) unsafe fn f() {",
        "pub(crate) unsafe fn f() {",
        "pub(crate) const fn f() {",
        "pub const unsafe fn f() {",
        "pub(crate) async unsafe fn f() {",
        "unsafe extern \"C\" fn f() {",
        "extern \"C\" fn f() {",
    ] {
        assert!(fn_signature(sig), "{sig}");
    }
    for not in [
        "let fn_x = 1;",
        "pubfn f() {",
        "const X: u8 = 1;",
        "unsafe { f() }",
    ] {
        assert!(!fn_signature(not), "{not}");
    }
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

/// A made-up crate: `(module path, code)` per file.
fn made_up(files: &[(&[&str], &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(module, text)| {
            let module: Vec<String> = module.iter().map(|m| m.to_string()).collect();
            Source::new(PathBuf::from(module.join("/")), module, text)
        })
        .collect()
}

fn edges(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    graph
        .iter()
        .map(|(m, deps)| format!("{m} -> {}", cell(deps)))
        .collect()
}

#[test]
fn every_way_of_naming_a_module_counts() {
    let sources = made_up(&[
        (
            &[],
            "mod a;\nmod b;\nmod c;\nmod d;\nmod e;\nmod f;\nmod l;\n\
             use std::process::ExitCode; // std's `process`, not ours: c::x\n\
             fn main() { a::run(); let _ = crate::b::X; let s = \"d::z\"; }",
        ),
        (
            &["a"],
            "use crate::{b, c::{self, Y}};\nfn f() { super::d::g(); }",
        ),
        (&["b"], "fn f() { std::fs::read(\"\"); e::x(); }"),
        (
            &["c"],
            "#[cfg(test)]\nmod tests {\n    use super::*;\n    fn t() { super::super::f::x(); }\n}",
        ),
        (&["d"], "/* crate::e */"),
        (&["e"], "macro_rules! m { () => { $crate::d::x() } }"),
        (&["f"], ""),
        (
            &["l"],
            "mod p;\nmod q;\npub(crate) use p::{P as Pee};\nuse crate::a;",
        ),
        (&["l", "p"], "use super::q::Q;"),
        (&["l", "q"], "fn f(_: super::Pee) {}"),
    ]);
    assert_eq!(
        edges(&imports(&sources)),
        [
            "a -> b, c, d",
            "b -> —",
            "c -> f",
            "d -> —",
            "e -> d",
            "f -> —",
            "l -> a",
            "main -> a, b",
        ]
    );
    let files = file_imports(&sources, "l");
    assert_eq!(edges(&files), ["p -> q", "q -> p"]);
    assert_eq!(
        find_cycle(&files).unwrap(),
        ["p", "q", "p"].map(String::from)
    );
}

#[test]
fn the_doc_check_says_which_cell_to_change_to_what() {
    let doc = "| module | responsibility | imports (crate modules) |\n|---|---|---|\n\
               | `a` | does a | b, c |\n| `l/` | the l | — |\n| `gone` | was | a |\n\nAfter.\n";
    let doc = documented_imports(doc).unwrap();
    let code: BTreeMap<String, BTreeSet<String>> =
        [("a", &["b", "d"][..]), ("l", &["a"]), ("new", &[])]
            .into_iter()
            .map(|(m, deps)| (m.to_owned(), deps.iter().map(|d| d.to_string()).collect()))
            .collect();
    assert_eq!(
        doc_changes(&doc, &code),
        [
            "row `a`, column \"imports (crate modules)\": change `b, c` to `b, d` (new: d; \
             gone: c)",
            "row `l/`, column \"imports (crate modules)\": change `—` to `a` (new: a)",
            "module `new` has no row: add one whose \"imports (crate modules)\" cell is `—`",
            "row `gone`: there is no module `gone` in src/; remove the row",
        ]
    );
    let agreeing: BTreeMap<_, _> = doc
        .iter()
        .map(|(m, r)| (m.clone(), r.imports.clone()))
        .collect();
    assert!(doc_changes(&doc, &agreeing).is_empty());
    assert!(documented_imports("| module | imports |\n|---|---|\n").is_err());
}

#[test]
fn the_layer_check_finds_an_arrow_pointing_up() {
    let doc = "| layer | modules | what |\n|---|---|---|\n| 2. top | `a`, `l/` | x |\n\
               | 1. leaves | `b`, `gone` | y |\n";
    let layers = documented_layers(doc).unwrap();
    let code: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b", "l"][..]),
        ("b", &["a"]),
        ("l", &[]),
        ("new", &[]),
    ]
    .into_iter()
    .map(|(m, deps)| (m.to_owned(), deps.iter().map(|d| d.to_string()).collect()))
    .collect();
    assert_eq!(
        layer_breaks(&layers, &code),
        [
            "`b` (layer 1) imports `a` (layer 2): arrows point down",
            "module `new` is in no layer: add it to a row",
            "`gone` is in a layer but there is no such module in src/",
        ]
    );
    assert!(documented_layers("| layer | modules |\n|---|---|\n| top | `a` |\n").is_err());
}

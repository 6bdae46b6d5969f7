//! The defaults the documentation states are the CLI's. `--help` states each default
//! from its `DEFAULT_*` const (src/cli.rs, `with_default`); this keeps what the README (its
//! options table and its prose), action.yml's input descriptions, docs/ and contrib/ say in step
//! with `--help`, so a changed const cannot leave a stale default in a document.
//!
//! The forms a document states a default in, so that this test finds it:
//! - README.md's options table: the `default` column of the option's row;
//! - prose: "`--linger` (default 1h)", "(`--linger`, default 1h)", or "`--reclaim-below 15%`,
//!   the default";
//! - action.yml: "(CLI default 1h)" in the description of the option's input.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use regex::Regex;

const SOURCE: &str = env!("CARGO_MANIFEST_DIR");

/// Defaults stated in words rather than as a value (a computed path, a CI system's id, "as long
/// as it takes"): the README phrases them for its table, and no const holds them.
const IN_WORDS: [&str; 4] = ["root", "job-id", "wait", "color"];

/// Each option's default as `cargo guarded --help` states it (`[default: …]`), by long name.
fn cli_defaults() -> BTreeMap<String, String> {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd).args(["guarded", "--help"]);
    let out = output(&mut cmd);
    assert_success(&out);
    let option = Regex::new(r"^ {2,6}(?:-\w, )?--([a-z][a-z-]*)").unwrap();
    let default = Regex::new(r"\[default: ([^\]]*)\]").unwrap();
    // One entry per option: its first line, and the wrapped lines after it joined with a space
    // (clap wraps at spaces).
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in stdout(&out).lines() {
        if let Some(c) = option.captures(line) {
            entries.push((c[1].to_owned(), line.trim().to_owned()));
        } else if line.starts_with("        ")
            && let Some((_, text)) = entries.last_mut()
        {
            text.push(' ');
            text.push_str(line.trim());
        }
    }
    let defaults: BTreeMap<String, String> = entries
        .into_iter()
        .filter_map(|(name, text)| Some((name, default.captures(&text)?[1].to_owned())))
        .collect();
    for option in IN_WORDS.iter().chain(&["ttl", "min-free"]) {
        assert!(
            defaults.contains_key(*option),
            "--help states no default for --{option}: {defaults:?}"
        );
    }
    defaults
}

/// Compared without backticks and `--`: the README writes "`--reclaim-below` plus 5 points",
/// action.yml "reclaim-below plus 5 points", `--help` "--reclaim-below plus 5 points".
fn normalize(s: &str) -> String {
    s.replace('`', "").replace("--", "").trim().to_owned()
}

/// One disagreement, or a default a document should state and does not.
fn differs(file: &str, place: &str, option: &str, stated: &str, cli: &str) -> String {
    let stated = stated.replace('`', "");
    format!("{file} ({place}): --{option} says its default is `{stated}`; --help says `{cli}`")
}

/// README.md's options table: every option whose default is a value has a row, and its
/// `default` cell is the CLI's.
fn check_table(file: &str, text: &str, cli: &BTreeMap<String, String>) -> Vec<String> {
    let long = Regex::new(r"--([a-z][a-z-]*)").unwrap();
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `-")) {
        // `SIZE\|PCT` is one cell.
        let cells: Vec<String> = line
            .replace(r"\|", "\u{0}")
            .split('|')
            .map(|c| c.replace('\u{0}', "|").trim().to_owned())
            .collect();
        for name in long.captures_iter(&cells[1]) {
            rows.insert(name[1].to_owned(), cells[3].clone());
        }
    }
    let mut problems = Vec::new();
    for (option, default) in cli.iter().filter(|(o, _)| !IN_WORDS.contains(&o.as_str())) {
        match rows.get(option) {
            None => problems.push(format!(
                "{file} (options table): no row for --{option}, whose default is `{default}`"
            )),
            Some(cell) if normalize(cell) != normalize(default) => {
                problems.push(differs(file, "options table", option, cell, default));
            }
            Some(_) => {}
        }
    }
    problems
}

/// Prose: every "`--opt` (default X)", "(`--opt`, default X)" and "`--opt X`, the default" in
/// `text` names the CLI's default. Line breaks (and a comment's leading `#`) count as spaces.
fn check_prose(file: &str, text: &str, cli: &BTreeMap<String, String>) -> Vec<String> {
    let joined = Regex::new(r"\s*\n\s*(?:#\s*)?")
        .unwrap()
        .replace_all(text, " ");
    let forms = [
        r"`--([a-z][a-z-]*)`(?: \(|, )default ([^\s),;:]+)",
        r"`--([a-z][a-z-]*) ([^`\s]+)`, the default",
    ];
    let mut problems = Vec::new();
    for form in forms {
        for c in Regex::new(form).unwrap().captures_iter(&joined) {
            let (option, stated) = (&c[1], &c[2]);
            match cli.get(option) {
                None => problems.push(format!(
                    "{file} (prose): states a default `{stated}` for --{option}, which --help \
                     gives no default"
                )),
                Some(default) if normalize(stated) != normalize(default) => {
                    problems.push(differs(file, "prose", option, stated, default));
                }
                Some(_) => {}
            }
        }
    }
    problems
}

/// action.yml: the input of each option whose default is a value says "(CLI default X)", with
/// the CLI's X. Inputs are `  name:` lines; a description runs to the next input.
fn check_action(file: &str, text: &str, cli: &BTreeMap<String, String>) -> Vec<String> {
    let input = Regex::new(r"^  ([a-z][a-z-]*):\s*$").unwrap();
    let stated = Regex::new(r"\(CLI default,? ([^)]*)\)").unwrap();
    let mut inputs: BTreeMap<String, String> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(c) = input.captures(line) {
            current = Some(c[1].to_owned());
            inputs.insert(c[1].to_owned(), String::new());
        } else if line.starts_with("outputs:") {
            break;
        } else if let Some(name) = &current {
            let description = inputs.get_mut(name).unwrap();
            description.push(' ');
            description.push_str(line.trim());
        }
    }
    let mut problems = Vec::new();
    for (option, default) in cli.iter().filter(|(o, _)| !IN_WORDS.contains(&o.as_str())) {
        let Some(description) = inputs.get(option) else {
            continue; // Not every option is an input (tests/testsuite/action/inputs.rs keeps that list).
        };
        match stated.captures(description) {
            None => problems.push(format!(
                "{file} (input {option}): no \"(CLI default …)\"; --help says `{default}`"
            )),
            Some(c) if normalize(&c[1]) != normalize(default) => {
                problems.push(differs(
                    file,
                    &format!("input {option}"),
                    option,
                    &c[1],
                    default,
                ));
            }
            Some(_) => {}
        }
    }
    problems
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(SOURCE).join(path))
        .unwrap_or_else(|e| panic!("failed to read {path}: {e}"))
}

/// Every text file under `dir` (relative to the source), recursively.
fn files_under(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(Path::new(SOURCE).join(&d)).unwrap() {
            let entry = entry.unwrap();
            let path = format!("{d}/{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                todo.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every problem in the documents as they are in the source tree.
fn problems(cli: &BTreeMap<String, String>) -> Vec<String> {
    let readme = read("README.md");
    let mut problems = check_table("README.md", &readme, cli);
    problems.extend(check_prose("README.md", &readme, cli));
    problems.extend(check_action("action.yml", &read("action.yml"), cli));
    for file in files_under("docs")
        .into_iter()
        .chain(files_under("contrib"))
        .chain(["CONTRIBUTING.md".to_owned()])
    {
        problems.extend(check_prose(&file, &read(&file), cli));
    }
    problems
}

#[test]
fn the_documents_state_the_cli_s_defaults() {
    let cli = cli_defaults();
    let problems = problems(&cli);
    assert!(
        problems.is_empty(),
        "defaults out of step with --help:\n{}",
        problems.join("\n")
    );
}

/// The checks find a wrong default in each place they look, naming the file, the option and
/// both values (a check that cannot fail would keep nothing in step).
#[test]
fn a_stale_default_is_named_with_both_values() {
    let cli = cli_defaults();
    let readme = read("README.md");
    let wrong = |text: &str, from: &str, to: &str| {
        assert!(
            text.contains(from),
            "the documents no longer contain {from}"
        );
        text.replacen(from, to, 1)
    };
    let table = check_table(
        "README.md",
        &wrong(
            &readme,
            "| `CARGO_GUARDED_TTL` | `10m` |",
            "| `CARGO_GUARDED_TTL` | `11m` |",
        ),
        &cli,
    );
    assert_eq!(
        table,
        [differs("README.md", "options table", "ttl", "`11m`", "10m")]
    );
    let prose = check_prose(
        "docs/warmth.md",
        &wrong(
            &read("docs/warmth.md"),
            "(`--prune-after`, default 3)",
            "(`--prune-after`, default 4)",
        ),
        &cli,
    );
    assert_eq!(
        prose,
        [differs("docs/warmth.md", "prose", "prune-after", "4", "3")]
    );
    let action = check_action(
        "action.yml",
        &wrong(
            &read("action.yml"),
            "(CLI default 2GiB)",
            "(CLI default 1GiB)",
        ),
        &cli,
    );
    assert_eq!(
        action,
        [differs(
            "action.yml",
            "input min-free",
            "min-free",
            "1GiB",
            "2GiB"
        )]
    );
    let service = "contrib/cargo-guarded-gc.service";
    let prose = check_prose(
        service,
        &wrong(&read(service), "default 15%", "default 10%"),
        &cli,
    );
    assert_eq!(
        prose,
        [differs(service, "prose", "reclaim-below", "10%", "15%")]
    );
}

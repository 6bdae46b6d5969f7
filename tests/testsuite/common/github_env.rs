//! `GITHUB_ENV` parsed the way the runner parses it (actions/runner `SetEnvFileCommand`): lines
//! `NAME=value`, and `NAME<<DELIMITER` heredocs whose value runs up to a line that is exactly the
//! delimiter (multi-line values included). Whichever of `=` and `<<` comes first decides the form.
#![allow(dead_code)]

/// Every variable the file defines, in order (a later one wins when the runner applies them).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let (k, v) = line.split_at(e);
                out.push((k.to_owned(), v[1..].to_owned()));
            }
            (_, Some(h)) => {
                let (k, d) = line.split_at(h);
                let delim = &d[2..];
                let mut value = Vec::new();
                loop {
                    match lines.next() {
                        Some(l) if l == delim => break,
                        Some(l) => value.push(l),
                        None => return Err(format!("matching delimiter not found '{delim}'")),
                    }
                }
                out.push((k.to_owned(), value.join("\n")));
            }
            _ => return Err(format!("invalid format '{line}'")),
        }
    }
    Ok(out)
}

/// The file at `path`, parsed (a missing file defines nothing).
pub fn read(path: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    parse(&text).unwrap_or_else(|e| panic!("the runner would reject {path:?}: {e}\n{text}"))
}

//! What content verification decided for a dir built elsewhere, in words: a status line (the
//! units named with `-v`), and the sentence the step summary reuses.

use crate::term;
use crate::warm::Verdict;

/// `12 units warm by content, 3 made stale (content differs: 2, no record: 1)`.
pub(crate) fn sentence(v: &Verdict) -> String {
    let mut s = format!(
        "{} {} warm by content, {} made stale",
        v.verified,
        units(v.verified),
        v.stale_count()
    );
    if !v.stale.is_empty() {
        let why: Vec<String> = v
            .stale
            .iter()
            .map(|(why, names)| format!("{}: {}", why.words(), names.len()))
            .collect();
        s.push_str(&format!(" ({})", why.join(", ")));
    }
    s
}

fn units(n: usize) -> &'static str {
    if n == 1 { "unit" } else { "units" }
}

/// The terminal's `Verified` line, then with `-v` one line per reason naming its units.
pub(crate) fn show(v: &Verdict) {
    let built_in = v
        .built_in
        .as_ref()
        .map(|p| format!(", built in {}", p.display()))
        .unwrap_or_default();
    let restored = if v.restored > 0 {
        format!(
            "; {} checkout files given their recorded mtimes",
            v.restored
        )
    } else {
        String::new()
    };
    term::status(
        "Verified",
        format_args!("{}{built_in}{restored}", sentence(v)),
    );
    for (why, names) in &v.stale {
        term::verbose(
            "Stale",
            format_args!("{}: {}", why.words(), names.join(", ")),
        );
    }
}

//! The runner's environment and output files (GitHub Actions' `GITHUB_ENV`, `GITHUB_OUTPUT`):
//! `NAME=value` records, appended.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// One `NAME=value` record for a `GITHUB_ENV`-style file. A value with a line break (a hostile
/// job id: `pr-7\nBASH_ENV=/x`) takes the `NAME<<DELIMITER` form with a random delimiter, as
/// the runner parses it, so it can never define a second variable.
pub(crate) fn record(name: &str, value: &str) -> String {
    if value.contains(['\n', '\r']) {
        let delim = format!("ghadelimiter_{}", uuid::Uuid::new_v4().simple());
        format!("{name}<<{delim}\n{value}\n{delim}\n")
    } else {
        format!("{name}={value}\n")
    }
}

/// Append `text` to the file at `path`, creating it.
pub(crate) fn append(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("failed to append to {}", path.display()))
}

//! Everything the tool itself says on stderr: status lines, warnings and the one error message.
//!
//! Messages carry the `[cargo-guarded]` tag so they stand out in CI logs interleaved with cargo's
//! own output. Colour follows `--color`, `NO_COLOR` and whether stderr is a terminal (anstream).

use std::fmt::Display;
use std::io::Write;
use std::sync::OnceLock;

use anstyle::{AnsiColor, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

struct Settings {
    verbosity: Verbosity,
    color: anstream::ColorChoice,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Set once, right after the arguments are parsed. Before that, defaults apply.
pub(crate) fn init(verbosity: Verbosity, color: ColorChoice) {
    let color = match color {
        ColorChoice::Auto => anstream::ColorChoice::Auto,
        ColorChoice::Always => anstream::ColorChoice::Always,
        ColorChoice::Never => anstream::ColorChoice::Never,
    };
    let _ = SETTINGS.set(Settings {
        verbosity,
        color: resolve(color),
    });
}

/// Decide `auto` once (NO_COLOR, CLICOLOR, whether stderr is a terminal), not on every line:
/// a sweep prints a line per job dir.
fn resolve(color: anstream::ColorChoice) -> anstream::ColorChoice {
    anstream::AutoStream::new(std::io::stderr(), color).current_choice()
}

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| Settings {
        verbosity: Verbosity::Normal,
        color: resolve(anstream::ColorChoice::Auto),
    })
}

pub(crate) fn verbosity() -> Verbosity {
    settings().verbosity
}

fn emit(style: Style, label: &str, msg: &dyn Display) {
    // One write per line, so lines from concurrent runs sharing a log do not interleave.
    let line = format!("{style}{label}{style:#} {msg}\n");
    let mut err = anstream::AutoStream::new(std::io::stderr().lock(), settings().color);
    // Nothing sensible to do if stderr is gone.
    let _ = err.write_all(line.as_bytes());
}

/// A normal progress line (`[cargo-guarded] job dir …`); hidden by `-q`.
pub(crate) fn status(msg: impl Display) {
    if verbosity() >= Verbosity::Normal {
        emit(
            AnsiColor::Green.on_default().bold(),
            "[cargo-guarded]",
            &msg,
        );
    }
}

/// Detail shown only with `-v`.
pub(crate) fn verbose(msg: impl Display) {
    if verbosity() >= Verbosity::Verbose {
        emit(AnsiColor::Cyan.on_default(), "[cargo-guarded]", &msg);
    }
}

/// Something the user should fix or know; shown even with `-q`.
pub(crate) fn warn(msg: impl Display) {
    emit(
        AnsiColor::Yellow.on_default().bold(),
        "[cargo-guarded] warning:",
        &msg,
    );
}

/// The single place an error reaches the user (called from `main`).
pub(crate) fn error(msg: impl Display) {
    emit(AnsiColor::Red.on_default().bold(), "error:", &msg);
}

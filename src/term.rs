//! Everything the tool itself says on stderr: status lines, warnings and the one error message.
//!
//! Messages carry the `[cargo-guarded]` tag so they stand out in CI logs interleaved with cargo's
//! own output. Colour follows `--color`, `NO_COLOR` and whether stderr is a terminal (anstream).

use std::borrow::Cow;
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
    // Messages quote outside data (lease strings, dir names, paths): escaped, so none of it can
    // start a line of its own that CI would parse as a workflow command.
    let msg = msg.to_string();
    // One write per line, so lines from concurrent runs sharing a log do not interleave.
    let line = format!("{style}{label}{style:#} {}\n", escape(&msg));
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

/// Control characters (newline, carriage return, escape, NEL, …) as Rust escapes, so text from
/// outside (a lease's job id, runner or command, a dir name, an action input) stays on its line
/// and can never start a line that GitHub parses as a workflow command (`::error::…`) or move
/// the terminal's cursor. The one escaping function for everything the tool prints.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Write `text` to stdout. A reader that went away (`| head -0`, a closed pipe) ends the output
/// quietly, as for cargo: `Ok(false)`, never a panic. Other write errors are errors.
pub(crate) fn out(text: &str) -> std::io::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn control_characters_stay_on_their_line() {
        assert_eq!(escape("plain id-1"), "plain id-1");
        assert_eq!(escape("x\n::error::pwned"), "x\\n::error::pwned");
        assert_eq!(escape("a\rb\u{1b}[2Jc\u{85}d"), "a\\rb\\u{1b}[2Jc\\u{85}d");
        assert!(!escape("x\n::error::pwned").contains('\n'));
    }
}

//! Everything the tool itself says on stderr, in cargo's style: a bold verb right-aligned in 12
//! columns (`    Reclaimed …`, `     Waiting …`), bare `warning:` and `error:` prefixes.
//!
//! Colour is decided once, from `--color`, then `CARGO_TERM_COLOR` (which CI sets), then `auto`:
//! `NO_COLOR`, `CLICOLOR_FORCE` and whether stderr is a terminal (anstream). The same decision is
//! passed on to the wrapped cargo (`CARGO_TERM_COLOR`), so a log is never half coloured.

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
pub(crate) fn init(verbosity: Verbosity, color: Option<ColorChoice>) {
    let _ = SETTINGS.set(Settings {
        verbosity,
        color: decide(color),
    });
}

/// The one colour decision: `--color` wins, then `CARGO_TERM_COLOR` (as cargo reads it), then
/// `auto`, resolved once (NO_COLOR, CLICOLOR_FORCE, TERM=dumb, whether stderr is a terminal)
/// rather than per line: a sweep prints a line per job dir.
pub(crate) fn decide(flag: Option<ColorChoice>) -> anstream::ColorChoice {
    let env = std::env::var("CARGO_TERM_COLOR").ok();
    let choice = flag.or(match env.as_deref() {
        Some("always") => Some(ColorChoice::Always),
        Some("never") => Some(ColorChoice::Never),
        // Anything else is cargo's to reject; for our own lines it means `auto`.
        _ => None,
    });
    match choice {
        Some(ColorChoice::Always) => anstream::ColorChoice::Always,
        Some(ColorChoice::Never) => anstream::ColorChoice::Never,
        _ => anstream::AutoStream::new(std::io::stderr(), anstream::ColorChoice::Auto)
            .current_choice(),
    }
}

/// `--color` as given before the arguments are parsed (for clap's own error message).
pub(crate) fn color_flag(args: &[std::ffi::OsString]) -> Option<ColorChoice> {
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    let mut found = None;
    while let Some(a) = it.next() {
        let value = match a.as_ref() {
            "--" => break,
            "--color" => it.next().map(Cow::into_owned),
            other => other.strip_prefix("--color=").map(str::to_owned),
        };
        if let Some(v) = value {
            found = <ColorChoice as clap::ValueEnum>::from_str(&v, false).ok();
        }
    }
    found
}

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| Settings {
        verbosity: Verbosity::Normal,
        color: decide(None),
    })
}

pub(crate) fn verbosity() -> Verbosity {
    settings().verbosity
}

/// Whether our stderr lines are coloured.
pub(crate) fn colored() -> bool {
    settings().color != anstream::ColorChoice::Never
}

/// `CARGO_TERM_COLOR` for the wrapped command: our decision, so cargo's lines and ours agree.
pub(crate) fn cargo_color() -> &'static str {
    if colored() { "always" } else { "never" }
}

/// The width a table on stdout must fit: `COLUMNS` when set (as clap reads it for `--help`),
/// else the terminal's when stdout is one; none when stdout is a pipe or a file, where nothing
/// wraps.
pub(crate) fn width() -> Option<u16> {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        && cols > 0
    {
        return Some(cols);
    }
    let stdout = std::io::stdout();
    if !std::io::IsTerminal::is_terminal(&stdout) {
        return None;
    }
    rustix::termios::tcgetwinsize(&stdout)
        .ok()
        .map(|w| w.ws_col)
        .filter(|&cols| cols > 0)
}

/// Write text that may hold ANSI styles to stderr, stripped unless colour is on.
pub(crate) fn write_styled(text: &str) {
    let mut err = anstream::AutoStream::new(std::io::stderr().lock(), settings().color);
    // Nothing sensible to do if stderr is gone.
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// A verb right-aligned in 12 columns, as cargo prints `   Compiling foo`.
fn emit_verb(style: Style, verb: &str, msg: &str) {
    // Messages quote outside data (lease strings, dir names, paths): escaped, so none of it can
    // start a line of its own that CI would parse as a workflow command.
    // One write per line, so lines from concurrent runs sharing a log do not interleave.
    write_styled(&format!("{style}{verb:>12}{style:#} {}\n", escape(msg)));
}

fn emit_label(style: Style, label: &str, msg: &dyn Display) {
    write_styled(&format!(
        "{style}{label}{style:#} {}\n",
        escape(&msg.to_string())
    ));
}

/// A status line with its own verb: `status("Reclaimed", "12 MiB …")`; hidden by `-q`.
pub(crate) fn status(verb: &str, msg: impl Display) {
    if verbosity() >= Verbosity::Normal {
        emit_verb(AnsiColor::Green.on_default().bold(), verb, &msg.to_string());
    }
}

/// Detail shown only with `-v`, with its own verb: `verbose("Note", "…")`, in the shape of
/// `status_verb` with a cyan verb.
pub(crate) fn verbose(verb: &str, msg: impl Display) {
    if verbosity() >= Verbosity::Verbose {
        emit_verb(AnsiColor::Cyan.on_default().bold(), verb, &msg.to_string());
    }
}

/// Something the user should fix or know; shown even with `-q`.
pub(crate) fn warn(msg: impl Display) {
    emit_label(AnsiColor::Yellow.on_default().bold(), "warning:", &msg);
}

/// A `note:` line after an error, one part of it (cargo's `note:`, bold bright green).
pub(crate) fn note(msg: impl Display) {
    emit_label(AnsiColor::BrightGreen.on_default().bold(), "note:", &msg);
}

/// The single place an error reaches the user (called from `main`).
pub(crate) fn error(msg: impl Display) {
    emit_label(AnsiColor::Red.on_default().bold(), "error:", &msg);
}

/// How often a long activity says it is still going when stderr is not a terminal (a CI log).
const PLAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Something that may take a while (a wait for a lease, a sweep): said at once, then kept
/// visibly alive until `finish` — a spinner with the elapsed time on a terminal (indicatif),
/// a plain `     Waiting … (20s)` line every 10 s in a CI log.
pub(crate) struct Activity {
    started: std::time::Instant,
    verb: &'static str,
    msg: String,
    /// What the user can do about it, after the elapsed time on a terminal (`Ctrl-C stops`).
    hint: String,
    bar: Option<indicatif::ProgressBar>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Activity {
    /// Start: on a terminal, one spinner line `{verb:>12} {msg} ⠁ 3s ({hint})` fitted to its
    /// width (the message is shortened, never wrapped); in a log, `{verb:>12} {msg}` now and
    /// every 10 s. Hidden by `-q`.
    pub(crate) fn start(verb: &'static str, msg: impl Display, hint: &str) -> Activity {
        let msg = escape(&msg.to_string()).into_owned();
        let mut act = Activity {
            started: std::time::Instant::now(),
            verb,
            msg,
            hint: escape(hint).into_owned(),
            bar: None,
            stop: None,
            ticker: None,
        };
        if verbosity() < Verbosity::Normal {
            return act;
        }
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        if tty {
            act.bar = Some(spinner(verb, act.msg.clone(), &act.hint, true));
        } else {
            status(verb, &act.msg);
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let (verb, msg, started) = (act.verb, act.msg.clone(), act.started);
            act.ticker = Some(std::thread::spawn(move || {
                still_going(&rx, verb, &msg, started)
            }));
            act.stop = Some(tx);
        }
        act
    }

    /// Like `start`, but silent unless still going after `delay`: a sweep that finds nothing
    /// to do says nothing extra, one that deletes for seconds shows that it is at work.
    pub(crate) fn start_after(
        delay: std::time::Duration,
        verb: &'static str,
        msg: impl Display,
    ) -> Activity {
        let msg = escape(&msg.to_string()).into_owned();
        let started = std::time::Instant::now();
        let mut act = Activity {
            started,
            verb,
            msg: msg.clone(),
            hint: String::new(),
            bar: None,
            stop: None,
            ticker: None,
        };
        if verbosity() < Verbosity::Normal {
            return act;
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        // On a terminal, the spinner exists (hidden) from the start, so `detail` can update it
        // before it shows.
        let bar = tty.then(|| spinner(verb, msg.clone(), "", false));
        act.bar.clone_from(&bar);
        act.ticker = Some(std::thread::spawn(move || {
            use std::sync::mpsc::RecvTimeoutError::Timeout;
            if !matches!(rx.recv_timeout(delay), Err(Timeout)) {
                return;
            }
            if let Some(bar) = bar {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                let _ = rx.recv();
                bar.finish_and_clear();
            } else {
                status(verb, &msg);
                still_going(&rx, verb, &msg, started);
            }
        }));
        act.stop = Some(tx);
        act
    }

    /// Like `start_after` on a terminal; nothing at all in a log (a push at release adds no
    /// lines to a CI log but its result).
    // Only the store's push and pull use it.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) fn on_terminal_after(
        delay: std::time::Duration,
        verb: &'static str,
        msg: impl Display,
    ) -> Activity {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Activity::start_after(delay, verb, msg);
        }
        Activity {
            started: std::time::Instant::now(),
            verb,
            msg: String::new(),
            hint: String::new(),
            bar: None,
            stop: None,
            ticker: None,
        }
    }

    /// On a terminal, say how far it has got, before the message so that a narrow terminal
    /// cuts the message and not the count (`12/640 objects, 4.1 MiB/310 MiB: /srv/cg/job-7 …`);
    /// nothing in a log, whose lines say only that it is still going.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) fn detail(&self, detail: impl Display) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {}", escape(&detail.to_string()), self.msg));
        }
    }

    /// How long it has been going.
    pub(crate) fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    fn stop(&mut self) {
        // The ticker first: a delayed spinner is shown and cleared by it.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Done: stop the spinner or the periodic lines, then print `{verb:>12} {msg}`.
    pub(crate) fn finish(mut self, verb: &str, msg: impl Display) {
        self.stop();
        status(verb, msg);
    }
}

/// The terminal's sign of life: one line, the verb as `status` prints it, the message (cut to
/// the terminal's width: `wide_msg`), a spinner, the elapsed time and the hint.
/// `shown`: drawn and ticking from now; otherwise hidden until its caller shows it.
fn spinner(verb: &'static str, msg: String, hint: &str, shown: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(if shown {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    });
    let verb_style = if colored() { ".green.bold" } else { "" };
    // Braces in the hint would be template syntax.
    let hint = hint.replace(['{', '}'], "");
    let hint = if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    };
    let template = format!("{{prefix:>12{verb_style}}} {{wide_msg}} {{spinner}} {{elapsed}}{hint}");
    let style = indicatif::ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_prefix(verb);
    bar.set_message(msg);
    if shown {
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    bar
}

/// A CI log's sign of life: a line every `PLAIN_EVERY` until `stop` says done (or is dropped).
fn still_going(
    stop: &std::sync::mpsc::Receiver<()>,
    verb: &str,
    msg: &str,
    started: std::time::Instant,
) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(PLAIN_EVERY) {
        status(
            verb,
            format_args!(
                "{msg} (still going after {})",
                crate::quantity::RoundDuration(started.elapsed())
            ),
        );
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.stop();
    }
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

/// A path that may not be UTF-8, for a message: each byte that is not part of valid UTF-8 as
/// `\xNN` (where `display()` would print U+FFFD and lose which byte it was), control characters
/// escaped as by [`escape`].
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out += &escape(chunk.valid());
        for b in chunk.invalid() {
            out += &format!("\\x{b:02x}");
        }
    }
    out
}

/// The schema version of every `--json` output (`status`, `gc`, `doctor`). Adding a field keeps
/// it; renaming, removing or changing the meaning of one bumps it. Fields: docs/json.md, "JSON output".
pub(crate) const JSON_VERSION: u32 = 1;

/// `value` as pretty JSON with `"version": JSON_VERSION` first, and a final newline.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct Versioned<'a, T> {
        version: u32,
        #[serde(flatten)]
        value: &'a T,
    }
    let mut text = serde_json::to_string_pretty(&Versioned {
        version: JSON_VERSION,
        value,
    })?;
    text.push('\n');
    Ok(text)
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
    use super::*;

    #[test]
    fn color_flag_is_found_before_parsing() {
        let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(
            color_flag(&args(&["x", "--color", "always", "bulid"])),
            Some(ColorChoice::Always)
        );
        assert_eq!(
            color_flag(&args(&["x", "--color=never"])),
            Some(ColorChoice::Never)
        );
        assert_eq!(color_flag(&args(&["x", "--", "--color=never"])), None);
    }

    #[test]
    fn control_characters_stay_on_their_line() {
        assert_eq!(escape("plain id-1"), "plain id-1");
        assert_eq!(escape("x\n::error::pwned"), "x\\n::error::pwned");
        assert_eq!(escape("a\rb\u{1b}[2Jc\u{85}d"), "a\\rb\\u{1b}[2Jc\\u{85}d");
        assert!(!escape("x\n::error::pwned").contains('\n'));
    }
}

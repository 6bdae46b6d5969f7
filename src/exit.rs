//! How the process ends, as a value: the wrapper's own exit codes, named in one place (README's
//! "Exit status" table lists each of them; a test keeps the two in step), the [`Exit`] every
//! command returns, and the [`CliError`] that carries an error with its exit (cargo's
//! `CliError { error, exit_code }`).
//!
//! Everything else is the wrapped program's own code (or 128+N when it died of signal N).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The product's own errors: bad input, unusable or missing root, I/O failures, a deletion that
/// failed in `gc`, a problem `doctor` found. The message is on stderr.
pub(crate) const ERROR: u8 = 1;

/// A command line clap or we reject (unknown option or command, bad value). 1, not clap's
/// default 2: `cargo guarded build --bogus` passes cargo's own 1 through, and a wrapper whose
/// usage errors differ from the wrapped command's by where the typo sits would confuse scripts.
pub(crate) const USAGE: u8 = 1;

/// "Try again later" (`EX_TEMPFAIL` from sysexits.h): not enough free disk space even after
/// reclaiming every expired job dir we were allowed to, or `--wait` ran out while another run of
/// the same job held its lease. Neither is a broken setup; a retry later may succeed.
pub(crate) const TRY_LATER: u8 = 75;

/// How the process ends, decided by the command and carried out by `main` once every lease is
/// released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Exit with this code.
    Code(u8),
    /// Die of this signal, as the wrapped command did (or as the run was stopped before its
    /// command started), so a shell loop around us stops on Ctrl-C: only death by SIGINT, not
    /// exit 130, tells bash the user interrupted (`process::die_of`).
    Signal {
        signal: i32,
        /// The child's group had the terminal, so a keyboard signal reached it and not our
        /// group: `die_of` sends it on to our group.
        to_group: bool,
    },
}

impl Exit {
    pub(crate) const SUCCESS: Exit = Exit::Code(0);
    pub(crate) const ERROR: Exit = Exit::Code(ERROR);
    pub(crate) const USAGE: Exit = Exit::Code(USAGE);
    pub(crate) const TRY_LATER: Exit = Exit::Code(TRY_LATER);

    /// How a wrapped command ended: its own code, or its death by a signal. `had_terminal`: its
    /// group was given the terminal.
    pub(crate) fn of_child(status: ExitStatus, had_terminal: bool) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(u8::try_from(code).unwrap_or(ERROR)),
            (None, Some(signal)) => Exit::Signal {
                signal,
                to_group: had_terminal,
            },
            (None, None) => Exit::ERROR,
        }
    }

    /// The code to exit with: for a signal, the conventional 128+N of a shell (what is left if
    /// the signal does not kill us).
    pub(crate) fn code(self) -> u8 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal { signal, .. } => {
                128u8.saturating_add(u8::try_from(signal).unwrap_or(127))
            }
        }
    }
}

/// An error and how the process ends because of it; `?` on any other error makes it
/// [`ERROR`].
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) error: anyhow::Error,
    pub(crate) exit: Exit,
    /// `note:` lines printed after the error, one per part of a multi-part error (as cargo does).
    pub(crate) notes: Vec<String>,
}

impl CliError {
    pub(crate) fn new(error: impl Into<anyhow::Error>, exit: Exit) -> CliError {
        CliError {
            error: error.into(),
            exit,
            notes: Vec::new(),
        }
    }

    /// The same error, with `note:` lines to print after it.
    pub(crate) fn with_notes(mut self, notes: Vec<String>) -> CliError {
        self.notes = notes;
        self
    }
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(error: E) -> CliError {
        CliError::new(error, Exit::ERROR)
    }
}

/// What every command returns.
pub(crate) type CliResult = Result<Exit, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_s_exit_passes_through() {
        assert_eq!(
            Exit::of_child(ExitStatus::from_raw(7 << 8), false),
            Exit::Code(7)
        );
        let killed = Exit::of_child(ExitStatus::from_raw(15), true);
        assert_eq!(
            killed,
            Exit::Signal {
                signal: 15,
                to_group: true
            }
        );
        assert_eq!(killed.code(), 143);
    }
}

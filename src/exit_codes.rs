//! Exit codes the wrapper itself produces, named in one place (README's "Exit status" table
//! lists each of them; a test keeps the two in step).
//!
//! Everything else is the wrapped program's own code (or 128+N when it died of signal N).

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

/// The conventional shell code for a process killed by `signal`.
pub(crate) fn for_signal(signal: i32) -> u8 {
    128u8.saturating_add(u8::try_from(signal).unwrap_or(127))
}

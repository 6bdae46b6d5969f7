//! Exit codes the wrapper itself produces, named in one place.
//!
//! Everything else is the wrapped program's own code (or 128+N when it died of signal N).

/// The product's own errors: bad input, unusable root, I/O failures. The message is on stderr.
pub(crate) const ERROR: u8 = 1;

/// Not enough free disk space even after reclaiming every expired job dir we were allowed to.
/// 75 is `EX_TEMPFAIL` from sysexits.h: "try again later", which is exactly the situation.
pub(crate) const NO_SPACE: u8 = 75;

/// The conventional shell code for a process killed by `signal`.
pub(crate) fn for_signal(signal: i32) -> u8 {
    128u8.saturating_add(u8::try_from(signal).unwrap_or(127))
}

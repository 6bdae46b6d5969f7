//! "Required or skip", decided in one place. A test that needs something this machine may lack
//! (a tool, root, a mount) asks here: under `CARGO_GUARDED_REQUIRE_TOOLS=1` (CI, `.ci/run`) a
//! missing need fails the test; what needs root must work whenever we are root; otherwise the
//! test prints a visible `skipped: …` line and returns.

/// `CARGO_GUARDED_REQUIRE_TOOLS=1`: every test must run here.
pub fn tools_required() -> bool {
    std::env::var_os("CARGO_GUARDED_REQUIRE_TOOLS").is_some_and(|v| v == "1")
}

/// `got`, or `None` after printing why `what` is skipped; a failure when tools are required.
pub fn require<T>(what: &str, got: Result<T, String>) -> Option<T> {
    match got {
        Ok(v) => Some(v),
        Err(why) if tools_required() => {
            panic!("{what}: {why} (CARGO_GUARDED_REQUIRE_TOOLS=1 makes this a failure)")
        }
        Err(why) => {
            eprintln!("skipped: {what}: {why}");
            None
        }
    }
}

/// For what needs root (mounts, second users): as root, `get` must succeed (a failure fails the
/// test, whatever the variable says); not root, it is skipped unless tools are required.
pub fn require_root<T>(what: &str, get: impl FnOnce() -> Result<T, String>) -> Option<T> {
    if !super::is_root() {
        return require(what, Err("not running as root".to_owned()));
    }
    match get() {
        Ok(v) => Some(v),
        Err(why) => panic!("{what}: {why} (running as root, this must work)"),
    }
}

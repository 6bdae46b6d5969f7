//! Fault points for the crash and race tests: the lease protocol calls `fault::point("step")` at
//! each step where a crash or an interleaving matters.
//!
//! - `CARGO_GUARDED_FAULT=<step>` aborts the process at that step (as SIGKILL or OOM would).
//! - `CARGO_GUARDED_PAUSE=<step>:<file>` creates `<file>` at that step and waits until the test
//!   deletes it (at most 60 s), so a test can act between two steps.
//! - `CARGO_GUARDED_CLOCK_OFFSET=<seconds>` (signed) shifts the wall clock this process reads
//!   for leases ([`wall_clock`]), as a clock step between two processes would: tests cannot step
//!   the real clock. `CLOCK_BOOTTIME` is left alone, as a step leaves it.
//!
//! Unset (always, outside tests) they cost one environment lookup per process.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

struct Faults {
    abort_at: Option<String>,
    pause_at: Option<(String, String)>,
    clock_offset: i64,
}

fn faults() -> &'static Faults {
    static F: OnceLock<Faults> = OnceLock::new();
    F.get_or_init(|| Faults {
        abort_at: std::env::var("CARGO_GUARDED_FAULT").ok(),
        pause_at: std::env::var("CARGO_GUARDED_PAUSE").ok().and_then(|v| {
            let (step, file) = v.split_once(':')?;
            Some((step.to_owned(), file.to_owned()))
        }),
        clock_offset: std::env::var("CARGO_GUARDED_CLOCK_OFFSET")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

/// The wall clock as the lease protocol reads it: `SystemTime::now()`, shifted by
/// `CARGO_GUARDED_CLOCK_OFFSET` seconds in the clock-step tests.
pub(crate) fn wall_clock() -> SystemTime {
    let now = SystemTime::now();
    let offset = faults().clock_offset;
    let shift = Duration::from_secs(offset.unsigned_abs());
    let shifted = if offset >= 0 {
        now.checked_add(shift)
    } else {
        now.checked_sub(shift)
    };
    shifted.unwrap_or(now)
}

pub(crate) fn point(step: &str) {
    let f = faults();
    if let Some((at, file)) = &f.pause_at
        && at == step
    {
        let file = Path::new(file);
        let _ = std::fs::write(file, step);
        let deadline = Instant::now() + Duration::from_secs(60);
        while file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if f.abort_at.as_deref() == Some(step) {
        eprintln!("[cargo-guarded] fault injected: aborting at {step}");
        std::process::abort();
    }
}

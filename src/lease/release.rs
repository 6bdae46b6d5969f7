//! Step 3, release (docs/protocol.md#release): mark the lease released, lingering for the
//! job's later steps, with the dir's size; the lock goes with the `Held`.

use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use super::clock::Now;
use super::held::{Held, SIZE_BUDGET};
use super::record::{State, deadline};
use super::step::step;

/// A measurement older than this is not kept when a new walk runs out of its budget: the size is
/// then recorded as unknown rather than carried on.
const SIZE_REFRESH: Duration = Duration::from_secs(600);

impl Held {
    /// Mark the lease released, protected for `linger` so later steps of the job find the dir,
    /// and record its size (`job_size`: `target/` plus `build/`, each inode once; bounded walk). The lock drops with the `Held` (the
    /// session drops it right after; see `Session`).
    pub(super) fn release(&self, linger: Duration) -> Result<()> {
        let clocks = Now::read();
        let now = clocks.wall;
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
        };
        // Measured at every release, whatever the step ran (`env`, a build, a test run that
        // wrote 200 MB, `clean`): the guard's ordering and the precheck's tallies read it. The
        // walk is bounded by SIZE_BUDGET (a no-op build's release pays a walk of the target dir
        // from the page cache: bench/noop_build.rs).
        let measured_at = self.size_measured_at();
        let stale =
            measured_at.is_none_or(|at| unix(now).saturating_sub(at) >= SIZE_REFRESH.as_secs());
        let size = super::layout::job_size(self.dir.as_fd(), Some(Instant::now() + SIZE_BUDGET));
        // A job-lifetime holder (docs/protocol.md#linger-ends-with-the-job) alive now: the
        // linger ends when it does. Checked now, not earlier: it may have started after us.
        let job_lock = super::joblock::held_by_job(self.dir.as_fd()).then_some(true);
        step("release");
        // Another job of the workspace ran alongside ours: the next job keeps our dir a seed
        // source (docs/protocol.md#seed). Checked now, as it may have started after us.
        let (root, name) = self.in_root();
        let together = self
            .with_lease(|l| l.together == Some(true) || super::starting::overlapped(root, name, l));
        self.update(|l| {
            l.job_lock = job_lock;
            l.together = together.then_some(true);
            l.state = State::Released;
            clocks.stamp(l);
            l.expires_at = deadline(now, linger);
            match size {
                Some(size) => {
                    l.size_bytes = Some(size);
                    l.size_measured_at = Some(unix(now));
                }
                // Not measurable within the budget, and the last measurement is old: unknown
                // rather than an old number a later adoption would print as the dir's size.
                None if stale => l.size_bytes = None,
                None => {}
            }
        })
        .with_context(|| format!("failed to release lease in {}", self.path.display()))
    }
}

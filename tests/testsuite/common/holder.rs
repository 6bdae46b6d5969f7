//! A live job for tests that need one: `cargo guarded --job-id ID exec -- sleep 60` holding the
//! job's lease, its process killed when the holder drops (a failed test leaves no wrapper behind).

use std::path::Path;

use super::{Env, Spawned, send_signal, wait_for};

/// A running `exec -- sleep 60` that holds its job's lease.
pub struct LiveHolder {
    pub run: Spawned,
}

impl Env {
    /// Start a live holder of `job` in `cwd`; returns once its lease is active.
    pub fn live_holder(&self, cwd: &Path, job: &str) -> LiveHolder {
        // The log files' name: the id may hold a `/`.
        let name: String = job
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let run = self.spawn(
            cwd,
            &format!("holder-{name}"),
            ["--job-id", job, "exec", "--", "sleep", "60"],
        );
        // By `status`, which knows the job dir of an id that had to be sanitized.
        // (`status` fails on a root the holder has not created yet: not active yet.)
        let active = || {
            let out = self.run(self.path(), ["status", "--json"]);
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            status["leases"].as_array().is_some_and(|leases| {
                leases
                    .iter()
                    .any(|l| l["job_id"] == job && l["state"] == "active")
            })
        };
        assert!(
            wait_for(60, active),
            "the live job {job} never became active\n{}",
            run.stderr_so_far()
        );
        LiveHolder { run }
    }
}

impl LiveHolder {
    pub fn pid(&self) -> i32 {
        self.run.pid()
    }

    /// Whether it still runs (nothing stopped it).
    pub fn running(&mut self) -> bool {
        self.run.child.try_wait().unwrap().is_none()
    }

    /// End it as a user would (SIGTERM, so it releases) and wait for it.
    pub fn stop(mut self) {
        send_signal(self.pid(), libc::SIGTERM);
        let _ = self.run.child.wait();
    }
}

//! Step 2, renew (docs/protocol.md#renew): the heartbeat, and the session that owns a held lease
//! and its heartbeat from acquisition to release.

use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};

use crate::term;

use super::held::Held;
use super::record::{expiry, heartbeat_interval};
use super::step;

/// The heartbeat: rewrites `renewed_at`/`expires_at` every interval while the job runs.
pub(crate) struct Heartbeat {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Heartbeat {
    /// `on_lost` runs if the job dir is no longer ours (moved away): the job must stop loudly
    /// rather than keep building into a dir that is being deleted.
    pub(crate) fn start(
        held: std::sync::Arc<Held>,
        ttl: Duration,
        on_lost: impl Fn() + Send + 'static,
    ) -> Heartbeat {
        let interval = heartbeat_interval(ttl);
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut failing = false;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                step("heartbeat");
                if !held.still_named() {
                    on_lost();
                    bail!(
                        "job dir {} was moved away while the job was running; the job was stopped",
                        held.path.display()
                    );
                }
                let renewed = held.update(|l| {
                    let now = SystemTime::now();
                    l.renewed_at = now;
                    l.expires_at = expiry(now, ttl);
                });
                // The lock still protects the dir; the next beat may succeed (e.g. ENOSPC). Say
                // so once when it starts failing and once when it recovers, not on every beat.
                match renewed {
                    Err(e) if !failing => {
                        failing = true;
                        term::warn(format_args!(
                            "failed to renew lease in {}: {e} (the lock still protects it; retrying quietly)",
                            held.path.display()
                        ));
                    }
                    Err(_) => {}
                    Ok(()) if failing => {
                        failing = false;
                        term::warn(format_args!(
                            "renewing the lease in {} works again",
                            held.path.display()
                        ));
                    }
                    Ok(()) => {}
                }
            }
            Ok(())
        });
        Heartbeat { stop, thread }
    }

    pub(crate) fn stop(self) -> Result<()> {
        drop(self.stop);
        self.thread
            .join()
            .unwrap_or_else(|_| bail!("heartbeat thread panicked"))
    }
}

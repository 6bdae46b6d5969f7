//! Step 2, renew (docs/protocol.md#renew): the heartbeat, and the session that owns a held lease
//! and its heartbeat from acquisition to release (step 3), on every path.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Result, bail};

use super::acquire::acquire;
use super::clock::Now;
use super::held::Held;
use super::notice::{Notice, Notices};
use super::record::{deadline, heartbeat_interval};
use super::request::{Origin, Request};
use super::root::Root;
use super::step::step;

/// A held lease, renewed by its heartbeat from the moment it was acquired (a long precheck
/// sweep, or a wait for the disk, cannot let it expire under us) and released when the session
/// ends: by `finish`, or by `Drop` on every other path (an error, an early return, a panic
/// unwinding), so no path can leave the lease active with its lock gone.
pub(crate) struct Session {
    held: Arc<Held>,
    /// `None` once ended.
    heartbeat: Option<Heartbeat>,
    lost: Arc<Mutex<Lost>>,
    /// How long a released lease stays protected, so later steps of the job find the dir.
    linger: Duration,
    /// Where what goes wrong without stopping the job is said (a release that failed).
    notices: Arc<dyn Notices>,
}

/// Whether the heartbeat found the dir moved away, and what to do about it.
#[derive(Default)]
struct Lost {
    happened: bool,
    /// Stops the work that runs in the dir (e.g. kills the child's process group); attached
    /// with `Session::on_lost` once there is such work.
    action: Option<Box<dyn Fn() + Send>>,
}

impl Session {
    /// Acquire the job's dir (`acquire`) and start renewing its lease at once.
    pub(crate) fn acquire(
        root: &Root,
        req: &Request<'_>,
        linger: Duration,
    ) -> Result<(Session, Origin)> {
        let (held, origin) = acquire(root, req)?;
        let held = Arc::new(held);
        let lost = Arc::new(Mutex::new(Lost::default()));
        let notices = Arc::clone(&req.notices);
        let heartbeat = Heartbeat::start(
            Arc::clone(&held),
            req.ttl,
            Arc::clone(&lost),
            Arc::clone(&notices),
        );
        let session = Session {
            held,
            heartbeat: Some(heartbeat),
            lost,
            linger,
            notices,
        };
        Ok((session, origin))
    }

    pub(crate) fn held(&self) -> &Held {
        &self.held
    }

    /// What to do if the job dir is found moved away: the job must stop loudly rather than keep
    /// building into a dir that is being deleted. Race closed: the heartbeat may have found it
    /// lost before this is attached (during the precheck); the action then runs at once.
    pub(crate) fn on_lost(&self, action: impl Fn() + Send + 'static) {
        let mut lost = lock(&self.lost);
        if lost.happened {
            action();
        }
        lost.action = Some(Box::new(action));
    }

    /// `Err` if the heartbeat found the dir moved away: nothing may start in it.
    pub(crate) fn check(&self) -> Result<()> {
        if lock(&self.lost).happened {
            return Err(moved_away(&self.held));
        }
        Ok(())
    }

    /// End the session: stop the heartbeat and release the lease. The heartbeat's error (the
    /// dir was moved away) is the result; a failed release is only a warning (`end`).
    pub(crate) fn finish(mut self) -> Result<()> {
        self.end()
    }

    fn end(&mut self) -> Result<()> {
        let Some(heartbeat) = self.heartbeat.take() else {
            return Ok(());
        };
        let lost = heartbeat.stop();
        // A release that fails (a disk that filled during the command, a dir moved away) must
        // not change the command's status: the lock goes with this process anyway, so the lease
        // ends, judged by its heartbeat once the lock is free.
        if let Err(e) = self.held.release(self.linger) {
            self.notices.notice(Notice::ReleaseFailed {
                dir: self.held.path.clone(),
                error: format!("{e:#}"),
            });
        }
        // Processes that escaped the step's tracking (they moved to another cgroup, or scrubbed
        // their environment) but kept the tree lock they inherited: the dir stays theirs.
        if self.held.survivors() {
            self.notices.notice(Notice::Survivors {
                dir: self.held.path.clone(),
            });
        }
        lost
    }
}

impl Drop for Session {
    /// Every path that did not `finish` (an error before or after the command ran) still
    /// releases; the error that ended the path is reported by its caller, a lost lease here.
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            self.notices.notice(Notice::Lost {
                dir: self.held.path.clone(),
                error: format!("{e:#}"),
            });
        }
    }
}

fn lock(lost: &Mutex<Lost>) -> std::sync::MutexGuard<'_, Lost> {
    lost.lock().unwrap_or_else(|e| e.into_inner())
}

/// The heartbeat: rewrites `renewed_at`/`expires_at` every interval while the session lives.
struct Heartbeat {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Result<()>>,
}

impl Heartbeat {
    fn start(
        held: Arc<Held>,
        ttl: Duration,
        lost: Arc<Mutex<Lost>>,
        notices: Arc<dyn Notices>,
    ) -> Heartbeat {
        let interval = heartbeat_interval(ttl);
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut failing = false;
            while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                step("heartbeat");
                // Race closed: a guard or an adopter that judged the lease expired (a stopped
                // process, a lying lock) moved the dir away; building on would write into a dir
                // that is being deleted or is another job's.
                if !held.still_named() {
                    return Err(lose(&held, &lost));
                }
                let renewed = held.update(|l| {
                    let now = Now::read();
                    now.stamp(l);
                    l.expires_at = deadline(now.wall, ttl);
                });
                failing = report_renewal(&held, renewed, failing, &*notices);
            }
            Ok(())
        });
        Heartbeat { stop, thread }
    }

    fn stop(self) -> Result<()> {
        drop(self.stop);
        self.thread
            .join()
            .unwrap_or_else(|_| bail!("heartbeat thread panicked"))
    }
}

/// Mark the lease lost and stop the work in the dir, if any is attached yet.
fn lose(held: &Held, lost: &Mutex<Lost>) -> anyhow::Error {
    let mut lost = lock(lost);
    lost.happened = true;
    match &lost.action {
        Some(action) => {
            action();
            anyhow::anyhow!(
                "job dir {} was moved away while the job was running; the job was stopped",
                held.path.display()
            )
        }
        None => moved_away(held),
    }
}

/// The dir was moved away before any work was attached to the session.
fn moved_away(held: &Held) -> anyhow::Error {
    anyhow::anyhow!(
        "job dir {} was moved away while the lease was held",
        held.path.display()
    )
}

/// The lock still protects the dir while renewing fails; the next beat may succeed (e.g.
/// ENOSPC). Say so once when it starts failing and once when it recovers, not on every beat.
/// Returns whether it is failing now.
fn report_renewal(
    held: &Held,
    renewed: std::io::Result<()>,
    failing: bool,
    notices: &dyn Notices,
) -> bool {
    match renewed {
        Err(e) if !failing => {
            notices.notice(Notice::RenewalFailing {
                dir: held.path.clone(),
                error: e.to_string(),
            });
            true
        }
        Err(_) => true,
        Ok(()) if failing => {
            notices.notice(Notice::RenewalRecovered {
                dir: held.path.clone(),
            });
            false
        }
        Ok(()) => false,
    }
}

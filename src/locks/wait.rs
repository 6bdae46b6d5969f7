//! Waiting politely for a lock another process holds: try without blocking, let the caller say
//! who holds it, poll, and give up at a deadline or as soon as the caller is told to stop. Never
//! a blocking `flock`: a wait that cannot be bounded or interrupted is a hang.

use std::fs::{File, TryLockError};
use std::io;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::Result;
use rustix::fs::FlockOperation;
use rustix::io::Errno;

/// How long and how to wait.
pub(crate) struct Patience<'a> {
    /// When the wait began: one that looks at several files in turn waits once, from the first.
    pub(crate) since: Instant,
    /// Give up this long after `since`; `None`: only when interrupted.
    pub(crate) limit: Option<Duration>,
    /// How long between two tries.
    pub(crate) poll: Duration,
    /// `Err` once the caller was told to stop: the wait ends at once with that error.
    pub(crate) interrupted: &'a dyn Fn() -> Result<()>,
}

/// How a wait ended, short of an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The lock is ours.
    Taken,
    /// The caller's `held` ended the wait (what it waits for changed).
    Stopped,
    /// Still held when the limit ran out; the limit.
    TimedOut(Duration),
}

/// Wait for a lock: `try_lock` says `Ok(true)` once it took it, `Ok(false)` while another holds
/// it. Each time it is held: the interruption is checked, `held` has its say (the first time:
/// who holds it; `Break` ends the wait), the limit is checked, and the next try comes after
/// `poll`.
pub(crate) fn wait(
    p: &Patience<'_>,
    mut try_lock: impl FnMut() -> Result<bool>,
    mut held: impl FnMut() -> Result<ControlFlow<()>>,
) -> Result<Waited> {
    loop {
        if try_lock()? {
            return Ok(Waited::Taken);
        }
        (p.interrupted)()?;
        if held()?.is_break() {
            return Ok(Waited::Stopped);
        }
        if let Some(limit) = p.limit.filter(|l| p.since.elapsed() >= *l) {
            return Ok(Waited::TimedOut(limit));
        }
        std::thread::sleep(p.poll);
    }
}

/// One try at `file`'s exclusive lock: `Ok(false)` while another holds it.
pub(crate) fn try_exclusive(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// One try at `file`'s shared lock: `Ok(false)` while another holds it exclusively.
pub(crate) fn try_shared(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(true),
        Err(Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two open files of one path: flock locks are per open file, so the second sees the first.
    fn two_opens() -> (tempfile::NamedTempFile, File, File) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let a = File::open(tmp.path()).unwrap();
        let b = File::open(tmp.path()).unwrap();
        (tmp, a, b)
    }

    fn patience(limit: Duration, interrupted: &dyn Fn() -> Result<()>) -> Patience<'_> {
        Patience {
            since: Instant::now(),
            limit: Some(limit),
            poll: Duration::from_millis(1),
            interrupted,
        }
    }

    #[test]
    fn a_held_lock_is_waited_for_until_the_limit_and_said_once_held() {
        let (_tmp, holder, waiter) = two_opens();
        assert!(try_exclusive(&holder).unwrap());
        let mut said = 0;
        let waited = wait(
            &patience(Duration::ZERO, &|| Ok(())),
            || Ok(try_exclusive(&waiter)?),
            || {
                said += 1;
                Ok(ControlFlow::Continue(()))
            },
        )
        .unwrap();
        assert_eq!(waited, Waited::TimedOut(Duration::ZERO));
        assert_eq!(said, 1);
        assert!(!try_shared(&waiter).unwrap(), "held exclusively");
        drop(holder);
        let free = wait(
            &patience(Duration::ZERO, &|| Ok(())),
            || Ok(try_shared(&waiter)?),
            || Ok(ControlFlow::Continue(())),
        );
        assert_eq!(free.unwrap(), Waited::Taken);
    }

    #[test]
    fn an_interruption_or_the_callers_word_ends_the_wait() {
        let (_tmp, holder, waiter) = two_opens();
        assert!(try_exclusive(&holder).unwrap());
        let long = Duration::from_secs(3600);
        let stopped = wait(
            &patience(long, &|| anyhow::bail!("interrupted")),
            || Ok(try_exclusive(&waiter)?),
            || Ok(ControlFlow::Continue(())),
        );
        assert_eq!(stopped.unwrap_err().to_string(), "interrupted");
        let stopped = wait(
            &patience(long, &|| Ok(())),
            || Ok(try_exclusive(&waiter)?),
            || Ok(ControlFlow::Break(())),
        );
        assert_eq!(stopped.unwrap(), Waited::Stopped);
    }
}

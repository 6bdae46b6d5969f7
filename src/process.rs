//! Running the wrapped program: one `ProcessBuilder`, and supervision that forwards signals,
//! passes the exit status through, and makes sure the child's whole process tree dies with the
//! wrapper — no orphaned rustc keeps writing into a dir the guard may later reclaim.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use rustix::process::{Pid, Signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::exit_codes;

/// A command line with environment changes; printed in backticks in errors.
#[must_use]
#[derive(Debug, Clone)]
pub(crate) struct ProcessBuilder {
    program: OsString,
    args: Vec<OsString>,
    /// `None` removes the variable from the child's environment.
    env: Vec<(OsString, Option<OsString>)>,
}

impl ProcessBuilder {
    pub(crate) fn new(program: impl Into<OsString>) -> Self {
        ProcessBuilder {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub(crate) fn args(&mut self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> &mut Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub(crate) fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((key.as_ref().to_owned(), Some(val.as_ref().to_owned())));
        self
    }

    pub(crate) fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    pub(crate) fn get_envs(&self) -> impl Iterator<Item = (&OsStr, Option<&OsStr>)> {
        self.env.iter().map(|(k, v)| (k.as_os_str(), v.as_deref()))
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }
}

impl fmt::Display for ProcessBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}", self.program.to_string_lossy())?;
        for a in &self.args {
            write!(f, " {}", a.to_string_lossy())?;
        }
        write!(f, "`")
    }
}

/// SIGINT, SIGTERM and SIGHUP, caught from the start of a run: a signal that arrives while the
/// wrapper waits for its lease or sweeps must still end in a released lease and exit 128+N,
/// not in a wrapper killed with the lease left active until its TTL.
pub(crate) struct Interrupts {
    last: Arc<AtomicUsize>,
    ids: Vec<signal_hook::SigId>,
}

impl Interrupts {
    pub(crate) fn install() -> Result<Interrupts> {
        let last = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let id = signal_hook::flag::register_usize(sig, Arc::clone(&last), sig as usize)
                .context("failed to install signal handlers")?;
            ids.push(id);
        }
        Ok(Interrupts { last, ids })
    }

    /// `Err(Interrupted)` once a signal has arrived.
    pub(crate) fn check(&self) -> Result<()> {
        match self.last.load(Ordering::SeqCst) {
            0 => Ok(()),
            sig => Err(Interrupted(sig as i32).into()),
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// The run was stopped by signal `.0` before its command started: exit 128+N.
#[derive(Debug)]
pub(crate) struct Interrupted(pub(crate) i32);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interrupted by signal {} before the command started",
            self.0
        )
    }
}

impl std::error::Error for Interrupted {}

/// A running child in its own process group, with signal forwarding and a reaper.
pub(crate) struct Supervised {
    child: Child,
    pgid: Pid,
    signals: signal_hook::iterator::Handle,
    forwarder: std::thread::JoinHandle<()>,
    reaper: Option<Reaper>,
    /// The terminal was handed to the child's group; take it back when it is done.
    terminal: bool,
}

/// Start `pb` in its own process group.
///
/// - SIGINT/SIGTERM/SIGHUP sent to the wrapper are forwarded to the child's group, and the
///   wrapper stays alive to release the lease.
/// - If the wrapper dies anyway (SIGKILL, OOM), a forked reaper sees its pipe close and SIGKILLs the group, so rustc and build scripts go too; `PR_SET_PDEATHSIG`
///   covers the direct child even if the reaper could not start.
/// - In an interactive terminal the child's group becomes the foreground group, so Ctrl-C and
///   reading stdin (`cargo run`) work as without the wrapper.
pub(crate) fn spawn(pb: &ProcessBuilder) -> Result<Supervised> {
    let signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("failed to install signal handlers")?;
    let stdin = std::io::stdin();
    let terminal = rustix::termios::isatty(&stdin)
        && rustix::termios::tcgetpgrp(&stdin).is_ok_and(|g| g == rustix::process::getpgrp());
    if terminal {
        // Taking the terminal back from a background group raises SIGTTOU; ignore it here (the
        // child gets the default back before exec).
        // SAFETY: setting a signal disposition to SIG_IGN has no memory-safety preconditions.
        unsafe { libc::signal(libc::SIGTTOU, libc::SIG_IGN) };
    }
    let mut cmd = pb.command();
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions
    // (tcsetpgrp, signal, prctl), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if terminal {
                let _ = rustix::termios::tcsetpgrp(
                    std::os::fd::BorrowedFd::borrow_raw(0),
                    rustix::process::getpid(),
                );
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            }
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("failed to start {pb}"))?;
    let pgid = Pid::from_child(&child);
    if terminal {
        let _ = rustix::termios::tcsetpgrp(&stdin, pgid);
    }
    let reaper = spawn_reaper(pgid);
    let handle = signals.handle();
    let forwarder = std::thread::spawn(move || {
        let mut signals = signals;
        for sig in signals.forever() {
            let sig = match sig {
                SIGINT => Signal::INT,
                SIGHUP => Signal::HUP,
                _ => Signal::TERM,
            };
            let _ = rustix::process::kill_process_group(pgid, sig);
        }
    });
    Ok(Supervised {
        child,
        pgid,
        signals: handle,
        forwarder,
        reaper,
        terminal,
    })
}

impl Supervised {
    pub(crate) fn pgid(&self) -> Pid {
        self.pgid
    }

    /// Wait for the child; stop forwarding and dismiss the reaper.
    pub(crate) fn wait(mut self) -> Result<ExitStatus> {
        let status = self
            .child
            .wait()
            .context("failed to wait for the child process")?;
        if self.terminal {
            let _ = rustix::termios::tcsetpgrp(std::io::stdin(), rustix::process::getpgrp());
        }
        if let Some(reaper) = self.reaper.take() {
            reaper.dismiss();
        }
        self.signals.close();
        let _ = self.forwarder.join();
        Ok(status)
    }
}

/// The reaper: a forked copy of the wrapper that blocks reading a pipe whose only writer is the
/// wrapper. EOF without the "done" byte means the wrapper died (SIGKILL, OOM): kill the child's
/// group. Forked rather than spawned, so it costs no exec on every run, and it kills exactly the
/// group the wrapper created — there is no entry point that takes a pgid from outside.
struct Reaper {
    pid: libc::pid_t,
    done: File,
}

fn spawn_reaper(pgid: Pid) -> Option<Reaper> {
    let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
    let (read_fd, write_fd) = (read_end.as_raw_fd(), write_end.as_raw_fd());
    let group = pgid.as_raw_nonzero().get();
    // SAFETY: the child runs only async-signal-safe calls (setpgid, close, read, kill, _exit) and
    // allocates nothing, as required after fork in a multithreaded process.
    match unsafe { libc::fork() } {
        -1 => None,
        0 => unsafe {
            // Its own group: a Ctrl-C aimed at the wrapper must not kill the reaper first.
            libc::setpgid(0, 0);
            libc::close(write_fd);
            let mut byte = 0u8;
            let n = loop {
                let n = libc::read(read_fd, (&raw mut byte).cast(), 1);
                if n >= 0 || *libc::__errno_location() != libc::EINTR {
                    break n;
                }
            };
            if n == 0 {
                libc::kill(-group, libc::SIGKILL);
            }
            libc::_exit(0)
        },
        pid => {
            drop(read_end);
            Some(Reaper {
                pid,
                done: File::from(write_end),
            })
        }
    }
}

impl Reaper {
    /// The child is done: tell the reaper to exit without killing anything, and reap it.
    fn dismiss(mut self) {
        let _ = self.done.write_all(b"x");
        drop(self.done);
        let mut status = 0;
        // SAFETY: waiting for our own forked child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// The wrapper's exit code for the child's status: its own code, or 128+N for signal N.
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(exit_codes::ERROR),
        (None, Some(sig)) => exit_codes::for_signal(sig),
        (None, None) => exit_codes::ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_the_command() {
        let mut pb = ProcessBuilder::new("cargo");
        pb.args(["test", "--workspace"]);
        assert_eq!(pb.to_string(), "`cargo test --workspace`");
    }

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }
}

//! Running the wrapped program: one `ProcessBuilder`, and supervision that forwards signals,
//! passes the exit status through, and makes sure the child's whole process tree dies with the
//! wrapper — no orphaned rustc keeps writing into a dir the guard may later reclaim.

// Unsafe: job control and the reaper need what std and rustix leave to libc: `fork`, `waitpid`
// with `WUNTRACED`, signal dispositions, `pre_exec` hooks, and `clone3`'s spawn.
#![allow(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use rustix::process::{Pid, Signal};
use signal_hook::iterator::Signals;

use crate::exit::Exit;

mod clone3;
mod tree;

/// A command line with environment changes; printed in backticks in errors.
#[must_use]
#[derive(Debug, Clone)]
pub(crate) struct ProcessBuilder {
    program: OsString,
    args: Vec<OsString>,
    /// `None` removes the variable from the child's environment.
    env: Vec<(OsString, Option<OsString>)>,
    /// An fd the child inherits across exec (all others are close-on-exec): the job dir's tree
    /// lock, so the dir stays protected while any process of the tree lives.
    inherit: Option<i32>,
}

impl ProcessBuilder {
    pub(crate) fn new(program: impl Into<OsString>) -> Self {
        ProcessBuilder {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            inherit: None,
        }
    }

    /// Let the child inherit `fd` (which must stay open until the child has started).
    pub(crate) fn inherit_fd(&mut self, fd: Option<std::os::fd::RawFd>) -> &mut Self {
        self.inherit = fd;
        self
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

/// The signals that end a run; each one's default action would kill the wrapper with the lease
/// left active until its TTL. Before the command starts they stop the wait for the lease (released,
/// exit 128+N); while it runs they are forwarded to it, and the wrapper lives on to release.
const ENDING: [i32; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
];

/// Whether `sig` was ignored when we started (`nohup`, or a parent that ignores SIGINT for its
/// background jobs). Such a signal stays ignored, for us and, across exec, for the child: a
/// handler installed over it would turn a hangup that `nohup` meant to ignore into one forwarded.
fn inherited_ignored(sig: i32) -> bool {
    // SAFETY: querying a disposition (null new action) changes nothing.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Undo an inherited `SIGCHLD` ignore: with it, the kernel reaps children itself and `waitpid`
/// fails with ECHILD, and the child (cargo) would inherit the same broken setting.
fn reset_sigchld() {
    if inherited_ignored(libc::SIGCHLD) {
        // SAFETY: setting a disposition to SIG_DFL has no memory-safety preconditions.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    }
}

/// The [`ENDING`] signals, caught from the start of a run: a signal that arrives while the
/// wrapper waits for its lease or sweeps must still end in a released lease and exit 128+N,
/// not in a wrapper killed with the lease left active until its TTL.
pub(crate) struct Interrupts {
    last: Arc<AtomicUsize>,
    ids: Vec<signal_hook::SigId>,
}

impl Interrupts {
    pub(crate) fn install() -> Result<Interrupts> {
        reset_sigchld();
        let last = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for sig in ENDING.into_iter().filter(|&s| !inherited_ignored(s)) {
            let id = signal_hook::flag::register_usize(sig, Arc::clone(&last), sig as usize)
                .context("failed to install signal handlers")?;
            ids.push(id);
        }
        Ok(Interrupts { last, ids })
    }

    /// `Err(Interrupted)` once a signal has arrived.
    pub(crate) fn check(&self) -> Result<()> {
        match self.received() {
            None => Ok(()),
            Some(sig) => Err(Interrupted(sig).into()),
        }
    }

    /// The last signal that arrived, if one did.
    pub(crate) fn received(&self) -> Option<i32> {
        match self.last.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig as i32),
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

/// A running child in its own process group, with signal forwarding, job control, and a reaper.
pub(crate) struct Supervised {
    pid: libc::pid_t,
    pgid: Pid,
    signals: signal_hook::iterator::Handle,
    forwarder: Option<std::thread::JoinHandle<()>>,
    reaper: Option<Reaper>,
    tree: Option<tree::Tree>,
    /// Stdin is a terminal of which we may be the foreground group: stops are handled the way
    /// a shell handles them (see [`Supervised::stopped`]).
    job_control: bool,
    /// The child's group was given the terminal: a Ctrl-C reaches it, not ours (see
    /// [`die_of`]).
    had_terminal: bool,
}

/// Start `pb` in its own process group.
///
/// - The [`ENDING`] signals sent to the wrapper are forwarded to the child's group, and the
///   wrapper stays alive to release the lease. SIGTSTP is forwarded too, so a `kill -TSTP` of
///   the wrapper stops the child rather than the wrapper (and its heartbeat) alone.
/// - The whole tree is tracked ([`tree`]): if the wrapper dies anyway (SIGKILL, OOM), a forked
///   reaper sees its pipe close and kills the group and the tree, so rustc, build scripts and
///   nextest's tests go too; `PR_SET_PDEATHSIG` covers the direct child even if the reaper could
///   not start. When the child exits, whatever it left running is killed before the release.
/// - In an interactive terminal the child's group becomes the foreground group, so Ctrl-C and
///   reading stdin (`cargo run`) work as without the wrapper.
pub(crate) fn spawn(pb: &ProcessBuilder) -> Result<Supervised> {
    reset_sigchld();
    let mut forwarded: Vec<i32> = ENDING.to_vec();
    forwarded.push(libc::SIGTSTP);
    forwarded.retain(|&s| !inherited_ignored(s));
    let stdin = std::io::stdin();
    let job_control = rustix::termios::isatty(&stdin) && rustix::termios::tcgetpgrp(&stdin).is_ok();
    if !job_control {
        // Without a terminal nobody else will continue a stopped child: a SIGCONT sent to the
        // wrapper is for it. (With one, `stopped` continues it once the terminal is settled.)
        forwarded.push(libc::SIGCONT);
    }
    let signals = Signals::new(&forwarded).context("failed to install signal handlers")?;
    let foreground = job_control
        && rustix::termios::tcgetpgrp(&stdin).is_ok_and(|g| g == rustix::process::getpgrp());
    let ttou_ignored = inherited_ignored(libc::SIGTTOU);
    if job_control {
        // Taking the terminal back from a background group raises SIGTTOU; ignore it here (the
        // child gets its inherited disposition back before exec).
        // SAFETY: setting a signal disposition to SIG_IGN has no memory-safety preconditions.
        unsafe { libc::signal(libc::SIGTTOU, libc::SIG_IGN) };
    }
    let mut tree = tree::Tree::prepare();
    let inherit = pb.inherit;
    let setup = move || child_setup(foreground, job_control, ttou_ignored, inherit);
    let child = start(pb, &tree, setup).with_context(|| format!("failed to start {pb}"))?;
    // SAFETY: a pid we just started is a positive number.
    let pgid = unsafe { Pid::from_raw_unchecked(child) };
    if foreground {
        let _ = rustix::termios::tcsetpgrp(&stdin, pgid);
    }
    tree.confirm(child as u32);
    crate::term::verbose("Tracking", tree.describe());
    let reaper = spawn_reaper(pgid, tree.killer());
    let handle = signals.handle();
    let forwarder = std::thread::spawn(move || {
        let mut signals = signals;
        for sig in signals.forever() {
            if let Some(signal) = Signal::from_named_raw(sig) {
                let _ = rustix::process::kill_process_group(pgid, signal);
            }
            // A stopped child acts on a terminating signal only once continued (what a shell's
            // `kill` does for a stopped job too).
            if ENDING.contains(&sig) {
                let _ = rustix::process::kill_process_group(pgid, Signal::CONT);
            }
        }
    });
    Ok(Supervised {
        pid: child,
        pgid,
        signals: handle,
        forwarder: Some(forwarder),
        reaper,
        tree: Some(tree),
        job_control,
        had_terminal: foreground,
    })
}

/// In the child, before exec: its own process group, the terminal if we had it, the inherited
/// SIGTTOU disposition, death with the wrapper, and the fd it must inherit. Async-signal-safe:
/// runs after a fork of a multithreaded process.
fn child_setup(
    foreground: bool,
    job_control: bool,
    ttou_ignored: bool,
    inherit: Option<i32>,
) -> std::io::Result<()> {
    rustix::process::setpgid(None, None)?;
    if let Some(fd) = inherit {
        // Clear close-on-exec in the child only: the wrapper's other children (none on the
        // start-up path, but any later one) do not get it.
        // SAFETY: fcntl on an fd number; the wrapper keeps it open until after the spawn.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if foreground {
        // SAFETY: fd 0 is stdin, open for the whole call.
        let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
        let _ = rustix::termios::tcsetpgrp(stdin, rustix::process::getpid());
    }
    if job_control && !ttou_ignored {
        // SAFETY: setting a disposition has no memory-safety preconditions.
        unsafe { libc::signal(libc::SIGTTOU, libc::SIG_DFL) };
    }
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    Ok(())
}

/// Start the child with the run's token in its environment: born inside our cgroup if there is
/// one (`clone3`), else with std's `Command`, moving itself into the cgroup before exec when
/// `clone3` is refused (correct, but the move costs an RCU grace period).
fn start(
    pb: &ProcessBuilder,
    tree: &tree::Tree,
    setup: impl Fn() -> std::io::Result<()> + Send + Sync + 'static,
) -> std::io::Result<libc::pid_t> {
    let token = [(OsStr::new(tree::TOKEN_VAR), Some(OsStr::new(tree.chain())))];
    if let Some(dir) = tree.dir_fd() {
        let prepared = clone3::Prepared::new(
            &pb.program,
            pb.args.iter().map(OsString::as_os_str),
            pb.get_envs().chain(token),
        )?;
        // SAFETY: `setup` is async-signal-safe (see `child_setup`).
        match unsafe { clone3::spawn(&prepared, dir, &setup) } {
            Ok(pid) => return Ok(pid),
            Err(clone3::Failed::Spawn(e)) => return Err(e),
            Err(clone3::Failed::Unsupported) => {}
        }
    }
    let procs_fd = tree.procs_fd();
    let mut cmd = pb.command();
    cmd.env(tree::TOKEN_VAR, tree.chain());
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions
    // (write, and those of `child_setup`), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = procs_fd {
                libc::write(fd, b"0".as_ptr().cast(), 1);
            }
            setup()
        });
    }
    Ok(cmd.spawn()?.id() as libc::pid_t)
}

impl Supervised {
    pub(crate) fn pgid(&self) -> Pid {
        self.pgid
    }

    /// Wait for the child to exit (handling its stops on the way); then kill whatever it left
    /// running, stop forwarding and dismiss the reaper. Returns how the child ended, as the
    /// wrapper's own exit.
    pub(crate) fn wait(mut self) -> Result<Exit> {
        let status = self.wait_for_exit();
        self.finish();
        Ok(Exit::of_child(status?, self.had_terminal))
    }

    fn wait_for_exit(&self) -> Result<ExitStatus> {
        let pid = self.pid;
        loop {
            let mut raw = 0;
            // WUNTRACED: a stopped child must be seen, or Ctrl-Z leaves the terminal with a
            // stopped group and the wrapper waiting forever.
            // SAFETY: waiting for our own child into a local.
            let r = unsafe { libc::waitpid(pid, &mut raw, libc::WUNTRACED) };
            if r == -1 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err).context("failed to wait for the child process");
            }
            if libc::WIFSTOPPED(raw) {
                self.stopped(libc::WSTOPSIG(raw));
                continue;
            }
            return Ok(ExitStatus::from_raw(raw));
        }
    }

    /// The child stopped with `sig`; do what a job-control shell does.
    ///
    /// - Stopped by the terminal (SIGTTIN/SIGTTOU: it read or wrote it from the background):
    ///   wait until we are the foreground group (`fg`), then give it the terminal and continue
    ///   it. We poll rather than stop ourselves: a `fg` arriving between the child's stop and
    ///   ours would be lost (its SIGCONT finding us still running) and leave us stopped in the
    ///   foreground for good.
    /// - Stopped otherwise (Ctrl-Z, SIGTSTP, SIGSTOP): take the terminal back and stop
    ///   ourselves, so the shell that started us sees its job stopped and gets its prompt back;
    ///   once continued (`fg` or `bg`), give the terminal back if it is ours and continue the
    ///   child.
    ///
    /// Without a terminal nothing is done: a SIGCONT sent to us is forwarded.
    fn stopped(&self, sig: i32) {
        if !self.job_control {
            return;
        }
        let stdin = std::io::stdin();
        let ours = rustix::process::getpgrp();
        let foreground = || rustix::termios::tcgetpgrp(&stdin).ok() == Some(ours);
        if matches!(sig, libc::SIGTTIN | libc::SIGTTOU) {
            while !foreground() {
                if !still_stopped(self.pid) {
                    // Continued or killed by someone else: back to waiting for it.
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        } else {
            if rustix::termios::tcgetpgrp(&stdin).ok() == Some(self.pgid) {
                let _ = rustix::termios::tcsetpgrp(&stdin, ours);
            }
            // SIGSTOP, not SIGTSTP: it cannot be caught or ignored, so we really stop.
            // SAFETY: raising a signal on ourselves.
            unsafe { libc::raise(libc::SIGSTOP) };
        }
        if foreground() {
            let _ = rustix::termios::tcsetpgrp(&stdin, self.pgid);
        }
        let _ = rustix::process::kill_process_group(self.pgid, Signal::CONT);
    }

    /// The child has exited: take the terminal back, kill what is left of its group and tree
    /// (background jobs, daemons, nextest's test processes) so nothing writes into the dir after
    /// the release, then stop forwarding and dismiss the reaper.
    fn finish(&mut self) {
        if self.job_control {
            let stdin = std::io::stdin();
            if rustix::termios::tcgetpgrp(&stdin).is_ok_and(|g| g == self.pgid) {
                let _ = rustix::termios::tcsetpgrp(&stdin, rustix::process::getpgrp());
            }
        }
        let _ = rustix::process::kill_process_group(self.pgid, Signal::KILL);
        if let Some(tree) = self.tree.take() {
            tree.kill_all();
        }
        if let Some(reaper) = self.reaper.take() {
            reaper.dismiss();
        }
        self.signals.close();
        if let Some(forwarder) = self.forwarder.take() {
            let _ = forwarder.join();
        }
    }
}

/// Whether `pid` (our child) is still stopped, from `/proc/PID/stat`.
fn still_stopped(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            Some(matches!(rest.split_whitespace().next()?, "T" | "t"))
        })
        .unwrap_or(false)
}

/// The reaper: a forked copy of the wrapper that blocks reading a pipe whose only writer is the
/// wrapper. EOF without the "done" byte means the wrapper died (SIGKILL, OOM): kill the child's
/// group and tree. Forked rather than spawned, so it costs no exec on every run, and it kills
/// exactly the tree the wrapper created — there is no entry point that takes a target from outside.
struct Reaper {
    pid: libc::pid_t,
    done: File,
}

fn spawn_reaper(pgid: Pid, killer: tree::Killer<'_>) -> Option<Reaper> {
    let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
    let (read_fd, write_fd) = (read_end.as_raw_fd(), write_end.as_raw_fd());
    let group = pgid.as_raw_nonzero().get();
    // SAFETY: the child runs only async-signal-safe calls (setpgid, close, read, kill, the
    // killer's raw syscalls, _exit) and allocates nothing, as required after fork in a
    // multithreaded process.
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
                killer.kill_all();
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

/// Die of `sig`, after the lease is released: a shell decides whether a loop around us goes on
/// by how we ended. An interactive bash stops `for ...; do cargo guarded ...; done` when the job
/// died of SIGINT (not on exit 130). A non-interactive one (`bash script.sh`) stops only if it
/// got the SIGINT itself: without us, Ctrl-C would have reached its process group, but we gave
/// the terminal to the child's group, so when the child died of a keyboard signal we send it on
/// to our own group (which the shell shares, and we die of it too). No core dump of our own: the
/// child's crash is the child's. Returns only if the signal did not kill us.
pub(crate) fn die_of(sig: i32, to_group: bool) {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: plain syscalls: rlimit and disposition changes, unblocking and raising a signal.
    unsafe {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        let from_keyboard = matches!(sig, libc::SIGINT | libc::SIGQUIT);
        if from_keyboard && to_group {
            libc::kill(0, sig);
        }
        libc::raise(sig);
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
}

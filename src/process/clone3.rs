//! Starting the child directly inside our cgroup with `clone3(CLONE_INTO_CGROUP)` (Linux 5.7).
//!
//! Moving a process into a cgroup afterwards (writing `cgroup.procs`, even from `pre_exec`)
//! waits for an RCU grace period: ~14 ms per run here, half the cost of a no-op build. Born in
//! the cgroup, the child costs nothing extra. std's `Command` cannot pass a cgroup to `clone3`,
//! so this is the small part of it we need: resolve the program on PATH, build argv and envp
//! before the fork, exec in the child, report an exec failure through a close-on-exec pipe.

// Unsafe: `clone3` has no safe wrapper (rustix and std offer none with `CLONE_INTO_CGROUP`), and
// the child after it runs before `execve` on raw pointers prepared by the parent.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// `struct clone_args` of linux/sched.h, up to the `cgroup` field (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Why the child was not started.
pub(super) enum Failed {
    /// `clone3` or `CLONE_INTO_CGROUP` is unavailable (old kernel, a seccomp filter that refuses
    /// `clone3`, as container runtimes' defaults do): start it another way.
    Unsupported,
    /// The program could not be started (not found, not executable, ...).
    Spawn(io::Error),
}

/// The program, arguments and environment, ready for `execve` (built before the fork: the child
/// may not allocate).
pub(super) struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl Prepared {
    /// `env`: the changes to our own environment (`None` removes a variable), in order.
    pub(super) fn new<'a>(
        program: &OsStr,
        args: impl Iterator<Item = &'a OsStr>,
        env: impl Iterator<Item = (&'a OsStr, Option<&'a OsStr>)>,
    ) -> io::Result<Prepared> {
        let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        for (k, v) in env {
            vars.retain(|(key, _)| key != k);
            if let Some(v) = v {
                vars.push((k.to_owned(), v.to_owned()));
            }
        }
        let path = resolve(program, &vars)?;
        let cstr = |b: &[u8]| {
            CString::new(b).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "nul byte found in provided data",
                )
            })
        };
        let mut argv = vec![cstr(program.as_bytes())?];
        for a in args {
            argv.push(cstr(a.as_bytes())?);
        }
        let mut envp = Vec::with_capacity(vars.len());
        for (k, v) in &vars {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(cstr(&kv)?);
        }
        Ok(Prepared {
            path: cstr(path.as_os_str().as_bytes())?,
            argv,
            envp,
        })
    }
}

/// The program as `execvp` would find it: a name with a slash is a path, else the first
/// executable of that name on the child's PATH.
fn resolve(program: &OsStr, vars: &[(OsString, OsString)]) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = vars
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let cwd = std::env::current_dir()?;
    which::which_in(program, Some(path), cwd)
        .map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))
}

/// Fork into `cgroup` (an open fd of the cgroup's dir), run `setup` in the child, exec. Returns
/// the child's pid once it has exec'd.
///
/// # Safety
/// `setup` runs in the child of a fork of a multithreaded process: it may only make
/// async-signal-safe calls and must not allocate.
pub(super) unsafe fn spawn(
    prepared: &Prepared,
    cgroup: i32,
    setup: &dyn Fn() -> io::Result<()>,
) -> Result<libc::pid_t, Failed> {
    let mut argv: Vec<*const libc::c_char> = prepared.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = prepared.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Failed::Spawn(e.into()))?;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM is a fork; the child below only makes async-signal-safe
    // calls on memory prepared before it (argv, envp, the pipe) and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: in the child; see above.
        unsafe { exec_child(prepared, &argv, &envp, setup, write_end.as_raw_fd()) }
    }
    if pid < 0 {
        return Err(clone_failed(io::Error::last_os_error()));
    }
    let pid = pid as libc::pid_t;
    drop(write_end);
    exec_result(pid, &read_end)
}

/// In the child of [`spawn`]: run `setup`, reset what std's spawn resets, exec; on failure write
/// the errno into `report` (the pipe's write end) and exit 127.
///
/// # Safety
/// Only in the child of a fork; `argv` and `envp` are null-terminated arrays of pointers into
/// `prepared`. Makes only async-signal-safe calls and never returns.
unsafe fn exec_child(
    prepared: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    setup: &dyn Fn() -> io::Result<()>,
    report: i32,
) -> ! {
    // SAFETY: see the function's contract.
    unsafe {
        let errno = match setup() {
            Err(e) => e.raw_os_error().unwrap_or(libc::EINVAL),
            Ok(()) => {
                // What std's spawn resets too: an empty signal mask, and SIGPIPE, which the
                // Rust runtime ignores, back to the default.
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::execve(prepared.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                *libc::__errno_location()
            }
        };
        let bytes = errno.to_ne_bytes();
        libc::write(report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

/// Why `clone3` failed: unsupported here (start the child another way), or a real error.
fn clone_failed(err: io::Error) -> Failed {
    match err.raw_os_error() {
        // No clone3 (ENOSYS, also what seccomp filters return), no CLONE_INTO_CGROUP or a
        // cgroup we may not fork into (EINVAL, EPERM, EACCES, EBUSY, EOPNOTSUPP).
        Some(
            libc::ENOSYS
            | libc::EINVAL
            | libc::EPERM
            | libc::EACCES
            | libc::EBUSY
            | libc::EOPNOTSUPP
            | libc::E2BIG,
        ) => Failed::Unsupported,
        _ => Failed::Spawn(err),
    }
}

/// After the fork: read the child's report pipe. EOF: the exec succeeded (the pipe closed on
/// exec). Four bytes: its errno; the child is reaped and the error returned.
fn exec_result(pid: libc::pid_t, read_end: &impl std::os::fd::AsFd) -> Result<libc::pid_t, Failed> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(read_end, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Failed::Spawn(e.into())),
        }
    }
    if got == 0 {
        return Ok(pid);
    }
    let mut status = 0;
    // SAFETY: reaping our own child, which exits right after reporting.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Err(Failed::Spawn(io::Error::from_raw_os_error(
        i32::from_ne_bytes(buf),
    )))
}

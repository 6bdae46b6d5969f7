//! Tracking the child's whole process tree, not just its process group: nextest gives each test
//! its own group, `setsid` a new session, and a build may leave a daemon in the background. All
//! of them may still be writing into the job's dir when the lease is released.
//!
//! Two mechanisms, the best that works here:
//! - a cgroup v2 of our own, created under the wrapper's cgroup, that the child is moved into
//!   before exec: every descendant stays in it whatever it does, and `cgroup.kill` kills them all
//!   at once (Linux >= 5.14);
//! - else a per-run token in the child's environment: descendants inherit it, and the killer
//!   scans `/proc/*/environ` for it (processes it may read: its own uid's, or all as root).
//!   A process that scrubs its environment escapes this one. Tokens form a chain: a nested
//!   `cargo guarded` appends its own token to the one it inherited (`outer:inner`), so the
//!   outer run's killer finds the nested run's processes too, not just its wrapper and reaper.
//!
//! The killing code runs in the forked reaper too (after `fork` in a multithreaded process), so
//! it only makes raw syscalls into stack buffers: no allocation, no locks.

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir};

/// How the killer opens a directory: no allocation, no fd leaked into a child.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// The variable that carries the run's token to every descendant. Not `CARGO_`-prefixed: sccache
/// hashes every `CARGO_*` variable into its keys, and a per-run value would make every run miss.
pub(crate) const TOKEN_VAR: &str = "_CARGO_GUARDED_RUN_TOKEN";

/// `TOKEN_VAR=` as it starts the variable in `/proc/PID/environ`.
const TOKEN_PREFIX: &[u8] = b"_CARGO_GUARDED_RUN_TOKEN=";

/// The longest inherited chain we extend (64 nested runs); a longer or malformed value is not
/// ours, and this run starts a chain of its own.
const MAX_CHAIN: usize = 64 * 33;

/// How the tree is tracked; fixed once the child has started.
pub(super) struct Tree {
    /// This run's token: what its killer looks for as one link of the chain.
    token: String,
    /// `TOKEN_VAR`'s value for the child: the inherited chain, then `token`.
    chain: String,
    cgroup: Option<Cgroup>,
}

/// Our own cgroup v2 dir, with the files opened before the fork (so the reaper and `pre_exec`
/// need no path lookups).
struct Cgroup {
    path: PathBuf,
    c_path: CString,
    /// The dir itself, for `clone3(CLONE_INTO_CGROUP)`.
    dir: std::fs::File,
    procs: std::fs::File,
    kill: std::fs::File,
    events: std::fs::File,
}

impl Tree {
    /// Prepare tracking for one run: a fresh token, and our cgroup if we can make one. Costs a
    /// few file operations and no subprocess.
    pub(super) fn prepare() -> Tree {
        let token = uuid::Uuid::new_v4().simple().to_string();
        // Read here, not in `Config`: it is this process's own tracking, set by the `cargo
        // guarded` we run under (if any), not an option.
        let chain = match std::env::var(TOKEN_VAR) {
            Ok(outer) if is_chain(&outer) => format!("{outer}:{token}"),
            _ => token.clone(),
        };
        Tree {
            token,
            chain,
            cgroup: Cgroup::create(),
        }
    }

    /// `TOKEN_VAR`'s value for the child.
    pub(super) fn chain(&self) -> &str {
        &self.chain
    }

    /// The fd of our cgroup's dir, to start the child in it.
    pub(super) fn dir_fd(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        self.cgroup.as_ref().map(|c| c.dir.as_raw_fd())
    }

    /// The fd `pre_exec` writes "0" to, moving the child into our cgroup before it execs (when
    /// `clone3` is refused).
    pub(super) fn procs_fd(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        self.cgroup.as_ref().map(|c| c.procs.as_raw_fd())
    }

    /// After the spawn: keep the cgroup only if the child really is in it (the move may be
    /// refused: no write access to the common ancestor, a cgroup with controllers enabled).
    pub(super) fn confirm(&mut self, child: u32) {
        let Some(cg) = &self.cgroup else { return };
        if !cg.holds(child) {
            let _ = std::fs::remove_dir(&cg.path);
            self.cgroup = None;
        }
    }

    /// What `-v` says about the mechanism in use.
    pub(super) fn describe(&self) -> String {
        match &self.cgroup {
            Some(cg) => format!("the command's process tree in cgroup {}", cg.path.display()),
            None => format!(
                "the command's process tree by {TOKEN_VAR} in /proc/*/environ (no writable \
                 cgroup v2)"
            ),
        }
    }

    /// The raw parts the reaper needs after `fork`.
    pub(super) fn killer(&self) -> Killer<'_> {
        Killer {
            token: self.token.as_bytes(),
            cgroup: self
                .cgroup
                .as_ref()
                .map(|c| (c.kill.as_fd(), c.events.as_fd(), c.c_path.as_c_str())),
        }
    }

    /// Kill whatever is left of the tree and remove our cgroup (normal exit, before release).
    pub(super) fn kill_all(self) {
        self.killer().kill_all();
    }
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Cgroup {
    /// A child cgroup of the wrapper's own, in the cgroup v2 hierarchy (on a hybrid host, the
    /// one mounted at `/sys/fs/cgroup/unified`). `None` when there is none we can write to.
    fn create() -> Option<Cgroup> {
        let ours = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = ours.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let base = cgroup2_dir(&mountinfo, rel)?;
        remove_orphans(&base);
        let path = base.join(format!("cargo-guarded-{}", std::process::id()));
        // A dir of the same name is left by an earlier wrapper of the same pid killed before its
        // reaper could remove it; it is empty (or we could not remove it, and fall back).
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).ok()?;
        let open = |name: &str, write: bool| {
            std::fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .open(path.join(name))
        };
        let files = (|| {
            Ok::<_, std::io::Error>((
                std::fs::File::open(&path)?,
                open("cgroup.procs", true)?,
                open("cgroup.kill", true)?,
                open("cgroup.events", false)?,
            ))
        })();
        match files {
            Ok((dir, procs, kill, events)) => Some(Cgroup {
                c_path: CString::new(path.as_os_str().as_bytes()).ok()?,
                path,
                dir,
                procs,
                kill,
                events,
            }),
            Err(_) => {
                // No cgroup.kill (Linux < 5.14) or no access: the token has to do.
                let _ = std::fs::remove_dir(&path);
                None
            }
        }
    }
}

impl Cgroup {
    /// Whether `child` (ours, not yet reaped) is in this cgroup: its own `cgroup.procs` lists it,
    /// or the child's cgroup path is this one's, whole. Race closed: at a cgroup namespace's root
    /// (a container, `unshare --cgroup`) the child's path is `/`, and a test of the path's *end*
    /// (`ends_with("")`, always true) took a refused move for success, so the token fallback
    /// never ran and a `setsid` child outlived a normal exit.
    fn holds(&self, child: u32) -> bool {
        let listed = std::fs::read_to_string(self.path.join("cgroup.procs"))
            .is_ok_and(|procs| procs.lines().any(|l| l.trim().parse() == Ok(child)));
        listed || self.is_path_of(child)
    }

    /// The child's cgroup (`/proc/PID/cgroup`, relative to our namespace's root) resolved under
    /// the cgroup2 mount, compared whole with ours: a child that exited already (a zombie, not in
    /// `cgroup.procs`) still shows the cgroup it died in.
    fn is_path_of(&self, child: u32) -> bool {
        let Ok(theirs) = std::fs::read_to_string(format!("/proc/{child}/cgroup")) else {
            return false;
        };
        let Some(rel) = theirs.lines().find_map(|l| l.strip_prefix("0::")) else {
            return false;
        };
        let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return false;
        };
        cgroup2_dir(&mountinfo, rel.trim()).is_some_and(|dir| dir == self.path)
    }
}

/// Remove the `cargo-guarded-<pid>` cgroups under `base` left by wrappers that are gone (killed
/// together with their reaper, so nobody removed them) once they are empty: the next run cleans
/// up, so none is leaked for long. `rmdir` of a cgroup fails while it has processes, so a cgroup
/// whose orphans still run stays until a later run. Only dead pids (of our pid namespace): a live
/// wrapper's cgroup may be empty for a moment between its `mkdir` and its child's start.
fn remove_orphans(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("cargo-guarded-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Some(pid) = rustix::process::Pid::from_raw(pid) else {
            continue;
        };
        if rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH) {
            continue;
        }
        if let Ok(dir) = std::fs::File::open(entry.path()) {
            remove_subdirs(dir.as_fd(), 4);
        }
        let _ = std::fs::remove_dir(entry.path());
    }
}

impl Drop for Cgroup {
    /// The child never started, or it was not in the cgroup: nothing to keep. (After
    /// `kill_all` the dir is gone already.)
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Whether an inherited `TOKEN_VAR` is a chain of tokens we made: hex links joined by `:`.
fn is_chain(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_CHAIN
        && value
            .split(':')
            .all(|link| !link.is_empty() && link.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The dir of cgroup `rel` (as in `/proc/self/cgroup`'s `0::` line) under a cgroup2 mount.
fn cgroup2_dir(mountinfo: &str, rel: &str) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE SUPEROPTS"
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = left.split(' ').collect();
        let (root, mountpoint) = (*fields.get(3)?, *fields.get(4)?);
        // A mount of a sub-tree (a container's cgroup namespace shows "/") holds `rel` only if
        // `rel` lies under its root.
        let Some(inner) = rel.strip_prefix(root.trim_end_matches('/')) else {
            continue;
        };
        let mut dir = PathBuf::from(unescape_mountinfo(mountpoint));
        for part in inner.split('/').filter(|p| !p.is_empty()) {
            if part == ".." {
                return None;
            }
            dir.push(part);
        }
        return Some(dir);
    }
    None
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> std::ffi::OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsStr::from_bytes(&out).to_owned()
}

/// Everything needed to kill the tree, as borrowed parts: usable after `fork`.
#[derive(Clone, Copy)]
pub(super) struct Killer<'a> {
    /// This run's token.
    token: &'a [u8],
    /// `cgroup.kill` fd, `cgroup.events` fd, the dir.
    cgroup: Option<(BorrowedFd<'a>, BorrowedFd<'a>, &'a CStr)>,
}

impl Killer<'_> {
    /// Kill every process of the tree, then remove our cgroup. Async-signal-safe.
    pub(super) fn kill_all(self) {
        match self.cgroup {
            Some((kill, events, path)) => kill_cgroup(kill, events, path),
            None => {
                // New processes may be forked while we scan: scan until a scan finds none.
                for _ in 0..50 {
                    if kill_token_holders(self.token) == 0 {
                        break;
                    }
                }
            }
        }
    }
}

/// `cgroup.kill`, wait (bounded) until the cgroup is empty, remove it. Async-signal-safe: raw
/// syscalls, buffers on this stack.
fn kill_cgroup(kill: BorrowedFd<'_>, events: BorrowedFd<'_>, path: &CStr) {
    let _ = rustix::io::write(kill, b"1");
    let mut buf = [0u8; 256];
    // Killed processes leave the cgroup as they exit: usually at once, but a process in
    // uninterruptible sleep (an NFS write) takes its time. Up to ~10 s, then leave the
    // (possibly non-empty) dir; it costs nothing but a name.
    for _ in 0..2000 {
        match rustix::io::pread(events, &mut buf, 0) {
            Ok(n @ 1..) if !contains(&buf[..n], b"populated 0") => {}
            _ => break,
        }
        // `nanosleep`, nothing more.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // A nested `cargo guarded` made its own cgroup inside ours, and its reaper, in ours too,
    // was killed before it could remove it: remove those first (empty now, like ours).
    if let Ok(dir) = rustix::fs::open(path, DIR_FLAGS, Mode::empty()) {
        remove_subdirs(dir.as_fd(), 4);
    }
    let _ = rustix::fs::unlinkat(rustix::fs::CWD, path, AtFlags::REMOVEDIR);
}

/// Remove the (cgroup) dirs under `dir`, down to `depth` levels: a cgroup dir is removed with
/// `rmdir` once it has no children and no processes, whatever interface files it shows.
/// Async-signal-safe: `getdents64` into a buffer on this stack, raw syscalls.
fn remove_subdirs(dir: BorrowedFd<'_>, depth: u32) {
    if depth == 0 {
        return;
    }
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let mut entries = RawDir::new(dir, &mut buf);
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if entry.file_type() != FileType::Directory || name == c"." || name == c".." {
            continue;
        }
        if let Ok(sub) = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
            remove_subdirs(sub.as_fd(), depth - 1);
        }
        let _ = rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// SIGKILL every process (but us) whose token chain holds `token`; returns how many.
/// `getdents64` and `open`/`read` into buffers on this stack: this runs after `fork` in the
/// reaper, where nothing may allocate.
fn kill_token_holders(token: &[u8]) -> usize {
    let Ok(proc_fd) = rustix::fs::open(c"/proc", DIR_FLAGS, Mode::empty()) else {
        return 0;
    };
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let mut killed = 0;
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = RawDir::new(proc_fd.as_fd(), &mut buf);
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if let Some(pid) = parse_pid(name.to_bytes())
            && pid != me
            && environ_holds(proc_fd.as_fd(), name.to_bytes(), token)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
            && rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
        {
            killed += 1;
        }
    }
    killed
}

fn parse_pid(name: &[u8]) -> Option<libc::pid_t> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    name.iter().try_fold(0 as libc::pid_t, |acc, &c| {
        acc.checked_mul(10)?.checked_add((c - b'0') as libc::pid_t)
    })
}

/// Finds, in an environment fed in chunks, a `TOKEN_VAR` whose chain (`a:b:c`) has `token` as
/// one whole link. A state machine over bytes: no allocation, so it runs after `fork`.
struct Scan<'a> {
    token: &'a [u8],
    /// How much of `TOKEN_PREFIX` the current variable has matched; `None`: another variable.
    name: Option<usize>,
    in_value: bool,
    /// How much of `token` the current link has matched; `None`: not this link.
    link: Option<usize>,
    found: bool,
}

impl<'a> Scan<'a> {
    fn new(token: &'a [u8]) -> Scan<'a> {
        Scan {
            token,
            name: Some(0),
            in_value: false,
            link: None,
            found: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                0 => {
                    self.end_link();
                    self.name = Some(0);
                    self.in_value = false;
                }
                b':' if self.in_value => {
                    self.end_link();
                    self.link = Some(0);
                }
                _ if self.in_value => {
                    self.link = self
                        .link
                        .and_then(|n| (self.token.get(n) == Some(&b)).then_some(n + 1));
                }
                _ => {
                    self.name = self
                        .name
                        .and_then(|n| (TOKEN_PREFIX.get(n) == Some(&b)).then_some(n + 1));
                    if self.name == Some(TOKEN_PREFIX.len()) {
                        self.in_value = true;
                        self.name = None;
                        self.link = Some(0);
                    }
                }
            }
        }
    }

    fn end_link(&mut self) {
        if self.in_value && self.link == Some(self.token.len()) {
            self.found = true;
        }
    }

    fn finish(mut self) -> bool {
        self.end_link();
        self.found
    }
}

/// Whether `/proc/<pid>/environ` holds `TOKEN_VAR` with `token` in its chain. Stack buffers
/// only: it runs after `fork`.
fn environ_holds(proc_fd: BorrowedFd<'_>, pid: &[u8], token: &[u8]) -> bool {
    let mut path = [0u8; 32];
    let rel = b"/environ";
    if pid.len() + rel.len() + 1 > path.len() {
        return false;
    }
    path[..pid.len()].copy_from_slice(pid);
    path[pid.len()..pid.len() + rel.len()].copy_from_slice(rel);
    // NUL-terminated: zero-filled beyond what was copied.
    let Ok(path) = CStr::from_bytes_until_nul(&path) else {
        return false;
    };
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(proc_fd, path, flags, Mode::empty()) else {
        return false;
    };
    let mut buf = [0u8; 8192];
    let mut scan = Scan::new(token);
    while let Ok(n @ 1..) = rustix::io::read(&fd, &mut buf) {
        scan.feed(&buf[..n]);
        if scan.found {
            break;
        }
    }
    scan.finish()
}

/// An environment as `/proc/PID/environ` shows it, for tests of the scan.
#[cfg(test)]
fn environ_of(vars: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for var in vars {
        v.extend_from_slice(var.as_bytes());
        v.push(0);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_on_a_hybrid_host() {
        let mi = "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                  35 30 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_dir(mi, "/user.slice/a b"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/user.slice/a b"))
        );
        assert_eq!(
            cgroup2_dir(mi, "/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let none = "30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n";
        assert_eq!(cgroup2_dir(none, "/"), None);
        let sub = "35 30 0:30 /ci /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_dir(sub, "/ci/job"),
            Some(PathBuf::from("/sys/fs/cgroup/job"))
        );
        assert_eq!(cgroup2_dir(sub, "/other"), None);
        let esc = "35 30 0:30 / /mnt/c\\040g rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_dir(esc, "/"), Some(PathBuf::from("/mnt/c g")));
    }

    #[test]
    fn pids_are_digits_only() {
        assert_eq!(parse_pid(b"123"), Some(123));
        assert_eq!(parse_pid(b"self"), None);
        assert_eq!(parse_pid(b""), None);
        assert_eq!(parse_pid(b"99999999999"), None);
    }

    #[test]
    fn the_token_scan_matches_whole_links_of_the_variable_only() {
        assert_eq!(TOKEN_PREFIX, format!("{TOKEN_VAR}=").as_bytes());
        let dir = tempfile::tempdir().unwrap();
        let proc_fd = std::fs::File::open(dir.path()).unwrap();
        let check = |name: &str, env: Vec<u8>| {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("environ"), env).unwrap();
            // A dir standing in for /proc.
            environ_holds(proc_fd.as_fd(), name.as_bytes(), b"abc")
        };
        assert!(check(
            "1",
            environ_of(&["_CARGO_GUARDED_RUN_TOKEN=abc", "A=b"])
        ));
        assert!(check(
            "2",
            environ_of(&["A=b", "_CARGO_GUARDED_RUN_TOKEN=abc"])
        ));
        assert!(!check("3", environ_of(&["_CARGO_GUARDED_RUN_TOKEN=abcd"])));
        assert!(!check("4", environ_of(&["X_CARGO_GUARDED_RUN_TOKEN=abc"])));
        // Across the 8 KiB read boundary, after a large variable.
        let big = format!("B={}", "x".repeat(8190));
        assert!(check(
            "5",
            environ_of(&[&big, "_CARGO_GUARDED_RUN_TOKEN=abc"])
        ));
        let big = format!("B={}", "x".repeat(20000));
        assert!(check(
            "6",
            environ_of(&[&big, "_CARGO_GUARDED_RUN_TOKEN=abc", "C=d"])
        ));
        // A nested run's processes carry the chain: the outer token is one of its links.
        assert!(check(
            "7",
            environ_of(&["_CARGO_GUARDED_RUN_TOKEN=abc:def"])
        ));
        assert!(check(
            "8",
            environ_of(&["_CARGO_GUARDED_RUN_TOKEN=0f:abc:def"])
        ));
        assert!(check("9", environ_of(&["_CARGO_GUARDED_RUN_TOKEN=0f:abc"])));
        assert!(!check(
            "10",
            environ_of(&["_CARGO_GUARDED_RUN_TOKEN=0f:xabc:abcd"])
        ));
        // The token elsewhere (another variable's value) is not the chain.
        assert!(!check(
            "11",
            environ_of(&["A=abc", "_CARGO_GUARDED_RUN_TOKEN=def"])
        ));
        assert!(!check(
            "12",
            environ_of(&["A=_CARGO_GUARDED_RUN_TOKEN=abc"])
        ));
    }

    #[test]
    fn only_a_chain_of_our_tokens_is_extended() {
        assert!(is_chain("0af"));
        assert!(is_chain("0af:12"));
        assert!(!is_chain(""));
        assert!(!is_chain("a::b"));
        assert!(!is_chain("a:b:"));
        assert!(!is_chain("a b"));
        assert!(!is_chain(&"a".repeat(MAX_CHAIN + 1)));
    }
}

//! The lease protocol (`docs/protocol.md`): the root's layout, the lease record, and the steps in the
//! order a job takes them — acquire (fresh, resumed or adopted), renew, release — followed by the
//! guard's claim on an expired dir. Each step's comment names the race it closes.
//!
//! Two signals guard a job dir: the kernel lock (`flock` on the job dir itself, held by the
//! wrapper for the whole run) and the lease's heartbeat. A dir is expired only when the lock is
//! free **and** the lease says so; a stopped build keeps its lock, a lying filesystem keeps the
//! heartbeat. Paths always come from the root's own directory entries, opened relative to the
//! root's fd without following symlinks; nothing in a lease is ever used as a path.

use std::ffi::{OsStr, OsString};
use std::fs::{File, TryLockError};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use rustix::fs::{Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::fault;
use crate::fs::{self, Identity};
use crate::locks::LockTrust;
use crate::term;
use crate::units::{Bytes, Short};
use crate::workspace::WorkspaceKey;

mod keep;
pub(crate) use keep::{Keep, Kind as KeepKind};

/// Version of `lease.json`'s schema. A guard keeps (never deletes) a lease of any other version.
pub(crate) const PROTOCOL: u32 = 1;
pub(crate) const LEASE_FILE: &str = "lease.json";
/// `CARGO_TARGET_DIR` inside a job dir; a subdirectory so `cargo clean` cannot remove the lease.
pub(crate) const TARGET: &str = "target";
pub(crate) const TRASH: &str = ".trash";
pub(crate) const GUARD_LOCK: &str = ".guard.lock";
/// `rustc -vV` answers, cached by `workspace::toolchain`.
pub(crate) const TOOLCHAIN_CACHE: &str = ".toolchains";
/// Job dirs under construction: invisible under a dot-name until complete.
pub(crate) const NEW_PREFIX: &str = ".new-";
/// Written only by cargo-guarded, when it lays out a root: `gc` and `status` work only in a
/// directory that has it (or the layout of earlier versions, which then gets it).
pub(crate) const ROOT_MARKER: &str = ".cargo-guarded-root";
/// Leases are small; anything larger is not ours (and must not make a guard read 100 MB).
const MAX_LEASE_BYTES: u64 = 64 * 1024;
/// The longest `--ttl`/`--linger` (and `ttl_secs` in a lease) we accept: 3650 days (10 years).
/// Longer is a typo (`20000y`), and it keeps `now + ttl` far from `SystemTime`'s limits and
/// inside the years RFC 3339 can print (up to 9999), so every lease we write can be read back.
pub(crate) const MAX_LEASE_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);
/// The recorded command is for humans: capped far below `MAX_LEASE_BYTES`, so a job with a huge
/// argv still writes a lease every guard can read (and reclaim).
const MAX_COMMAND_BYTES: usize = 4 * 1024;
/// Size walks at release stop after this; the size is then reported as unknown.
const SIZE_BUDGET: Duration = Duration::from_millis(500);
/// A size measured more recently than this is kept at release: repeated local builds (and the
/// steps of one CI job) do not pay for a walk of the whole target dir each time.
const SIZE_REFRESH: Duration = Duration::from_secs(600);

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This directory holds cargo-guarded job dirs (Rust target dirs).\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

// ---------------------------------------------------------------------------------------------
// The root (docs/protocol.md#the-root)

/// The shared root, opened once; every other path is resolved relative to its fd.
pub(crate) struct Root {
    pub(crate) path: PathBuf,
    fd: OwnedFd,
    /// The root's mount (device and mount id): deletion never leaves it, not even into a bind
    /// mount of the same filesystem.
    pub(crate) mount: fs::MountId,
}

impl Root {
    /// Open an existing root (for `status` and `gc`, which must not create one by accident). It
    /// must prove it is one before anything in it is read as a job dir or deleted: `gc --root
    /// ~` must not empty `~/.trash`. A symlink as the root is refused too (the marker would be
    /// checked in one dir and the sweep could run in another if the link changes).
    pub(crate) fn open(path: &Path) -> Result<Root> {
        let root = Root::open_dir(path)?;
        match root.kind() {
            RootKind::Marked => {}
            // Made by an earlier version: ours beyond doubt, so give it the marker.
            RootKind::Legacy => {
                let _ = root.write_marker();
            }
            // Nothing in it to delete or misread; the first job or sweep lays it out.
            RootKind::Empty => {}
            RootKind::Foreign => bail!(
                "{} is not a cargo-guarded root (it has no {ROOT_MARKER} marker); refusing to \
                 touch it. Pass the root your jobs use, or a new or empty directory",
                path.display()
            ),
        }
        Ok(root)
    }

    /// Open the root for a job, creating it with its layout if needed. An existing non-empty
    /// directory that is not a root is refused: laying one out there would let a later `gc`
    /// delete files in it.
    pub(crate) fn create(path: &Path) -> Result<Root> {
        if path.exists() && !path.is_dir() {
            bail!("root {} exists but is not a directory", path.display());
        }
        std::fs::create_dir_all(path)
            .with_context(|| format!("failed to create root {}", path.display()))?;
        let root = Root::open(path)?;
        root.ensure_layout()?;
        Ok(root)
    }

    fn open_dir(path: &Path) -> Result<Root> {
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("failed to stat root {}", path.display()))?;
        if meta.file_type().is_symlink() {
            bail!(
                "root {} is a symlink; pass the directory itself ({})",
                path.display(),
                std::fs::canonicalize(path)
                    .map_or_else(|_| "unresolvable".into(), |p| p.display().to_string())
            );
        }
        if !meta.is_dir() {
            bail!("root {} is not a directory", path.display());
        }
        let fd = rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .with_context(|| format!("failed to open root {}", path.display()))?;
        let mount = fs::mount_of(fd.as_fd())
            .with_context(|| format!("failed to stat root {}", path.display()))?;
        if mount.mnt.is_none() {
            crate::term::verbose(format_args!(
                "mounts under {} are told apart by {}",
                path.display(),
                fs::mount_id_source(fd.as_fd())
            ));
        }
        Ok(Root {
            path: path.to_owned(),
            fd,
            mount,
        })
    }

    /// Whether this directory is a root: our marker, or the layout earlier versions wrote
    /// (`CACHEDIR.TAG` with our comment line, and `.trash/`), or nothing at all.
    fn kind(&self) -> RootKind {
        let is_file = |name: &str| {
            rustix::fs::statat(self.fd(), name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file())
        };
        if is_file(ROOT_MARKER) {
            return RootKind::Marked;
        }
        let tag = fs::read_capped(self.fd(), OsStr::new("CACHEDIR.TAG"), 4096)
            .ok()
            .flatten()
            .unwrap_or_default();
        let ours = tag
            .split(|b| *b == b'\n')
            .any(|l| l == CACHEDIR_TAG.lines().nth(1).unwrap_or_default().as_bytes());
        if ours && fs::open_dir_nofollow(self.fd(), OsStr::new(TRASH)).is_ok() {
            return RootKind::Legacy;
        }
        // Empty but for the lock files a `status` or `doctor` on it may have left.
        match fs::list(self.fd()) {
            Ok(entries)
                if entries
                    .iter()
                    .all(|(n, _)| n == ".locktest" || n == GUARD_LOCK) =>
            {
                RootKind::Empty
            }
            // Race closed: jobs starting together on a new root. Another one may have laid the
            // root out between our marker check and this listing; the marker is written first,
            // so if the listing shows anything of the layout, it shows the marker too.
            Ok(entries) if entries.iter().any(|(n, _)| n == ROOT_MARKER) => RootKind::Marked,
            _ => RootKind::Foreign,
        }
    }

    fn write_marker(&self) -> io::Result<()> {
        let fd = match rustix::fs::openat(
            self.fd(),
            ROOT_MARKER,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => fd,
            // Another job starting on the same new root laid it out first: it is a root.
            Err(Errno::EXIST) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        rustix::fs::fchmod(&fd, self.shared_mode(0o644))?;
        io::Write::write_all(
            &mut File::from(fd),
            b"cargo-guarded root: job dirs in here are leased; \
            `cargo guarded gc` deletes only expired ones\n",
        )
    }

    /// The root's own entries: the marker, `CACHEDIR.TAG` (so backup tools skip it), `.trash/`,
    /// `.toolchains/` and the guard's lock file, each shared as widely as the root itself.
    pub(crate) fn ensure_layout(&self) -> Result<()> {
        if self.kind() != RootKind::Marked {
            self.write_marker()
                .with_context(|| format!("failed to write {}", self.join(ROOT_MARKER).display()))?;
        }
        if !self.join("CACHEDIR.TAG").exists() {
            fs::write_atomic(self.fd(), "CACHEDIR.TAG", CACHEDIR_TAG.as_bytes()).with_context(
                || format!("failed to write {}", self.join("CACHEDIR.TAG").display()),
            )?;
            let _ = rustix::fs::chmodat(
                self.fd(),
                "CACHEDIR.TAG",
                self.shared_mode(0o644),
                rustix::fs::AtFlags::empty(),
            );
        }
        for dir in [TRASH, TOOLCHAIN_CACHE] {
            self.create_shared_dir(dir)
                .with_context(|| format!("failed to create {}", self.join(dir).display()))?;
        }
        // Best effort: a user who may not create it still locks an existing one read-only.
        let _ = self.open_lock_file(GUARD_LOCK);
        Ok(())
    }

    /// `base` plus the write bits the root grants its group and others (and its sticky bit for
    /// dirs): with a 1777 root, every user's jobs and guards must be able to use these entries.
    fn shared_mode(&self, base: u32) -> Mode {
        let root_mode = rustix::fs::fstat(self.fd()).map_or(0, |st| st.st_mode);
        let mut mode = base | (root_mode & 0o022);
        if base & 0o100 != 0 {
            mode |= root_mode & 0o1000;
        }
        Mode::from_raw_mode(mode)
    }

    /// Create a directory of the root with its shared mode; an existing one is fine. The mode is
    /// set after creation, because `mkdir` applies the umask.
    fn create_shared_dir(&self, name: &str) -> io::Result<()> {
        match rustix::fs::mkdirat(self.fd(), name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {
                let fd = fs::open_dir_nofollow(self.fd(), OsStr::new(name))?;
                rustix::fs::fchmod(&fd, self.shared_mode(0o755))?;
                Ok(())
            }
            Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Create a new file of the root with its shared mode (`fchmod` after create: the umask).
    /// An existing one is opened read-only.
    pub(crate) fn create_shared_file(&self, name: &OsStr) -> io::Result<File> {
        match rustix::fs::openat(
            self.fd(),
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => {
                rustix::fs::fchmod(&fd, self.shared_mode(0o644))?;
                Ok(File::from(fd))
            }
            Err(Errno::EXIST) => self.open_read_only(name),
            Err(e) => Err(e.into()),
        }
    }

    fn open_read_only(&self, name: &OsStr) -> io::Result<File> {
        let fd = rustix::fs::openat(
            self.fd(),
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// A lock file of the root (`.guard.lock`): opened read-only, since `flock` works on any
    /// open file and another user's file need not be writable for us; created if missing.
    pub(crate) fn open_lock_file(&self, name: &str) -> io::Result<File> {
        match self.open_read_only(OsStr::new(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create_shared_file(OsStr::new(name))
            }
            other => other,
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// The root's job dirs (names only; not yet opened), skipping our own dot-names.
    pub(crate) fn job_names(&self) -> Result<Vec<(OsString, rustix::fs::FileType)>> {
        let mut names = fs::list(self.fd())
            .with_context(|| format!("failed to list root {}", self.path.display()))?;
        names.retain(|(n, _)| !n.as_encoded_bytes().starts_with(b".") && n != "CACHEDIR.TAG");
        names.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(names)
    }

    /// Open a job dir without following a symlink and check it is on the root's filesystem.
    pub(crate) fn open_job(&self, name: &OsStr) -> Result<File, Skip> {
        let fd =
            fs::open_dir_nofollow(self.fd(), name).map_err(|e| match Errno::from_io_error(&e) {
                // `O_DIRECTORY | O_NOFOLLOW` on a symlink gives ENOTDIR or ELOOP: say which it was.
                Some(Errno::LOOP | Errno::NOTDIR) if fs::is_symlink_at(self.fd(), name) => {
                    Skip::Symlink
                }
                Some(Errno::LOOP | Errno::NOTDIR) => Skip::NotDir,
                Some(Errno::NOENT) => Skip::Gone,
                _ => Skip::Io(e.to_string()),
            })?;
        // A job dir that is itself a mount point (another filesystem, or a bind mount of the
        // root's own, which only the mount id tells apart) is not a job dir we may touch.
        let mount = fs::mount_of(fd.as_fd()).map_err(|e| Skip::Io(e.to_string()))?;
        if mount != self.mount {
            return Err(Skip::OtherFs);
        }
        Ok(File::from(fd))
    }

    /// Race closed: between our `open` and our lock, a guard (holding the lock) may have renamed
    /// the dir into `.trash/`, or an adopter may have renamed it to its own job's name. Locking
    /// the inode we opened then tells us nothing about the name. Only if the name still points at
    /// the inode we locked do we own the job dir.
    fn still_names(&self, name: &OsStr, locked: &File) -> bool {
        match (
            fs::identity_at(self.fd(), name),
            fs::identity(locked.as_fd()),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootKind {
    Marked,
    Legacy,
    Empty,
    Foreign,
}

/// Why an entry of the root is not a job dir we may touch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Skip {
    Symlink,
    NotDir,
    OtherFs,
    Gone,
    Io(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Symlink => write!(f, "skipped: symlink"),
            Skip::NotDir => write!(f, "skipped: not a directory"),
            Skip::OtherFs => write!(f, "skipped: other filesystem"),
            Skip::Gone => write!(f, "skipped: vanished while being examined"),
            Skip::Io(e) => write!(f, "skipped: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The lease record (docs/protocol.md#layout)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    Active,
    Released,
}

/// Who runs a job: recorded in its lease, for humans and for the same-runner rule.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub(crate) host: String,
    /// Identical in every container on one kernel, unlike pids (which mean nothing across pid
    /// namespaces): the machine identity for "same runner".
    pub(crate) boot_id: Option<String>,
    pub(crate) runner: Option<String>,
    pub(crate) pid: u32,
}

impl Owner {
    pub(crate) fn this_process(runner: Option<String>) -> Owner {
        Owner {
            host: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_owned()),
            runner,
            pid: std::process::id(),
        }
    }
}

/// `lease.json`. Never a source of paths.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Lease {
    pub(crate) protocol: u32,
    pub(crate) job_id: String,
    /// Random per acquisition: tells two holders of one job id apart in logs.
    pub(crate) token: String,
    pub(crate) workspace: Option<String>,
    pub(crate) toolchain: Option<String>,
    pub(crate) host: String,
    pub(crate) boot_id: Option<String>,
    pub(crate) runner: Option<String>,
    /// For humans only.
    pub(crate) pid: u32,
    #[serde(with = "rfc3339")]
    pub(crate) created_at: SystemTime,
    #[serde(with = "rfc3339")]
    pub(crate) renewed_at: SystemTime,
    #[serde(with = "rfc3339")]
    pub(crate) expires_at: SystemTime,
    pub(crate) heartbeat_secs: u64,
    pub(crate) ttl_secs: u64,
    pub(crate) state: State,
    pub(crate) size_bytes: Option<u64>,
    /// When `size_bytes` was measured (Unix seconds).
    #[serde(default)]
    pub(crate) size_measured_at: Option<u64>,
    pub(crate) command: Vec<String>,
}

mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::SystemTime;

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = <&str>::deserialize(d)?;
        humantime::parse_rfc3339_weak(s).map_err(D::Error::custom)
    }
}

impl Lease {
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }

    /// `runner-3 (pid 4121)` or `host-a (pid 4121)`.
    pub(crate) fn holder(&self) -> String {
        format!(
            "{} (pid {})",
            self.runner.as_deref().unwrap_or(&self.host),
            self.pid
        )
    }

    pub(crate) fn same_key(&self, key: &WorkspaceKey) -> bool {
        self.workspace.as_deref() == Some(key.workspace.as_str()) && self.toolchain == key.toolchain
    }
}

/// Parse a lease. Every failure is a reason to keep the dir, never to delete it.
pub(crate) fn parse(bytes: &[u8]) -> Result<Lease, String> {
    #[derive(Deserialize)]
    struct Probe {
        protocol: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("lease unreadable ({e})"))?;
    match probe.protocol {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(PROTOCOL)) => {}
        Some(v) => return Err(format!("unknown lease protocol version {v}")),
        None => return Err("lease has no protocol version".into()),
    }
    let lease: Lease =
        serde_json::from_slice(bytes).map_err(|e| format!("lease unreadable ({e})"))?;
    check_range(&lease)?;
    Ok(lease)
}

/// Leases are written by anyone who can write the root: a TTL or a time that no clock arithmetic
/// can hold makes the lease unclassifiable (kept, with this reason), never a panic. The bound is
/// what `classify` adds at most: the TTL twice (heartbeat plus the untrusted-locks margin).
fn check_range(lease: &Lease) -> Result<(), String> {
    let ttl = lease.ttl();
    let margin = ttl.max(Duration::from_secs(60));
    let out = |what: &str| Err(format!("lease out of range ({what})"));
    if lease.ttl_secs > MAX_LEASE_DURATION.as_secs() {
        return out(&format!("ttl_secs {}", lease.ttl_secs));
    }
    if lease
        .renewed_at
        .checked_add(ttl)
        .and_then(|t| t.checked_add(margin))
        .is_none()
    {
        return out("renewed_at plus ttl");
    }
    if lease.expires_at.checked_add(margin).is_none() {
        return out("expires_at");
    }
    Ok(())
}

/// Read the lease of an open job dir, with the size cap, never following a symlink or blocking
/// on a FIFO.
pub(crate) fn read(dir: BorrowedFd<'_>) -> Result<Lease, String> {
    match fs::read_capped(dir, OsStr::new(LEASE_FILE), MAX_LEASE_BYTES) {
        Ok(Some(bytes)) => parse(&bytes),
        Ok(None) => Err(format!("lease larger than {}", Bytes(MAX_LEASE_BYTES))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err("no lease".into()),
        Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
            Err("lease is a symlink".into())
        }
        Err(e) => Err(format!("lease unreadable ({e})")),
    }
}

fn write(dir: BorrowedFd<'_>, lease: &Lease) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(lease).map_err(io::Error::other)?;
    fs::write_atomic(dir, LEASE_FILE, &bytes)
}

// ---------------------------------------------------------------------------------------------
// Expiry (pure; shared by the guard, adoption and `status`; docs/protocol.md#expiry)

/// What a lease says about its dir, judged on the observer's clock.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Active with a fresh heartbeat.
    Live { renewed_ago: Duration },
    /// Released, still protected so later steps of the job find their dir.
    Lingering { expires_in: Duration },
    /// Expired since this moment: reclaimable once its lock is also free.
    Expired { since: SystemTime },
}

/// Expiry rule: released and past `expires_at`, or active with no heartbeat for longer than its
/// TTL. Where locks cannot be trusted, the lease is the only signal, so it must be stale by a
/// further TTL (a safety margin against a slow heartbeat) before it counts.
pub(crate) fn classify(lease: &Lease, now: SystemTime, trust: LockTrust) -> Verdict {
    let margin = match trust {
        LockTrust::Trusted => Duration::ZERO,
        LockTrust::Untrusted(_) => lease.ttl().max(Duration::from_secs(60)),
    };
    let since = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    // `parse` rejected leases whose times overflow; should one get here anyway, it stays
    // unexpired (kept) rather than panicking.
    match lease.state {
        State::Released => {
            let Some(until) = lease.expires_at.checked_add(margin) else {
                return Verdict::Lingering {
                    expires_in: Duration::MAX,
                };
            };
            match until.duration_since(now) {
                Ok(left) if !left.is_zero() => Verdict::Lingering { expires_in: left },
                _ => Verdict::Expired { since: until },
            }
        }
        State::Active => {
            let stale = lease
                .renewed_at
                .checked_add(lease.ttl())
                .and_then(|t| t.checked_add(margin));
            if let Some(stale) = stale
                && now > stale
            {
                Verdict::Expired { since: stale }
            } else {
                Verdict::Live {
                    renewed_ago: since(lease.renewed_at),
                }
            }
        }
    }
}

impl Verdict {
    /// The reason a non-expired dir is kept, as the guard prints it (`Keep`'s words; the unit
    /// tests read verdicts through it).
    #[cfg(test)]
    pub(crate) fn reason(&self, lease: &Lease) -> String {
        match Keep::unless_expired(self, lease) {
            Ok(_) => "expired".into(),
            Err(keep) => keep.detail().to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: acquire (docs/protocol.md#acquire, #adopt)

/// What a job asks for.
pub(crate) struct Request<'a> {
    pub(crate) job_id: &'a str,
    /// The job dir's name under the root (the sanitized job id).
    pub(crate) name: &'a str,
    pub(crate) owner: &'a Owner,
    pub(crate) ttl: Duration,
    pub(crate) command: Vec<String>,
    /// `None`: wait for another run of the same job as long as it takes.
    pub(crate) wait: Option<Duration>,
    /// Computed only when a new dir is needed (it runs `rustc -vV`).
    pub(crate) key: &'a dyn Fn() -> WorkspaceKey,
    pub(crate) adopt: bool,
    pub(crate) trust: LockTrust,
    /// `Err` once the wrapper was told to stop: waiting for the lease ends with it.
    pub(crate) interrupted: &'a dyn Fn() -> Result<()>,
}

/// The heartbeat interval for a TTL: often enough that a few missed beats stay inside the TTL.
pub(crate) fn heartbeat_interval(ttl: Duration) -> Duration {
    (ttl / 5).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

impl Request<'_> {
    fn lease(&self, key: Option<&WorkspaceKey>, created_at: SystemTime) -> Lease {
        let now = SystemTime::now();
        Lease {
            protocol: PROTOCOL,
            job_id: self.job_id.to_owned(),
            token: uuid::Uuid::new_v4().simple().to_string(),
            workspace: key.map(|k| k.workspace.clone()),
            toolchain: key.and_then(|k| k.toolchain.clone()),
            host: self.owner.host.clone(),
            boot_id: self.owner.boot_id.clone(),
            runner: self.owner.runner.clone(),
            pid: self.owner.pid,
            created_at,
            renewed_at: now,
            expires_at: expiry(now, self.ttl),
            heartbeat_secs: heartbeat_interval(self.ttl).as_secs().max(1),
            // Whole seconds, rounded up: `--ttl 500ms` must not record "expires at once".
            ttl_secs: self.ttl.as_secs_f64().ceil() as u64,
            state: State::Active,
            size_bytes: None,
            size_measured_at: None,
            command: cap_command(&self.command),
        }
    }
}

/// `now + d`, saturating at `MAX_LEASE_DURATION` (the CLI refuses longer values already).
fn expiry(now: SystemTime, d: Duration) -> SystemTime {
    now.checked_add(d.min(MAX_LEASE_DURATION)).unwrap_or(now)
}

/// The command as recorded in the lease: at most `MAX_COMMAND_BYTES` of arguments, each argument
/// cut at a char boundary, then a marker saying how many were left out.
fn cap_command(command: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut used = 0;
    for (i, arg) in command.iter().enumerate() {
        let room = MAX_COMMAND_BYTES.saturating_sub(used);
        if room == 0 {
            out.push(format!("[{} more arguments elided]", command.len() - i));
            break;
        }
        if arg.len() <= room {
            out.push(arg.clone());
            used += arg.len();
        } else {
            let mut cut = room;
            while !arg.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(format!(
                "{}[… {} bytes elided]",
                &arg[..cut],
                arg.len() - cut
            ));
            used = MAX_COMMAND_BYTES;
        }
    }
    out
}

/// How the job came by its dir.
#[derive(Debug)]
pub(crate) enum Origin {
    /// Its own dir, from an earlier step of the same job.
    Resumed,
    Fresh,
    /// Another job's expired dir of the same workspace, renamed to this job's name.
    Adopted {
        from: String,
        size: Option<u64>,
        last_used: SystemTime,
    },
}

/// A job dir we hold: locked for as long as this value lives.
pub(crate) struct Held {
    pub(crate) path: PathBuf,
    name: OsString,
    root_fd: OwnedFd,
    dir: File,
    ident: Identity,
    lease: Mutex<Lease>,
}

impl Held {
    pub(crate) fn target_dir(&self) -> PathBuf {
        self.path.join(TARGET)
    }

    /// The job dir, open and locked: for work done under the lock (pruning at adoption).
    pub(crate) fn dir_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    pub(crate) fn job_id(&self) -> String {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .job_id
            .clone()
    }

    /// The random token of this acquisition: what a nested run recognises the lease by.
    pub(crate) fn token(&self) -> String {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .token
            .clone()
    }

    fn still_named(&self) -> bool {
        fs::identity_at(self.root_fd.as_fd(), &self.name).is_ok_and(|i| i == self.ident)
    }

    fn update(&self, change: impl FnOnce(&mut Lease)) -> io::Result<()> {
        let mut lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut lease);
        write(self.dir.as_fd(), &lease)
    }
}

/// Acquire the job's dir: resume its own, else adopt a warm expired one, else create it.
pub(crate) fn acquire(root: &Root, req: &Request<'_>) -> Result<(Held, Origin)> {
    let name = OsStr::new(req.name);
    let path = root.join(req.name);
    let started = Instant::now();
    let mut waiting: Option<term::Activity> = None;
    'open: loop {
        let dir = match root.open_job(name) {
            Ok(dir) => dir,
            Err(Skip::Gone) => match create_or_adopt(root, req)? {
                Some(done) => return Ok(done),
                // Lost the race to a sibling step that published the same name: take theirs.
                None => continue,
            },
            Err(skip) => bail!(
                "{} exists but cannot be used as a job dir ({skip}); remove it or choose another --job-id",
                path.display()
            ),
        };

        // Never wait on, or build into, a dir that another user put under our name.
        if let Err(why) = check_owned(&dir) {
            bail!(
                "{} cannot be used as this job's dir: {why}; remove it or choose another --job-id",
                path.display()
            );
        }

        // Another run of the same job id holds the lock: wait, like cargo's "Blocking waiting
        // for file lock", polling so that `--wait` can bound it.
        loop {
            match dir.try_lock() {
                Ok(()) => {
                    if let Some(w) = waiting.take() {
                        let waited = Short(w.elapsed());
                        w.finish(
                            "Acquired",
                            format_args!("the lease on {} after {waited}", path.display()),
                        );
                    }
                    break;
                }
                Err(TryLockError::WouldBlock) => {
                    (req.interrupted)()?;
                    // Race closed: while we wait on this inode, an adopter (holding its lock)
                    // may rename it away to its own job's name, or a guard into `.trash/`. We
                    // would then wait for, and finally lock, a dir that is no longer ours: look
                    // at the name again instead.
                    if !root.still_names(name, &dir) {
                        continue 'open;
                    }
                    if waiting.is_none() {
                        // Who holds it and what it runs, said while we wait (a spinner, or a
                        // line every 10 s in a CI log), not once and then silence.
                        let holder = read(dir.as_fd()).map_or_else(
                            |e| e,
                            |l| format!("{} running `{}`", l.holder(), l.command.join(" ")),
                        );
                        waiting = Some(term::Activity::start(
                            "Waiting",
                            format_args!("for lease held by {holder} on {}", path.display()),
                        ));
                    }
                    if req.wait.is_some_and(|w| started.elapsed() >= w) {
                        bail!(
                            "gave up after {} waiting for the lease on {}; another run of job `{}` holds it",
                            Short(req.wait.unwrap_or_default()),
                            path.display(),
                            req.job_id
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("failed to lock {}", path.display()));
                }
            }
        }
        if !root.still_names(name, &dir) {
            continue;
        }
        step("acquire-resume-locked");
        // Race closed: its lease or `target` swapped for another user's (or a symlink) between
        // the check above and our lock.
        if let Err(why) = check_owned(&dir) {
            bail!(
                "{} cannot be used as this job's dir: {why}; remove it or choose another --job-id",
                path.display()
            );
        }

        // Ours now. Keep the creation time and workspace of the job's earlier steps.
        let prev = read(dir.as_fd());
        if let Err(why) = &prev {
            term::warn(format_args!(
                "{} had {why}; taking it over for job `{}`",
                path.display(),
                req.job_id
            ));
        }
        let prev = prev.ok();
        let mut lease = req.lease(
            None,
            prev.as_ref().map_or_else(SystemTime::now, |p| p.created_at),
        );
        if let Some(p) = &prev {
            lease.workspace = p.workspace.clone();
            lease.toolchain = p.toolchain.clone();
            lease.size_bytes = p.size_bytes;
            lease.size_measured_at = p.size_measured_at;
        }
        write(dir.as_fd(), &lease)
            .with_context(|| format!("failed to write lease in {}", path.display()))?;
        return Ok((held(root, name, dir, lease)?, Origin::Resumed));
    }
}

/// Race closed (shared roots, mode 1777): another user may pre-create a job's dir with a valid
/// lease and a `target` symlink into their own files, or into ours. A job dir we resume or adopt,
/// its lease and its `target/` must belong to us and be a real dir, file and dir.
fn check_owned(dir: &File) -> Result<(), String> {
    use rustix::fs::FileType;
    let me = rustix::process::geteuid().as_raw();
    let st = rustix::fs::fstat(dir).map_err(|e| format!("cannot stat it ({e})"))?;
    if st.st_uid != me {
        return Err(format!(
            "owned by uid {}, not by this user (uid {me})",
            st.st_uid
        ));
    }
    for (name, want, what) in [
        (LEASE_FILE, FileType::RegularFile, "a regular file"),
        (TARGET, FileType::Directory, "a directory"),
    ] {
        match rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) != want => {
                return Err(format!("its {name} is not {what}"));
            }
            Ok(st) if st.st_uid != me => {
                return Err(format!(
                    "its {name} is owned by uid {}, not by uid {me}",
                    st.st_uid
                ));
            }
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => return Err(format!("cannot stat its {name} ({e})")),
        }
    }
    Ok(())
}

fn held(root: &Root, name: &OsStr, dir: File, lease: Lease) -> Result<Held> {
    Ok(Held {
        path: root.join(name),
        name: name.to_owned(),
        root_fd: root.fd().try_clone_to_owned()?,
        ident: fs::identity(dir.as_fd())?,
        dir,
        lease: Mutex::new(lease),
    })
}

/// The job has no dir yet: end same-runner leases, adopt a warm one, or create a fresh one.
/// `Ok(None)`: another step of this job published the dir first; the caller takes that one.
fn create_or_adopt(root: &Root, req: &Request<'_>) -> Result<Option<(Held, Origin)>> {
    let key = (req.key)();
    let candidates = scan_for_new_job(root, req, &key);
    if req.adopt {
        for cand in candidates {
            match adopt(root, req, &key, &cand)? {
                AdoptOutcome::Adopted(held) => {
                    let held = *held;
                    let origin = Origin::Adopted {
                        from: cand.lease.job_id.clone(),
                        size: cand.lease.size_bytes,
                        last_used: cand.lease.renewed_at,
                    };
                    return Ok(Some((held, origin)));
                }
                AdoptOutcome::Lost => continue,
                AdoptOutcome::NameTaken => return Ok(None),
            }
        }
    }
    create_fresh(root, req, &key).map(|h| h.map(|h| (h, Origin::Fresh)))
}

struct Candidate {
    name: OsString,
    lease: Lease,
}

/// One pass over the root for a job that needs a dir:
///
/// - A runner runs one job at a time, so a *released* lease of a different job from this same
///   runner (same runner name and boot id) has ended: no later step of it can come. Mark it
///   expired now instead of letting it linger (under its lock, re-checked, so a job that just
///   resumed it is not touched).
/// - Collect expired dirs of this workspace and toolchain, most recently used first.
fn scan_for_new_job(root: &Root, req: &Request<'_>, key: &WorkspaceKey) -> Vec<Candidate> {
    let Ok(names) = root.job_names() else {
        return Vec::new();
    };
    let now = SystemTime::now();
    let mut out = Vec::new();
    for (name, _) in names {
        let Ok(dir) = root.open_job(&name) else {
            continue;
        };
        let Ok(mut lease) = read(dir.as_fd()) else {
            continue;
        };
        let same_runner = req.owner.runner.is_some()
            && lease.runner == req.owner.runner
            && lease.boot_id == req.owner.boot_id
            && lease.job_id != req.job_id;
        if same_runner
            && lease.state == State::Released
            && lease.expires_at > now
            && dir.try_lock().is_ok()
            && root.still_names(&name, &dir)
            && let Ok(mut fresh) = read(dir.as_fd())
            && fresh.state == State::Released
        {
            fresh.expires_at = now;
            if write(dir.as_fd(), &fresh).is_ok() {
                term::verbose(format_args!(
                    "ended released lease of job `{}` from this runner",
                    fresh.job_id
                ));
                lease = fresh;
            }
        }
        let owned = check_owned(&dir);
        drop(dir);
        if lease.same_key(key)
            && matches!(classify(&lease, now, req.trust), Verdict::Expired { .. })
        {
            // Another user's dir is not ours to take (nor could we write it): start fresh.
            match owned {
                Ok(()) => out.push(Candidate { name, lease }),
                Err(why) => term::verbose(format_args!(
                    "not adopting {}: {why}",
                    root.join(&name).display()
                )),
            }
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.lease.renewed_at));
    out
}

enum AdoptOutcome {
    Adopted(Box<Held>),
    /// Someone else (a guard, another adopter, a resuming step) got there first.
    Lost,
    /// Our own job's name appeared meanwhile.
    NameTaken,
}

/// Adopt: take an expired dir of the same workspace for this job. The guard and other adopters
/// race us only through the dir's lock, so exactly one of us wins.
fn adopt(
    root: &Root,
    req: &Request<'_>,
    key: &WorkspaceKey,
    cand: &Candidate,
) -> Result<AdoptOutcome> {
    let Ok(dir) = root.open_job(&cand.name) else {
        return Ok(AdoptOutcome::Lost);
    };
    // A live owner, a guard mid-claim or another adopter holds it: not ours.
    if dir.try_lock().is_err() {
        return Ok(AdoptOutcome::Lost);
    }
    // Race closed: renamed into `.trash/` or to another adopter's name between open and lock.
    if !root.still_names(&cand.name, &dir) {
        return Ok(AdoptOutcome::Lost);
    }
    // Race closed: swapped for another user's dir, lease or `target` since the scan.
    if let Err(why) = check_owned(&dir) {
        term::verbose(format_args!(
            "not adopting {}: {why}",
            root.join(&cand.name).display()
        ));
        return Ok(AdoptOutcome::Lost);
    }
    // Race closed: the dir's own job resumed it (renewing the lease) after our scan.
    match read(dir.as_fd()) {
        Ok(l)
            if l.same_key(key)
                && matches!(
                    classify(&l, SystemTime::now(), req.trust),
                    Verdict::Expired { .. }
                ) => {}
        _ => return Ok(AdoptOutcome::Lost),
    }
    step("adopt-locked");
    // Rename under the lock, never replacing: if our name exists, a sibling step created it.
    match rename_noreplace(root.fd(), &cand.name, root.fd(), OsStr::new(req.name)) {
        Ok(()) => {}
        Err(e) if is_exists(e) => return Ok(AdoptOutcome::NameTaken),
        Err(Errno::NOENT) => return Ok(AdoptOutcome::Lost),
        Err(e) => {
            return Err(io::Error::from(e)).with_context(|| {
                format!(
                    "failed to rename {} to {}",
                    root.join(&cand.name).display(),
                    root.join(req.name).display()
                )
            });
        }
    }
    if let Err(why) = verify_moved(&dir, root.fd(), &cand.name, root.fd(), OsStr::new(req.name)) {
        term::warn(format_args!(
            "did not adopt {}: {why}",
            root.join(&cand.name).display()
        ));
        return Ok(AdoptOutcome::Lost);
    }
    // A crash here leaves the dir under our name with the old (expired) lease: a later step of
    // this job takes it over, or a guard reclaims it. Either is safe.
    step("adopt-renamed");
    let mut lease = req.lease(Some(key), SystemTime::now());
    lease.size_bytes = cand.lease.size_bytes;
    lease.size_measured_at = cand.lease.size_measured_at;
    write(dir.as_fd(), &lease)
        .with_context(|| format!("failed to write lease in {}", root.join(req.name).display()))?;
    let held = held(root, OsStr::new(req.name), dir, lease)?;
    Ok(AdoptOutcome::Adopted(Box::new(held)))
}

/// Create a fresh job dir. It is built under a dot-name (invisible to guards and other jobs),
/// locked before its lease exists, and published by a rename that never replaces: a crash at any
/// point leaves either nothing under the job's name or a complete, leased dir.
fn create_fresh(root: &Root, req: &Request<'_>, key: &WorkspaceKey) -> Result<Option<Held>> {
    let tmp = format!("{NEW_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let tmp_path = root.join(&tmp);
    rustix::fs::mkdirat(root.fd(), tmp.as_str(), Mode::from_raw_mode(0o755))
        .map_err(io::Error::from)
        .with_context(|| format!("failed to create {}", tmp_path.display()))?;
    // Race closed: a guard may take an unlocked `.new-*` dir for abandoned (only after a grace
    // period, but a stopped process can outlast it). Then our name is gone: start over.
    let dir = match fs::open_dir_nofollow(root.fd(), OsStr::new(&tmp)) {
        Ok(fd) => File::from(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("failed to open {}", tmp_path.display())),
    };
    dir.lock()
        .with_context(|| format!("failed to lock {}", tmp_path.display()))?;
    step("acquire-locked");
    let lease = req.lease(Some(key), SystemTime::now());
    write(dir.as_fd(), &lease)
        .with_context(|| format!("failed to write lease in {}", tmp_path.display()))?;
    rustix::fs::mkdirat(&dir, TARGET, Mode::from_raw_mode(0o755))
        .map_err(io::Error::from)
        .with_context(|| format!("failed to create {}", tmp_path.join(TARGET).display()))?;
    step("acquire-before-publish");
    match rename_noreplace(root.fd(), OsStr::new(&tmp), root.fd(), OsStr::new(req.name)) {
        Ok(()) => {
            if let Err(why) = verify_moved(
                &dir,
                root.fd(),
                OsStr::new(&tmp),
                root.fd(),
                OsStr::new(req.name),
            ) {
                bail!("failed to publish {}: {why}", root.join(req.name).display());
            }
            Ok(Some(held(root, OsStr::new(req.name), dir, lease)?))
        }
        Err(e) if is_exists(e) => {
            drop(dir);
            let _ = fs::remove_tree(root.fd(), OsStr::new(&tmp), root.mount);
            Ok(None)
        }
        // A guard moved our unfinished dir into `.trash/` (see above): start over.
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io::Error::from(e))
            .with_context(|| format!("failed to publish {}", root.join(req.name).display())),
    }
}

/// `renameat2(RENAME_NOREPLACE)`. Where the filesystem lacks it, a plain rename is still safe for
/// us: the destination would be a job dir, never empty (it holds `lease.json`), and rename(2)
/// refuses to replace a non-empty directory.
fn rename_noreplace(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> Result<(), Errno> {
    match rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL | Errno::NOSYS) => rustix::fs::renameat(from_dir, from, to_dir, to),
        other => other,
    }
}

/// A protocol step: a fault point for the crash and race tests, and in unit tests the place
/// where the property test lets a third party rename things.
fn step(name: &str) {
    fault::point(name);
    #[cfg(test)]
    tests::third_party(name);
}

fn is_exists(e: Errno) -> bool {
    e == Errno::EXIST || e == Errno::NOTEMPTY
}

/// Race closed: we check and lock a dir through its fd, but `rename` moves whatever the *name*
/// points at when it runs. A third party who can write the root may swap the names in between
/// (`renameat2(RENAME_EXCHANGE)` of the checked dir with a live job's dir), so after each rename
/// the inode now under `to` must be the one we hold. If it is not, the wrong dir was moved: put it
/// back under `from` (never replacing) and report why, so nobody deletes or adopts it.
fn verify_moved(
    held: &File,
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> Result<(), String> {
    let ours = fs::identity(held.as_fd()).map_err(|e| format!("cannot stat the held dir ({e})"))?;
    match fs::identity_at(to_dir, to) {
        Ok(now) if now == ours => return Ok(()),
        Ok(_) => {}
        // Gone already: nothing of anyone's is under the new name for us to misuse.
        Err(e) => return Err(format!("moved dir vanished at once ({e})")),
    }
    match rename_noreplace(to_dir, to, from_dir, from) {
        Ok(()) => Err(
            "the name was swapped for another dir between check and rename; put that dir back"
                .into(),
        ),
        Err(e) => Err(format!(
            "the name was swapped for another dir between check and rename; could not put it \
             back ({}), it is left under {}",
            io::Error::from(e),
            to.to_string_lossy()
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Step 2: renew (docs/protocol.md#renew)

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

// ---------------------------------------------------------------------------------------------
// Step 3: release (docs/protocol.md#release)

impl Held {
    /// Mark the lease released, protected for `linger` so later steps of the job find the dir,
    /// and record the target dir's size (bounded walk). The lock drops with `self`.
    pub(crate) fn release(self, linger: Duration) -> Result<()> {
        let now = SystemTime::now();
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
        };
        let measured_at = self
            .lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .size_measured_at;
        let stale =
            measured_at.is_none_or(|at| unix(now).saturating_sub(at) >= SIZE_REFRESH.as_secs());
        let size = if stale {
            fs::tree_size(
                self.dir.as_fd(),
                OsStr::new(TARGET),
                Some(Instant::now() + SIZE_BUDGET),
            )
        } else {
            None
        };
        step("release");
        self.update(|l| {
            l.state = State::Released;
            l.renewed_at = now;
            l.expires_at = expiry(now, linger);
            if let Some(size) = size {
                l.size_bytes = Some(size);
                l.size_measured_at = Some(unix(now));
            }
        })
        .with_context(|| format!("failed to release lease in {}", self.path.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// Step 4: the guard's claim (docs/protocol.md#claim-the-guard)

/// What the guard may do with one job dir.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Moved into `.trash/` under this name; the caller deletes it.
    Trashed { trash_name: OsString, lease: Lease },
    /// Dry run: this dir would have been moved.
    Would { lease: Lease },
    /// Not reclaimable; the reason says why.
    Kept { lease: Option<Lease>, reason: Keep },
}

/// Claim an expired dir for deletion: decide while holding its lock, and move it into `.trash/`
/// while still holding it, so no job can resume or adopt it between the decision and the move.
pub(crate) fn claim(root: &Root, name: &OsStr, trust: LockTrust, dry_run: bool) -> Claim {
    let kept = |lease: Option<Lease>, reason: Keep| Claim::Kept { lease, reason };
    let dir = match root.open_job(name) {
        Ok(d) => d,
        Err(skip) => return kept(None, Keep::Skipped(skip)),
    };
    let lease = match read(dir.as_fd()) {
        Ok(l) => l,
        Err(why) => return kept(None, Keep::Unknown(why)),
    };
    match dir.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = lease.holder();
            return kept(Some(lease), Keep::StillLocked { holder });
        }
        Err(TryLockError::Error(e)) => {
            return kept(Some(lease), Keep::Unknown(format!("lock failed ({e})")));
        }
    }
    step("guard-locked");
    // Race closed: the name now points elsewhere (renamed, or swapped for a symlink).
    if !root.still_names(name, &dir) {
        return kept(Some(lease), Keep::Changed);
    }
    // Race closed: re-read under the lock; the owner may have resumed it since the scan.
    let lease = match read(dir.as_fd()) {
        Ok(l) => l,
        Err(why) => return kept(None, Keep::Unknown(why)),
    };
    let verdict = classify(&lease, SystemTime::now(), trust);
    if let Err(reason) = Keep::unless_expired(&verdict, &lease) {
        return kept(Some(lease), reason);
    }
    if dry_run {
        return Claim::Would { lease };
    }
    step("guard-rename");
    let trash_name = match move_to_trash(root, name, &dir) {
        Ok(trash_name) => trash_name,
        Err(e) => {
            return kept(Some(lease), Keep::NotMoved(e));
        }
    };
    drop(dir);
    step("guard-trashed");
    Claim::Trashed { trash_name, lease }
}

/// A `.new-*` dir left by a job that crashed while creating its dir. Its creator locks it right
/// after `mkdir`, so an unlocked one older than `min_age` is abandoned.
pub(crate) fn claim_unfinished(root: &Root, name: &OsStr, min_age: Duration) -> Option<OsString> {
    let dir = root.open_job(name).ok()?;
    let st = rustix::fs::fstat(&dir).ok()?;
    let changed = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_ctime.max(0) as u64);
    if SystemTime::now()
        .duration_since(changed)
        .unwrap_or_default()
        < min_age
    {
        return None;
    }
    dir.try_lock().ok()?;
    if !root.still_names(name, &dir) {
        return None;
    }
    match move_to_trash(root, name, &dir) {
        Ok(trash_name) => Some(trash_name),
        Err(why) => {
            term::warn(format_args!("kept {}: {why}", root.join(name).display()));
            None
        }
    }
}

/// Rename `name` into `.trash/` under a unique name (the caller holds its lock on `dir`),
/// returning that name. Same filesystem, so the rename is atomic: the dir is whole under one
/// name or the other. Checked afterwards (`verify_moved`): only the locked inode may end up in
/// `.trash/`, where everything is deleted.
fn move_to_trash(root: &Root, name: &OsStr, dir: &File) -> Result<OsString, String> {
    let trash = fs::open_dir_nofollow(root.fd(), OsStr::new(TRASH)).map_err(|e| e.to_string())?;
    let trash_name = OsString::from(format!(
        "{}.{}",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    rename_noreplace(root.fd(), name, trash.as_fd(), &trash_name)
        .map_err(|e| io::Error::from(e).to_string())?;
    step("trash-renamed");
    verify_moved(dir, root.fd(), name, trash.as_fd(), &trash_name)?;
    Ok(trash_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    type ThirdParty = (String, Box<dyn FnMut()>);

    thread_local! {
        /// What a third party does when the protocol reaches a step (once).
        static THIRD_PARTY: RefCell<Option<ThirdParty>> = const { RefCell::new(None) };
    }

    pub(super) fn third_party(at: &str) {
        let armed = THIRD_PARTY.with(|t| {
            let mut t = t.borrow_mut();
            if t.as_ref().is_some_and(|(s, _)| s == at) {
                t.take()
            } else {
                None
            }
        });
        if let Some((_, mut act)) = armed {
            act();
        }
    }

    /// The names the property test plays with: three jobs, and `x`, at first a symlink out of
    /// the root.
    const NAMES: [&str; 4] = ["j0", "j1", "j2", "x"];
    const STEPS: [&str; 5] = [
        "guard-rename",
        "trash-renamed",
        "adopt-locked",
        "acquire-before-publish",
        "acquire-resume-locked",
    ];

    #[derive(Debug, Clone)]
    enum Op {
        Acquire {
            job: usize,
            adopt: bool,
        },
        Release(usize),
        /// The job's process dies: lock gone, lease left active (TTL 0: expired at once).
        Crash(usize),
        Claim(usize),
        ClaimUnfinished,
        /// A third party renames `a` to `b` (swapping them if `exchange`) now...
        Rename {
            a: usize,
            b: usize,
            exchange: bool,
        },
        /// ...or when the protocol next reaches `STEPS[step]`.
        RenameAt {
            step: usize,
            a: usize,
            b: usize,
            exchange: bool,
        },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0..3usize, any::<bool>()).prop_map(|(job, adopt)| Op::Acquire { job, adopt }),
            (0..4usize).prop_map(Op::Release),
            (0..4usize).prop_map(Op::Crash),
            (0..4usize).prop_map(Op::Claim),
            Just(Op::ClaimUnfinished),
            (0..4usize, 0..4usize, any::<bool>()).prop_map(|(a, b, exchange)| Op::Rename {
                a,
                b,
                exchange
            }),
            (0..5usize, 0..4usize, 0..4usize, any::<bool>()).prop_map(|(step, a, b, exchange)| {
                Op::RenameAt {
                    step,
                    a,
                    b,
                    exchange,
                }
            }),
        ]
    }

    fn rename(root_path: &Path, a: usize, b: usize, exchange: bool) {
        let Ok(d) = File::open(root_path) else {
            return;
        };
        let flags = if exchange {
            RenameFlags::EXCHANGE
        } else {
            RenameFlags::NOREPLACE
        };
        let _ = rustix::fs::renameat_with(&d, NAMES[a], &d, NAMES[b], flags);
    }

    /// Whether the inode of `held` is a top-level entry of the root (not in `.trash/`) and
    /// still holds its files.
    fn alive(root: &Root, held: &Held) -> bool {
        let named = fs::list(root.fd()).unwrap().iter().any(|(n, _)| {
            n != TRASH && fs::identity_at(root.fd(), n).is_ok_and(|i| i == held.ident)
        });
        let files =
            rustix::fs::statat(&held.dir, "target/keep", rustix::fs::AtFlags::empty()).is_ok();
        named && files
    }

    fn run(ops: Vec<Op>) {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), "keep").unwrap();
        let root = Root::create(&tmp.path().join("root")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("x")).unwrap();
        let owner = Owner::this_process(None);
        let key = || WorkspaceKey {
            workspace: "ws".into(),
            toolchain: None,
        };
        let no_interrupt = || Ok(());
        let mut held: Vec<Held> = Vec::new();
        for op in ops {
            match op {
                Op::Acquire { job, adopt } => {
                    let req = Request {
                        job_id: NAMES[job],
                        name: NAMES[job],
                        owner: &owner,
                        ttl: Duration::ZERO,
                        command: vec![],
                        wait: Some(Duration::ZERO),
                        key: &key,
                        adopt,
                        trust: LockTrust::Trusted,
                        interrupted: &no_interrupt,
                    };
                    if let Ok((h, _)) = acquire(&root, &req) {
                        let _ = rustix::fs::mkdirat(&h.dir, TARGET, Mode::from_raw_mode(0o755));
                        std::fs::write(
                            format!("/proc/self/fd/{}/target/keep", {
                                use std::os::fd::AsRawFd;
                                h.dir.as_raw_fd()
                            }),
                            "live",
                        )
                        .unwrap();
                        held.push(h);
                    }
                }
                Op::Release(i) if i < held.len() => {
                    let _ = held.remove(i).release(Duration::ZERO);
                }
                Op::Crash(i) if i < held.len() => drop(held.remove(i)),
                Op::Release(_) | Op::Crash(_) => {}
                Op::Claim(n) => {
                    if let Claim::Trashed { trash_name, .. } =
                        claim(&root, OsStr::new(NAMES[n]), LockTrust::Trusted, false)
                    {
                        let trash = fs::open_dir_nofollow(root.fd(), OsStr::new(TRASH)).unwrap();
                        fs::remove_tree(trash.as_fd(), &trash_name, root.mount)
                            .result()
                            .unwrap();
                    }
                }
                Op::ClaimUnfinished => {
                    for (n, _) in fs::list(root.fd()).unwrap() {
                        if n.as_encoded_bytes().starts_with(NEW_PREFIX.as_bytes()) {
                            let _ = claim_unfinished(&root, &n, Duration::ZERO);
                        }
                    }
                }
                Op::Rename { a, b, exchange } => rename(&root.path, a, b, exchange),
                Op::RenameAt {
                    step,
                    a,
                    b,
                    exchange,
                } => {
                    let path = root.path.clone();
                    THIRD_PARTY.with(|t| {
                        *t.borrow_mut() = Some((
                            STEPS[step].to_owned(),
                            Box::new(move || rename(&path, a, b, exchange)),
                        ));
                    });
                }
            }
            for h in &held {
                assert!(alive(&root, h), "lost live dir {}", h.path.display());
            }
            assert!(
                outside.join("precious").exists(),
                "deleted outside the root"
            );
        }
        THIRD_PARTY.with(|t| t.borrow_mut().take());
    }

    fn lease(state: State, renewed_ago: u64, ttl: u64, expires_in: i64) -> (Lease, SystemTime) {
        let now = SystemTime::now();
        let renewed = now - Duration::from_secs(renewed_ago);
        let expires = if expires_in >= 0 {
            now + Duration::from_secs(expires_in as u64)
        } else {
            now - Duration::from_secs((-expires_in) as u64)
        };
        let l = Lease {
            protocol: PROTOCOL,
            job_id: "j".into(),
            token: "t".into(),
            workspace: None,
            toolchain: None,
            host: "h".into(),
            boot_id: None,
            runner: Some("runner-3".into()),
            pid: 4121,
            created_at: renewed,
            renewed_at: renewed,
            expires_at: expires,
            heartbeat_secs: 1,
            ttl_secs: ttl,
            state,
            size_bytes: None,
            size_measured_at: None,
            command: vec![],
        };
        (l, now)
    }

    #[test]
    fn active_lease_expires_after_its_ttl() {
        let (l, now) = lease(State::Active, 4, 600, 596);
        let v = classify(&l, now, LockTrust::Trusted);
        assert!(matches!(v, Verdict::Live { .. }));
        assert_eq!(
            v.reason(&l),
            "lease held by runner-3 (pid 4121), renewed 4s ago"
        );
        let (l, now) = lease(State::Active, 700, 600, -100);
        assert!(matches!(
            classify(&l, now, LockTrust::Trusted),
            Verdict::Expired { .. }
        ));
    }

    #[test]
    fn released_lease_lingers_until_expiry() {
        let (l, now) = lease(State::Released, 0, 600, 2400);
        let v = classify(&l, now, LockTrust::Trusted);
        assert!(
            v.reason(&l).starts_with("released, expires in 39m")
                || v.reason(&l).starts_with("released, expires in 40m")
        );
        let (l, now) = lease(State::Released, 7200, 600, -10);
        assert!(matches!(
            classify(&l, now, LockTrust::Trusted),
            Verdict::Expired { .. }
        ));
    }

    #[test]
    fn untrusted_locks_need_a_margin() {
        let (l, now) = lease(State::Active, 700, 600, -100);
        assert!(matches!(
            classify(&l, now, LockTrust::Untrusted("nfs")),
            Verdict::Live { .. }
        ));
    }

    #[test]
    fn parse_rejects_what_it_does_not_know() {
        assert!(parse(b"").unwrap_err().contains("unreadable"));
        assert!(
            parse(b"{\"protocol\": 2}")
                .unwrap_err()
                .contains("unknown lease protocol version 2")
        );
        assert!(
            parse(b"{\"protocol\": \"1\"}")
                .unwrap_err()
                .contains("unknown")
        );
        assert!(parse(b"{}").unwrap_err().contains("no protocol"));
        assert!(
            parse(b"{\"protocol\": 1}")
                .unwrap_err()
                .contains("unreadable")
        );
        let (l, _) = lease(State::Active, 0, 600, 600);
        let bytes = serde_json::to_vec(&l).unwrap();
        assert_eq!(parse(&bytes).unwrap().job_id, "j");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(200))]

        /// Random interleavings of the protocol's steps with a third party's renames (plain and
        /// `RENAME_EXCHANGE`, also in the middle of a step) never lose a live dir and never
        /// delete outside the root.
        #[test]
        fn no_interleaving_loses_a_live_dir(ops in proptest::collection::vec(op(), 1..40)) {
            run(ops);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_json_like_input(s in "\\{\"protocol\": ?[0-9]{1,3}(, \"[a-z_]{1,12}\": (\"[^\"]{0,20}\"|[0-9]{1,20}|null|\\[\\]))*\\}") {
            let _ = parse(s.as_bytes());
        }
    }
}

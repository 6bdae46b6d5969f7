//! The lease protocol (`PROTOCOL.md`): the root's layout, the lease record, and the steps in the
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
use rustix::fs::{Mode, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::fault;
use crate::fs::{self, Identity};
use crate::locks::LockTrust;
use crate::term;
use crate::units::{Bytes, Short};
use crate::workspace::WorkspaceKey;

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
/// Leases are small; anything larger is not ours (and must not make a guard read 100 MB).
const MAX_LEASE_BYTES: u64 = 64 * 1024;
/// Size walks at release stop after this; the size is then reported as unknown.
const SIZE_BUDGET: Duration = Duration::from_millis(500);
/// A size measured more recently than this is kept at release: repeated local builds (and the
/// steps of one CI job) do not pay for a walk of the whole target dir each time.
const SIZE_REFRESH: Duration = Duration::from_secs(600);

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This directory holds cargo-guarded job dirs (Rust target dirs).\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

// ---------------------------------------------------------------------------------------------
// The root

/// The shared root, opened once; every other path is resolved relative to its fd.
pub(crate) struct Root {
    pub(crate) path: PathBuf,
    fd: OwnedFd,
    /// The root's device: deletion never leaves it.
    pub(crate) dev: u64,
}

impl Root {
    /// Open an existing root (for `status` and `gc`, which must not create one by accident).
    pub(crate) fn open(path: &Path) -> Result<Root> {
        let file =
            File::open(path).with_context(|| format!("failed to open root {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("failed to stat root {}", path.display()))?;
        if !meta.is_dir() {
            bail!("root {} is not a directory", path.display());
        }
        let fd = OwnedFd::from(file);
        let dev = fs::identity(fd.as_fd())?.0;
        Ok(Root {
            path: path.to_owned(),
            fd,
            dev,
        })
    }

    /// Open the root, creating it with its `CACHEDIR.TAG` and `.trash/` if needed.
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

    /// The root's own entries: `CACHEDIR.TAG` (so backup tools skip it) and `.trash/`.
    pub(crate) fn ensure_layout(&self) -> Result<()> {
        if !self.join("CACHEDIR.TAG").exists() {
            fs::write_atomic(self.fd(), "CACHEDIR.TAG", CACHEDIR_TAG.as_bytes()).with_context(
                || format!("failed to write {}", self.join("CACHEDIR.TAG").display()),
            )?;
        }
        match rustix::fs::mkdirat(self.fd(), TRASH, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(io::Error::from(e))
                .with_context(|| format!("failed to create {}", self.join(TRASH).display())),
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
        let ident = fs::identity(fd.as_fd()).map_err(|e| Skip::Io(e.to_string()))?;
        if ident.0 != self.dev {
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
// The lease record

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
    serde_json::from_slice(bytes).map_err(|e| format!("lease unreadable ({e})"))
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
// Expiry (pure; shared by the guard, adoption and `status`)

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
    match lease.state {
        State::Released => {
            let until = lease.expires_at + margin;
            match until.duration_since(now) {
                Ok(left) if !left.is_zero() => Verdict::Lingering { expires_in: left },
                _ => Verdict::Expired { since: until },
            }
        }
        State::Active => {
            let stale = lease.renewed_at + lease.ttl() + margin;
            if now > stale {
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
    /// The reason a non-expired dir is kept, as the guard prints it.
    pub(crate) fn reason(&self, lease: &Lease) -> String {
        match self {
            Verdict::Live { renewed_ago } => {
                format!(
                    "lease held by {}, renewed {} ago",
                    lease.holder(),
                    Short(*renewed_ago)
                )
            }
            Verdict::Lingering { expires_in } => {
                format!("released, expires in {}", Short(*expires_in))
            }
            Verdict::Expired { .. } => "expired".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: acquire

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
            expires_at: now + self.ttl,
            heartbeat_secs: heartbeat_interval(self.ttl).as_secs().max(1),
            // Whole seconds, rounded up: `--ttl 500ms` must not record "expires at once".
            ttl_secs: self.ttl.as_secs_f64().ceil() as u64,
            state: State::Active,
            size_bytes: None,
            size_measured_at: None,
            command: self.command.clone(),
        }
    }
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

    pub(crate) fn job_id(&self) -> String {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .job_id
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
    loop {
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
        fault::point("acquire-resume-locked");

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
        drop(dir);
        if lease.same_key(key)
            && matches!(classify(&lease, now, req.trust), Verdict::Expired { .. })
        {
            out.push(Candidate { name, lease });
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
    fault::point("adopt-locked");
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
    // A crash here leaves the dir under our name with the old (expired) lease: a later step of
    // this job takes it over, or a guard reclaims it. Either is safe.
    fault::point("adopt-renamed");
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
    fault::point("acquire-locked");
    let lease = req.lease(Some(key), SystemTime::now());
    write(dir.as_fd(), &lease)
        .with_context(|| format!("failed to write lease in {}", tmp_path.display()))?;
    rustix::fs::mkdirat(&dir, TARGET, Mode::from_raw_mode(0o755))
        .map_err(io::Error::from)
        .with_context(|| format!("failed to create {}", tmp_path.join(TARGET).display()))?;
    fault::point("acquire-before-publish");
    match rename_noreplace(root.fd(), OsStr::new(&tmp), root.fd(), OsStr::new(req.name)) {
        Ok(()) => Ok(Some(held(root, OsStr::new(req.name), dir, lease)?)),
        Err(e) if is_exists(e) => {
            drop(dir);
            let _ = fs::remove_tree(root.fd(), OsStr::new(&tmp), root.dev);
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

fn is_exists(e: Errno) -> bool {
    e == Errno::EXIST || e == Errno::NOTEMPTY
}

// ---------------------------------------------------------------------------------------------
// Step 2: renew

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
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                fault::point("heartbeat");
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
                    l.expires_at = now + ttl;
                });
                if let Err(e) = renewed {
                    // The lock still protects the dir; the next beat may succeed (e.g. ENOSPC).
                    term::warn(format_args!(
                        "failed to renew lease in {}: {e}",
                        held.path.display()
                    ));
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
// Step 3: release

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
        fault::point("release");
        self.update(|l| {
            l.state = State::Released;
            l.renewed_at = now;
            l.expires_at = now + linger;
            if let Some(size) = size {
                l.size_bytes = Some(size);
                l.size_measured_at = Some(unix(now));
            }
        })
        .with_context(|| format!("failed to release lease in {}", self.path.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// Step 4: the guard's claim

/// What the guard may do with one job dir.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Moved into `.trash/` under this name; the caller deletes it.
    Trashed { trash_name: OsString, lease: Lease },
    /// Dry run: this dir would have been moved.
    Would { lease: Lease },
    /// Not reclaimable; the reason says why.
    Kept {
        lease: Option<Lease>,
        reason: String,
    },
}

/// Claim an expired dir for deletion: decide while holding its lock, and move it into `.trash/`
/// while still holding it, so no job can resume or adopt it between the decision and the move.
pub(crate) fn claim(root: &Root, name: &OsStr, trust: LockTrust, dry_run: bool) -> Claim {
    let kept = |lease: Option<Lease>, reason: String| Claim::Kept { lease, reason };
    let dir = match root.open_job(name) {
        Ok(d) => d,
        Err(skip) => return kept(None, skip.to_string()),
    };
    let lease = match read(dir.as_fd()) {
        Ok(l) => l,
        Err(why) => return kept(None, format!("kept: unknown – {why}")),
    };
    match dir.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return kept(
                Some(lease.clone()),
                format!(
                    "kept: lease expired but still locked by {} (stopped process?)",
                    lease.holder()
                ),
            );
        }
        Err(TryLockError::Error(e)) => {
            return kept(Some(lease), format!("kept: unknown – lock failed ({e})"));
        }
    }
    fault::point("guard-locked");
    // Race closed: the name now points elsewhere (renamed, or swapped for a symlink).
    if !root.still_names(name, &dir) {
        return kept(Some(lease), "skipped: changed while being examined".into());
    }
    // Race closed: re-read under the lock; the owner may have resumed it since the scan.
    let lease = match read(dir.as_fd()) {
        Ok(l) => l,
        Err(why) => return kept(None, format!("kept: unknown – {why}")),
    };
    let verdict = classify(&lease, SystemTime::now(), trust);
    if !matches!(verdict, Verdict::Expired { .. }) {
        let reason = format!("kept: {}", verdict.reason(&lease));
        return kept(Some(lease), reason);
    }
    if dry_run {
        return Claim::Would { lease };
    }
    fault::point("guard-rename");
    let trash_name = match move_to_trash(root, name) {
        Ok(trash_name) => trash_name,
        Err(e) => {
            return kept(
                Some(lease),
                format!("kept: could not move into {TRASH}/ ({e})"),
            );
        }
    };
    drop(dir);
    fault::point("guard-trashed");
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
    move_to_trash(root, name).ok()
}

/// Rename `name` into `.trash/` under a unique name (the caller holds its lock), returning that
/// name. Same filesystem, so the rename is atomic: the dir is whole under one name or the other.
fn move_to_trash(root: &Root, name: &OsStr) -> Result<OsString, Errno> {
    let trash = fs::open_dir_nofollow(root.fd(), OsStr::new(TRASH))
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    let trash_name = OsString::from(format!(
        "{}.{}",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    rename_noreplace(root.fd(), name, trash.as_fd(), &trash_name)?;
    Ok(trash_name)
}

#[cfg(test)]
mod tests {
    use super::*;

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

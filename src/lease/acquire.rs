//! Step 1, acquire (docs/protocol.md#acquire): resume the job's own dir, else adopt (`adopt`),
//! else create a fresh one.

use std::ffi::OsStr;
use std::fs::{File, TryLockError};
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use rustix::fs::Mode;
use rustix::io::Errno;

use crate::fs;
use crate::locks::LockTrust;
use crate::term;
use crate::units::Short;
use crate::workspace::WorkspaceKey;

use super::adopt::{AdoptOutcome, scan_for_new_job};
use super::held::{Held, held};
use super::moves::{is_exists, rename_noreplace, verify_moved};
use super::record::{Lease, Owner, State, expiry, heartbeat_interval, read, write};
use super::root::{Root, Skip};
use super::{LEASE_FILE, NEW_PREFIX, PROTOCOL, TARGET, step};

/// The recorded command is for humans: capped far below `MAX_LEASE_BYTES`, so a job with a huge
/// argv still writes a lease every guard can read (and reclaim).
const MAX_COMMAND_BYTES: usize = 4 * 1024;

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

impl Request<'_> {
    pub(super) fn lease(&self, key: Option<&WorkspaceKey>, created_at: SystemTime) -> Lease {
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

impl Origin {
    /// `fresh`, `resumed` or `adopted`: the word the `origin` step output and summaries use.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Origin::Fresh => "fresh",
            Origin::Resumed => "resumed",
            Origin::Adopted { .. } => "adopted",
        }
    }
}

/// Acquire the job's dir: resume its own, else adopt a warm expired one, else create it.
pub(crate) fn acquire(root: &Root, req: &Request<'_>) -> Result<(Held, Origin)> {
    let name = OsStr::new(req.name);
    let path = root.join(req.name);
    let mut waiting = Waiting {
        started: Instant::now(),
        activity: None,
    };
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

        // Never wait on, or build into, a dir that another user put under our name.
        check_owned(&dir).map_err(|why| unusable(&path, &why))?;
        if !wait_for_lock(root, req, &dir, &mut waiting)? || !root.still_names(name, &dir) {
            continue;
        }
        step("acquire-resume-locked");
        return Ok((resume(root, req, dir)?, Origin::Resumed));
    }
}

/// The job's name is taken by a dir this job must not use (another user's, or not a real dir).
fn unusable(path: &std::path::Path, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{} cannot be used as this job's dir: {why}; remove it or choose another --job-id",
        path.display()
    )
}

/// How long this acquisition has waited for another run of the job, and its spinner.
struct Waiting {
    started: Instant,
    activity: Option<term::Activity>,
}

/// Another run of the same job id holds the lock on `dir`: wait, like cargo's "Blocking waiting
/// for file lock", polling so that `--wait` can bound it. `Ok(false)`: `dir` no longer has the
/// job's name; the caller looks at the name again.
fn wait_for_lock(
    root: &Root,
    req: &Request<'_>,
    dir: &File,
    waiting: &mut Waiting,
) -> Result<bool> {
    let name = OsStr::new(req.name);
    let path = root.join(req.name);
    loop {
        match dir.try_lock() {
            Ok(()) => {
                if let Some(w) = waiting.activity.take() {
                    let waited = Short(w.elapsed());
                    w.finish(
                        "Acquired",
                        format_args!("the lease on {} after {waited}", path.display()),
                    );
                }
                return Ok(true);
            }
            Err(TryLockError::WouldBlock) => {
                (req.interrupted)()?;
                // Race closed: while we wait on this inode, an adopter (holding its lock) may
                // rename it away to its own job's name, or a guard into `.trash/`. We would then
                // wait for, and finally lock, a dir that is no longer ours: look at the name
                // again instead.
                if !root.still_names(name, dir) {
                    return Ok(false);
                }
                if waiting.activity.is_none() {
                    // Who holds it and what it runs, said while we wait (a spinner, or a line
                    // every 10 s in a CI log), not once and then silence.
                    let holder = read(dir.as_fd()).map_or_else(
                        |e| e,
                        |l| format!("{} running `{}`", l.holder(), l.command.join(" ")),
                    );
                    waiting.activity = Some(term::Activity::start(
                        "Waiting",
                        format_args!("for lease held by {holder} on {}", path.display()),
                    ));
                }
                if req.wait.is_some_and(|w| waiting.started.elapsed() >= w) {
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
}

/// Resume the job's own dir, locked by us and still under its name: a new lease that keeps the
/// creation time, workspace and size of the job's earlier steps.
fn resume(root: &Root, req: &Request<'_>, dir: File) -> Result<Held> {
    let name = OsStr::new(req.name);
    let path = root.join(req.name);
    // Race closed: its lease or `target` swapped for another user's (or a symlink) between the
    // check before waiting and our lock.
    check_owned(&dir).map_err(|why| unusable(&path, &why))?;
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
    held(root, name, dir, lease)
}

/// Race closed (shared roots, mode 1777): another user may pre-create a job's dir with a valid
/// lease and a `target` symlink into their own files, or into ours. A job dir we resume or adopt,
/// its lease and its `target/` must belong to us and be a real dir, file and dir.
pub(super) fn check_owned(dir: &File) -> Result<(), String> {
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

/// The job has no dir yet: end same-runner leases, adopt a warm one, or create a fresh one.
/// `Ok(None)`: another step of this job published the dir first; the caller takes that one.
fn create_or_adopt(root: &Root, req: &Request<'_>) -> Result<Option<(Held, Origin)>> {
    let key = (req.key)();
    let candidates = scan_for_new_job(root, req, &key);
    if req.adopt {
        for cand in candidates {
            match super::adopt::adopt(root, req, &key, &cand)? {
                AdoptOutcome::Adopted(held) => {
                    let held = *held;
                    // The size the adoption line reports (and pruning's backstop falls back to)
                    // is measured now: the recorded one dates from the previous job's first
                    // release when its later steps came within SIZE_REFRESH, and later steps
                    // grow the dir (tests, docs). Recorded only if the walk runs out of time.
                    let measured = super::job_size(
                        held.dir.as_fd(),
                        Some(Instant::now() + super::held::SIZE_BUDGET),
                    );
                    let origin = Origin::Adopted {
                        from: cand.lease.job_id.clone(),
                        size: measured.or(cand.lease.size_bytes),
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

//! Step 1, acquire (docs/protocol.md#acquire): resume the job's own dir, else adopt (`adopt`),
//! else create a fresh one.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use rustix::fs::Mode;
use rustix::io::Errno;

use crate::fs;
use crate::locks::{self, Patience, Waited, try_exclusive};
use crate::quantity::RoundDuration;
use crate::term;
use crate::workspace::WorkspaceKey;

use super::adopt::{AdoptOutcome, Candidate, scan_for_new_job};
use super::held::{Held, held};
use super::layout::{NEW_PREFIX, TARGET, job_size};
use super::moves::{is_exists, rename_noreplace, verify_moved};
use super::notice::Notice;
use super::owned::check_owned;
use super::probe::{TREE_LOCK, share};
use super::record::{Lease, read, write};
use super::request::{Origin, Request};
use super::root::{NotAJobDir, Root};
use super::seed::{self, Miss, Seeded, Seeding};
use super::starting;
use super::step::step;

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
            Err(NotAJobDir::Gone) => match create_or_adopt(root, req)? {
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

/// `--wait` ran out while another run of the same job held the lease: `main` exits 75, "try
/// again later", as for a full disk, so CI can tell it from a broken setup.
#[derive(Debug)]
pub(crate) struct WaitTimedOut {
    waited: Duration,
    path: String,
    job_id: String,
}

impl std::fmt::Display for WaitTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gave up after {} waiting for the lease on {}; another run of job `{}` holds it",
            RoundDuration(self.waited),
            self.path,
            self.job_id
        )
    }
}

impl std::error::Error for WaitTimedOut {}

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
    let patience = Patience {
        since: waiting.started,
        limit: req.wait,
        poll: Duration::from_millis(100),
        interrupted: req.interrupted,
    };
    let lock = || try_exclusive(dir).with_context(|| format!("failed to lock {}", path.display()));
    let held = || {
        // Race closed: while we wait on this inode, an adopter (holding its lock) may rename it
        // away to its own job's name, or a guard into `.trash/`. We would then wait for, and
        // finally lock, a dir that is no longer ours: look at the name again instead.
        if !root.still_names(name, dir) {
            return Ok(ControlFlow::Break(()));
        }
        if waiting.activity.is_none() {
            // Who holds it and what it runs, said while we wait (a spinner, or a line every
            // 10 s in a CI log), not once and then silence.
            let holder = read(dir.as_fd()).map_or_else(
                |e| e,
                |l| format!("{} running `{}`", l.holder(), l.command.join(" ")),
            );
            // What the user can do: stop it, or bound it.
            let hint = match req.wait {
                Some(w) => format!("Ctrl-C stops; gives up after {}", RoundDuration(w)),
                None => "Ctrl-C stops; --wait bounds the wait".to_owned(),
            };
            waiting.activity = Some(term::Activity::start(
                "Waiting",
                format_args!("for lease held by {holder} on {}", path.display()),
                &hint,
            ));
        }
        Ok(ControlFlow::Continue(()))
    };
    match locks::wait(&patience, lock, held)? {
        Waited::Taken => {
            if let Some(w) = waiting.activity.take() {
                let waited = RoundDuration(w.elapsed());
                w.finish(
                    "Acquired",
                    format_args!("the lease on {} after {waited}", path.display()),
                );
            }
            Ok(true)
        }
        Waited::Stopped => Ok(false),
        Waited::TimedOut(waited) => Err(WaitTimedOut {
            waited,
            path: path.display().to_string(),
            job_id: req.job_id.to_owned(),
        }
        .into()),
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
        req.notices.notice(Notice::TakenOver {
            dir: path.clone(),
            why: why.clone(),
            job_id: req.job_id.to_owned(),
        });
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
        // How the job first came by its dir: what `status` counts per workspace.
        lease.origin = p.origin.clone();
        lease.together = p.together;
        // The job's counts so far, and its line's cold build (docs/protocol.md#what-warmth-saved).
        (lease.warmth, lease.cold) = (p.warmth.clone(), p.cold.clone());
    }
    // Sticky: every earlier writer's scope stays (an unreadable lease stands for an unknown one).
    lease.scopes = req.scopes_after(prev.as_ref());
    write(dir.as_fd(), &lease)
        .with_context(|| format!("failed to write lease in {}", path.display()))?;
    // Shared: orphans of an earlier step of this job (a daemon that outlived its wrapper) share
    // it too, and must not make this step wait (docs/protocol.md#what-a-lock-means).
    let tree = share(dir.as_fd(), req.interrupted, req.wait)
        .with_context(|| format!("failed to lock {}", path.join(TREE_LOCK).display()))?;
    held(root, name, dir, tree, lease)
}

/// Sources a seed is tried from before building fresh: a source that changed under the copy is
/// discarded and the next one tried.
const SEED_TRIES: usize = 3;

/// The job has no dir yet: end same-runner leases, adopt a warm one, seed from a finished one, or
/// create a fresh one. `Ok(None)`: another step of this job published the dir first; the caller
/// takes that one.
// Long: the rule read top to bottom (register, scan, adopt, seed, fresh).
fn create_or_adopt(root: &Root, req: &Request<'_>) -> Result<Option<(Held, Origin)>> {
    let key = (req.key)();
    // Registered first, as a locked `.new-*` dir with our lease: a job that starts while we
    // choose sees us starting and keeps the freshest dir a seed source, and we see it.
    let Some(new) = NewDir::create(root, req, &key, Origin::FRESH)? else {
        return Ok(None);
    };
    step("acquire-registered");
    let scan = scan_for_new_job(root, req, &key);
    let together = scan.live > 0 || starting::others(root, &key, &new.tmp, req.trust) > 0;
    if req.adopt {
        // The rule (docs/protocol.md#seed): alone (no other job of the workspace live or
        // starting), a job adopts the freshest expired dir: nothing is copied, and it starts
        // from the last job's state. Otherwise, while seeding is on, the freshest finished dir
        // is never adopted: it stays the source every job starting now seeds from, so N jobs
        // starting together all start warm, and none adopts a dir another copies from. Nor
        // when the freshest dir's own job started together with another: the workspace runs
        // jobs together, and a job starting a moment after us would find no source.
        let reserve = req
            .seed
            .as_ref()
            .and(scan.finished.first())
            .filter(|r| together || r.lease.together == Some(true));
        let adoptable = scan
            .expired
            .iter()
            .filter(|c| reserve.is_none_or(|r| r.name != c.name));
        for cand in adoptable {
            let outcome = super::adopt::adopt(root, req, &key, cand);
            // Our registration goes on every way out but the seed and fresh paths below.
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => {
                    new.discard(root);
                    return Err(e);
                }
            };
            match outcome {
                AdoptOutcome::Adopted(held) => {
                    new.discard(root);
                    if together {
                        held.update(|l| l.together = Some(true)).with_context(|| {
                            format!("failed to write lease in {}", held.path.display())
                        })?;
                    }
                    return Ok(Some(adopted(*held, cand)));
                }
                AdoptOutcome::Lost => continue,
                AdoptOutcome::NameTaken => {
                    new.discard(root);
                    return Ok(None);
                }
            }
        }
    }
    let mut new = Some(new);
    // Why no seed, when a source existed: the fresh line says it.
    let mut cold = None;
    if let Some(seeding) = &req.seed {
        // A dir whose last step was `env` is no source until its linger ends: a plain cargo
        // started after `env` may still write in it, and the checks after a copy (its lease, its
        // locks) cannot see that cargo.
        let (handed_out, sources): (Vec<&Candidate>, Vec<&Candidate>) =
            scan.finished.iter().partition(|c| {
                c.lease.tool.as_deref() == Some("env")
                    && !scan.expired.iter().any(|e| e.name == c.name)
            });
        if let Some(c) = handed_out.first() {
            let miss = Miss::Changed(
                root.join(&c.name),
                "its last step was `env`, and a plain cargo may write in it until its linger \
                 ends"
                    .to_owned(),
            );
            cold = Some(seed::cold(&miss));
            req.notices.notice(seed::notice(miss));
        }
        for src in sources.into_iter().take(SEED_TRIES) {
            let dir = match new.take() {
                Some(dir) => dir,
                None => match NewDir::create(root, req, &key, Origin::FRESH)? {
                    Some(dir) => dir,
                    None => return Ok(None),
                },
            };
            match seed_new(root, req, dir, src, seeding, together)? {
                Seed::Done(done) => {
                    let (held, seeded) = *done;
                    return Ok(Some((held, Origin::Seeded(Box::new(seeded)))));
                }
                Seed::NameTaken => return Ok(None),
                Seed::Missed(miss) => {
                    let stop = matches!(miss, Miss::Stop(..));
                    cold = Some(seed::cold(&miss));
                    req.notices.notice(seed::notice(miss));
                    if stop {
                        break;
                    }
                }
            }
        }
    }
    let new = match new {
        Some(new) => new,
        None => match NewDir::create(root, req, &key, Origin::FRESH)? {
            Some(new) => new,
            None => return Ok(None),
        },
    };
    create_fresh(root, req, new, together).map(|h| h.map(|h| (h, Origin::Fresh { cold })))
}

/// What one seed attempt came to.
enum Seed {
    Done(Box<(Held, Seeded)>),
    Missed(Miss),
    /// Our job's name appeared meanwhile (a sibling step published it).
    NameTaken,
}

/// Seed (docs/protocol.md#seed): build the new dir under `.new-*` as a fresh one is built, fill
/// it with a copy of `src`, verified afterwards, and publish it. A copy that fails or that the
/// source's owner overtook is deleted with its `.new-*` dir.
fn seed_new(
    root: &Root,
    req: &Request<'_>,
    mut new: NewDir,
    src: &Candidate,
    seeding: &Seeding<'_>,
    together: bool,
) -> Result<Seed> {
    let source = seed::Source {
        name: src.name.clone(),
        lease: src.lease.clone(),
    };
    let seeded = match seed::copy_from(root, &source, &new.dir, seeding, req.trust) {
        Ok(seeded) => seeded,
        Err(miss) => {
            new.discard(root);
            return Ok(Seed::Missed(miss));
        }
    };
    step("seed-before-publish");
    // `target` may be missing in the source (a job that never built); the job needs one.
    match rustix::fs::mkdirat(&new.dir, TARGET, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => {
            let path = root.join(&new.tmp).join(TARGET);
            new.discard(root);
            return Err(io::Error::from(e))
                .with_context(|| format!("failed to create {}", path.display()));
        }
    }
    new.lease.cold = src.lease.cold.clone();
    if let Err(e) = new.settle(Origin::SEEDED, together, req.scopes_after(Some(&src.lease))) {
        let path = root.join(&new.tmp);
        new.discard(root);
        return Err(e).with_context(|| format!("failed to write lease in {}", path.display()));
    }
    Ok(match new.publish(root, req)? {
        Some(held) => Seed::Done(Box::new((held, seeded))),
        None => Seed::NameTaken,
    })
}

/// The dir adopted from `cand`, and how: the size the adoption line reports (and pruning's
/// backstop falls back to) is measured now, as the recorded one dates from the previous job's
/// last measurement and later steps grow the dir (tests, docs). Recorded only if the walk runs
/// out of time.
fn adopted(held: Held, cand: &Candidate) -> (Held, Origin) {
    let measured = job_size(
        held.dir.as_fd(),
        Some(Instant::now() + super::held::SIZE_BUDGET),
    );
    let origin = Origin::Adopted {
        from: cand.lease.job_id.clone(),
        size: measured.or(cand.lease.size_bytes),
        last_used: cand.lease.renewed_at,
    };
    (held, origin)
}

/// Publish the registered dir as a fresh one. It is built under a dot-name (invisible to guards
/// and other jobs), locked before its lease exists, and published by a rename that never
/// replaces: a crash at any point leaves either nothing under the job's name or a complete,
/// leased dir.
fn create_fresh(
    root: &Root,
    req: &Request<'_>,
    mut new: NewDir,
    together: bool,
) -> Result<Option<Held>> {
    let path = root.join(&new.tmp);
    if together && let Err(e) = new.settle(Origin::FRESH, together, None) {
        new.discard(root);
        return Err(e).with_context(|| format!("failed to write lease in {}", path.display()));
    }
    if let Err(e) = rustix::fs::mkdirat(&new.dir, TARGET, Mode::from_raw_mode(0o755)) {
        new.discard(root);
        return Err(io::Error::from(e))
            .with_context(|| format!("failed to create {}", path.join(TARGET).display()));
    }
    step("acquire-before-publish");
    new.publish(root, req)
}

/// A job dir under construction: `.new-<uuid>`, locked, with its lease.
struct NewDir {
    tmp: String,
    dir: File,
    /// Its tree lock, shared (docs/protocol.md#what-a-lock-means).
    tree: File,
    lease: Lease,
}

impl NewDir {
    /// `Ok(None)`: a guard took our unfinished dir before we locked it; start over.
    fn create(
        root: &Root,
        req: &Request<'_>,
        key: &WorkspaceKey,
        origin: &str,
    ) -> Result<Option<NewDir>> {
        let tmp = format!("{NEW_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let tmp_path = root.join(&tmp);
        rustix::fs::mkdirat(root.fd(), tmp.as_str(), Mode::from_raw_mode(0o755))
            .map_err(io::Error::from)
            .with_context(|| format!("failed to create {}", tmp_path.display()))?;
        // Race closed: a guard may take an unlocked `.new-*` dir for abandoned (only after a
        // grace period, but a stopped process can outlast it). Then our name is gone: start over.
        let dir = match fs::open_dir_nofollow(root.fd(), OsStr::new(&tmp)) {
            Ok(fd) => File::from(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to open {}", tmp_path.display()));
            }
        };
        dir.lock()
            .with_context(|| format!("failed to lock {}", tmp_path.display()))?;
        // In the dir before it is published: no reader can see the dir without its tree lock.
        let tree = share(dir.as_fd(), req.interrupted, req.wait)
            .with_context(|| format!("failed to lock {}", tmp_path.join(TREE_LOCK).display()))?;
        step("acquire-locked");
        let mut lease = req.lease(Some(key), SystemTime::now());
        lease.origin = Some(origin.to_owned());
        write(dir.as_fd(), &lease)
            .with_context(|| format!("failed to write lease in {}", tmp_path.display()))?;
        Ok(Some(NewDir {
            tmp,
            dir,
            tree,
            lease,
        }))
    }

    /// How the job came by the dir, and whether it started together with another job of its
    /// workspace, once known (registered as fresh, alone). A seed's lease keeps the scopes of
    /// its source's writers (`scopes`; docs/protocol.md#scopes).
    fn settle(
        &mut self,
        origin: &str,
        together: bool,
        scopes: Option<Vec<crate::scope::Scope>>,
    ) -> io::Result<()> {
        self.lease.origin = Some(origin.to_owned());
        self.lease.together = together.then_some(true);
        if scopes.is_some() {
            self.lease.scopes = scopes;
        }
        write(self.dir.as_fd(), &self.lease)
    }

    /// Delete an unfinished dir we gave up on (still locked by us until it is gone).
    fn discard(self, root: &Root) {
        let _ = fs::remove_tree(root.fd(), OsStr::new(&self.tmp), root.mount);
    }

    /// Publish under the job's name. `Ok(None)`: a sibling step published it first, or a guard
    /// took our unfinished dir; the caller looks at the name again.
    fn publish(self, root: &Root, req: &Request<'_>) -> Result<Option<Held>> {
        let NewDir {
            tmp,
            dir,
            tree,
            lease,
        } = self;
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
                Ok(Some(held(root, OsStr::new(req.name), dir, tree, lease)?))
            }
            Err(e) if is_exists(e) => {
                drop((tree, dir));
                let _ = fs::remove_tree(root.fd(), OsStr::new(&tmp), root.mount);
                Ok(None)
            }
            // A guard moved our unfinished dir into `.trash/` (see `create`): start over.
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io::Error::from(e))
                .with_context(|| format!("failed to publish {}", root.join(req.name).display())),
        }
    }
}

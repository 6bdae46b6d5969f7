//! Taking a job's lease, shared by the commands that run under one (the wrapped run, `env`,
//! `hold`, `store push`): a parent's lease found inherited, else the root opened (or created),
//! reclaimed if low, the lease taken (resumed, adopted, seeded, restored or fresh), an adopted dir
//! pruned, a dir built elsewhere verified, room checked, each step told to the reporters.

use std::ffi::OsStr;
use std::os::fd::AsFd;

use anyhow::{Result, anyhow};

use crate::config::Config;
use crate::exit::{CliError, Exit};
use crate::guard;
use crate::lease::{self, Held, Origin, Request, Root, Session, State};
use crate::locks::{self, LockTrust};
use crate::precheck::{self, Checked};
use crate::process::Interrupts;
use crate::prune::{self, Moment, Pruned};
use crate::report::{Event, JobDir, Reporter, Reporters};
#[cfg(feature = "store")]
use crate::store;
use crate::term;
use crate::warm;
use crate::workspace;

use super::job_env::{LeaseEnv, marker};

/// The live lease of a parent `cargo guarded` (or the action's `hold`) of this same job, if this
/// run is nested inside one.
pub(super) fn nested(cfg: &Config) -> Result<Option<LeaseEnv>> {
    let Some(inherited) = &cfg.parent_lease else {
        return Ok(None);
    };
    let Some((token, dir)) = inherited.split_once(' ') else {
        return Ok(None);
    };
    let path = cfg.root.join(&cfg.job_name);
    if std::path::Path::new(dir) != path || !cfg.root.is_dir() {
        return Ok(None);
    }
    let root = Root::open(&cfg.root)?;
    let Ok(dir) = root.open_job(OsStr::new(&cfg.job_name)) else {
        return Ok(None);
    };
    let Ok(lease) = lease::read(dir.as_fd()) else {
        return Ok(None);
    };
    if lease.token != token || lease.state != State::Active {
        return Ok(None);
    }
    // The dir's lock free (the parent is gone, killed, whatever of its tree still runs), or a
    // lock that cannot be tried: take the lease the normal way.
    if lease::probe(dir.as_fd(), LockTrust::Trusted) != lease::Holder::Live(lease::Hold::Dir) {
        return Ok(None);
    }
    Ok(Some(LeaseEnv {
        marker: marker(&lease.token, &path),
        path,
        job_id: lease.job_id,
        pid: lease.pid,
    }))
}

/// Open (or create) the root, take the job's lease and run the disk precheck, telling `out`
/// each step: the lifecycle of docs/protocol.md#a-jobs-life, up to the command's start.
pub(super) fn acquire(
    cfg: &Config,
    tool: &str,
    command: Vec<String>,
    interrupted: &dyn Fn() -> Result<()>,
    out: &mut Reporters,
) -> Result<(Session, LeaseEnv), CliError> {
    out.report(&Event::Starting {
        job_id: &cfg.job_id,
        warning: cfg.job_id_warning.as_deref(),
    });
    let result = acquire_and_check(cfg, tool, command, interrupted, out);
    if result.is_err() {
        out.report(&Event::GaveUp {
            job_id: &cfg.job_id,
        });
    }
    result
}

fn acquire_and_check(
    cfg: &Config,
    tool: &str,
    command: Vec<String>,
    interrupted: &dyn Fn() -> Result<()>,
    out: &mut Reporters,
) -> Result<(Session, LeaseEnv), CliError> {
    check_store(cfg)?;
    let (root, trust) = open_root(cfg)?;
    let limits = precheck::Limits {
        guard: &cfg.guard,
        min_free: cfg.min_free,
        trust,
        job_name: &cfg.job_name,
    };
    // Reclaim before writing anything: on a full disk, the lease itself could not be written.
    let before = sweep_before_lease(&root, &limits, interrupted, out)?;
    let command_line = command.join(" ");
    // From here on the session renews the lease (through a long sweep too) and releases it on
    // every way out of this function but the last.
    let (session, origin, passed_over) =
        take_lease(cfg, &root, trust, tool, command, interrupted, out.notices())?;
    let held = session.held();
    let origin = restore(cfg, held, origin, &|| room(cfg, &root, trust));
    let job = JobDir::of(held);
    out.report(&Event::Acquired {
        job: &job,
        origin: &origin,
        adopt: cfg.adopt,
        seed: cfg.seed,
        scope: &cfg.scope.scope,
        passed_over,
    });
    let pruned = prune_adopted(cfg, held, &origin, out);
    verify_warm(cfg, held, &origin, out);
    let after = match before {
        Some(_) => None,
        None => {
            let new_job = !matches!(origin, Origin::Resumed);
            precheck::after_lease(&root, &limits, new_job, interrupted)?
        }
    };
    if let Some(report) = &after {
        let root = &root.path;
        out.report(&Event::Swept { root, report });
    }
    let swept = before.or(after);
    let space = match precheck::room_to_start(&root, &limits, swept.as_ref())? {
        Ok(space) => space,
        Err(no_space) => {
            out.report(&Event::Refused {
                job: &job,
                origin: &origin,
                command: &command_line,
                no_space: &no_space,
            });
            let notes = crate::report::no_space::notes(&no_space);
            return Err(CliError::new(no_space, Exit::TRY_LATER).with_notes(notes));
        }
    };
    out.report(&Event::Ready {
        root: &root.path,
        job: &job,
        origin: &origin,
        pruned: &pruned,
        tool,
        command: &command_line,
        checked: &Checked {
            report: swept,
            space,
        },
    });
    let lease_env = LeaseEnv {
        marker: marker(&held.token(), &held.path),
        path: held.path.clone(),
        job_id: held.job_id(),
        pid: std::process::id(),
    };
    Ok((session, lease_env))
}

/// Open (or create) the root and judge its locks. A root created here is said once: a typo in
/// `--root` would otherwise start a second root without a word.
fn open_root(cfg: &Config) -> Result<(Root, LockTrust)> {
    let new = std::fs::symlink_metadata(&cfg.root).is_err();
    let root = Root::create(&cfg.root)?;
    if new {
        term::status("Created", format_args!("root {}", root.path.display()));
    }
    let trust = locks::assess(root.fd(), cfg.locks_forced);
    if trust != LockTrust::Trusted {
        term::verbose(
            "Note",
            format_args!(
                "locks on {} are {trust}: expiry uses the heartbeat alone, with a margin",
                root.path.display()
            ),
        );
    }
    Ok((root, trust))
}

/// The precheck's first step, with a spinner when it takes a while: reclaim if free space is
/// low, before the lease is written.
fn sweep_before_lease(
    root: &Root,
    limits: &precheck::Limits,
    interrupted: &dyn Fn() -> Result<()>,
    out: &mut dyn Reporter,
) -> Result<Option<guard::Report>> {
    let working = term::Activity::start_after(
        std::time::Duration::from_secs(1),
        "Checking",
        format_args!("free space on {} (reclaiming if low)", root.path.display()),
    );
    let before = precheck::before_lease(root, limits, interrupted);
    drop(working);
    let before = before?;
    if let Some(report) = &before {
        out.report(&Event::Swept {
            root: &root.path,
            report,
        });
    }
    Ok(before)
}

/// Take the job's lease: resumed, adopted, seeded or fresh.
fn take_lease(
    cfg: &Config,
    root: &Root,
    trust: LockTrust,
    tool: &str,
    command: Vec<String>,
    interrupted: &dyn Fn() -> Result<()>,
    notices: std::sync::Arc<dyn lease::Notices>,
) -> Result<(Session, Origin, usize), CliError> {
    let key = || {
        let toolchain = workspace::toolchain(
            &cfg.rustc,
            &cfg.cargo,
            &cfg.rustup,
            &cfg.workspace_root,
            &root.join(lease::TOOLCHAIN_CACHE),
        );
        workspace::key(&cfg.workspace_root, cfg.repository.as_deref(), toolchain)
    };
    let room = || room(cfg, root, trust);
    let seeding = lease::Seeding {
        max_bytes: cfg.seed_max_size,
        room: &room,
        incremental: cfg.seed_incremental,
    };
    let req = Request {
        job_id: &cfg.job_id,
        tool,
        name: &cfg.job_name,
        owner: &cfg.owner,
        ttl: cfg.ttl,
        command,
        wait: cfg.wait,
        key: &key,
        adopt: cfg.adopt,
        seed: cfg.seed.then_some(seeding),
        trust,
        interrupted,
        scope: &cfg.scope,
        warm_from_any: cfg.warm_from_any,
        passed_over: Default::default(),
        notices,
    };
    let acquired = Session::acquire(root, &req, cfg.linger);
    let passed_over = req.passed_over.get();
    acquired.map(|(s, o)| (s, o, passed_over)).map_err(|e| {
        // `--wait` ran out while another run of the job held the lease: try again later.
        let exit = if e.is::<lease::WaitTimedOut>() {
            Exit::TRY_LATER
        } else {
            Exit::ERROR
        };
        CliError::new(e, exit)
    })
}

/// `--store` given: refused by a build without the `store` feature, and its form checked before
/// anything is done.
pub(super) fn check_store(cfg: &Config) -> Result<()> {
    let Some(url) = &cfg.store else {
        if cfg.store_push {
            return Err(anyhow!(
                "--store-push needs a store to push to: --store URL or CARGO_GUARDED_STORE"
            ));
        }
        return Ok(());
    };
    #[cfg(feature = "store")]
    return store::check(url);
    #[cfg(not(feature = "store"))]
    Err(anyhow!(
        "--store `{url}`: this cargo-guarded was built without the `store` feature; install it \
         with `cargo install cargo-guarded --features store`, or unset CARGO_GUARDED_STORE"
    ))
}

/// A fresh dir and a store configured: lay the newest finished dir the scope rule allows out
/// from the store (docs/protocol.md#the-store). Whatever goes wrong, the job builds cold, said
/// once as a warning.
#[cfg(feature = "store")]
fn restore(cfg: &Config, held: &Held, origin: Origin, room: &dyn Fn() -> u64) -> Origin {
    let (Origin::Fresh { .. }, Some(url)) = (&origin, &cfg.store) else {
        return origin;
    };
    let lease = held.lease();
    let Some(workspace) = lease.workspace.as_deref() else {
        return origin;
    };
    let allows = |writers: &[crate::scope::Scope]| {
        if cfg.warm_from_any {
            Ok(())
        } else {
            cfg.scope.allows(Some(writers))
        }
    };
    let want = store::Want {
        workspace,
        toolchain: lease.toolchain.as_deref(),
        allows: &allows,
        // Counted as written apart (hard links twice): an upper bound.
        max_bytes: cfg.seed_max_size.min(room()),
        timeout: cfg.store_timeout,
    };
    let working = term::Activity::start_after(
        std::time::Duration::from_secs(1),
        "Restoring",
        format_args!("{} from the store {url}", held.path.display()),
    );
    let pulled = store::Store::open(url).and_then(|s| store::pull(&s, &held.path, &want, &working));
    drop(working);
    match pulled {
        Ok(Some(r)) => {
            if let Err(e) = held.set_origin(Origin::RESTORED) {
                term::warn(format_args!(
                    "failed to record the origin in {}: {e}",
                    held.path.join(lease::LEASE_FILE).display()
                ));
            }
            if r.cargo_home.as_deref().map(std::path::Path::new) != cfg.cargo_home.as_deref() {
                term::verbose(
                    "Note",
                    format_args!(
                        "the restored dir was built with CARGO_HOME={}: registry units rebuild \
                         under another",
                        r.cargo_home.as_deref().unwrap_or("unknown")
                    ),
                );
            }
            Origin::Restored {
                from: r.from,
                files: r.files,
                bytes: r.bytes,
                left_out: r.left_out,
                took: r.took,
            }
        }
        Ok(None) => {
            term::verbose(
                "Note",
                format_args!("nothing in the store {url} for this workspace that its scope allows"),
            );
            origin
        }
        Err(e) => {
            term::warn(format_args!(
                "could not restore from the store {url}: {e:#}; building cold"
            ));
            origin
        }
    }
}

#[cfg(not(feature = "store"))]
fn restore(_: &Config, _: &Held, origin: Origin, _: &dyn Fn() -> u64) -> Origin {
    origin
}

/// What a real copy (a seed, a restore) may write: the free space above the line where the next
/// sweep would start reclaiming (or `--min-free`, whichever is higher), so it never causes
/// pressure.
fn room(cfg: &Config, root: &Root, trust: LockTrust) -> u64 {
    crate::fs::Space::of(&root.path).map_or(0, |s| {
        let line = cfg
            .guard
            .sweep(s.total, trust)
            .reclaim_below
            .max(cfg.min_free.bytes(s.total));
        s.free.saturating_sub(line)
    })
}

/// Prune a dir the job just adopted, under the adopter's lock: the previous job is over and no
/// one else can build here. Returns what went, for the summary.
fn prune_adopted(cfg: &Config, held: &Held, origin: &Origin, out: &mut dyn Reporter) -> Pruned {
    let Origin::Adopted { from, size, .. } = origin else {
        return Pruned::default();
    };
    let outcome = prune::at_adoption(held.dir_fd(), from, *size, &cfg.prune);
    out.report(&Event::Pruned {
        moment: Moment::Adoption { from, size: *size },
        outcome: &outcome,
        settings: &cfg.prune,
    });
    outcome.map(|o| o.pruned()).unwrap_or_default()
}

/// Where this job builds: its checkout, its dir, the root (`None`: the checkout cannot be
/// read, and nothing is verified or recorded).
pub(super) fn here<'a>(
    cfg: &'a Config,
    held: &'a Held,
    checkout: &'a Option<warm::Checkout>,
) -> Option<warm::Here<'a>> {
    Some(warm::Here {
        checkout: checkout.as_ref()?,
        job_dir: &held.path,
        root: held.path.parent().unwrap_or(&cfg.root),
        workspace: &cfg.workspace_root,
    })
}

/// A dir built elsewhere (adopted, seeded, or resumed from another checkout): keep the units
/// whose inputs here have the recorded content, make the rest stale
/// (docs/protocol.md#warm-starts-from-elsewhere).
pub(super) fn verify_warm(cfg: &Config, held: &Held, origin: &Origin, out: &mut dyn Reporter) {
    if matches!(origin, Origin::Fresh { .. }) {
        return;
    }
    let checkout = warm::Checkout::of(&cfg.workspace_root);
    let Some(here) = here(cfg, held, &checkout) else {
        return;
    };
    let resumed = matches!(origin, Origin::Resumed);
    if let Some(verdict) = warm::verify(held.dir_fd(), &here, cfg.restore_mtimes, resumed) {
        out.report(&Event::Verified { verdict: &verdict });
    }
}

/// A failure before the command started. When a signal stopped the run (the failure is its
/// consequence: `Interrupted`, from a wait or a sweep), the run dies of that signal once the
/// lease is released, as the command would have.
pub(super) fn stopped_by(interrupts: &Interrupts, e: CliError) -> CliError {
    match interrupts.received() {
        Some(signal) => CliError::new(
            e.error,
            Exit::Signal {
                signal,
                to_group: false,
            },
        ),
        None => e,
    }
}

/// A root that is not there: a timer and the runners pointed at different paths would
/// otherwise never be noticed (`gc` reclaiming nothing forever, `status` showing no dirs).
pub(super) fn missing_root(cfg: &Config) -> anyhow::Error {
    anyhow!(
        "root {} does not exist: no job has run under it; point --root (or CARGO_GUARDED_ROOT) \
         at the root your jobs use (`cargo guarded env` in a job prints its dir)",
        cfg.root.display()
    )
}

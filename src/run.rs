//! A wrapped command's life, in the order of docs/protocol.md#a-jobs-life: a nested run takes
//! nothing; else open the root, reclaim if low, take the job's lease, prune an adopted dir, check
//! there is room, run the tool with the job's environment under the heartbeat, prune at release,
//! release — on success, failure and signals alike, each step told to the reporters as an event.
//! Then `env` and `hold`, which hold the same lease without running a tool.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};

use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use crate::guard;
use crate::lease::{self, Held, Origin, Request, Root, Session, State, TARGET};
use crate::locks::{self, LockTrust};
use crate::precheck::{self, Checked};
use crate::process::{self, Interrupts, ProcessBuilder};
use crate::prune::{self, Moment, Pruned};
use crate::quantity::RoundDuration;
use crate::report::github;
use crate::report::{Event, Reporter};
#[cfg(feature = "store")]
use crate::store;
use crate::term;
use crate::tool::Tool;
use crate::warm;
use crate::workspace;

/// Run `tool` under the job's lease and return how it exited, telling `out` what happens
/// (docs/protocol.md#a-jobs-life).
pub(crate) fn wrapped(cfg: &Config, tool: &Tool, out: &mut dyn Reporter) -> CliResult {
    tool.check_args()?;
    let mut pb = tool.process(cfg)?;
    let llvm_cov = matches!(tool, Tool::LlvmCov(_));
    if let Some(parent) = nested(cfg)? {
        // Inside a parent run's (or the action's `hold`'s) live lease for this same job: it holds
        // the lock and beats the heart; taking the lease again would wait for it forever.
        out.report(&Event::Nested {
            dir: &parent.path,
            job_id: &parent.job_id,
        });
        job_env(cfg, &parent, llvm_cov, &mut pb);
        let exit = process::spawn(&pb)?.wait()?;
        out.report(&Event::Exited { exit });
        return Ok(exit);
    }
    let command: Vec<String> = tool
        .args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The job's shape, for the size budget: what this step ran, tool first (`nextest run` and
    // `cargo run` are different shapes).
    let shape = format!("{} {}", tool.name(), command.join(" "));
    let interrupts = Interrupts::install()?;
    let stopped = |e| stopped_by(&interrupts, e);
    let (session, lease_env) =
        acquire(cfg, tool.name(), command, &|| interrupts.check(), out).map_err(stopped)?;
    job_env(cfg, &lease_env, llvm_cov, &mut pb);
    // The command's tree inherits the tree lock: the dir stays protected while any process of
    // it lives, even if wrapper and reaper are SIGKILLed together (docs/protocol.md#what-a-lock-means).
    pb.inherit_fd(session.held().tree_fd());
    // Stopped while sweeping, or the dir lost meanwhile: the session releases (on drop)
    // without starting the command.
    interrupts.check().map_err(|e| stopped(e.into()))?;
    session.check()?;

    let child = process::spawn(&pb)?;
    let pgid = child.pgid();
    session.on_lost(move || {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
    });
    let exit = child.wait();
    if let Ok(e) = &exit {
        prune_at_release(cfg, &session, &shape, *e == Exit::SUCCESS, out);
    }
    // Whatever the command's exit: the units it built are what the next job starts from.
    record_warm(cfg, &session);
    if exit.as_ref().is_ok_and(|e| *e == Exit::SUCCESS) {
        push_at_release(cfg, &session);
    }
    // The heartbeat's error (the dir was moved away) outranks the child's status; a failed
    // release is only a warning (`Session::finish`).
    session.finish()?;
    let exit = exit?;
    out.report(&Event::Exited { exit });
    Ok(exit)
}

/// The live lease of a parent `cargo guarded` (or the action's `hold`) of this same job, if this
/// run is nested inside one.
fn nested(cfg: &Config) -> Result<Option<LeaseEnv>> {
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
fn acquire(
    cfg: &Config,
    tool: &str,
    command: Vec<String>,
    interrupted: &dyn Fn() -> Result<()>,
    out: &mut dyn Reporter,
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
    out: &mut dyn Reporter,
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
    let (session, origin, passed_over) = take_lease(cfg, &root, trust, tool, command, interrupted)?;
    let held = session.held();
    let origin = restore(cfg, held, origin, &|| room(cfg, &root, trust));
    out.report(&Event::Acquired {
        held,
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
        out.report(&Event::Swept {
            root: &root,
            report,
        });
    }
    let swept = before.or(after);
    let space = match precheck::room_to_start(&root, &limits, swept.as_ref())? {
        Ok(space) => space,
        Err(no_space) => {
            out.report(&Event::Refused {
                held,
                origin: &origin,
                command: &command_line,
                no_space: &no_space,
            });
            let notes = crate::report::no_space::notes(&no_space);
            return Err(CliError::new(no_space, Exit::TRY_LATER).with_notes(notes));
        }
    };
    out.report(&Event::Ready {
        root: &root,
        held,
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
        out.report(&Event::Swept { root, report });
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
fn check_store(cfg: &Config) -> Result<()> {
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

/// `--store-push`: at release, after a command that succeeded, push the job's dir (its
/// `inputs.json` just recorded). A failure is a warning: the job's result stands.
#[cfg(feature = "store")]
fn push_at_release(cfg: &Config, session: &Session) {
    let Some(url) = cfg.store.as_deref().filter(|_| cfg.store_push) else {
        return;
    };
    if session.check().is_err() {
        return;
    }
    let held = session.held();
    let lease = held.lease();
    let source = store::Source {
        dir: &held.path,
        lease: &lease,
        writer: &cfg.scope.scope,
        cargo_home: cfg.cargo_home.as_deref(),
    };
    match store::Store::open(url).and_then(|s| store::push(&s, &source).map(|p| (s, p))) {
        Ok((s, pushed)) => crate::report::store::pushed(&held.path, s.url(), &pushed),
        Err(e) => term::warn(format_args!(
            "failed to push {} to the store {url}: {e:#}",
            held.path.display()
        )),
    }
}

#[cfg(not(feature = "store"))]
fn push_at_release(_: &Config, _: &Session) {}

/// `cargo guarded store push`: upload the job's own dir, under its lease (a parent's, or taken
/// now), to `--store`.
pub(crate) fn store_push(cfg: &Config, out: &mut dyn Reporter) -> CliResult {
    check_store(cfg)?;
    let Some(url) = &cfg.store else {
        return Err(
            anyhow!("`store push` needs a store: --store URL or CARGO_GUARDED_STORE").into(),
        );
    };
    #[cfg(not(feature = "store"))]
    return Err(anyhow!("{url}: unreachable without the `store` feature ({out:p})").into());
    #[cfg(feature = "store")]
    {
        let path = cfg.root.join(&cfg.job_name);
        let no_dir = || {
            anyhow!(
                "no dir of job `{}` in {} to push: run the job's steps first",
                cfg.job_id,
                cfg.root.display()
            )
        };
        let store = store::Store::open(url)?;
        let push = |dir: &std::path::Path, lease: &lease::Lease| {
            let pushed = store::push(
                &store,
                &store::Source {
                    dir,
                    lease,
                    writer: &cfg.scope.scope,
                    cargo_home: cfg.cargo_home.as_deref(),
                },
            )?;
            crate::report::store::pushed(dir, store.url(), &pushed);
            Ok::<_, anyhow::Error>(())
        };
        if let Some(parent) = nested(cfg)? {
            // Inside the job's `hold`: its lease is ours.
            let root = Root::open(&cfg.root)?;
            let dir = root
                .open_job(OsStr::new(&cfg.job_name))
                .map_err(|_| no_dir())?;
            let lease = lease::read(dir.as_fd()).map_err(|e| anyhow!("{e}"))?;
            push(&parent.path, &lease)?;
            return Ok(Exit::SUCCESS);
        }
        let exists = Root::open(&cfg.root)
            .is_ok_and(|root| root.open_job(OsStr::new(&cfg.job_name)).is_ok());
        if !exists {
            return Err(no_dir().into());
        }
        let (session, _) = acquire(
            cfg,
            "store",
            vec!["store".into(), "push".into()],
            &|| Ok(()),
            out,
        )?;
        let pushed = push(&path, &session.held().lease());
        session.finish()?;
        pushed?;
        Ok(Exit::SUCCESS)
    }
}

/// `cargo guarded store gc`: keep `--store` under `--max-size` (store/gc.rs decides, report/
/// renders); exits 1 when a removal failed, as `gc` does.
pub(crate) fn store_gc(
    cfg: &Config,
    max_size: Option<u64>,
    grace: std::time::Duration,
    dry_run: bool,
) -> CliResult {
    check_store(cfg)?;
    let Some(url) = &cfg.store else {
        return Err(anyhow!("`store gc` needs a store: --store URL or CARGO_GUARDED_STORE").into());
    };
    #[cfg(not(feature = "store"))]
    return Err(anyhow!(
        "{url}: unreachable without the `store` feature ({max_size:?} {grace:?} {dry_run})"
    )
    .into());
    #[cfg(feature = "store")]
    {
        let store = store::Store::open(url)?;
        let options = store::GcOptions {
            max_size,
            grace,
            dry_run,
        };
        let collected = store::gc(&store, options)?;
        crate::report::store::collected(store.url(), &collected);
        Ok(if collected.failed() == 0 {
            Exit::SUCCESS
        } else {
            Exit::ERROR
        })
    }
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
fn here<'a>(
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
fn verify_warm(cfg: &Config, held: &Held, origin: &Origin, out: &mut dyn Reporter) {
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

/// At release: record what the dir's path-package units were built from, for the next job
/// that starts from this dir elsewhere. A failure only means that job rebuilds them.
fn record_warm(cfg: &Config, session: &Session) {
    if session.check().is_err() {
        return;
    }
    let held = session.held();
    let checkout = warm::Checkout::of(&cfg.workspace_root);
    let Some(here) = here(cfg, held, &checkout) else {
        return;
    };
    match warm::record(held.dir_fd(), &here) {
        Ok(r) => term::verbose(
            "Recorded",
            format_args!(
                "the inputs of {} path-package units ({} left out, {} files read)",
                r.units, r.left_out, r.files_read
            ),
        ),
        Err(e) => term::warn(format_args!(
            "failed to record the inputs of {}: {e}; a job starting from it elsewhere rebuilds its path packages",
            held.path.join(warm::RECORD).display()
        )),
    }
}

/// What a child needs to know of the lease it runs under.
struct LeaseEnv {
    /// The job dir.
    path: PathBuf,
    job_id: String,
    /// The holder's pid, for messages.
    pid: u32,
    /// `CARGO_GUARDED_LEASE`: `<token> <job dir>`.
    marker: String,
}

/// `CARGO_GUARDED_LEASE` names a lease by its random token and its dir. A nested run finds it
/// inherited; it is this job's live lease only if the dir is this run's own job dir, its lease
/// is active with that token, and someone (the parent) holds its lock.
fn marker(token: &str, path: &std::path::Path) -> String {
    format!("{token} {}", path.display())
}

/// The child's environment: what locates the job's dir (`dir_env`), the one colour decision,
/// and none of the test-only variables meant for this process.
fn job_env(cfg: &Config, lease: &LeaseEnv, llvm_cov: bool, pb: &mut ProcessBuilder) {
    dir_env(cfg, lease, llvm_cov, pb);
    // One colour decision for the whole log: ours (`--color`, CARGO_TERM_COLOR, NO_COLOR, tty).
    pb.env("CARGO_TERM_COLOR", term::cargo_color());
    // Test-only fault points are meant for this process, not for a cargo-guarded the child runs.
    pb.env_remove("CARGO_GUARDED_FAULT")
        .env_remove("CARGO_GUARDED_PAUSE")
        .env_remove("CARGO_GUARDED_CLOCK_OFFSET")
        .env_remove("CARGO_GUARDED_EXPORT_ENV");
}

/// What locates the job's dir: its target dir, and job-scoped versions of every other dir a
/// configuration could point at something shared; the job id and the lease marker. All that
/// `env` and `hold` export.
fn dir_env(cfg: &Config, lease: &LeaseEnv, llvm_cov: bool, pb: &mut ProcessBuilder) {
    let target = lease.path.join(TARGET);
    if let Some(inherited) = &cfg.inherited_target_dir
        && *inherited != target
    {
        // Said at normal verbosity: a user who set it will look for their binaries there.
        term::status(
            "Overriding",
            format_args!(
                "inherited CARGO_TARGET_DIR={} with the job's dir {}: the outputs land there \
                 (a shared target dir is what lets one job's cleanup break another's build)",
                inherited.to_string_lossy(),
                target.display()
            ),
        );
    }
    pb.env("CARGO_TARGET_DIR", &target);
    if cfg.build_dir_configured {
        pb.env("CARGO_BUILD_BUILD_DIR", lease.path.join("build"));
    }
    if llvm_cov && cfg.llvm_cov_target_dir.is_some() {
        pb.env(
            "CARGO_LLVM_COV_TARGET_DIR",
            lease.path.join("llvm-cov-target"),
        );
    }
    pb.env("CARGO_GUARDED_JOB_ID", &lease.job_id);
    pb.env("CARGO_GUARDED_TARGET_DIR", OsStr::new(&target));
    pb.env("CARGO_GUARDED_LEASE", &lease.marker);
}

/// Prune the job's own dir as it releases (`prune::at_release`): under its lock, its command
/// over. Whatever the command's exit: a failed step (a red test run) built and used its units,
/// and its shape counts in the working set (added to what its shape used before: a step stopped
/// early may have read only part of its graph). Not when the dir was moved away meanwhile: it
/// is no longer ours.
fn prune_at_release(
    cfg: &Config,
    session: &Session,
    shape: &str,
    succeeded: bool,
    out: &mut dyn Reporter,
) {
    if !cfg.prune.enabled || session.check().is_err() {
        return;
    }
    let held = session.held();
    let job = held.job_id();
    let outcome = prune::at_release(held.dir_fd(), &job, shape, succeeded, &cfg.prune);
    out.report(&Event::Pruned {
        moment: Moment::Release {
            job: &job,
            shape,
            succeeded,
        },
        outcome: &outcome,
        settings: &cfg.prune,
    });
    if outcome.is_ok_and(|o| o.pruned().bytes > 0) {
        held.size_changed();
    }
}

/// A failure before the command started. When a signal stopped the run (the failure is its
/// consequence: `Interrupted`, from a wait or a sweep), the run dies of that signal once the
/// lease is released, as the command would have.
fn stopped_by(interrupts: &Interrupts, e: CliError) -> CliError {
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

/// `cargo guarded env`: take the job's lease, print what locates the job's dir, release it
/// (protected for `--linger`, so plain cargo steps that follow find the dir).
///
/// Only the variables that locate the dir are printed (`dir_env`), never the wrapper's colour
/// decision: a script's later `cargo build | tee log` must not inherit `CARGO_TERM_COLOR=always`
/// from the terminal `env` happened to run on.
///
/// The lease is released when `env` exits, so what a script runs afterwards is protected for
/// `--linger` only, and that is said on stderr (docs/protocol.md#scripts: why no holder is left
/// behind for the evaluating shell). `exec -- SCRIPT` holds the lease for the script's whole run.
///
/// A value with a line break is printed in the `NAME<<DELIMITER` form that `GITHUB_ENV`
/// understands, so `env >> "$GITHUB_ENV"` can never define a second variable.
pub(crate) fn env(cfg: &Config, shell: bool, out: &mut dyn Reporter) -> CliResult {
    let mut pb = ProcessBuilder::new("env");
    let session = match nested(cfg)? {
        Some(parent) => {
            dir_env(cfg, &parent, false, &mut pb);
            None
        }
        None => {
            let (session, lease_env) = acquire(cfg, "env", vec!["env".into()], &|| Ok(()), out)?;
            dir_env(cfg, &lease_env, false, &mut pb);
            Some(session)
        }
    };
    let mut text = String::new();
    for (k, v) in pb.get_envs() {
        let (k, Some(v)) = (k.to_string_lossy(), v.map(|v| v.to_string_lossy())) else {
            continue;
        };
        if shell {
            // A value from the environment holds no NUL, the one thing shlex cannot quote.
            let quoted = shlex::try_quote(&v)
                .with_context(|| format!("cannot quote the value of {k} for a shell"))?;
            text += &format!("export {k}={quoted}\n");
        } else {
            text += &github::env_record(&k, &v);
        }
    }
    // Released before printing: a reader that went away must not leave the lease active.
    if let Some(session) = session {
        let path = session.held().path.clone();
        session.finish()?;
        term::warn(format_args!(
            "the lease on {} is released now that `env` exits: what runs afterwards is \
             protected for --linger ({}) only, and once that passes a guard may delete the dir \
             under a build still running in it; to keep it protected for a whole script, run \
             the script with `cargo guarded exec -- SCRIPT` (or `exec -- \"$SHELL\"` for an \
             interactive shell)",
            path.display(),
            RoundDuration(cfg.linger)
        ));
    }
    term::out(&text).context("failed to write to stdout")?;
    Ok(Exit::SUCCESS)
}

/// `cargo guarded hold`: keep the job's lease live (lock and heartbeat) until SIGTERM, SIGINT or
/// SIGHUP, then release it. For workflows whose later steps run plain cargo in the job's dir.
///
/// With `CARGO_GUARDED_EXPORT_ENV` (the action sets it to `GITHUB_ENV`), the job's environment
/// is written there once the lease is held, including `CARGO_GUARDED_LEASE`: a later
/// `cargo guarded` step of the job then runs inside this lease instead of waiting for it.
pub(crate) fn hold(cfg: &Config, out: &mut dyn Reporter) -> CliResult {
    if let Some(parent) = nested(cfg)? {
        return Err(anyhow!(
            "the lease on {} is already held by this job (pid {}); nothing to hold",
            parent.path.display(),
            parent.pid
        )
        .into());
    }
    let interrupts = Interrupts::install()?;
    let (session, lease_env) = acquire(
        cfg,
        "hold",
        vec!["hold".into()],
        &|| interrupts.check(),
        out,
    )
    .map_err(|e| stopped_by(&interrupts, e))?;
    if let Some(file) = &cfg.export_env {
        let mut pb = ProcessBuilder::new("hold");
        dir_env(cfg, &lease_env, false, &mut pb);
        pb.env("CARGO_GUARDED_ROOT", &cfg.root);
        pb.env("CARGO_GUARDED_HOLD_PID", std::process::id().to_string());
        let mut text = String::new();
        for (k, v) in pb.get_envs() {
            if let Some(v) = v {
                text += &github::env_record(&k.to_string_lossy(), &v.to_string_lossy());
            }
        }
        github::append(file, &text)?;
    }
    // The job lock too: each step's release records it, and the linger ends with this process
    // (docs/protocol.md#linger-ends-with-the-job). Without it the linger just runs its course.
    let job_lock = lease::hold_job_lock(session.held().dir_fd());
    if let Err(e) = &job_lock {
        term::verbose(
            "Note",
            format_args!("no job lock ({e}): the dir lingers the whole --linger after the job"),
        );
    }
    term::status(
        "Holding",
        format_args!(
            "the lease on {} until stopped",
            session.held().path.display()
        ),
    );
    session.on_lost(|| {
        // Nothing to stop but ourselves: exit with the heartbeat's error.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
    });
    while interrupts.check().is_ok() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    prune_at_release(cfg, &session, "hold", true, out);
    // What the job's plain cargo steps built under this lease, for the next job elsewhere.
    record_warm(cfg, &session);
    session.finish()?;
    Ok(Exit::SUCCESS)
}

/// `cargo guarded hold --job-only`: hold the job lock of the job's dir (which an earlier step
/// created) until SIGTERM, SIGINT or SIGHUP, so that its steps' dir lingers only until then
/// (docs/protocol.md#linger-ends-with-the-job). No lease, no heartbeat: the steps hold those.
pub(crate) fn hold_job(cfg: &Config) -> CliResult {
    let interrupts = Interrupts::install()?;
    let root = Root::open(&cfg.root)?;
    let path = root.join(&cfg.job_name);
    let dir = root.open_job(OsStr::new(&cfg.job_name)).map_err(|skip| {
        anyhow::anyhow!(
            "cannot hold the job lock of {}: {skip}; run a step of the job first",
            path.display()
        )
    })?;
    let _job_lock = lease::hold_job_lock(dir.as_fd())
        .with_context(|| format!("failed to lock {}", path.join(lease::JOB_LOCK).display()))?;
    // The step that ran before us released without a holder to record.
    lease::record_in_released(&dir);
    drop(dir);
    term::status(
        "Holding",
        format_args!(
            "the job lock on {} until stopped (the dir lingers only until then)",
            path.display()
        ),
    );
    while interrupts.check().is_ok() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(Exit::SUCCESS)
}

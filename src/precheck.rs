//! The disk precheck before every wrapped command: reclaim through the guard's own sweep when
//! free space is low (or when a new job may leave excess expired dirs behind), then refuse to
//! start below `--min-free`. Prints nothing: it returns each sweep's report and the refusal, and
//! the caller tells its reporters.

use anyhow::{Context, Result};

use crate::fs::Space;
use crate::guard::{self, Report};
use crate::lease::{self, Expiry, Root};
use crate::locks::LockTrust;
use crate::quantity::Threshold;

/// `--min-free`'s default: with less free space than this after reclaiming, a job refuses to
/// start (exit 75) instead of failing mid-build.
pub(crate) const DEFAULT_MIN_FREE: Threshold = Threshold::Bytes(2 << 30);

/// What the precheck needs to know.
pub(crate) struct Limits<'a> {
    /// The guard's settings, turned into a sweep for the root's filesystem.
    pub(crate) guard: &'a guard::Policy,
    /// `--min-free`: below it the job refuses to start.
    pub(crate) min_free: Threshold,
    pub(crate) trust: LockTrust,
    /// The job's dir name under the root: spared by the sweep, left out of a refusal's list.
    pub(crate) job_name: &'a str,
}

/// Not enough disk even after reclaiming: the job exits 75. Says what the
/// precheck reclaimed and what still holds space, so the message claims no work it did not do
/// (rendered by `report::no_space`).
#[derive(Debug)]
pub(crate) struct NoSpace {
    pub(crate) root: String,
    pub(crate) free: u64,
    pub(crate) required: u64,
    /// What this precheck's sweep reclaimed: `(bytes, dirs)`; `None` when no sweep ran (free
    /// space was above `--reclaim-below` and the job's dir was not new).
    pub(crate) reclaimed: Option<(u64, usize)>,
    /// What still holds space in the root, other than the refusing job's own dir.
    pub(crate) holding: Holding,
    /// Live (unexpired) leases holding the most space: `(job id, bytes, holder)`.
    pub(crate) biggest_live: Vec<(String, Option<u64>, String)>,
}

/// The job dirs still in the root when the precheck refused, by lease state, with the sizes
/// their leases recorded.
#[derive(Debug, Default)]
pub(crate) struct Holding {
    /// Active leases: the space comes back when those jobs end.
    pub(crate) live: Group,
    /// Released and still protected for `--linger`.
    pub(crate) lingering: Group,
    /// When the first lingering dir expires.
    pub(crate) first_expiry: Option<std::time::Duration>,
    /// Expired but still there: the warm reserve (`--keep-expired`), or left because the sweep
    /// reached `--reclaim-to` or did not run.
    pub(crate) expired: Group,
}

/// A number of job dirs and what their leases recorded.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Group {
    pub(crate) dirs: usize,
    pub(crate) bytes: u64,
    /// Dirs whose lease recorded no size (not counted in `bytes`).
    pub(crate) no_size: usize,
}

impl Group {
    fn add(&mut self, size: Option<u64>) {
        self.dirs += 1;
        match size {
            Some(b) => self.bytes = self.bytes.saturating_add(b),
            None => self.no_size += 1,
        }
    }
}

impl std::error::Error for NoSpace {}

/// Before the job writes anything (its lease, its dir, the toolchain cache): under pressure,
/// reclaim first. On a 100%-full disk this is what lets the job's lease be written at all.
/// The job's own dir is spared: a later step of the job is about to resume it.
pub(crate) fn before_lease(
    root: &Root,
    limits: &Limits<'_>,
    interrupted: &dyn Fn() -> Result<()>,
) -> Result<Option<Report>> {
    let space = free_space(root)?;
    let sweep = limits.guard.sweep(space.base(), limits.trust);
    if space.free >= sweep.reclaim_below {
        return Ok(None);
    }
    let own = std::ffi::OsStr::new(limits.job_name);
    guard::sweep_with(root, &sweep, Some(own), interrupted).map(Some)
}

/// What the precheck found once the job may start.
pub(crate) struct Checked {
    /// The sweep's report, if one ran (before or after the lease).
    pub(crate) report: Option<Report>,
    /// The root's filesystem as the `--min-free` check read it.
    pub(crate) space: Space,
}

/// Once the job holds its lease, when `before_lease` did not sweep: under pressure, reclaim;
/// for a `new_job` (its dir was just created or adopted), apply the per-workspace retention.
pub(crate) fn after_lease(
    root: &Root,
    limits: &Limits<'_>,
    new_job: bool,
    interrupted: &dyn Fn() -> Result<()>,
) -> Result<Option<Report>> {
    let space = free_space(root)?;
    let mut sweep = limits.guard.sweep(space.base(), limits.trust);
    let pressure = space.free < sweep.reclaim_below;
    if !pressure {
        // Only retention to apply: if a sweep is already running, it does that; don't queue.
        sweep.turn_wait = std::time::Duration::ZERO;
    }
    if !(pressure || new_job) {
        return Ok(None);
    }
    guard::sweep_with(root, &sweep, None, interrupted).map(Some)
}

/// Whether the job may start: the free space if it is at least `--min-free`, else the refusal,
/// which says what the precheck's sweep (`swept`) reclaimed and what still holds space.
pub(crate) fn room_to_start(
    root: &Root,
    limits: &Limits<'_>,
    swept: Option<&Report>,
) -> Result<Result<Space, NoSpace>> {
    let space = free_space(root)?;
    let required = limits.min_free.bytes(space.base());
    if space.free >= required {
        return Ok(Ok(space));
    }
    Ok(Err(NoSpace {
        root: root.path.display().to_string(),
        free: space.free,
        required,
        reclaimed: swept.map(|r| (r.reclaimed(), r.removed.len())),
        holding: holding(root, limits.trust, limits.job_name),
        biggest_live: biggest_live(root, limits.trust, limits.job_name),
    }))
}

fn free_space(root: &Root) -> Result<Space> {
    Space::of(&root.path)
        .with_context(|| format!("failed to read free space of {}", root.path.display()))
}

/// What the job dirs other than the refusing job's own hold, by lease state. Unreadable leases
/// are left out: the sweep's report already named them.
fn holding(root: &Root, trust: LockTrust, own: &str) -> Holding {
    let now = lease::Now::read();
    let mut h = Holding::default();
    for (name, _) in root.job_names().unwrap_or_default() {
        if name == own {
            continue;
        }
        let Some(l) = root
            .open_job(&name)
            .ok()
            .and_then(|dir| lease::read(std::os::fd::AsFd::as_fd(&dir)).ok())
        else {
            continue;
        };
        match lease::classify(&l, &now, trust) {
            Expiry::Live { .. } => h.live.add(l.size_bytes),
            Expiry::Lingering { expires_in } => {
                h.lingering.add(l.size_bytes);
                h.first_expiry = Some(h.first_expiry.map_or(expires_in, |f| f.min(expires_in)));
            }
            Expiry::Expired { .. } => h.expired.add(l.size_bytes),
        }
    }
    h
}

/// The live leases holding the most space, other than the refusing job's own.
fn biggest_live(root: &Root, trust: LockTrust, own: &str) -> Vec<(String, Option<u64>, String)> {
    let now = lease::Now::read();
    let mut live: Vec<_> = root
        .job_names()
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, _)| name != own)
        .filter_map(|(name, _)| {
            let dir = root.open_job(&name).ok()?;
            let l = lease::read(std::os::fd::AsFd::as_fd(&dir)).ok()?;
            // Live only: a released (lingering) dir's process is gone, and the summary says
            // "live leases".
            matches!(lease::classify(&l, &now, trust), Expiry::Live { .. })
                .then(|| (l.job_id.clone(), l.size_bytes, l.holder()))
        })
        .collect();
    live.sort_by_key(|l| std::cmp::Reverse(l.1));
    live.truncate(3);
    live
}

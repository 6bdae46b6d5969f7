//! The lease record (docs/protocol.md#layout): `lease.json`, read with a size cap and checked
//! for range, and the expiry rule every reader applies to it (docs/protocol.md#expiry).

use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::fs;
use crate::quantity::Bytes;
use crate::scope::Scope;
use crate::workspace::WorkspaceKey;

use super::layout::LEASE_FILE;
use super::limits::{MAX_LEASE_DURATION, PROTOCOL};

/// Leases are small; anything larger is not ours (and must not make a guard read 100 MB).
const MAX_LEASE_BYTES: u64 = 64 * 1024;

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
    /// `CLOCK_BOOTTIME` in milliseconds when `renewed_at` was written, and the writer's time
    /// namespace (the inode of `/proc/self/ns/time`): on the same boot id and time namespace a
    /// reader measures the lease's age on it, whatever the wall clock did meanwhile
    /// (docs/protocol.md#clocks). Optional, so the protocol version stays: older readers ignore
    /// them, and a lease without them is judged on the wall clock as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) boottime_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) time_ns: Option<u64>,
    pub(crate) command: Vec<String>,
    /// How the job first came by this dir: `fresh`, `adopted` or `seeded` (kept when a later
    /// step resumes it). Absent in leases of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<String>,
    /// Set at release: a job-lifetime holder held the dir's `job.lock` then, so the linger ends
    /// as soon as that lock is free (docs/protocol.md#linger-ends-with-the-job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) job_lock: Option<bool>,
    /// The scope of every job that wrote in the dir (docs/protocol.md#scopes), sticky through
    /// resumes, adoptions and seeds: a dir is as trusted as its least trusted writer. Absent in
    /// leases of earlier versions, which only local jobs take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scopes: Option<Vec<Scope>>,
    /// What the last step ran: `cargo`, `nextest`, `llvm-cov`, `exec`, or `env` / `hold` for
    /// those commands (`command` holds its words, which alone do not tell `nextest run` from
    /// `cargo run`). Absent in leases of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tool: Option<String>,
    /// The job chose its dir while another job of its workspace was live or starting: its
    /// workspace runs jobs together, so the next job keeps this dir a seed source rather than
    /// adopt it, even alone (docs/protocol.md#seed). Kept when a later step resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) together: Option<bool>,
    /// What the job's units came to so far, counted at each release (`prune::saved`;
    /// docs/protocol.md#what-warmth-saved). Kept when a later step resumes the dir; a new job's
    /// lease starts without. Read leniently: a value that is not what we write reads as unknown.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::warmth"
    )]
    pub(crate) warmth: Option<Warmth>,
    /// The last cold build of the workspace in this dir's line (the dir's own job, or a job an
    /// earlier one adopted or seeded from): what the estimate of time saved is made from. Sticky
    /// through resumes, adoptions and seeds. Read leniently: anything out of range is no sample.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::cold"
    )]
    pub(crate) cold: Option<Cold>,
}

/// At most this many units in a count: more is not a workspace, it is a corrupt lease.
const MAX_UNITS: u64 = 10_000_000;

/// A job's units so far: those it used without compiling them (reused warm) and those it
/// compiled, over all its steps (each unit once); the steps counted and their commands' wall
/// time. `None` in a field: unknown (not observable, or unreadable in the lease).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Warmth {
    pub(crate) units_reused: Option<u64>,
    pub(crate) units_compiled: Option<u64>,
    pub(crate) steps: Option<u64>,
    /// The counted steps' commands' wall time, summed; unknown once a step's is (`hold`: its
    /// span is the whole job's, not its builds').
    pub(crate) command_secs: Option<f64>,
}

/// A cold build: a job that started from nothing (`fresh`) and reused no unit, with the units
/// it compiled and its commands' wall time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Cold {
    pub(crate) job_id: String,
    pub(crate) units: u64,
    pub(crate) secs: f64,
}

impl Warmth {
    /// From whatever a lease holds there: each field in range or unknown.
    fn from_value(v: &serde_json::Value) -> Warmth {
        Warmth {
            units_reused: count(v.get("units_reused")),
            units_compiled: count(v.get("units_compiled")),
            steps: count(v.get("steps")),
            command_secs: secs(v.get("command_secs")),
        }
    }
}

impl Cold {
    /// A sample only when every field is in range, and a unit was compiled.
    fn from_value(v: &serde_json::Value) -> Option<Cold> {
        let job_id = v.get("job_id")?.as_str()?;
        Some(Cold {
            job_id: job_id.chars().take(MAX_JOB_ID_CHARS).collect(),
            units: count(v.get("units")).filter(|u| *u > 0)?,
            secs: secs(v.get("secs"))?,
        })
    }
}

/// A cold sample's job id is for people; a longer one is cut.
const MAX_JOB_ID_CHARS: usize = 256;

fn count(v: Option<&serde_json::Value>) -> Option<u64> {
    v?.as_u64().filter(|n| *n <= MAX_UNITS)
}

fn secs(v: Option<&serde_json::Value>) -> Option<f64> {
    v?.as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= MAX_LEASE_DURATION.as_secs_f64())
}

/// The optional fields read from any JSON at all: a value we did not write is unknown, never an
/// unreadable lease (which would keep the dir as `unknown`).
mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use super::{Cold, Warmth};

    pub(super) fn warmth<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Warmth>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.map(|v| Warmth::from_value(&v)))
    }

    pub(super) fn cold<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cold>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?
            .as_ref()
            .and_then(Cold::from_value))
    }
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
    let margin = untrusted_margin(ttl);
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

pub(super) fn write(dir: BorrowedFd<'_>, lease: &Lease) -> io::Result<()> {
    stage(dir, lease)?.commit()
}

/// `lease` written in full beside `lease.json`, put in place by `commit` (a rename within the
/// dir, which needs no space).
pub(super) fn stage<'a>(dir: BorrowedFd<'a>, lease: &Lease) -> io::Result<fs::Staged<'a>> {
    let bytes = serde_json::to_vec_pretty(lease).map_err(io::Error::other)?;
    fs::Staged::write(dir, LEASE_FILE, &bytes)
}

/// The shortest `untrusted_margin`.
const MIN_UNTRUSTED_MARGIN: Duration = Duration::from_secs(60);

/// Where locks cannot be trusted (docs/protocol.md#lock-trust), the further staleness a lease
/// needs to count as expired: `max(ttl, 60s)`, used by `classify` and bounded by `check_range`.
/// The lease is then the only signal, so a further TTL covers a heartbeat that is slow rather
/// than stopped; the 60 s floor keeps a short TTL (`--ttl 5s`) from shrinking that margin to
/// seconds, where the lease is often read from another host (NFS, CIFS) whose clock and view
/// of the file can lag by more.
pub(super) fn untrusted_margin(ttl: Duration) -> Duration {
    ttl.max(MIN_UNTRUSTED_MARGIN)
}

/// The heartbeat interval for a TTL: often enough that a few missed beats stay inside the TTL.
pub(crate) fn heartbeat_interval(ttl: Duration) -> Duration {
    (ttl / 5).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// `now + d`, saturating at `MAX_LEASE_DURATION` (the CLI refuses longer values already).
pub(super) fn deadline(now: SystemTime, d: Duration) -> SystemTime {
    now.checked_add(d.min(MAX_LEASE_DURATION)).unwrap_or(now)
}

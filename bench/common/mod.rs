//! Shared helpers for the benchmarks under `bench/`: the built binary run with a cleaned
//! environment, wall-clock timing of child processes, interleaved rounds, medians and ratios,
//! and leases derived from one written by a real `cargo guarded exec -- true`.
//!
//! Every benchmark measures its baseline in the same run, interleaved with the thing measured
//! (the order alternates every round), and prints medians and ratios. Nothing here asserts on
//! wall time: a goal that is missed is printed, not failed.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod check;
#[allow(unused_imports)] // Not every bench reads JSON back.
pub use check::*;
pub mod history;

#[path = "../../tests/testsuite/common/shared.rs"]
mod shared;
#[allow(unused_imports)] // Only the store bench starts one.
pub use shared::Moto;
use shared::clean_env;
pub use shared::copy_dir;

/// The release build of `cargo-guarded` that `cargo bench` built for this bench.
pub const BIN: &str = env!("CARGO_BIN_EXE_cargo-guarded");
pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// `cargo bench` runs a `harness = false` bench with `--bench`; `cargo test --all-targets` runs
/// it without. Only the former should spend minutes measuring.
pub fn invoked_by_cargo_bench(name: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        if smoke() {
            println!(
                "{name}: smoke run (CARGO_GUARDED_BENCH_SMOKE): its checks hold, its figures mean nothing"
            );
        }
        return true;
    }
    println!(
        "{name}: not run by `cargo bench` (no --bench argument); run `cargo bench --bench {name}`"
    );
    false
}

/// `CARGO_GUARDED_BENCH_SMOKE=1`: a smoke run (`.ci/run` runs every bench so): one round, small
/// N. It checks that the bench's own assertions hold (what the binary did), not its figures.
pub fn smoke() -> bool {
    std::env::var("CARGO_GUARDED_BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A whole-number setting from the environment, e.g. `BENCH_RUNS=5`; unset, `full`, or `smoke`
/// in a [`smoke`] run.
pub fn setting(name: &str, full: usize, smoke: usize) -> usize {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}: expected a whole number, got `{v}`")),
        _ if self::smoke() => smoke,
        _ => full,
    }
}

/// A temp dir for one bench run, removed at the end.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("failed to create a temp dir")
}

/// `program` with the cleaned environment, no colour, stdin closed.
pub fn cmd(program: impl AsRef<OsStr>, cwd: &Path) -> Command {
    let mut c = Command::new(program);
    clean_env(&mut c).current_dir(cwd).stdin(Stdio::null());
    c
}

/// `cargo-guarded guarded ARGS` (as cargo runs it) with the cleaned environment and `root`.
pub fn guarded<I, S>(root: &Path, cwd: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = cmd(BIN, cwd);
    c.env("CARGO_GUARDED_ROOT", root).arg("guarded").args(args);
    c
}

/// What one timed run printed (kept in files, so capturing costs the child nothing measurable).
pub struct Run {
    pub wall: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Whether cargo compiled anything in this run.
    pub fn compiled(&self) -> bool {
        self.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("Compiling "))
    }
}

/// Run `c` to completion and return its wall time. Its stdout and stderr go to files in `logs`;
/// a failure panics with the command and both outputs.
pub fn timed(c: &mut Command, logs: &Path) -> Run {
    std::fs::create_dir_all(logs).unwrap();
    let out_path = logs.join("last.stdout");
    let err_path = logs.join("last.stderr");
    c.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let start = Instant::now();
    let status = c
        .status()
        .unwrap_or_else(|e| panic!("failed to start {c:?}: {e}"));
    let wall = start.elapsed();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if !status.success() {
        panic!(
            "command failed ({status}): {c:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        );
    }
    Run {
        wall,
        stdout,
        stderr,
    }
}

/// Run `rounds` rounds of every variant, alternating the order each round (round r starts at
/// variant r mod n), so drift in the machine's load falls on all variants alike. Returns each
/// variant's times, round by round.
pub fn interleaved<'a>(
    rounds: usize,
    variants: &mut [(&'a str, &'a mut dyn FnMut(usize) -> Duration)],
) -> Vec<Vec<Duration>> {
    let n = variants.len();
    let mut times = vec![Vec::with_capacity(rounds); n];
    for r in 0..rounds {
        for k in 0..n {
            let i = (r + k) % n;
            times[i].push((variants[i].1)(r));
        }
    }
    times
}

pub fn median(times: &[Duration]) -> Duration {
    let mut v = times.to_vec();
    v.sort();
    let n = v.len();
    assert!(n > 0, "no samples");
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

pub fn median_f64(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    assert!(n > 0, "no samples");
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median of the per-round ratios `a[r] / b[r]` (a paired figure, robust to load that
/// drifts between rounds).
pub fn paired_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let r: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
        .collect();
    median_f64(&r)
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// One line of a results table: median, min and max of a variant.
pub fn summary(name: &str, times: &[Duration]) -> String {
    let min = times.iter().min().copied().unwrap_or_default();
    let max = times.iter().max().copied().unwrap_or_default();
    format!(
        "  {name:<44} median {:>10}   min {:>10}   max {:>10}   (n={})",
        ms(median(times)),
        ms(min),
        ms(max),
        times.len()
    )
}

/// Print a ratio of medians, the paired median ratio, and whether `goal` (an upper bound) is met
/// by the ratio of medians.
pub fn ratio_line(what: &str, a: &[Duration], b: &[Duration], goal: Option<f64>) {
    let of_medians = median(a).as_secs_f64() / median(b).as_secs_f64();
    let paired = paired_ratio(a, b);
    let mut line =
        format!("  {what:<44} {of_medians:>6.3}x   (median of per-round ratios {paired:.3}x)");
    if let Some(g) = goal {
        let verdict = if of_medians <= g { "met" } else { "NOT met" };
        let _ = write!(line, "   goal <= {g:.2}: {verdict}");
    }
    println!("{line}");
}

/// Copy `fixtures/<name>` to `dst`.
pub fn fixture(name: &str, dst: &Path) -> PathBuf {
    copy_dir(&Path::new(MANIFEST_DIR).join("fixtures").join(name), dst);
    dst.canonicalize().unwrap()
}

/// Bytes allocated on disk under `path` (`du`: blocks, not apparent sizes; hard links once; the
/// top dir included; symlinks not followed).
pub fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            for e in rd.flatten() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Count of entries in `dir` that are job dirs (not dot-names, not `CACHEDIR.TAG`).
pub fn job_dirs(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && n != "CACHEDIR.TAG")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    format!("{x:.1} {}", UNITS[u])
}

// ---------------------------------------------------------------------------------------------
// Leases

/// A lease written by a real `cargo guarded exec -- true` in a scratch root under `tmp`, parsed.
/// Benches rewrite its fields rather than spelling the format out, so it stays what
/// `src/lease.rs` serializes.
pub fn real_lease(tmp: &Path) -> Value {
    let root = tmp.join("template-root");
    let cwd = tmp.join("template-cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    timed(
        &mut guarded(&root, &cwd, ["--job-id", "template", "exec", "--", "true"]),
        &tmp.join("logs"),
    );
    let text = std::fs::read_to_string(root.join("template/lease.json")).unwrap();
    let lease: Value = serde_json::from_str(&text).unwrap();
    for field in [
        "protocol",
        "job_id",
        "token",
        "state",
        "renewed_at",
        "expires_at",
        "ttl_secs",
    ] {
        assert!(
            lease.get(field).is_some(),
            "the real lease has no `{field}` field: {text}"
        );
    }
    assert_eq!(lease["protocol"], 1, "unexpected lease protocol: {text}");
    lease
}

/// How a derived lease should read.
pub enum LeaseState {
    /// `active`, renewed now, `ttl_secs` 600: a live job.
    Live,
    /// `released`, expires this long from now: a job whose later steps may still come.
    Lingering(Duration),
    /// `released`, expired this long ago.
    Expired(Duration),
}

/// The template with a new job id, token, state and times (`now` on the guard's clock).
pub fn derive_lease(
    template: &Value,
    job_id: &str,
    state: LeaseState,
    workspace: Option<&str>,
) -> Value {
    let mut l = template.clone();
    let now = SystemTime::now();
    l["job_id"] = job_id.into();
    l["token"] = token(job_id).into();
    l["ttl_secs"] = 600.into();
    let (st, renewed, expires) = match state {
        LeaseState::Live => ("active", now, now + Duration::from_secs(600)),
        LeaseState::Lingering(d) => ("released", now, now + d),
        LeaseState::Expired(d) => ("released", now - d, now - d),
    };
    l["state"] = st.into();
    l["created_at"] = rfc3339(renewed).into();
    l["renewed_at"] = rfc3339(renewed).into();
    l["expires_at"] = rfc3339(expires).into();
    if let Some(ws) = workspace {
        l["workspace"] = ws.into();
    }
    l
}

pub fn write_lease(job_dir: &Path, lease: &Value) {
    std::fs::write(
        job_dir.join("lease.json"),
        serde_json::to_vec_pretty(lease).unwrap(),
    )
    .unwrap();
}

/// A root as `cargo guarded` lays it out (`CACHEDIR.TAG`, `.trash/`), created by a real run so
/// that its layout is the product's own; the run's job dir is removed.
pub fn make_root(root: &Path, tmp: &Path) {
    let cwd = tmp.join("template-cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    timed(
        &mut guarded(root, &cwd, ["--job-id", "seed", "exec", "--", "true"]),
        &tmp.join("logs"),
    );
    std::fs::remove_dir_all(root.join("seed")).unwrap();
}

/// A 32-hex-digit token, like the product's (a simple uuid), distinct per job id.
fn token(job_id: &str) -> String {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, job_id).hash(&mut h);
        h.finish()
    };
    format!("{:016x}{:016x}", half(0), half(1))
}

/// `2026-01-02T03:04:05.678Z`, the shape `humantime::format_rfc3339_millis` writes.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).expect("time before 1970");
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        d.subsec_millis()
    )
}

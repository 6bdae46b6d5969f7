//! Issue 18's fleet benchmark: one host, ephemeral runners (a new runner name per job, as Actions
//! Runner Controller names them), the sweep `contrib/` ships (the systemd unit's `gc` command)
//! on a schedule compressed in time, and a stream of jobs over two workspaces with a moving
//! history (`fixtures/moving`: the path dependency's version and the app's source move every two
//! batches), at concurrency 1, 2 and 4 (a batch is that many jobs started together).
//!
//! Compression: the shipped schedule lingers a released dir 1h and sweeps every 5 min (the
//! DaemonSet); here a dir lingers `BENCH_LINGER_SECS` (5), batches start `BENCH_BATCH_SECS` (2)
//! apart (or as soon as the last one ends, if later) and the sweep runs after every batch.
//!
//! Each job ends as the Action ends it: a `cargo guarded hold --job-only` started after its step
//! and killed at the end of the job, so its dir's linger ends with the job.
//!
//! Printed per concurrency: the warm-start rate (jobs started by a seed or an adoption, among the
//! jobs after each workspace's first on the host; goal >= 95%), units compiled against an
//! always-warm ideal (one persistent target dir per workspace building the same states in
//! order), peak disk of the root against one fresh build per workspace, and the seed's wall time
//! against the cold build it replaced (medians; goal <= 0.2x for a copy, <= 0.05x for a reflink),
//! and a re-run of each workspace, unchanged, after the last batch: what it compiled (goal:
//! nothing) and how many dirs are left (goal at concurrency 1: one per workspace).
//! Then the same on an XFS loop image (reflink) when run as root, what `incremental/` adds to a
//! seed, and a seed of a ripgrep-sized dir (ripgrep 15.1.0 from `RIPGREP_GIT`, default the local
//! mirror) against its cold build, by copy here and by reflink on XFS.
//!
//! `CARGO_GUARDED_BENCH_SMOKE=1`: one short round (4 jobs at concurrency 2, no XFS, no ripgrep).
//! `BENCH_CONCURRENCY=N`: the fleet at concurrency N only.

mod common;
#[path = "../tests/testsuite/common/moving.rs"]
mod moving;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const DEFAULT_GIT: &str = "/work/.mirror/BurntSushi+ripgrep/repo";

/// How one job started and what it cost.
struct Job {
    workspace: usize,
    origin: &'static str,
    compiled: usize,
    /// The seed's own time, as its status line reports it.
    seed: Option<Duration>,
    wall: Duration,
}

/// What one fleet run measured.
struct Fleet {
    jobs: Vec<Job>,
    /// Jobs that started after a job of their workspace had finished on this host.
    eligible: Vec<bool>,
    ideal_units: usize,
    peak_disk: u64,
    fresh_disk: u64,
    /// Units the unchanged re-run of each workspace compiled.
    rerun_units: usize,
    /// Job dirs left after the re-runs.
    dirs_left: usize,
}

/// The words after `guarded` in the systemd unit's `ExecStart`: the sweep as shipped.
fn shipped_sweep() -> Vec<String> {
    let unit =
        std::fs::read_to_string(Path::new(MANIFEST_DIR).join("contrib/cargo-guarded-gc.service"))
            .expect("contrib/cargo-guarded-gc.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    exec.split_whitespace()
        .skip_while(|w| *w != "gc")
        .map(str::to_owned)
        .collect()
}

fn units(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .count()
}

/// `… (copy, 1.2 MiB in 0.03s)` → 0.03 s.
fn seed_time(stderr: &str) -> Option<Duration> {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("Seeded"))?;
    let secs = line
        .rsplit(" in ")
        .next()?
        .trim_end_matches(')')
        .trim_end_matches('s');
    secs.parse::<f64>().ok().map(Duration::from_secs_f64)
}

fn origin(stderr: &str) -> &'static str {
    let has = |verb: &str| stderr.lines().any(|l| l.trim_start().starts_with(verb));
    if has("Seeded") {
        "seeded"
    } else if has("Adopted") {
        "adopted"
    } else {
        "fresh"
    }
}

/// Start one job of workspace `w` on an ephemeral runner.
fn spawn_job(root: &Path, ws: &Path, w: usize, name: &str, logs: &Path, opts: &Opts) -> Child {
    let mut c = guarded(root, ws, ["--job-id", name, "build"]);
    if !opts.seed {
        c.env("CARGO_GUARDED_SEED", "0");
    }
    let linger = opts.linger;
    c.env("RUNNER_NAME", format!("arc-{name}"))
        .env("GITHUB_REPOSITORY", format!("acme/ws-{w}"))
        .env("CARGO_GUARDED_LINGER", format!("{linger}s"))
        .env("CARGO_GUARDED_MIN_FREE", "0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logs.join(format!("{name}.stderr"))).unwrap());
    c.spawn().expect("failed to start a job")
}

/// Move workspace `w` to history state `s`.
fn set_state(ws: &Path, s: usize) {
    moving::set_dep_version(ws, &format!("0.1.{s}"));
    moving::set_edit(ws, s as u32);
}

/// The settings of a fleet run.
struct Opts {
    linger: u64,
    /// Batches start this far apart (a fleet is paced by its pushes, not by how fast its jobs
    /// are): so warm and cold runs see the same number of batches per linger.
    period: Duration,
    sweep: Vec<String>,
    /// `false`: the baseline without seeding (`CARGO_GUARDED_SEED=0`), adoption only.
    seed: bool,
}

/// One fleet run: `jobs` jobs, `c` at a time, over two workspaces, in a root under `base`.
// Long: one scenario read top to bottom (per batch: history, ideal, jobs, disk, sweep).
fn fleet(base: &Path, c: usize, jobs: usize, opts: &Opts) -> Fleet {
    let dir = base.join(format!(
        "fleet-{c}-{}",
        if opts.seed { "seed" } else { "noseed" }
    ));
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let root = dir.join("root");
    let ws: Vec<PathBuf> = (0..2)
        .map(|w| fixture("moving", &dir.join(format!("ws-{w}"))))
        .collect();
    let ideal: Vec<PathBuf> = (0..2).map(|w| dir.join(format!("ideal-{w}"))).collect();
    let mut out = Fleet {
        jobs: Vec::new(),
        eligible: Vec::new(),
        ideal_units: 0,
        peak_disk: 0,
        fresh_disk: 0,
        rerun_units: 0,
        dirs_left: 0,
    };
    let mut finished = [false; 2];
    let batches = jobs.div_ceil(c);
    let start = Instant::now();
    for b in 0..batches {
        if let Some(wait) = (opts.period * b as u32).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        for (w, ws) in ws.iter().enumerate() {
            set_state(ws, b / 2 + w);
        }
        let of_batch: Vec<usize> = (0..c).map(|j| (b * c + j) % 2).collect();
        // The always-warm ideal: one persistent target dir per workspace, the same states.
        for &w in &of_batch {
            let mut cargo = cmd("cargo", &ws[w]);
            cargo.args(["build", "--target-dir"]).arg(&ideal[w]);
            out.ideal_units += units(&timed(&mut cargo, &logs).stderr);
        }
        let started = Instant::now();
        let children: Vec<(usize, String, Child)> = of_batch
            .iter()
            .enumerate()
            .map(|(j, &w)| {
                let name = format!("c{c}-b{b}-j{j}");
                let child = spawn_job(&root, &ws[w], w, &name, &logs, opts);
                (w, name, child)
            })
            .collect();
        for (w, name, child) in children {
            let stderr = end_job(&root, &ws[w], &name, &logs, child);
            out.eligible.push(finished[w]);
            out.jobs.push(Job {
                workspace: w,
                origin: origin(&stderr),
                compiled: units(&stderr),
                seed: seed_time(&stderr),
                wall: started.elapsed(),
            });
        }
        for &w in &of_batch {
            finished[w] = true;
        }
        out.peak_disk = out.peak_disk.max(disk_bytes(&root));
        let mut gc = guarded(&root, &dir, &opts.sweep);
        timed(&mut gc, &logs);
    }
    // The same states again, one workspace after the other: a warm start compiles nothing.
    for (w, ws_w) in ws.iter().enumerate() {
        let name = format!("c{c}-rerun-{w}");
        let child = spawn_job(&root, ws_w, w, &name, &logs, opts);
        out.rerun_units += units(&end_job(&root, ws_w, &name, &logs, child));
    }
    out.dirs_left = job_dirs(&root).len();
    for (w, ws) in ws.iter().enumerate() {
        let fresh = dir.join(format!("fresh-{w}"));
        let mut cargo = cmd("cargo", ws);
        cargo.args(["build", "--target-dir"]).arg(&fresh);
        timed(&mut cargo, &logs);
        out.fresh_disk += disk_bytes(&fresh);
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Wait for a job's step, then end the job as the Action does: a `hold --job-only` started after
/// the step, killed by the end-of-job cleanup (the dir's linger ends with it). The step's stderr.
fn end_job(root: &Path, ws: &Path, name: &str, logs: &Path, mut step: Child) -> String {
    let status = step.wait().unwrap();
    let stderr = std::fs::read_to_string(logs.join(format!("{name}.stderr"))).unwrap();
    assert!(status.success(), "job {name} failed:\n{stderr}");
    let log = logs.join(format!("{name}.hold"));
    let mut hold = guarded(root, ws, ["--job-id", name, "hold", "--job-only"]);
    hold.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut holder = hold.spawn().expect("failed to start hold --job-only");
    let started = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Holding"))
        && started.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &holder.id().to_string()])
        .status();
    let _ = holder.wait();
    stderr
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn report(label: &str, c: usize, f: &Fleet, seed_goal: f64) {
    let after_first: Vec<&Job> = f
        .jobs
        .iter()
        .zip(&f.eligible)
        .filter_map(|(j, e)| e.then_some(j))
        .collect();
    let warm = after_first.iter().filter(|j| j.origin != "fresh").count();
    let rate = if after_first.is_empty() {
        1.0
    } else {
        warm as f64 / after_first.len() as f64
    };
    let compiled: usize = f.jobs.iter().map(|j| j.compiled).sum();
    let seeds: Vec<Duration> = f.jobs.iter().filter_map(|j| j.seed).collect();
    let colds: Vec<Duration> = f
        .jobs
        .iter()
        .filter(|j| j.origin == "fresh")
        .map(|j| j.wall)
        .collect();
    let by = |o: &str| f.jobs.iter().filter(|j| j.origin == o).count();
    println!(
        "  {label:<22} {} jobs ({} seeded, {} adopted, {} fresh; workspaces {:?})",
        f.jobs.len(),
        by("seeded"),
        by("adopted"),
        by("fresh"),
        [0, 1].map(|w| f.jobs.iter().filter(|j| j.workspace == w).count())
    );
    println!(
        "    warm-start rate after each workspace's first: {warm}/{} = {:.0}%   goal >= 95%: {}",
        after_first.len(),
        rate * 100.0,
        verdict(rate >= 0.95)
    );
    println!(
        "    units compiled: {compiled}, always-warm ideal {}: {:.2}x",
        f.ideal_units,
        compiled as f64 / f.ideal_units.max(1) as f64
    );
    // du-style (each inode's blocks): on XFS a reflinked seed's shared extents count in full.
    let peak = f.peak_disk as f64 / f.fresh_disk.max(1) as f64;
    let peak_goal = if c == 1 { 2.0 } else { c as f64 + 1.0 };
    println!(
        "    peak disk {} (du-style) against one fresh build per workspace {}: {peak:.2}x   \
         goal <= {peak_goal:.0}x: {}",
        human_bytes(f.peak_disk),
        human_bytes(f.fresh_disk),
        verdict(peak <= peak_goal)
    );
    println!(
        "    re-run of each workspace, unchanged: {} units compiled (goal 0: {}), {} dirs left{}",
        f.rerun_units,
        verdict(f.rerun_units == 0),
        f.dirs_left,
        if c == 1 {
            format!(" (goal 1 per workspace: {})", verdict(f.dirs_left <= 2))
        } else {
            String::new()
        }
    );
    if !seeds.is_empty() && !colds.is_empty() {
        let ratio = median(&seeds).as_secs_f64() / median(&colds).as_secs_f64();
        println!(
            "    seed {} (median of {}) against a cold job {} (median of {}): {ratio:.3}x   goal <= {seed_goal:.2}: {}",
            ms(median(&seeds)),
            seeds.len(),
            ms(median(&colds)),
            colds.len(),
            verdict(ratio <= seed_goal)
        );
    }
}

fn main() {
    if !invoked_by_cargo_bench("fleet") {
        return;
    }
    let smoke = smoke();
    let jobs = setting("BENCH_JOBS", 16, 4);
    let linger = setting("BENCH_LINGER_SECS", 5, 5) as u64;
    let sweep = shipped_sweep();
    let tmp = tempdir("cg-bench-fleet-");
    let here = fs_type(tmp.path());
    println!(
        "fleet: {jobs} jobs per run over 2 workspaces (fixtures/moving), ephemeral runners, \
         linger {linger}s, batches {}s apart, `gc` as shipped (`{}`) after every batch{}",
        setting("BENCH_BATCH_SECS", 2, 2),
        sweep.join(" "),
        if smoke { " (smoke scale)" } else { "" }
    );
    println!("  binary: {BIN}");
    let mut opts = Opts {
        linger,
        period: Duration::from_secs(setting("BENCH_BATCH_SECS", 2, 2) as u64),
        sweep,
        seed: true,
    };
    let only = std::env::var("BENCH_CONCURRENCY").ok();
    let concurrencies: Vec<usize> = match &only {
        Some(c) => vec![c.parse().expect("BENCH_CONCURRENCY: a number")],
        None if smoke => vec![2],
        None => vec![1, 2, 4],
    };
    for &c in &concurrencies {
        let f = fleet(tmp.path(), c, jobs, &opts);
        report(&format!("{here}, concurrency {c}"), c, &f, 0.2);
    }
    if smoke || only.is_some() {
        return;
    }
    // The same fleet before seeding: adoption only.
    opts.seed = false;
    let f = fleet(tmp.path(), 2, jobs, &opts);
    report(&format!("{here}, conc. 2, --no-seed"), 2, &f, 0.2);
    opts.seed = true;
    let xfs = Xfs::mount(tmp.path(), 4096);
    match &xfs {
        Ok(x) => {
            let f = fleet(&x.mount, 2, jobs, &opts);
            report("xfs (reflink), conc. 2", 2, &f, 0.05);
        }
        Err(why) => println!("  xfs: skipped: {why}"),
    }
    incremental(tmp.path());
    ripgrep(tmp.path(), xfs.as_ref().ok());
}

fn fs_type(path: &Path) -> String {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What `incremental/` adds to a seed of `fixtures/moving`, and what it saves on the next build
/// after an edit of the workspace crate (the only thing it speeds up).
fn incremental(base: &Path) {
    let dir = base.join("incremental");
    let logs = dir.join("logs");
    let ws = fixture("moving", &dir.join("ws"));
    let mut sizes = Vec::new();
    let mut rebuilds = Vec::new();
    for (k, with) in [false, true].into_iter().enumerate() {
        let root = dir.join(format!("root-{k}"));
        set_state(&ws, 0);
        let mut first = guarded(&root, &ws, ["--job-id", "one", "build"]);
        first
            .env("RUNNER_NAME", "a")
            .env("CARGO_GUARDED_MIN_FREE", "0");
        timed(&mut first, &logs);
        let mut times = Vec::new();
        for round in 0..3 {
            set_state(&ws, round + 1);
            moving::set_dep_version(&ws, "0.1.0");
            let id = format!("next-{round}");
            let mut next = guarded(
                &root,
                &ws,
                ["--job-id", &id, "--linger", "0s", "--no-adopt", "build"],
            );
            next.env("RUNNER_NAME", format!("b{round}"))
                .env("CARGO_GUARDED_MIN_FREE", "0")
                .env(
                    "CARGO_GUARDED_SEED_INCREMENTAL",
                    if with { "1" } else { "0" },
                );
            times.push(timed(&mut next, &logs).wall);
            if round == 0 {
                sizes.push(disk_bytes(&root.join(&id).join("target")));
            }
        }
        rebuilds.push(median(&times));
    }
    println!(
        "  incremental/: a seed is {} without it, {} with it ({:.2}x); the job after an edit of the \
         app: {} without, {} with",
        human_bytes(sizes[0]),
        human_bytes(sizes[1]),
        sizes[1] as f64 / sizes[0].max(1) as f64,
        ms(rebuilds[0]),
        ms(rebuilds[1])
    );
}

/// A seed of a ripgrep-sized dir against the cold build it replaces: by copy on this filesystem,
/// by reflink on XFS (the same target dir copied there as a finished job's dir).
fn ripgrep(base: &Path, xfs: Option<&Xfs>) {
    let repo = std::env::var("RIPGREP_GIT").unwrap_or_else(|_| DEFAULT_GIT.to_owned());
    if !Path::new(&repo).exists() {
        println!("  ripgrep: skipped: no ripgrep git dir at {repo} (set RIPGREP_GIT)");
        return;
    }
    let dir = base.join("rg");
    let logs = dir.join("logs");
    let ws = dir.join("ripgrep");
    history::checkout(&repo, "15.1.0", &ws);
    let root = dir.join("root");
    let mut cold = guarded(&root, &ws, ["--job-id", "rg-1", "build"]);
    cold.env("RUNNER_NAME", "arc-1")
        .env("CARGO_GUARDED_MIN_FREE", "0");
    let cold = timed(&mut cold, &logs);
    let size = disk_bytes(&root.join("rg-1"));
    let seeded = |root: &Path, id: &str| {
        let mut c = guarded(root, &ws, ["--job-id", id, "build"]);
        c.env("RUNNER_NAME", format!("arc-{id}"))
            .env("CARGO_GUARDED_MIN_FREE", "0");
        let run = timed(&mut c, &logs);
        (seed_time(&run.stderr), units(&run.stderr), run.wall)
    };
    let report = |what: &str, (seed, n, wall): (Option<Duration>, usize, Duration), goal: f64| {
        let Some(seed) = seed else {
            println!("  ripgrep {what}: no seed was taken");
            return;
        };
        let ratio = seed.as_secs_f64() / cold.wall.as_secs_f64();
        println!(
            "  ripgrep 15.1.0 ({}): {what} seed {} against its cold build {}: {ratio:.3}x   goal <= {goal:.2}: {}; the seeded job compiled {n} units in {}",
            human_bytes(size),
            ms(seed),
            ms(cold.wall),
            verdict(ratio <= goal),
            ms(wall)
        );
    };
    report("copy", seeded(&root, "rg-2"), 0.2);
    if let Some(x) = xfs {
        // The finished dir on XFS: a real job's dir there, its target replaced by a copy of
        // rg-1's (cp -a keeps what cargo needs), so only the seed is timed, not a second build.
        let xroot = x.mount.join("rg-root");
        let mut first = guarded(&xroot, &ws, ["--job-id", "rg-1", "exec", "--", "true"]);
        first
            .env("RUNNER_NAME", "arc-1")
            .env("CARGO_GUARDED_MIN_FREE", "0");
        timed(&mut first, &logs);
        let target = xroot.join("rg-1/target");
        std::fs::remove_dir_all(&target).unwrap();
        let ok = Command::new("cp")
            .arg("-a")
            .arg(root.join("rg-1/target"))
            .arg(&target)
            .status()
            .unwrap();
        assert!(ok.success(), "cp -a failed");
        report("reflink", seeded(&xroot, "rg-2"), 0.05);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reflink XFS on a loop device (needs root and xfsprogs), unmounted when dropped.
struct Xfs {
    mount: PathBuf,
}

impl Xfs {
    fn mount(base: &Path, mib: u64) -> Result<Xfs, String> {
        let image = base.join("xfs.img");
        let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        f.set_len(mib << 20).map_err(|e| e.to_string())?;
        let run = |c: &mut Command| -> Result<(), String> {
            let out = c.output().map_err(|e| format!("{c:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{c:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        run(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image))?;
        let mount = base.join("xfs");
        std::fs::create_dir_all(&mount).unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount))?;
        Ok(Xfs { mount })
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

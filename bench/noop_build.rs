//! Issue 2's benchmark: the cost of the lease on a no-op build.
//!
//! Times `cargo guarded build` against `cargo build --target-dir <the same job target dir>` on a
//! no-op build of `fixtures/small` (copied to a temp dir), interleaved, and prints the medians
//! and their ratio. Goal: <= 1.10.
//!
//! `cargo guarded build` runs as a user runs it: `cargo` (from PATH) finds `cargo-guarded` on
//! PATH (a temp dir holding a link to this build's binary is put first), which runs cargo again.
//! The binary run directly (`cargo-guarded guarded build`) is timed too, for reference.
//!
//! `cargo bench-nop` (an external subcommand that runs `true`) is timed as well: it is what
//! cargo's own dispatch of any `cargo <subcommand>` costs before the subcommand does anything.
//!
//! The small fixture's no-op build (~17 ms) is mostly process start-up, so it is measured again
//! on a generated workspace of `BENCH_CRATES` (default 150) path crates, closer to a real
//! project's no-op build; `BENCH_CRATES=0` skips it.
//!
//! Scale: `BENCH_RUNS` (default 30, at least 20 for the figure) runs of each variant.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::*;

const JOB: &str = "bench-noop";

fn main() {
    if !invoked_by_cargo_bench("noop_build") {
        return;
    }
    let runs = setting("BENCH_RUNS", 30, 1).max(1);
    let tmp = tempdir("cg-bench-noop-");
    let ws = fixture("small", &tmp.path().join("ws"));
    measure("fixtures/small", &ws, runs, &tmp.path().join("small"));
    let crates = setting("BENCH_CRATES", 150, 5);
    if crates > 0 {
        let ws = generated_workspace(crates, &tmp.path().join("gen-ws"));
        println!();
        measure(
            &format!("a generated workspace of {crates} crates"),
            &ws,
            runs,
            &tmp.path().join("gen"),
        );
    }
}

/// A workspace of `n` library crates, each depending on up to three earlier ones, and a binary
/// that depends on the last: many units for cargo's fingerprint checks, little code.
fn generated_workspace(n: usize, dir: &Path) -> std::path::PathBuf {
    let members: Vec<String> = (0..n).map(|i| format!("\"c{i}\"")).collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"2\"\nmembers = [{}, \"app\"]\n",
            members.join(", ")
        ),
    )
    .unwrap();
    let krate = |name: &str, deps: &[usize], body: &str, file: &str| {
        let d = dir.join(name);
        std::fs::create_dir_all(d.join("src")).unwrap();
        let deps: String = deps
            .iter()
            .map(|j| format!("c{j} = {{ path = \"../c{j}\" }}\n"))
            .collect();
        std::fs::write(
            d.join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{deps}"),
        )
        .unwrap();
        std::fs::write(d.join("src").join(file), body).unwrap();
    };
    for i in 0..n {
        let deps: Vec<usize> = (i.saturating_sub(3)..i).collect();
        let sum: String = deps.iter().map(|j| format!(" + c{j}::value()")).collect();
        krate(
            &format!("c{i}"),
            &deps,
            &format!("pub fn value() -> u64 {{ {i}{sum} }}\n"),
            "lib.rs",
        );
    }
    let last = n - 1;
    krate(
        "app",
        &[last],
        &format!("fn main() {{ println!(\"{{}}\", c{last}::value()); }}\n"),
        "main.rs",
    );
    dir.canonicalize().unwrap()
}

fn measure(what: &str, ws: &Path, runs: usize, scratch: &Path) {
    let ws = ws.to_owned();
    let logs = scratch.join("logs");
    let tmp = scratch;
    std::fs::create_dir_all(tmp).unwrap();
    let root = tmp.join("root");
    let job_target = root.join(JOB).join("target");

    // `cargo guarded` finds the subcommand on PATH, like an installed one.
    let bin_dir = tmp.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("cargo-guarded")).unwrap();
    // What any external subcommand costs before it does anything: `cargo bench-nop` runs
    // `true`. Part of `cargo guarded build`'s overhead, but not cargo-guarded's own work.
    let true_bin = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("no `true` binary");
    std::os::unix::fs::symlink(true_bin, bin_dir.join("cargo-bench-nop")).unwrap();
    let mut path = OsString::from(&bin_dir);
    if let Some(p) = std::env::var_os("PATH") {
        path.push(":");
        path.push(p);
    }

    let via_cargo = |ws: &Path| {
        let mut c = cmd("cargo", ws);
        c.env("PATH", &path)
            .env("CARGO_GUARDED_ROOT", &root)
            .args(["guarded", "--job-id", JOB, "build"]);
        c
    };
    let direct = |ws: &Path| {
        let mut c = guarded(&root, ws, ["--job-id", JOB, "build"]);
        c.env("PATH", &path);
        c
    };
    let nop = |ws: &Path| {
        let mut c = cmd("cargo", ws);
        c.env("PATH", &path).arg("bench-nop");
        c
    };
    let plain = |ws: &Path| {
        let mut c = cmd("cargo", ws);
        c.env("PATH", &path)
            .arg("build")
            .arg("--target-dir")
            .arg(&job_target);
        c
    };

    println!("noop_build: no-op `cargo build` of {what}, {runs} interleaved runs each");
    println!("  binary:     {BIN}");
    println!("  workspace:  {}", ws.display());
    println!(
        "  target dir: {} (the same for every variant)",
        job_target.display()
    );

    // Warm up: the first run builds for real; then every variant must be a no-op.
    let first = timed(&mut via_cargo(&ws), &logs);
    assert!(
        first.compiled(),
        "the first build compiled nothing?\n{}",
        first.stderr
    );
    assert!(
        job_target.join("debug").join("app").exists(),
        "cargo guarded did not build into {}",
        job_target.display()
    );
    // It ran under the job's lease, in the job's dir (by `status --json`).
    let status = status_json(&root, &logs);
    let dir = lease_dir(&status, JOB)
        .unwrap_or_else(|| panic!("status --json lists no lease of {JOB}:\n{status:#}"));
    assert_eq!(
        dir.canonicalize().unwrap(),
        root.join(JOB).canonicalize().unwrap(),
        "{JOB}'s lease names another dir:\n{status:#}"
    );
    println!("  warm-up build (cold): {}", ms(first.wall));
    for (name, mut c) in [
        ("cargo guarded build", via_cargo(&ws)),
        ("cargo-guarded guarded build", direct(&ws)),
        ("cargo build --target-dir", plain(&ws)),
    ] {
        let run = timed(&mut c, &logs);
        assert!(
            !run.compiled(),
            "`{name}` is not a no-op after the warm-up; the comparison would be meaningless:\n{}",
            run.stderr
        );
    }

    let mut a = |_| {
        let r = timed(&mut via_cargo(&ws), &logs);
        assert!(!r.compiled(), "cargo guarded build compiled:\n{}", r.stderr);
        r.wall
    };
    let mut b = |_| {
        let r = timed(&mut plain(&ws), &logs);
        assert!(!r.compiled(), "cargo build compiled:\n{}", r.stderr);
        r.wall
    };
    let mut c = |_| timed(&mut direct(&ws), &logs).wall;
    let mut d = |_| timed(&mut nop(&ws), &logs).wall;
    let times = interleaved(
        runs,
        &mut [
            ("cargo guarded build", &mut a),
            ("cargo build --target-dir", &mut b),
            ("cargo-guarded guarded build", &mut c),
            ("cargo bench-nop", &mut d),
        ],
    );
    let (guarded_t, plain_t, direct_t, nop_t) = (&times[0], &times[1], &times[2], &times[3]);

    println!();
    println!("{}", summary("cargo guarded build", guarded_t));
    println!(
        "{}",
        summary("cargo build --target-dir <job target dir>", plain_t)
    );
    println!(
        "{}",
        summary("cargo-guarded guarded build (binary direct)", direct_t)
    );
    println!(
        "{}",
        summary("cargo bench-nop (subcommand that runs true)", nop_t)
    );
    println!();
    ratio_line(
        "cargo guarded build / cargo build",
        guarded_t,
        plain_t,
        Some(1.10),
    );
    ratio_line("binary direct / cargo build", direct_t, plain_t, None);
    let overhead = median(guarded_t).as_secs_f64() - median(plain_t).as_secs_f64();
    println!(
        "  difference of medians: {:+.1} ms per build",
        overhead * 1e3
    );
    println!(
        "  for scale: cargo's dispatch of an external subcommand that does nothing (cargo bench-nop): {:.1} ms",
        median(nop_t).as_secs_f64() * 1e3
    );
}

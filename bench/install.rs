//! Issue 12's benchmark: how long the action's install step takes from a prebuilt release
//! archive against today's build from source, measured side by side in one run.
//!
//! - prebuilt: `action/install.sh` with an empty tool cache, downloading the release archive
//!   (`scripts/package-release.sh` of the binary `cargo bench` built) from a loopback HTTP server,
//!   checking its SHA-256 against the action's checksums.txt, unpacking and caching it;
//! - source: `action/install.sh` with an empty tool cache and the archive missing (404), so it
//!   falls back to `cargo install --locked --path <the action>` into a temp root, with the
//!   registry already local (what every cache miss cost before release binaries).
//!
//! Both run the real script with a fresh tool cache each round; the order alternates. Scale:
//! `BENCH_RUNS` (default 3; each source build takes tens of seconds). A smoke run
//! (`CARGO_GUARDED_BENCH_SMOKE=1`) puts a stand-in `cargo` first on PATH whose `cargo install
//! --root DIR` copies the built binary into `DIR/bin`: the script's choice of path and what it
//! installs are checked, a release build of cargo-guarded is not made.

mod common;
#[path = "../tests/testsuite/common/release.rs"]
mod release;

use std::path::Path;
use std::time::Duration;

use common::*;
use release::*;

fn main() {
    if !invoked_by_cargo_bench("install") {
        return;
    }
    let runs = setting("BENCH_RUNS", 3, 1).max(1);
    let tmp = tempdir("cg-bench-install-");
    let logs = tmp.path().join("logs");
    let target = host_release_target();
    let dist = tmp.path().join("dist");
    let archive = package(&target, Path::new(BIN), &dist);
    let action = action_copy(&tmp.path().join("action"));
    update_checksums(&dist, &action.join("action/checksums.txt"));
    let good = Server::start();
    good.serve(
        &format!("{}.tar.gz", stem(&target)),
        std::fs::read(&archive).unwrap(),
    );
    let missing = Server::start();

    println!(
        "install: action/install.sh, {runs} rounds of prebuilt download and source build, interleaved"
    );
    println!("  binary:  {BIN}");
    println!(
        "  archive: {} ({})",
        archive.display(),
        human_bytes(std::fs::metadata(&archive).unwrap().len())
    );

    let fake_cargo = smoke().then(|| fake_cargo(&tmp.path().join("fake-cargo")));
    let install = |server: &Server, round: usize, kind: &str| -> Duration {
        let step = tmp.path().join(format!("{kind}-{round}"));
        std::fs::create_dir_all(&step).unwrap();
        let mut c = cmd("bash", &step);
        c.arg(action.join("action/install.sh"))
            .env("GITHUB_ACTION_PATH", &action)
            .env("GITHUB_OUTPUT", step.join("output"))
            .env("GITHUB_PATH", step.join("path"))
            .env("RUNNER_TOOL_CACHE", step.join("tool-cache"))
            .env("CARGO_GUARDED_INSTALL_BASE_URL", &server.base);
        if let Some(dir) = &fake_cargo {
            let mut path = std::ffi::OsString::from(dir);
            path.push(":");
            path.push(std::env::var_os("PATH").unwrap_or_default());
            c.env("PATH", path);
        }
        let run = timed(&mut c, &logs);
        let output = std::fs::read_to_string(step.join("output")).unwrap();
        let bin = output
            .lines()
            .find_map(|l| l.strip_prefix("bin="))
            .expect("install.sh wrote no bin output");
        let from_source = run.stdout.contains("building cargo-guarded");
        assert_eq!(
            from_source,
            kind == "source",
            "{kind} round {round} took the wrong path:\n{}",
            run.stdout
        );
        let version = std::process::Command::new(bin)
            .args(["guarded", "--version"])
            .output()
            .unwrap();
        assert!(version.status.success(), "{bin} does not run");
        // The source build's target dir was a temp dir cargo removed; drop the cache too.
        std::fs::remove_dir_all(&step).unwrap();
        run.wall
    };
    let mut prebuilt = |r: usize| install(&good, r, "prebuilt");
    let mut source = |r: usize| install(&missing, r, "source");
    let times = interleaved(
        runs,
        &mut [("prebuilt", &mut prebuilt), ("source", &mut source)],
    );
    println!("{}", summary("prebuilt (download + verify)", &times[0]));
    println!("{}", summary("source (cargo install --locked)", &times[1]));
    ratio_line("source / prebuilt", &times[1], &times[0], None);
    ratio_line("prebuilt / source", &times[0], &times[1], Some(0.1));
}

/// A dir holding a stand-in `cargo` for smoke runs: `cargo install … --root DIR` copies the built
/// binary to `DIR/bin/cargo-guarded`; anything else fails.
fn fake_cargo(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let script = dir.join("cargo");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
# Smoke run of bench/install.rs: stands in for a release build of cargo-guarded.
[ "$1" = install ] || {{ echo "fake cargo: only cargo install is faked: $*" >&2; exit 1; }}
root=
while [ $# -gt 0 ]; do
  [ "$1" = --root ] && root=$2
  shift
done
[ -n "$root" ] || {{ echo "fake cargo: no --root" >&2; exit 1; }}
mkdir -p "$root/bin" && cp '{BIN}' "$root/bin/cargo-guarded"
"#
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_owned()
}

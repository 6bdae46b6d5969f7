//! How long the action's install steps take: from a prebuilt release archive, from source, and
//! from a source build restored from the Actions cache (a later job's install before a release
//! exists), measured side by side in one run.
//!
//! Each round runs the action's steps on a fresh runner (an empty tool cache): `install.sh plan`,
//! then, for `restored`, what actions/cache/restore does with the entry (`zstd -d | tar -x`), then
//! `install.sh`; the time is their sum.
//!
//! - prebuilt: the release archive (`scripts/package-release.sh` of the binary `cargo bench`
//!   built) downloaded from a loopback HTTP server, its SHA-256 checked against the action's
//!   checksums.txt, unpacked and cached;
//! - source: no checksum listed (an unreleased commit), so `cargo install --locked --path <the
//!   action>` into a temp root, with the registry already local. The first source round also
//!   makes the cache entry as actions/cache/save would (`tar | zstd` of the plan's `cache-path`;
//!   its time is printed, the upload is not part of any figure);
//! - restored: the same unreleased commit on a fresh runner, the entry unpacked into place
//!   before the install step, which then finds the build and its recorded SHA-256 and compiles
//!   nothing. The cache service's download is not measured (a loopback has none): add the
//!   entry's size at the service's throughput.
//!
//! The order alternates per round, and source comes before restored in the first round, which
//! makes the entry. Scale: `BENCH_RUNS` (default 3; each source build takes minutes). A smoke run
//! (`CARGO_GUARDED_BENCH_SMOKE=1`) puts a stand-in `cargo` first on PATH whose `cargo install
//! --root DIR` copies the built binary into `DIR/bin`: the script's choice of path and what it
//! installs are checked, a release build of cargo-guarded is not made.

mod common;
#[path = "../tests/testsuite/common/release.rs"]
mod release;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    let unreleased = tmp.path().join("no-checksums.txt");
    std::fs::write(&unreleased, "").unwrap();
    let server = Server::start();
    server.serve(
        &format!("{}.tar.gz", stem(&target)),
        std::fs::read(&archive).unwrap(),
    );
    let entry = tmp.path().join("cache-entry.tar.zst");

    println!(
        "install: the action's install steps on a fresh runner, {runs} rounds of prebuilt download, \
         source build and restored source build, interleaved"
    );
    println!("  binary:  {BIN}");
    println!(
        "  archive: {} ({})",
        archive.display(),
        human_bytes(std::fs::metadata(&archive).unwrap().len())
    );

    let fake_cargo = smoke().then(|| fake_cargo(&tmp.path().join("fake-cargo")));
    let step = |kind: &str, plan: bool, dir: &Path| -> (Run, HashMap<String, String>) {
        let output = dir.join(if plan { "plan-output" } else { "output" });
        let mut c = cmd("bash", dir);
        c.arg(action.join("action/install.sh"))
            .args(plan.then_some("plan"))
            .env("GITHUB_ACTION_PATH", &action)
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_PATH", dir.join("path"))
            .env("RUNNER_TOOL_CACHE", dir.join("tool-cache"))
            .env("CARGO_GUARDED_INSTALL_BASE_URL", &server.base);
        if kind != "prebuilt" {
            c.env("CARGO_GUARDED_INSTALL_CHECKSUMS", &unreleased);
        }
        if let Some(dir) = &fake_cargo {
            let mut path = std::ffi::OsString::from(dir);
            path.push(":");
            path.push(std::env::var_os("PATH").unwrap_or_default());
            c.env("PATH", path);
        }
        let run = timed(&mut c, &logs);
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        let outputs = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        (run, outputs)
    };
    let install = |round: usize, kind: &str| -> Duration {
        let dir = tmp.path().join(format!("{kind}-{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        let tool_cache = dir.join("tool-cache");
        let (plan, planned) = step(kind, true, &dir);
        assert_eq!(
            planned["cache-restore"],
            if kind == "prebuilt" { "false" } else { "true" },
            "{kind} round {round}: the plan\n{}",
            plan.stdout
        );
        let mut wall = plan.wall;
        // The entry's path inside the tool cache (RUNNER_TOOL_CACHE is one path on a real runner;
        // here each round has its own).
        let relative = |planned: &HashMap<String, String>| -> PathBuf {
            Path::new(&planned["cache-path"])
                .strip_prefix(&tool_cache)
                .expect("the cache entry is in the tool cache")
                .to_owned()
        };
        if kind == "restored" {
            assert!(
                entry.exists(),
                "no cache entry: a source round must come first"
            );
            std::fs::create_dir_all(&tool_cache).unwrap();
            let mut c = cmd("sh", &dir);
            c.arg("-c")
                .arg("zstd -d -c \"$1\" | tar -x -f - -C \"$2\"")
                .args([
                    "restore".as_ref(),
                    entry.as_os_str(),
                    tool_cache.as_os_str(),
                ]);
            wall += timed(&mut c, &logs).wall;
        }
        let (run, outputs) = step(kind, false, &dir);
        wall += run.wall;
        let bin = outputs.get("bin").expect("install.sh wrote no bin output");
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
        if kind == "source" && !entry.exists() {
            // What actions/cache/save stores (its tar and zstd, without the upload).
            let mut c = cmd("sh", &dir);
            c.arg("-c")
                .arg("tar -c -f - -C \"$1\" \"$2\" | zstd -T0 -q -o \"$3\"")
                .args([
                    "save".as_ref(),
                    tool_cache.as_os_str(),
                    relative(&planned).as_os_str(),
                    entry.as_os_str(),
                ]);
            let save = timed(&mut c, &logs);
            println!(
                "  cache entry: {} ({}), made in {} (tar | zstd, as actions/cache/save)",
                entry.display(),
                human_bytes(std::fs::metadata(&entry).unwrap().len()),
                ms(save.wall)
            );
        }
        // The source build's target dir was a temp dir cargo removed; drop the cache too.
        std::fs::remove_dir_all(&dir).unwrap();
        wall
    };
    let mut prebuilt = |r: usize| install(r, "prebuilt");
    let mut source = |r: usize| install(r, "source");
    let mut restored = |r: usize| install(r, "restored");
    // Source before restored in the first round: it makes the cache entry.
    let times = interleaved(
        runs,
        &mut [
            ("prebuilt", &mut prebuilt),
            ("source", &mut source),
            ("restored", &mut restored),
        ],
    );
    println!("{}", summary("prebuilt (download + verify)", &times[0]));
    println!("{}", summary("source (cargo install --locked)", &times[1]));
    println!(
        "{}",
        summary("restored (unpack the cache entry)", &times[2])
    );
    ratio_line("source / prebuilt", &times[1], &times[0], None);
    ratio_line("prebuilt / source", &times[0], &times[1], Some(0.1));
    ratio_line("source / restored", &times[1], &times[2], None);
    ratio_line("restored / source", &times[2], &times[1], Some(0.1));
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

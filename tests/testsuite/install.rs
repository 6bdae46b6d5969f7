//! action/install.sh end to end against a loopback HTTP server serving release archives built
//! by scripts/package-release.sh: a good archive installs and runs, a corrupt one is an error with
//! no fallback, a missing one falls back to `cargo install` (a fake cargo that records its
//! arguments and environment) with a scrubbed environment.

use crate::common::release;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use release::*;

/// One runner: a copy of the action with its own checksums.txt, a tool cache, a fake cargo.
struct Runner {
    env: Env,
    action: PathBuf,
    tool_cache: PathBuf,
    fake_bin: PathBuf,
    cargo_log: PathBuf,
    server: Server,
    archive: Vec<u8>,
    target: String,
}

impl Runner {
    fn new() -> Runner {
        let env = Env::new();
        let target = host_release_target();
        let dist = env.path().join("dist");
        let archive = package(&target, Path::new(BIN), &dist);
        let action = action_copy(&env.path().join("action"));
        update_checksums(&dist, &action.join("action/checksums.txt"));
        let tool_cache = env.path().join("tool-cache");
        let fake_bin = env.path().join("fake-bin");
        std::fs::create_dir_all(&fake_bin).unwrap();
        let cargo_log = env.path().join("cargo.log");
        // Records its arguments and environment, and "installs" by copying the test build.
        write_exe(
            &fake_bin.join("cargo"),
            &format!(
                "#!/bin/sh\nprintf 'ARGS %s\\n' \"$*\" >> '{log}'\nenv | sed 's/^/ENV /' >> '{log}'\n\
                 while [ $# -gt 0 ]; do\n  if [ \"$1\" = --root ]; then mkdir -p \"$2/bin\" && cp '{bin}' \"$2/bin/cargo-guarded\"; fi\n  shift\ndone\n",
                log = cargo_log.display(),
                bin = BIN
            ),
        );
        Runner {
            archive: std::fs::read(&archive).unwrap(),
            env,
            action,
            tool_cache,
            fake_bin,
            cargo_log,
            server: Server::start(),
            target,
        }
    }

    fn archive_name(&self) -> String {
        format!("{}.tar.gz", stem(&self.target))
    }

    /// Run install.sh as the action's first step; (output, the `bin` output).
    fn install(&self, extra_env: &[(&str, &str)]) -> (Output, String) {
        let dir = tempfile::tempdir_in(self.env.path()).unwrap();
        let output_file = dir.path().join("output");
        let path_file = dir.path().join("path");
        let mut cmd = Command::new("bash");
        cmd.arg(self.action.join("action/install.sh"))
            .current_dir(self.env.path())
            .env_clear()
            .env("HOME", std::env::var_os("HOME").unwrap())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.fake_bin.display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .env("GITHUB_ACTION_PATH", &self.action)
            .env("GITHUB_OUTPUT", &output_file)
            .env("GITHUB_PATH", &path_file)
            .env("RUNNER_TOOL_CACHE", &self.tool_cache)
            .env("CARGO_GUARDED_INSTALL_BASE_URL", &self.server.base);
        for var in ["RUSTUP_HOME", "CARGO_HOME", "RUSTUP_TOOLCHAIN"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = output(&mut cmd);
        let outputs = std::fs::read_to_string(&output_file).unwrap_or_default();
        let bin = outputs
            .lines()
            .find_map(|l| l.strip_prefix("bin="))
            .unwrap_or_default()
            .to_owned();
        (out, bin)
    }

    fn cargo_calls(&self) -> String {
        std::fs::read_to_string(&self.cargo_log).unwrap_or_default()
    }
}

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(path, perm).unwrap();
}

fn version_of(bin: &str) -> String {
    let out = Command::new(bin)
        .args(["guarded", "--version"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn good_archive_is_downloaded_verified_cached_and_runs() {
    let r = Runner::new();
    r.server.serve(&r.archive_name(), r.archive.clone());
    let (out, bin) = r.install(&[]);
    assert_success(&out);
    assert!(
        Path::new(&bin).starts_with(&r.tool_cache),
        "{bin} is not in the tool cache\n{}",
        describe(&out)
    );
    assert_eq!(version_of(&bin), format!("cargo-guarded {VERSION}"));
    assert_eq!(r.server.requests(), 1);
    assert!(!stdout(&out).contains("::notice"), "{}", describe(&out));
    assert_eq!(r.cargo_calls(), "", "no cargo install");

    // The next job on this runner: the verified cached binary, no download.
    let (out, bin2) = r.install(&[]);
    assert_success(&out);
    assert_eq!(bin2, bin);
    assert!(
        stdout(&out).contains("cached on this runner"),
        "{}",
        describe(&out)
    );
    assert_eq!(r.server.requests(), 1);
}

#[test]
fn corrupt_archive_is_a_checksum_error_and_no_fallback() {
    let r = Runner::new();
    let mut corrupt = r.archive.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    r.server.serve(&r.archive_name(), corrupt);
    let (out, bin) = r.install(&[]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("::error") && stdout(&out).contains("checksum mismatch"),
        "{}",
        describe(&out)
    );
    assert!(!stdout(&out).contains("::notice"), "{}", describe(&out));
    assert_eq!(bin, "");
    assert_eq!(
        r.cargo_calls(),
        "",
        "a checksum mismatch must not fall back to cargo install"
    );
    let release = r.tool_cache.join(format!(
        "cargo-guarded/{VERSION}/{}/cargo-guarded",
        r.target
    ));
    assert!(!release.exists(), "a corrupt download was installed");
}

#[test]
fn missing_archive_falls_back_to_cargo_install_with_a_notice_and_a_scrubbed_env() {
    let r = Runner::new();
    // Nothing served: the download is a 404. The job's environment asks for an instrumented
    // build; the cached tool must not be one.
    let (out, bin) = r.install(&[
        ("RUSTFLAGS", "-C instrument-coverage"),
        ("CARGO_ENCODED_RUSTFLAGS", "-Cinstrument-coverage"),
        ("CARGO_BUILD_RUSTFLAGS", "-C instrument-coverage"),
        ("RUSTC_WRAPPER", "/bin/false"),
        ("CARGO_TARGET_DIR", "/nonexistent/job-dir"),
        ("CARGO_PROFILE_RELEASE_DEBUG", "true"),
        ("LLVM_PROFILE_FILE", "/tmp/x.profraw"),
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("::notice") && stdout(&out).contains("failed"),
        "{}",
        describe(&out)
    );
    assert_eq!(r.server.requests(), 1);
    let calls = r.cargo_calls();
    let args: Vec<&str> = calls.lines().filter(|l| l.starts_with("ARGS ")).collect();
    assert_eq!(args.len(), 1, "{calls}");
    assert!(
        args[0].starts_with(&format!(
            "ARGS install --locked --features store --path {} --root ",
            r.action.display()
        )),
        "{calls}"
    );
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "LLVM_PROFILE_FILE",
        "CARGO_GUARDED_INSTALL_BASE_URL",
    ] {
        assert!(
            !calls.lines().any(|l| l.starts_with(&format!("ENV {var}="))),
            "cargo install saw {var}:\n{calls}"
        );
    }
    // The build's target dir is a temp dir of the install, not the job's dir nor the action's.
    let target_dirs: Vec<&str> = calls
        .lines()
        .filter_map(|l| l.strip_prefix("ENV CARGO_TARGET_DIR="))
        .collect();
    assert_eq!(target_dirs.len(), 1, "{calls}");
    assert!(
        Path::new(target_dirs[0]).starts_with(&r.tool_cache),
        "{calls}"
    );
    assert!(Path::new(&bin).starts_with(&r.tool_cache), "{bin}");
    assert_eq!(version_of(&bin), format!("cargo-guarded {VERSION}"));

    // The build does not depend on the job's flags, so a job without them reuses it.
    let (out, bin2) = r.install(&[]);
    assert_success(&out);
    assert_eq!(bin2, bin, "{}", describe(&out));
    assert_eq!(
        r.cargo_calls()
            .lines()
            .filter(|l| l.starts_with("ARGS "))
            .count(),
        1
    );
}

#[test]
fn an_impostor_on_path_is_not_trusted_the_release_binary_on_path_is() {
    let r = Runner::new();
    r.server.serve(&r.archive_name(), r.archive.clone());
    // Prints the right version string, but is not the release binary.
    let impostor = r.env.path().join("impostor");
    std::fs::create_dir_all(&impostor).unwrap();
    write_exe(
        &impostor.join("cargo-guarded"),
        &format!("#!/bin/sh\necho 'cargo-guarded {VERSION}'\n"),
    );
    let path = |dir: &Path| {
        format!(
            "{}:{}:{}",
            dir.display(),
            r.fake_bin.display(),
            std::env::var("PATH").unwrap()
        )
    };
    let (out, bin) = r.install(&[("PATH", &path(&impostor))]);
    assert_success(&out);
    assert!(Path::new(&bin).starts_with(&r.tool_cache), "{bin}");
    assert_eq!(
        r.server.requests(),
        1,
        "the impostor was not replaced by a download"
    );

    // The release binary itself on PATH (an image that preinstalled it): used as is, on a fresh
    // runner (no cache), without a download.
    let genuine = r.env.path().join("genuine");
    std::fs::create_dir_all(&genuine).unwrap();
    std::fs::copy(BIN, genuine.join("cargo-guarded")).unwrap();
    std::fs::remove_dir_all(&r.tool_cache).unwrap();
    let (out, bin) = r.install(&[("PATH", &path(&genuine))]);
    assert_success(&out);
    assert_eq!(bin, genuine.join("cargo-guarded").display().to_string());
    assert!(stdout(&out).contains("from PATH"), "{}", describe(&out));
    assert_eq!(r.server.requests(), 1);
}

#[test]
fn a_cached_binary_that_no_longer_matches_is_replaced() {
    let r = Runner::new();
    r.server.serve(&r.archive_name(), r.archive.clone());
    let (out, bin) = r.install(&[]);
    assert_success(&out);
    // Someone overwrites the cached copy.
    std::fs::write(&bin, "#!/bin/sh\necho 'cargo-guarded 0.1.0'\n").unwrap();
    let (out, bin2) = r.install(&[]);
    assert_success(&out);
    assert_eq!(bin2, bin);
    assert_eq!(r.server.requests(), 2, "{}", describe(&out));
    assert_eq!(version_of(&bin), format!("cargo-guarded {VERSION}"));
    assert_ne!(
        std::fs::read(&bin).unwrap().len(),
        "#!/bin/sh\necho 'cargo-guarded 0.1.0'\n".len()
    );
}

/// A binary built from source and cached on the runner is reused only if it still
/// has the SHA-256 recorded when it was built, not merely because it prints the right version.
#[test]
fn a_cached_source_build_that_changed_since_it_was_built_is_built_again() {
    let r = Runner::new();
    let builds = |r: &Runner| {
        r.cargo_calls()
            .lines()
            .filter(|l| l.starts_with("ARGS "))
            .count()
    };
    // Nothing served: built from source, with its sum recorded beside it.
    let (out, bin) = r.install(&[]);
    assert_success(&out);
    assert_eq!(builds(&r), 1);
    let recorded = std::fs::read_to_string(format!("{bin}.sha256")).unwrap();
    assert_eq!(recorded.trim().len(), 64, "{recorded}");
    let (out, again) = r.install(&[]);
    assert_success(&out);
    assert_eq!((again.as_str(), builds(&r)), (bin.as_str(), 1));

    // An accident: the cached file gained bytes. It still runs and prints the version.
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes.extend_from_slice(b"garbage");
    std::fs::write(&bin, bytes).unwrap();
    assert_eq!(version_of(&bin), format!("cargo-guarded {VERSION}"));
    let (out, again) = r.install(&[]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("does not match the SHA-256 recorded when it was built"),
        "{}",
        describe(&out)
    );
    assert_eq!((again.as_str(), builds(&r)), (bin.as_str(), 2));
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(BIN).unwrap(),
        "not rebuilt"
    );
}

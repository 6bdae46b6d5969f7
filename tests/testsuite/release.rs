//! The release packaging: scripts/package-release.sh's archive (contents, checksum, reproducible
//! bytes), scripts/update-checksums.sh (verifies before recording, replaces a version's lines),
//! and the release workflow's and binstall's agreement with the archive names.

use crate::common::release;

use std::path::Path;
use std::process::Command;

use crate::common::*;
use release::*;

fn tar_list(archive: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tzvf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn archive_holds_the_binary_licences_readme_changelog_and_its_checksum_verifies() {
    let env = Env::new();
    let target = "x86_64-unknown-linux-gnu";
    let dist = env.path().join("dist");
    let archive = package(target, Path::new(BIN), &dist);
    let stem = stem(target);
    let list = tar_list(&archive);
    let names: Vec<&str> = list
        .iter()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    let mut expected: Vec<String> = [
        "",
        "CHANGELOG.md",
        "LICENSE-APACHE",
        "LICENSE-MIT",
        "README.md",
        "cargo-guarded",
    ]
    .iter()
    .map(|f| format!("{stem}/{f}"))
    .collect();
    expected.sort();
    let mut got: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    got.sort();
    assert_eq!(got, expected, "{list:?}");
    // No owner names leak from the build machine; the binary is executable.
    assert!(list.iter().all(|l| l.contains(" 0/0 ")), "{list:?}");
    let bin_line = list.iter().find(|l| l.ends_with("/cargo-guarded")).unwrap();
    assert!(bin_line.starts_with("-rwxr-xr-x"), "{bin_line}");

    let check = Command::new("sha256sum")
        .args(["--check", &format!("{stem}.tar.gz.sha256")])
        .current_dir(&dist)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", describe(&check));

    // The binary in the archive is the one packaged, and runs.
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(env.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let unpacked = env.path().join(&stem).join("cargo-guarded");
    assert_eq!(
        std::fs::read(&unpacked).unwrap(),
        std::fs::read(BIN).unwrap()
    );
    let version = Command::new(&unpacked)
        .args(["guarded", "--version"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("cargo-guarded {VERSION}")
    );

    // Packaging the same binary again gives the same bytes (sorted, fixed owner and mtime).
    let again = package(target, Path::new(BIN), &env.path().join("again"));
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&archive).unwrap()
    );
}

#[test]
fn update_checksums_verifies_archives_and_replaces_a_versions_lines() {
    let env = Env::new();
    let dist = env.path().join("dist");
    let target = host_release_target();
    let archive = package(&target, Path::new(BIN), &dist);
    let checksums = env.path().join("checksums.txt");
    let stale = format!("{}  {}.tar.gz\n", "0".repeat(64), stem(&target));
    let other = format!("{}  cargo-guarded-v0.0.9-{target}.tar.gz\n", "1".repeat(64));
    std::fs::write(&checksums, format!("# header\n{stale}{other}")).unwrap();
    update_checksums(&dist, &checksums);
    let text = std::fs::read_to_string(&checksums).unwrap();
    let sha = |p: &Path| {
        let out = Command::new("sha256sum").arg(p).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    assert!(text.starts_with("# header\n"), "{text}");
    assert!(!text.contains(&stale), "the stale line stayed:\n{text}");
    assert!(
        text.contains(&other),
        "another release's line was lost:\n{text}"
    );
    assert!(
        text.contains(&format!("{}  {}.tar.gz\n", sha(&archive), stem(&target))),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}  {}/cargo-guarded\n",
            sha(Path::new(BIN)),
            stem(&target)
        )),
        "{text}"
    );

    // An archive that does not match its .sha256 is refused, and nothing is written.
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let out = Command::new("bash")
        .arg(Path::new(SOURCE).join("scripts/update-checksums.sh"))
        .arg(&dist)
        .env("CHECKSUMS", &checksums)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("does not match"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read_to_string(&checksums).unwrap(), text);
}

#[test]
fn release_workflow_builds_the_four_targets_with_pinned_actions_and_binstall_agrees() {
    let workflow =
        std::fs::read_to_string(Path::new(SOURCE).join(".github/workflows/release.yml")).unwrap();
    for target in [
        "x86_64-unknown-linux-gnu",
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-gnu",
        "aarch64-unknown-linux-musl",
    ] {
        assert!(
            workflow.contains(&format!("target: {target},")),
            "{target} is not built"
        );
    }
    assert!(workflow.contains("scripts/package-release.sh \"$TARGET\""));
    assert!(workflow.contains("cargo publish --locked"));
    assert!(workflow.contains("scripts/update-checksums.sh"));
    for line in workflow.lines().filter(|l| l.contains("uses:")) {
        let reference = line.split('@').nth(1).unwrap_or("");
        let sha: String = reference
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        assert!(
            sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "not pinned by a full commit SHA: {line}"
        );
    }
    // binstall's URL and path name the archives package-release.sh writes.
    let manifest = std::fs::read_to_string(Path::new(SOURCE).join("Cargo.toml")).unwrap();
    assert!(manifest.contains(
        r#"pkg-url = "{ repo }/releases/download/v{ version }/{ name }-v{ version }-{ target }{ archive-suffix }""#
    ));
    assert!(
        manifest.contains(r#"bin-dir = "{ name }-v{ version }-{ target }/{ bin }{ binary-ext }""#)
    );
    assert!(manifest.contains(r#"pkg-fmt = "tgz""#));
    assert!(manifest.contains(r#"repository = "https://github.com/cargo-guarded/cargo-guarded""#));
}

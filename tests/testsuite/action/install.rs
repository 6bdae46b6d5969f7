//! action/install.sh: PATH, then the runner's tool cache, then the Actions cache of a source build, then a source build.

use super::*;

#[test]
fn install_prefers_path_then_the_runner_cache_then_cargo_install() {
    let mut job = Job::new();
    // An older cargo-guarded on PATH, and a cargo that records what it is asked to do and
    // "installs" by linking the built binary into the requested root.
    let fake = job.env.path().join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let log = job.env.path().join("cargo.log");
    std::fs::write(
        fake.join("cargo-guarded"),
        "#!/bin/sh\necho 'cargo-guarded 0.0.1'\n",
    )
    .unwrap();
    let fake_cargo = r#"#!/bin/sh
printf '%s\n' "$*" >> 'LOG'
while [ $# -gt 0 ]; do
  if [ "$1" = --root ]; then mkdir -p "$2/bin" && ln -s 'BIN' "$2/bin/cargo-guarded"; fi
  shift
done
"#;
    std::fs::write(
        fake.join("cargo"),
        fake_cargo
            .replace("LOG", &log.display().to_string())
            .replace("BIN", BIN),
    )
    .unwrap();
    for f in ["cargo-guarded", "cargo"] {
        let p = fake.join(f);
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).unwrap();
    }
    std::fs::remove_file(job.bin_dir.join("cargo-guarded")).unwrap();
    std::os::unix::fs::symlink(
        fake.join("cargo-guarded"),
        job.bin_dir.join("cargo-guarded"),
    )
    .unwrap();
    std::os::unix::fs::symlink(fake.join("cargo"), job.bin_dir.join("cargo")).unwrap();

    let run_install = |job: &mut Job| {
        let step = job.step();
        let mut cmd = job.command("bash", &job.ws, &step);
        cmd.arg(Path::new(SOURCE).join("action/install.sh"));
        let out = output(&mut cmd);
        assert_success(&out);
        let bin = step.outputs()["bin"].clone();
        let path = std::fs::read_to_string(&step.path_file).unwrap();
        (out, bin, path)
    };

    let (_, bin, path) = run_install(&mut job);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.lines().count(), 1, "{calls}");
    assert!(
        calls.starts_with(&format!(
            "install --locked --features store --path {SOURCE} --root "
        )),
        "{calls}"
    );
    let cache = job.tool_cache.join("cargo-guarded");
    assert!(
        Path::new(&bin).starts_with(&cache),
        "{bin} is not in the tool cache"
    );
    assert!(
        bin.contains(&format!("/{VERSION}-")),
        "keyed by version: {bin}"
    );
    assert_eq!(
        path.trim(),
        Path::new(&bin).parent().unwrap().display().to_string()
    );
    let version = Command::new(&bin).args(["guarded", "--version"]).output();
    assert_eq!(
        String::from_utf8_lossy(&version.unwrap().stdout).trim(),
        format!("cargo-guarded {VERSION}")
    );

    // The next job on this runner finds it in the cache: no second install.
    let (out, bin2, _) = run_install(&mut job);
    assert_eq!(bin2, bin);
    assert!(
        stdout(&out).contains("cached on this runner"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
}

/// What the action's install steps did on one runner.
struct InstallSteps {
    /// Each step's outputs by id, for the steps that ran.
    outputs: HashMap<String, HashMap<String, String>>,
    /// The ids of the steps that ran, in order.
    ran: Vec<String>,
    install: Output,
}

impl Job {
    /// The action's install steps (`plan`, `restore`, `install`, `save`) as the runner runs them,
    /// each only when its `if:` holds, on a fresh runner (an empty tool cache), with the event's
    /// variables. `service` stands in for the repository's Actions cache: a dir per key, which
    /// `restore` copies to the entry's path and `save` fills from it (once per key, as the
    /// service keeps the first entry saved under a key).
    fn install_steps(&mut self, event: &[(&str, &str)], service: &Path) -> InstallSteps {
        let manifest = Manifest::load();
        self.tool_cache = self.env.path().join(format!("tool-cache-{}", self.steps));
        std::fs::create_dir_all(&self.tool_cache).unwrap();
        let mut outputs: HashMap<String, HashMap<String, String>> = HashMap::new();
        let mut ran = Vec::new();
        let mut install = None;
        for step in &manifest.steps {
            if step.id == "run" || !step_runs(step, &outputs) {
                continue;
            }
            ran.push(step.id.clone());
            let mut out = HashMap::new();
            let entry = |outputs: &HashMap<String, HashMap<String, String>>| {
                let plan = &outputs["plan"];
                (
                    service.join(&plan["cache-key"]),
                    PathBuf::from(&plan["cache-path"]),
                )
            };
            match step.id.as_str() {
                "plan" | "install" => {
                    let s = self.step();
                    let mut cmd = self.command("bash", &self.ws, &s);
                    cmd.arg(Path::new(SOURCE).join("action/install.sh"))
                        .args((step.id == "plan").then_some("plan"))
                        .envs(event.iter().copied());
                    let o = output(&mut cmd);
                    assert_success(&o);
                    out = s.outputs();
                    if step.id == "install" {
                        install = Some(o);
                    }
                }
                "restore" => {
                    let (saved, path) = entry(&outputs);
                    let hit = saved.exists();
                    if hit {
                        std::fs::create_dir_all(&path).unwrap();
                        copy_tree(&saved, &path);
                    }
                    out.insert("cache-hit".to_owned(), hit.to_string());
                }
                "save" => {
                    let (saved, path) = entry(&outputs);
                    if !saved.exists() {
                        std::fs::create_dir_all(&saved).unwrap();
                        copy_tree(&path, &saved);
                    }
                }
                other => panic!("action.yml has a step this test does not know: {other}"),
            }
            outputs.insert(step.id.clone(), out);
        }
        InstallSteps {
            outputs,
            ran,
            install: install.expect("the install step ran"),
        }
    }
}

/// `cp -a FROM/. TO`: a dir's content, modes and times kept, as the cache's tar keeps them.
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// A `cargo` on the job's PATH that logs each call and "installs" by copying the built binary
/// into `--root DIR`'s `bin/` (what `cargo install --path` leaves there); returns the log.
fn fake_cargo_install(job: &Job) -> PathBuf {
    let log = job.env.path().join("cargo.log");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = --root ]; then mkdir -p \"$2/bin\" && cp '{BIN}' \"$2/bin/cargo-guarded\"; fi\n  shift\ndone\n",
        log.display()
    );
    let cargo = job.bin_dir.join("cargo");
    std::fs::write(&cargo, script).unwrap();
    let mut perm = std::fs::metadata(&cargo).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&cargo, perm).unwrap();
    log
}

fn builds(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("install "))
        .count()
}

/// The cache steps are actions/cache's restore and save, pinned by full commit.
#[test]
fn the_cache_steps_are_actions_cache_pinned_by_commit() {
    let m = Manifest::load();
    let ids: Vec<&str> = m.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["plan", "restore", "install", "save", "run"]);
    for (id, action) in [("restore", "restore"), ("save", "save")] {
        let uses = m.step(id).uses.as_deref().unwrap_or_default();
        let (name, rest) = uses.split_once('@').unwrap_or_default();
        assert_eq!(name, format!("actions/cache/{action}"), "{uses}");
        let (sha, tag) = rest.split_once(" # ").unwrap_or_default();
        assert!(
            sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
            "`{id}` is not pinned by a full commit SHA: {uses}"
        );
        assert!(tag.starts_with("v4."), "{uses}");
    }
    assert!(
        m.text
            .contains("EVENT_DEFAULT_BRANCH: ${{ github.event.repository.default_branch }}"),
        "the plan step reads the default branch from the event"
    );
}

/// Until a release exists the binary is built from source, once: a run of the default branch
/// saves the build to the Actions cache, and every later runner, a pull request's included,
/// restores it instead of compiling. A pull request's run, even `pull_request_target` (which
/// runs with the base branch's ref), and a push to another branch never save.
#[test]
fn a_source_build_is_saved_by_the_default_branch_and_restored_by_later_runners() {
    let mut job = Job::new();
    // No release binary: an empty checksum list, as in an unreleased commit.
    std::fs::write(job.env.path().join("checksums.txt"), "").unwrap();
    let log = fake_cargo_install(&job);
    let service = job.env.path().join("cache-service");
    std::fs::create_dir_all(&service).unwrap();
    let pr = [
        ("GITHUB_EVENT_NAME", "pull_request"),
        ("GITHUB_REF", "refs/pull/7/merge"),
        ("EVENT_DEFAULT_BRANCH", "main"),
    ];
    let pr_target = [
        ("GITHUB_EVENT_NAME", "pull_request_target"),
        ("GITHUB_REF", "refs/heads/main"),
        ("EVENT_DEFAULT_BRANCH", "main"),
    ];
    let branch = [
        ("GITHUB_EVENT_NAME", "push"),
        ("GITHUB_REF", "refs/heads/feature"),
        ("EVENT_DEFAULT_BRANCH", "main"),
    ];
    let main = [
        ("GITHUB_EVENT_NAME", "push"),
        ("GITHUB_REF", "refs/heads/main"),
        ("EVENT_DEFAULT_BRANCH", "main"),
    ];

    // Nothing cached yet: each of these restores (a miss), builds, and does not save.
    for (n, event) in [&pr[..], &pr_target, &branch].into_iter().enumerate() {
        let run = job.install_steps(event, &service);
        assert_eq!(run.ran, ["plan", "restore", "install"], "{event:?}");
        assert_eq!(run.outputs["plan"]["cache-save"], "false", "{event:?}");
        assert_eq!(run.outputs["install"]["built"], "true", "{event:?}");
        assert_eq!(builds(&log), n + 1);
        assert_eq!(std::fs::read_dir(&service).unwrap().count(), 0, "{event:?}");
    }

    // The default branch's run builds and saves.
    let run = job.install_steps(&main, &service);
    assert_eq!(run.ran, ["plan", "restore", "install", "save"]);
    assert_eq!(builds(&log), 4);
    let key = &run.outputs["plan"]["cache-key"];
    assert!(
        key.starts_with(&format!("cargo-guarded-{VERSION}-")) && key.contains("-rustc-"),
        "{key}"
    );
    let saved = service.join(key).join("bin");
    assert!(saved.join("cargo-guarded").is_file(), "{key}");
    assert!(saved.join("cargo-guarded.sha256").is_file(), "{key}");

    // A pull request's run on a fresh runner restores it: no build, nothing saved.
    let run = job.install_steps(&pr, &service);
    assert_eq!(run.ran, ["plan", "restore", "install"]);
    assert_eq!(run.outputs["restore"]["cache-hit"], "true");
    assert_eq!(builds(&log), 4, "{}", describe(&run.install));
    assert!(!run.outputs["install"].contains_key("built"));
    let bin = &run.outputs["install"]["bin"];
    assert_eq!(
        Path::new(bin),
        Path::new(&run.outputs["plan"]["cache-path"]).join("bin/cargo-guarded")
    );
    assert!(
        stdout(&run.install).contains("restored from the Actions cache"),
        "{}",
        describe(&run.install)
    );
    let version = Command::new(bin).args(["guarded", "--version"]).output();
    assert_eq!(
        String::from_utf8_lossy(&version.unwrap().stdout).trim(),
        format!("cargo-guarded {VERSION}")
    );

    // The default branch's next run restores too, and saves nothing (it built nothing).
    let run = job.install_steps(&main, &service);
    assert_eq!(run.ran, ["plan", "restore", "install"]);
    assert_eq!(builds(&log), 4);
}

/// A restored entry whose binary no longer matches the SHA-256 recorded beside it (a truncated
/// download, a disk error) is built again, never run.
#[test]
fn a_restored_build_that_fails_its_recorded_sum_is_built_again() {
    let mut job = Job::new();
    std::fs::write(job.env.path().join("checksums.txt"), "").unwrap();
    let log = fake_cargo_install(&job);
    let service = job.env.path().join("cache-service");
    std::fs::create_dir_all(&service).unwrap();
    let main = [
        ("GITHUB_EVENT_NAME", "push"),
        ("GITHUB_REF", "refs/heads/main"),
        ("EVENT_DEFAULT_BRANCH", "main"),
    ];
    let run = job.install_steps(&main, &service);
    let saved = service.join(&run.outputs["plan"]["cache-key"]);
    let bin = saved.join("bin/cargo-guarded");
    let len = std::fs::metadata(&bin).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bin)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let run = job.install_steps(&main, &service);
    assert_eq!(run.outputs["restore"]["cache-hit"], "true");
    assert_eq!(builds(&log), 2, "{}", describe(&run.install));
    assert!(
        stdout(&run.install).contains("does not match the SHA-256 recorded"),
        "{}",
        describe(&run.install)
    );
}

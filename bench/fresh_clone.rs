//! Warm starts on fresh clones (freshness by content, docs/protocol.md#warm-starts-from-elsewhere).
//!
//! Every runner builds from its own fresh clone (a copy of the source tree, so every mtime is
//! new) at the same path (as ARC pods check out), under CI (`CI=true`: verified checkout files
//! get their recorded mtimes back) and one shared `CARGO_GUARDED_ROOT`. Job A builds cold
//! (`build`, then `test --no-run`, `--linger 0s`); its finished dir is kept aside (`cp -a`) and
//! put back before each row, and job B starts from it (adopted) in a new fresh clone. Printed, on
//! a generated workspace and on ripgrep 15.1.0 (from `RIPGREP_GIT`, default the local mirror):
//!
//! - units compiled and wall time of B's `build` against A's cold build (goal: <= 0.1x on
//!   ripgrep, 0 units on the generated workspace); the same with every path unit made stale (A's
//!   `inputs.json` deleted: the safe fallback) and with `--restore-mtimes 0` (verified, but no
//!   mtimes given back);
//! - B's `test --no-run` against A's cold `build` + `test --no-run`;
//! - B at another checkout path: which units it compiles, and the `Stale` lines saying why;
//! - the next commit (`BENCH_NEXT`, default the first commit after 15.1.0; on the generated
//!   workspace, one crate's source edited): B in a fresh clone of it, against A's own checkout
//!   moved to it and built again in A's dir (a same-checkout incremental build);
//! - the digest cost: a no-op `build` resuming A's dir with `inputs.json` present (the stat
//!   cache) and with it deleted (every input read again, as the first recording after a cold
//!   build), and B's verified warm start, against a plain `cargo build` no-op of the same target
//!   dir (interleaved, `BENCH_RUNS` rounds).
//!
//! Scale: `BENCH_CRATES` (16 path crates; 0 skips the generated workspace), `BENCH_RUNS` (5).
//! `CARGO_GUARDED_BENCH_SMOKE=1`: the generated workspace at a tiny scale, one round; ripgrep
//! only when `RIPGREP_GIT` is set. A missing ripgrep repository is a clean skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const DEFAULT_GIT: &str = "/work/.mirror/BurntSushi+ripgrep/repo";

/// One project: its tree at the base revision and at the next one, both pristine.
struct Project {
    name: String,
    base: PathBuf,
    next: PathBuf,
    /// What moves between the two, for the printout.
    next_is: String,
    /// Goals: B's wall time against A's cold build; B's units on the same commit.
    time_goal: Option<f64>,
    unit_goal: Option<usize>,
}

/// Where one project's jobs run.
struct Site {
    root: PathBuf,
    logs: PathBuf,
    /// The checkout path every runner uses.
    ws: PathBuf,
    /// Another checkout path.
    other: PathBuf,
    /// A's own checkout, kept aside while B's clones take its path.
    a_ws: PathBuf,
    /// A's finished dir, kept aside.
    snap: PathBuf,
    repo: String,
}

/// What one job's command did.
struct Outcome {
    wall: Duration,
    compiled: Vec<String>,
    fresh: usize,
    origin: &'static str,
    verified: Option<String>,
    stale: Vec<String>,
}

fn lines_after<'a>(stderr: &'a str, verb: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    stderr
        .lines()
        .filter_map(move |l| l.trim_start().strip_prefix(verb)?.strip_prefix(' '))
}

impl Outcome {
    fn of(run: &Run) -> Outcome {
        let has = |verb: &str| lines_after(&run.stderr, verb).next().is_some();
        Outcome {
            wall: run.wall,
            // `foo v0.1.0 (/path)` → `foo v0.1.0`.
            compiled: lines_after(&run.stderr, "Compiling")
                .map(|l| l.split(" (").next().unwrap_or(l).to_owned())
                .collect(),
            fresh: lines_after(&run.stderr, "Fresh").count(),
            origin: if has("Seeded") {
                "seeded"
            } else if has("Adopted") {
                "adopted"
            } else if lines_after(&run.stderr, "Using").any(|l| l.ends_with("(resumed)")) {
                "resumed"
            } else {
                "fresh"
            },
            verified: lines_after(&run.stderr, "Verified")
                .next()
                .map(str::to_owned),
            stale: lines_after(&run.stderr, "Stale")
                .map(str::to_owned)
                .collect(),
        }
    }

    fn units(&self) -> String {
        format!(
            "{} compiled, {} fresh ({})",
            self.compiled.len(),
            self.fresh,
            self.origin
        )
    }
}

impl Site {
    /// `cargo guarded -v --job-id ID <args> -v` in `cwd`, as a CI runner runs it.
    fn job(&self, cwd: &Path, id: &str, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut c = guarded(&self.root, cwd, ["-v", "--job-id", id]);
        c.args(args)
            .arg("-v")
            .env("CI", "true")
            .env("GITHUB_REPOSITORY", &self.repo)
            .env("RUNNER_NAME", format!("arc-{id}"))
            .env("CARGO_GUARDED_LINGER", "0s")
            // Adoption, so that B's time is verification and cargo; the seeded row sets it.
            .env("CARGO_GUARDED_SEED", "0")
            .env("CARGO_GUARDED_MIN_FREE", "0");
        for (k, v) in env {
            c.env(k, v);
        }
        Outcome::of(&timed(&mut c, &self.logs))
    }

    /// Put A's finished dir back as the root's only job dir.
    fn restore_a(&self) {
        for name in job_dirs(&self.root) {
            std::fs::remove_dir_all(self.root.join(name)).unwrap();
        }
        cp_a(&self.snap, &self.root.join("a"));
    }

    /// A's dir put back, and a fresh clone of `tree` at `at`.
    fn prepare_b(&self, tree: &Path, at: &Path) {
        self.restore_a();
        fresh_clone(tree, at);
    }
}

fn cp_a(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(from)
        .arg(to)
        .status()
        .expect("failed to run cp");
    assert!(
        ok.success(),
        "cp -a {} {} failed",
        from.display(),
        to.display()
    );
}

/// A fresh clone: the tree copied anew (every mtime new) at `at`.
fn fresh_clone(tree: &Path, at: &Path) {
    let _ = std::fs::remove_dir_all(at);
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    // `cp -R` (not `-a`): new mtimes, symlinks kept as symlinks (ripgrep has some).
    let ok = Command::new("cp")
        .arg("-R")
        .arg(tree)
        .arg(at)
        .status()
        .expect("failed to run cp");
    assert!(
        ok.success(),
        "cp -R {} {} failed",
        tree.display(),
        at.display()
    );
}

/// Move the checkout `ws` from tree `from` to tree `to` as `git checkout` does: only the files
/// whose content differs are written, files gone are removed.
fn advance(ws: &Path, to: &Path) {
    for rel in files(to, Path::new("")) {
        let new = std::fs::read(to.join(&rel)).unwrap();
        if std::fs::read(ws.join(&rel)).ok().as_deref() != Some(&new[..]) {
            std::fs::create_dir_all(ws.join(&rel).parent().unwrap()).unwrap();
            std::fs::write(ws.join(&rel), new).unwrap();
        }
    }
    for rel in files(ws, Path::new("")) {
        if !to.join(&rel).exists() {
            std::fs::remove_file(ws.join(rel)).unwrap();
        }
    }
}

/// Every file under `dir` (relative), `target/` left out.
fn files(dir: &Path, rel: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join(rel)).unwrap().flatten() {
        let r = rel.join(e.file_name());
        let kind = e.file_type().unwrap();
        if kind.is_dir() {
            if e.file_name() != "target" {
                out.extend(files(dir, &r));
            }
        } else if !kind.is_symlink() {
            out.push(r);
        }
    }
    out
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn row(what: &str, o: &Outcome, cold: Duration, goal: Option<f64>) {
    let ratio = o.wall.as_secs_f64() / cold.as_secs_f64();
    let goal = goal
        .map(|g| format!("   goal <= {g:.2}: {}", verdict(ratio <= g)))
        .unwrap_or_default();
    println!(
        "  {what:<46} {:>10}  {ratio:>6.3}x cold   {}{goal}",
        ms(o.wall),
        o.units()
    );
    if let Some(v) = &o.verified {
        println!("      Verified {v}");
    }
}

/// One project's scenario, in the order it mutates the root (each row puts A's dir back).
fn run_project(p: &Project, base: &Path, rounds: usize) {
    let dir = base.join(&p.name);
    let site = Site {
        root: dir.join("root"),
        logs: dir.join("logs"),
        ws: dir.join("runner/_work/ws"),
        other: dir.join("elsewhere/checkout/ws"),
        a_ws: dir.join("a-checkout"),
        snap: dir.join("a-dir"),
        repo: format!("acme/{}", p.name),
    };
    println!("{}: next = {}", p.name, p.next_is);

    // Job A: cold, in its fresh clone.
    fresh_clone(&p.base, &site.ws);
    let cold = site.job(&site.ws, "a", &["build"], &[]);
    let cold_test = site.job(&site.ws, "a", &["test", "--no-run"], &[]);
    assert!(
        site.root.join("a").join("inputs.json").exists(),
        "A's release recorded no inputs.json"
    );
    cp_a(&site.root.join("a"), &site.snap);
    std::fs::rename(&site.ws, &site.a_ws).unwrap();
    println!(
        "  {:<46} {:>10}  {}",
        "A: cold build",
        ms(cold.wall),
        cold.units()
    );
    println!(
        "  {:<46} {:>10}  {}",
        "A: then test --no-run",
        ms(cold_test.wall),
        cold_test.units()
    );

    // B on the same commit, at the same path.
    site.prepare_b(&p.base, &site.ws);
    let b = site.job(&site.ws, "b", &["build"], &[]);
    assert_eq!(b.origin, "adopted", "B did not adopt A's dir");
    row("B: build, verified", &b, cold.wall, p.time_goal);
    site.prepare_b(&p.base, &site.ws);
    let seeded = site.job(&site.ws, "b", &["build"], &[("CARGO_GUARDED_SEED", "1")]);
    row(
        "B: build, verified, seeded (a copy)",
        &seeded,
        cold.wall,
        None,
    );
    if let Some(g) = p.unit_goal {
        println!(
            "  {:<46} {} units   goal <= {g}: {}",
            "B: units compiled",
            b.compiled.len(),
            verdict(b.compiled.len() <= g)
        );
    }
    if !b.compiled.is_empty() {
        println!("      compiled: {}", b.compiled.join(", "));
    }
    site.prepare_b(&p.base, &site.ws);
    std::fs::remove_file(site.root.join("a/inputs.json")).unwrap();
    let stale = site.job(&site.ws, "b", &["build"], &[]);
    row(
        "B: build, every path unit stale (no record)",
        &stale,
        cold.wall,
        None,
    );
    site.prepare_b(&p.base, &site.ws);
    let no_mtimes = site.job(
        &site.ws,
        "b",
        &["build"],
        &[("CARGO_GUARDED_RESTORE_MTIMES", "0")],
    );
    row("B: build, --restore-mtimes 0", &no_mtimes, cold.wall, None);
    site.prepare_b(&p.base, &site.ws);
    let test = site.job(&site.ws, "b", &["test", "--no-run"], &[]);
    row(
        "B: test --no-run (against A's build + test)",
        &test,
        cold.wall + cold_test.wall,
        None,
    );

    other_path(&site, p, cold.wall);
    next_commit(&site, p, cold.wall);
    digest_cost(&site, p, rounds);
    let _ = std::fs::remove_dir_all(&dir);
}

/// B at another checkout path: which units it compiles, and why.
fn other_path(site: &Site, p: &Project, cold: Duration) {
    site.prepare_b(&p.base, &site.other);
    let other = site.job(&site.other, "b", &["build"], &[]);
    row("B: build at another checkout path", &other, cold, None);
    println!(
        "      compiled: {}",
        if other.compiled.is_empty() {
            "nothing".to_owned()
        } else {
            other.compiled.join(", ")
        }
    );
    for s in &other.stale {
        println!("      Stale {s}");
    }
    let _ = std::fs::remove_dir_all(&site.other);
}

/// The next commit: B in a fresh clone of it, against A's own checkout moved to it and built
/// again in A's dir. Leaves A's checkout at `site.ws`, at the next commit, and A's dir built.
fn next_commit(site: &Site, p: &Project, cold: Duration) {
    site.prepare_b(&p.next, &site.ws);
    let next = site.job(&site.ws, "b", &["build"], &[]);
    site.restore_a();
    std::fs::remove_dir_all(&site.ws).unwrap();
    std::fs::rename(&site.a_ws, &site.ws).unwrap();
    advance(&site.ws, &p.next);
    let inc = site.job(&site.ws, "a", &["build"], &[]);
    assert_eq!(inc.origin, "resumed", "A did not resume its own dir");
    row("next: B, fresh clone, from A's dir", &next, cold, None);
    row("next: A, same checkout, incremental", &inc, cold, None);
    println!(
        "  {:<46} {} against {}   goal <=: {}",
        "next: units compiled, B against A",
        next.compiled.len(),
        inc.compiled.len(),
        verdict(next.compiled.len() <= inc.compiled.len())
    );
    if next.compiled != inc.compiled {
        println!("      B compiled: {}", next.compiled.join(", "));
        println!("      A compiled: {}", inc.compiled.join(", "));
    }
}

/// No-op builds of A's dir (now at the next commit, in A's own checkout): plain cargo, resumed
/// with the stat cache, resumed with every input read again; and B's verified warm start from
/// A's cold-built dir in a fresh clone of the base tree.
fn digest_cost(site: &Site, p: &Project, rounds: usize) {
    let a_dir = site.root.join("a");
    cp_a(&a_dir, &site.snap.with_extension("next"));
    let a_snap = site.snap.with_extension("next");
    let recorded = recorded_files(&a_dir.join("inputs.json"));
    let mut plain = |_: usize| {
        let mut c = cmd("cargo", &site.ws);
        c.args(["build", "--target-dir"]).arg(a_dir.join("target"));
        let run = timed(&mut c, &site.logs);
        assert!(!run.compiled(), "the plain no-op build compiled");
        run.wall
    };
    let mut cached = |_: usize| {
        let o = site.job(&site.ws, "a", &["build"], &[]);
        assert!(o.compiled.is_empty(), "the no-op resume compiled");
        o.wall
    };
    let mut full = |_: usize| {
        // The record without its digests (every input read again, as at the first release
        // after a cold build); without the record the dir would be one built elsewhere.
        forget_digests(&a_dir.join("inputs.json"));
        let o = site.job(&site.ws, "a", &["build"], &[]);
        assert!(o.compiled.is_empty(), "the no-op resume compiled");
        o.wall
    };
    let mut units_b = Vec::new();
    let mut warm = |_: usize| {
        // A's cold-built dir (its record included), B in a fresh clone of the same tree: the
        // same-commit warm start, repeated (the next commit's may compile something).
        site.restore_a();
        // At the same path: A's checkout aside while B's fresh clone takes it.
        std::fs::rename(&site.ws, &site.a_ws).unwrap();
        fresh_clone(&p.base, &site.ws);
        let o = site.job(&site.ws, "b", &["build"], &[]);
        units_b.push(o.compiled.len());
        std::fs::remove_dir_all(&site.ws).unwrap();
        std::fs::rename(&site.a_ws, &site.ws).unwrap();
        // B's dir back as A's, for the resumed variants.
        for name in job_dirs(&site.root) {
            std::fs::remove_dir_all(site.root.join(name)).unwrap();
        }
        cp_a(&a_snap, &a_dir);
        o.wall
    };
    let t = interleaved(
        rounds,
        &mut [
            ("plain", &mut plain),
            ("cached", &mut cached),
            ("full", &mut full),
            ("warm", &mut warm),
        ],
    );
    println!("  digest cost (no-op builds, {rounds} rounds; A's record holds {recorded} files):");
    println!("{}", summary("cargo build (plain, same target dir)", &t[0]));
    println!(
        "{}",
        summary("resume, inputs.json unchanged (stat cache)", &t[1])
    );
    println!("{}", summary("resume, digests forgotten (all read)", &t[2]));
    println!("{}", summary("B: warm start, verified, fresh clone", &t[3]));
    ratio_line("resume (stat cache) / plain", &t[1], &t[0], None);
    ratio_line("resume (all read) / plain", &t[2], &t[0], None);
    ratio_line("B verified / plain", &t[3], &t[0], None);
    println!("      B compiled per round: {units_b:?}");
}

/// How many files a job dir's `inputs.json` records.
fn recorded_files(record: &Path) -> usize {
    let text = std::fs::read_to_string(record).expect("A's dir has an inputs.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("inputs.json is JSON");
    v["files"].as_object().map_or(0, serde_json::Map::len)
}

/// Empty the `files` map of a job dir's `inputs.json` (where it was built and its units kept).
fn forget_digests(record: &Path) {
    let text = std::fs::read_to_string(record).expect("A's dir has an inputs.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("inputs.json is JSON");
    let files = v.get_mut("files").expect("inputs.json has `files`");
    *files = serde_json::json!({});
    std::fs::write(record, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// A generated workspace of `n` path crates in the shapes `fixtures/` has: a chain of libraries,
/// a build script with `rerun-if-changed` on a data file, one with no `rerun-if-*` at all, an
/// `include_str!` of a file outside its package, an `env!("CARGO_MANIFEST_DIR")`, and a binary
/// with an integration test using `CARGO_BIN_EXE_app`. `edit` changes one crate's source.
fn generated(n: usize, dir: &Path, edit: u64) {
    let n = n.max(5);
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let members: Vec<String> = (0..n).map(|i| format!("\"c{i}\"")).collect();
    w(
        "Cargo.toml",
        &format!(
            "[workspace]\nresolver = \"2\"\nmembers = [{}, \"app\"]\n",
            members.join(", ")
        ),
    );
    w("shared/data.txt", "shared data\n");
    for i in 0..n {
        let deps: Vec<usize> = (i.saturating_sub(2)..i).collect();
        let dep_lines: String = deps
            .iter()
            .map(|j| format!("c{j} = {{ path = \"../c{j}\" }}\n"))
            .collect();
        w(
            &format!("c{i}/Cargo.toml"),
            &format!(
                "[package]\nname = \"c{i}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{dep_lines}"
            ),
        );
        let sum: String = deps.iter().map(|j| format!(" + c{j}::value()")).collect();
        let own = if i == n / 2 { edit } else { i as u64 };
        let extra = match i {
            1 => "include!(concat!(env!(\"OUT_DIR\"), \"/gen.rs\"));\n",
            2 => "pub const NO_RERUN: &str = env!(\"BUILT_BY\");\n",
            3 => "pub const SHARED: &str = include_str!(\"../../shared/data.txt\");\n",
            4 => "pub const HOME: &str = env!(\"CARGO_MANIFEST_DIR\");\n",
            _ => "",
        };
        w(
            &format!("c{i}/src/lib.rs"),
            &format!("{extra}pub fn value() -> u64 {{ {own}{sum} }}\n"),
        );
    }
    w("c1/data.txt", "pub const DATA: u64 = 7;\n");
    w(
        "c1/build.rs",
        "fn main() {\n    println!(\"cargo:rerun-if-changed=data.txt\");\n    let out = std::env::var(\"OUT_DIR\").unwrap();\n    std::fs::copy(\"data.txt\", format!(\"{out}/gen.rs\")).unwrap();\n}\n",
    );
    w(
        "c2/build.rs",
        "fn main() {\n    println!(\"cargo:rustc-env=BUILT_BY=build.rs\");\n}\n",
    );
    let last = n - 1;
    w(
        "app/Cargo.toml",
        &format!(
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nc{last} = {{ path = \"../c{last}\" }}\n"
        ),
    );
    w(
        "app/src/main.rs",
        &format!("fn main() {{ println!(\"{{}}\", c{last}::value()); }}\n"),
    );
    w(
        "app/tests/it.rs",
        "#[test]\nfn runs() {\n    let out = std::process::Command::new(env!(\"CARGO_BIN_EXE_app\")).output().unwrap();\n    assert!(out.status.success());\n}\n",
    );
}

/// ripgrep at 15.1.0 and the next commit, or why not.
fn ripgrep(base: &Path) -> Result<Project, String> {
    if smoke() && std::env::var_os("RIPGREP_GIT").is_none() {
        return Err("skipped in a smoke run: set RIPGREP_GIT to run it".into());
    }
    let repo = std::env::var("RIPGREP_GIT").unwrap_or_else(|_| DEFAULT_GIT.to_owned());
    if !Path::new(&repo).exists() {
        return Err(format!(
            "skipped: no ripgrep git dir at {repo} (set RIPGREP_GIT)"
        ));
    }
    let next = match std::env::var("BENCH_NEXT") {
        Ok(n) if !n.is_empty() => n,
        _ => {
            let out = Command::new("git")
                .arg("--git-dir")
                .arg(&repo)
                .args(["log", "--reverse", "--ancestry-path", "--format=%H"])
                .arg("15.1.0..HEAD")
                .output()
                .map_err(|e| format!("git: {e}"))?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .ok_or("skipped: no commit after 15.1.0 in the repository")?
                .to_owned()
        }
    };
    let subject = Command::new("git")
        .arg("--git-dir")
        .arg(&repo)
        .args(["log", "-1", "--format=%h %s", &next])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let trees = base.join("ripgrep-trees");
    history::checkout(&repo, "15.1.0", &trees.join("base"));
    history::checkout(&repo, &next, &trees.join("next"));
    Ok(Project {
        name: "ripgrep".into(),
        base: trees.join("base"),
        next: trees.join("next"),
        next_is: format!("15.1.0 -> {subject}"),
        time_goal: Some(0.1),
        unit_goal: None,
    })
}

fn main() {
    if !invoked_by_cargo_bench("fresh_clone") {
        return;
    }
    let tmp = tempdir("cg-bench-fresh-clone-");
    let base = tmp.path();
    let rounds = setting("BENCH_RUNS", 5, 1).max(1);
    let crates = setting("BENCH_CRATES", 16, 5);
    println!(
        "fresh_clone: each runner in its own fresh clone at one path, CI=true, one shared root"
    );
    if crates == 0 {
        println!("generated workspace: skipped (BENCH_CRATES=0)");
    } else {
        let trees = base.join("gen-trees");
        generated(crates, &trees.join("base"), 1000);
        generated(crates, &trees.join("next"), 1001);
        let gen_project = Project {
            name: format!("generated-{}", crates.max(5)),
            base: trees.join("base"),
            next: trees.join("next"),
            next_is: format!("c{}/src/lib.rs edited", crates.max(5) / 2),
            time_goal: None,
            unit_goal: Some(0),
        };
        run_project(&gen_project, base, rounds);
    }
    match ripgrep(base) {
        Ok(p) => run_project(&p, base, rounds),
        Err(why) => println!("ripgrep: {why}"),
    }
}

//! One GitHub Actions step as the runner sets it up for the binary (as tests/testsuite/action/ does):
//! `GITHUB_ACTIONS=true`, the run's variables, and fresh `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`
//! and `GITHUB_ENV` files that the test reads back after the run.

use std::path::PathBuf;
use std::process::Command;

/// The repository and run every step belongs to: the job id is
/// `gh-octo/app-7001-1-build-runner-1`.
pub const GITHUB_VARS: &[(&str, &str)] = &[
    ("GITHUB_ACTIONS", "true"),
    ("CI", "true"),
    ("GITHUB_RUN_ID", "7001"),
    ("GITHUB_RUN_ATTEMPT", "1"),
    ("GITHUB_JOB", "build"),
    ("GITHUB_REPOSITORY", "octo/app"),
    ("RUNNER_NAME", "runner-1"),
];

/// A step's files, empty until the step writes them.
pub struct GithubStep {
    pub output: PathBuf,
    pub summary: PathBuf,
    pub env_file: PathBuf,
}

impl GithubStep {
    /// Fresh files in `dir` (created).
    pub fn new(dir: PathBuf) -> GithubStep {
        std::fs::create_dir_all(&dir).unwrap();
        let touch = |name: &str| {
            let p = dir.join(name);
            std::fs::write(&p, "").unwrap();
            p
        };
        GithubStep {
            output: touch("output"),
            summary: touch("summary"),
            env_file: touch("env"),
        }
    }

    /// `cmd` as this step runs it.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.envs(GITHUB_VARS.iter().copied())
            .env("GITHUB_OUTPUT", &self.output)
            .env("GITHUB_STEP_SUMMARY", &self.summary)
            .env("GITHUB_ENV", &self.env_file)
    }

    /// The step's files as one text: each under a `--- NAME` line, as the runner reads them.
    pub fn files(&self) -> String {
        let mut text = String::new();
        for (name, path) in [
            ("GITHUB_OUTPUT", &self.output),
            ("GITHUB_ENV", &self.env_file),
            ("GITHUB_STEP_SUMMARY", &self.summary),
        ] {
            let body = std::fs::read_to_string(path).unwrap_or_default();
            text.push_str(&format!("--- {name}\n{body}"));
            if !body.is_empty() && !body.ends_with('\n') {
                text.push('\n');
            }
        }
        text
    }
}

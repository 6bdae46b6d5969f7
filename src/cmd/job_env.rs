//! The job's environment: what a child of the job is told, as a typed list of variables set or
//! removed, in order. What locates the job's dir (its target dir, job-scoped versions of every
//! dir a configuration could share, the job id, the lease's marker) is what `env` prints and
//! `hold` exports; a wrapped run's child gets it with the wrapper's colour decision, and without
//! the variables meant for this process only.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::Config;
use crate::env_file;
use crate::lease::TARGET;
use crate::process::ProcessBuilder;
use crate::term;

/// What a child needs to know of the lease it runs under.
pub(super) struct LeaseEnv {
    /// The job dir.
    pub(super) path: PathBuf,
    pub(super) job_id: String,
    /// The holder's pid, for messages.
    pub(super) pid: u32,
    /// `CARGO_GUARDED_LEASE`: `<token> <job dir>`.
    pub(super) marker: String,
}

/// `CARGO_GUARDED_LEASE` names a lease by its random token and its dir. A nested run finds it
/// inherited; it is this job's live lease only if the dir is this run's own job dir, its lease
/// is active with that token, and someone (the parent) holds its lock.
pub(super) fn marker(token: &str, path: &Path) -> String {
    format!("{token} {}", path.display())
}

/// Variables to set (`Some`) or remove (`None`) in a child's environment, in the order given.
#[derive(Debug, Default)]
pub(super) struct JobEnv(Vec<(OsString, Option<OsString>)>);

impl JobEnv {
    /// What locates the job's dir: its target dir, and job-scoped versions of every other dir a
    /// configuration could point at something shared; the job id and the lease marker. All that
    /// `env` and `hold` export.
    pub(super) fn locating(cfg: &Config, lease: &LeaseEnv, llvm_cov: bool) -> JobEnv {
        let target = lease.path.join(TARGET);
        if let Some(inherited) = &cfg.inherited_target_dir
            && *inherited != target
        {
            // Said at normal verbosity: a user who set it will look for their binaries there.
            term::status(
                "Overriding",
                format_args!(
                    "inherited CARGO_TARGET_DIR={} with the job's dir {}: the outputs land there \
                     (a shared target dir is what lets one job's cleanup break another's build)",
                    inherited.to_string_lossy(),
                    target.display()
                ),
            );
        }
        let mut env = JobEnv::default();
        env.set("CARGO_TARGET_DIR", &target);
        if cfg.build_dir_configured {
            env.set("CARGO_BUILD_BUILD_DIR", lease.path.join("build"));
        }
        if llvm_cov && cfg.llvm_cov_target_dir.is_some() {
            env.set(
                "CARGO_LLVM_COV_TARGET_DIR",
                lease.path.join("llvm-cov-target"),
            );
        }
        env.set("CARGO_GUARDED_JOB_ID", &lease.job_id)
            .set("CARGO_GUARDED_TARGET_DIR", &target)
            .set("CARGO_GUARDED_LEASE", &lease.marker);
        env
    }

    /// The child's environment for a wrapped run: what locates the job's dir, the one colour
    /// decision, and none of the test-only variables meant for this process.
    pub(super) fn for_child(cfg: &Config, lease: &LeaseEnv, llvm_cov: bool) -> JobEnv {
        let mut env = JobEnv::locating(cfg, lease, llvm_cov);
        // One colour decision for the whole log: ours (`--color`, CARGO_TERM_COLOR, NO_COLOR, tty).
        env.set("CARGO_TERM_COLOR", term::cargo_color());
        // Test-only fault points are meant for this process, not for a cargo-guarded the child runs.
        env.remove("CARGO_GUARDED_FAULT")
            .remove("CARGO_GUARDED_PAUSE")
            .remove("CARGO_GUARDED_CLOCK_OFFSET")
            .remove("CARGO_GUARDED_EXPORT_ENV");
        env
    }

    pub(super) fn set(&mut self, name: &str, value: impl AsRef<OsStr>) -> &mut Self {
        self.0.push((name.into(), Some(value.as_ref().to_owned())));
        self
    }

    pub(super) fn remove(&mut self, name: &str) -> &mut Self {
        self.0.push((name.into(), None));
        self
    }

    /// Give `pb`'s child these changes.
    pub(super) fn apply(&self, pb: &mut ProcessBuilder) {
        for (name, value) in &self.0 {
            match value {
                Some(v) => pb.env(name, v),
                None => pb.env_remove(name),
            };
        }
    }

    /// The variables set, as text.
    fn set_vars(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.0.iter().filter_map(|(name, value)| {
            let value = value.as_ref()?;
            Some((
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            ))
        })
    }

    /// `export NAME=VALUE` lines, quoted for a POSIX shell.
    pub(super) fn exports(&self) -> Result<String> {
        let mut text = String::new();
        for (name, value) in self.set_vars() {
            // A value from the environment holds no NUL, the one thing shlex cannot quote.
            let quoted = shlex::try_quote(&value)
                .with_context(|| format!("cannot quote the value of {name} for a shell"))?;
            text += &format!("export {name}={quoted}\n");
        }
        Ok(text)
    }

    /// `NAME=VALUE` records, as a `GITHUB_ENV` file holds them (`env_file::record`).
    pub(super) fn records(&self) -> String {
        self.set_vars()
            .map(|(name, value)| env_file::record(&name, &value))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `env` prints and `hold` exports: the variables set, in order; a removal is for the
    /// child alone, and a value with a line break cannot define a second variable.
    #[test]
    fn only_what_is_set_is_printed() {
        let mut env = JobEnv::default();
        env.set("CARGO_TARGET_DIR", "/r/j/target")
            .remove("CARGO_GUARDED_FAULT")
            .set("CARGO_GUARDED_JOB_ID", "pr-7\nBASH_ENV=/x");
        let records = env.records();
        let mut lines = records.lines();
        assert_eq!(lines.next(), Some("CARGO_TARGET_DIR=/r/j/target"));
        let (name, delim) = lines.next().unwrap().split_once("<<").unwrap();
        assert_eq!(name, "CARGO_GUARDED_JOB_ID");
        assert_eq!(lines.next(), Some("pr-7"));
        assert_eq!(lines.next(), Some("BASH_ENV=/x"));
        assert_eq!(lines.next(), Some(delim));
        assert_eq!(lines.next(), None, "{records}");
        assert_eq!(
            env.exports().unwrap(),
            "export CARGO_TARGET_DIR=/r/j/target\nexport CARGO_GUARDED_JOB_ID='pr-7\nBASH_ENV=/x'\n"
        );
        let mut pb = ProcessBuilder::new("x");
        env.apply(&mut pb);
        let given: Vec<_> = pb
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.is_some()))
            .collect();
        assert_eq!(
            given,
            [
                ("CARGO_TARGET_DIR".into(), true),
                ("CARGO_GUARDED_FAULT".into(), false),
                ("CARGO_GUARDED_JOB_ID".into(), true)
            ]
        );
    }
}

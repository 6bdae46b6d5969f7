//! `cargo guarded env`: what locates the job's dir, printed for a script, under a lease taken and
//! released at once.

use anyhow::Context;

use crate::config::Config;
use crate::exit::{CliResult, Exit};
use crate::quantity::RoundDuration;
use crate::report::Reporters;
use crate::term;

use super::job::{acquire, nested};
use super::job_env::JobEnv;

/// `cargo guarded env`: take the job's lease, print what locates the job's dir, release it
/// (protected for `--linger`, so plain cargo steps that follow find the dir).
///
/// Only the variables that locate the dir are printed (`JobEnv::locating`), never the wrapper's colour
/// decision: a script's later `cargo build | tee log` must not inherit `CARGO_TERM_COLOR=always`
/// from the terminal `env` happened to run on.
///
/// The lease is released when `env` exits, so what a script runs afterwards is protected for
/// `--linger` only, and that is said on stderr (docs/protocol.md#scripts: why no holder is left
/// behind for the evaluating shell). `exec -- SCRIPT` holds the lease for the script's whole run.
///
/// A value with a line break is printed in the `NAME<<DELIMITER` form that `GITHUB_ENV`
/// understands, so `env >> "$GITHUB_ENV"` can never define a second variable.
pub(crate) fn run(cfg: &Config, shell: bool, out: &mut Reporters) -> CliResult {
    let (session, env) = match nested(cfg)? {
        Some(parent) => (None, JobEnv::locating(cfg, &parent, false)),
        None => {
            let (session, lease_env) = acquire(cfg, "env", vec!["env".into()], &|| Ok(()), out)?;
            (Some(session), JobEnv::locating(cfg, &lease_env, false))
        }
    };
    let text = if shell { env.exports()? } else { env.records() };
    // Released before printing: a reader that went away must not leave the lease active.
    if let Some(session) = session {
        let path = session.held().path.clone();
        session.finish()?;
        term::warn(format_args!(
            "the lease on {} is released now that `env` exits: what runs afterwards is \
             protected for --linger ({}) only, and once that passes a guard may delete the dir \
             under a build still running in it; to keep it protected for a whole script, run \
             the script with `cargo guarded exec -- SCRIPT` (or `exec -- \"$SHELL\"` for an \
             interactive shell)",
            path.display(),
            RoundDuration(cfg.linger)
        ));
    }
    term::out(&text).context("failed to write to stdout")?;
    Ok(Exit::SUCCESS)
}

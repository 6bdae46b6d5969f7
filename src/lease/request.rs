//! What a job asks for (`Request`) and the lease it writes from it, and how the job came by its
//! dir (`Origin`): shared by every way of acquiring one (docs/protocol.md#acquire): `acquire`
//! (resume, fresh, seed) and `adopt`.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;

use crate::locks::LockTrust;
use crate::scope::{self, JobScope};
use crate::workspace::WorkspaceKey;

use super::clock::Now;
use super::limits::PROTOCOL;
use super::notice::Notices;
use super::record::{Lease, Owner, State, deadline, heartbeat_interval};
use super::seed::{Seeded, Seeding};

/// The recorded command is for humans: capped far below `MAX_LEASE_BYTES`, so a job with a huge
/// argv still writes a lease every guard can read (and reclaim).
const MAX_COMMAND_BYTES: usize = 4 * 1024;

/// What a job asks for.
pub(crate) struct Request<'a> {
    pub(crate) job_id: &'a str,
    /// What the step runs (`Tool::name`, or `env` / `hold`), recorded in the lease.
    pub(crate) tool: &'a str,
    /// The job dir's name under the root (the sanitized job id).
    pub(crate) name: &'a str,
    pub(crate) owner: &'a Owner,
    pub(crate) ttl: Duration,
    pub(crate) command: Vec<String>,
    /// `None`: wait for another run of the same job as long as it takes.
    pub(crate) wait: Option<Duration>,
    /// Computed only when a new dir is needed (it runs `rustc -vV`).
    pub(crate) key: &'a dyn Fn() -> WorkspaceKey,
    pub(crate) adopt: bool,
    /// `None`: never seed (`--no-seed`).
    pub(crate) seed: Option<Seeding<'a>>,
    pub(crate) trust: LockTrust,
    /// `Err` once the wrapper was told to stop: waiting for the lease ends with it.
    pub(crate) interrupted: &'a dyn Fn() -> Result<()>,
    /// The job's trust scope, recorded in every lease it writes.
    pub(crate) scope: &'a JobScope,
    /// `--warm-from any`: start from any dir of the workspace, whatever scope wrote it.
    pub(crate) warm_from_any: bool,
    /// Finished dirs of the workspace the scope rule passed over (counted by the scan).
    pub(crate) passed_over: Cell<usize>,
    /// Where the protocol's warnings and notes go, from acquisition to release (the heartbeat
    /// thread's too).
    pub(crate) notices: Arc<dyn Notices>,
}

impl Request<'_> {
    pub(super) fn lease(&self, key: Option<&WorkspaceKey>, created_at: SystemTime) -> Lease {
        let now = Now::read();
        let mut lease = Lease {
            protocol: PROTOCOL,
            job_id: self.job_id.to_owned(),
            token: uuid::Uuid::new_v4().simple().to_string(),
            workspace: key.map(|k| k.workspace.clone()),
            toolchain: key.and_then(|k| k.toolchain.clone()),
            host: self.owner.host.clone(),
            boot_id: self.owner.boot_id.clone(),
            runner: self.owner.runner.clone(),
            pid: self.owner.pid,
            created_at,
            renewed_at: now.wall,
            expires_at: deadline(now.wall, self.ttl),
            heartbeat_secs: heartbeat_interval(self.ttl).as_secs().max(1),
            // Whole seconds, rounded up: `--ttl 500ms` must not record "expires at once".
            ttl_secs: self.ttl.as_secs_f64().ceil() as u64,
            state: State::Active,
            size_bytes: None,
            size_measured_at: None,
            boottime_ms: None,
            time_ns: None,
            command: cap_command(&self.command),
            origin: None,
            job_lock: None,
            scopes: Some(vec![self.scope.scope.clone()]),
            tool: Some(self.tool.to_owned()),
            together: None,
            warmth: None,
            cold: None,
        };
        now.stamp(&mut lease);
        lease
    }

    /// The scopes a lease of this job records in a dir `earlier` wrote (sticky: theirs and ours).
    pub(super) fn scopes_after(&self, earlier: Option<&Lease>) -> Option<Vec<scope::Scope>> {
        Some(scope::merged(
            earlier.and_then(|l| l.scopes.as_deref()),
            &self.scope.scope,
        ))
    }

    /// Whether this job may start from a dir with this lease (`Err`: why not).
    pub(super) fn may_warm_from(&self, lease: &Lease) -> Result<(), String> {
        if self.warm_from_any {
            return Ok(());
        }
        self.scope.allows(lease.scopes.as_deref())
    }
}

/// The command as recorded in the lease: at most `MAX_COMMAND_BYTES` of arguments, each argument
/// cut at a char boundary, then a marker saying how many were left out.
fn cap_command(command: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut used = 0;
    for (i, arg) in command.iter().enumerate() {
        let room = MAX_COMMAND_BYTES.saturating_sub(used);
        if room == 0 {
            out.push(format!("[{} more arguments elided]", command.len() - i));
            break;
        }
        if arg.len() <= room {
            out.push(arg.clone());
            used += arg.len();
        } else {
            let mut cut = room;
            while !arg.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(format!(
                "{}[… {} bytes elided]",
                &arg[..cut],
                arg.len() - cut
            ));
            used = MAX_COMMAND_BYTES;
        }
    }
    out
}

/// How the job came by its dir.
#[derive(Debug)]
pub(crate) enum Origin {
    /// Its own dir, from an earlier step of the same job.
    Resumed,
    /// A new, empty dir; `cold`: why not a seed, when a source existed (the seed was declined,
    /// discarded or failed, or the source was passed over), in words for the status line.
    Fresh { cold: Option<String> },
    /// Another job's expired dir of the same workspace, renamed to this job's name.
    Adopted {
        from: String,
        size: Option<u64>,
        last_used: SystemTime,
    },
    /// A copy of another job's finished dir of the same workspace (docs/protocol.md#seed).
    Seeded(Box<Seeded>),
    /// A fresh dir laid out from a store's manifest (docs/protocol.md#the-store).
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    Restored {
        /// The job that pushed the manifest.
        from: String,
        files: usize,
        bytes: u64,
        /// Files left out: an object of their unit did not have its digest.
        left_out: usize,
        took: Duration,
    },
}

impl Origin {
    pub(crate) const FRESH: &str = "fresh";
    pub(crate) const RESUMED: &str = "resumed";
    pub(crate) const ADOPTED: &str = "adopted";
    pub(crate) const SEEDED: &str = "seeded";
    pub(crate) const RESTORED: &str = "restored";

    /// `fresh`, `resumed`, `adopted`, `seeded` or `restored`: the word the `origin` step output, summaries
    /// and the lease's `origin` use.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Origin::Fresh { .. } => Origin::FRESH,
            Origin::Resumed => Origin::RESUMED,
            Origin::Adopted { .. } => Origin::ADOPTED,
            Origin::Seeded(_) => Origin::SEEDED,
            Origin::Restored { .. } => Origin::RESTORED,
        }
    }
}

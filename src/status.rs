//! `cargo guarded status`: the root's free space and every job dir with its lease state.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::fs::{self, Space};
use crate::lease::{self, Root, TARGET, Verdict};
use crate::locks::LockTrust;
use crate::units::{Bytes, Short};

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    pub(crate) root: String,
    pub(crate) free_bytes: u64,
    pub(crate) total_bytes: u64,
    pub(crate) leases: Vec<Entry>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Entry {
    pub(crate) job_id: String,
    /// `active` | `released` | `expired` | `unknown`
    pub(crate) state: &'static str,
    pub(crate) dir: String,
    pub(crate) target_dir: String,
    pub(crate) workspace: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) pid: Option<u32>,
    pub(crate) created_at: Option<String>,
    pub(crate) renewed_at: Option<String>,
    pub(crate) expires_at: Option<String>,
    pub(crate) size_bytes: Option<u64>,
    /// Why a dir is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

pub(crate) fn collect(root: &Root, trust: LockTrust, sizes: bool) -> Result<Status> {
    let space = Space::of(&root.path)
        .with_context(|| format!("failed to read free space of {}", root.path.display()))?;
    let now = SystemTime::now();
    let mut leases = Vec::new();
    for (name, _) in root.job_names()? {
        let dir_path = root.join(&name);
        let mut entry = Entry {
            job_id: name.to_string_lossy().into_owned(),
            state: "unknown",
            dir: dir_path.display().to_string(),
            target_dir: dir_path.join(TARGET).display().to_string(),
            workspace: None,
            host: None,
            pid: None,
            created_at: None,
            renewed_at: None,
            expires_at: None,
            size_bytes: None,
            note: None,
        };
        let lease = match root.open_job(&name) {
            Ok(dir) => lease::read(dir.as_fd()).map(|l| (l, dir)),
            Err(skip) => Err(skip.to_string()),
        };
        match lease {
            Err(why) => entry.note = Some(why),
            Ok((l, dir)) => {
                entry.state = match lease::classify(&l, now, trust) {
                    Verdict::Live { .. } => "active",
                    Verdict::Lingering { .. } => "released",
                    // A stale heartbeat but a held lock: a stopped build, still alive.
                    Verdict::Expired { .. } if dir.try_lock().is_err() => "active",
                    Verdict::Expired { .. } => "expired",
                };
                let ts = |t| humantime::format_rfc3339_seconds(t).to_string();
                entry.job_id = l.job_id.clone();
                entry.workspace = l.workspace.clone();
                entry.host = Some(l.runner.clone().unwrap_or(l.host.clone()));
                entry.pid = Some(l.pid);
                entry.created_at = Some(ts(l.created_at));
                entry.renewed_at = Some(ts(l.renewed_at));
                entry.expires_at = Some(ts(l.expires_at));
                entry.size_bytes = l.size_bytes;
            }
        }
        if sizes {
            entry.size_bytes = fs::tree_size(root.fd(), &name, None).or(entry.size_bytes);
        }
        leases.push(entry);
    }
    Ok(Status {
        root: root.path.display().to_string(),
        free_bytes: space.free,
        total_bytes: space.total,
        leases,
    })
}

/// The status of a root that does not exist yet: no job dirs, and the free space of the
/// filesystem it would be created on.
pub(crate) fn empty(root: &Path) -> Result<Status> {
    let existing = root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let space = Space::of(existing)
        .with_context(|| format!("failed to read free space of {}", existing.display()))?;
    Ok(Status {
        root: root.display().to_string(),
        free_bytes: space.free,
        total_bytes: space.total,
        leases: Vec::new(),
    })
}

/// The human-readable table. Lease strings (job id, runner, workspace) are someone else's data:
/// escaped, so a newline in one cannot start a line of its own.
pub(crate) fn render(status: &Status) -> String {
    use std::fmt::Write as _;
    let esc = crate::term::escape;
    let mut out = String::new();
    let space = Space {
        free: status.free_bytes,
        total: status.total_bytes,
    };
    let _ = writeln!(
        out,
        "root {}: {} free of {} ({}% used), {} job dir(s)",
        esc(&status.root),
        Bytes(status.free_bytes),
        Bytes(status.total_bytes),
        space.used_pct(),
        status.leases.len()
    );
    let now = SystemTime::now();
    let ago = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .map(|t| now.duration_since(t).unwrap_or_default())
    };
    let until = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
    };
    for e in &status.leases {
        let mut line = format!("  {:<9} {}", e.state, esc(&e.job_id));
        if let Some(host) = &e.host {
            let held = if e.state == "active" {
                "held by"
            } else {
                "last held by"
            };
            line += &format!("  {held} {} (pid {})", esc(host), e.pid.unwrap_or_default());
        }
        if let Some(d) = ago(&e.created_at) {
            line += &format!(", age {}", Short(d));
        }
        if let Some(d) = ago(&e.renewed_at) {
            line += &format!(", renewed {} ago", Short(d));
        }
        if e.state == "released"
            && let Some(d) = until(&e.expires_at)
        {
            line += &format!(", expires in {}", Short(d));
        }
        if let Some(s) = e.size_bytes {
            line += &format!(", {}", Bytes(s));
        }
        if let Some(ws) = &e.workspace {
            line += &format!(", workspace {}", esc(ws));
        }
        if let Some(note) = &e.note {
            line += &format!("  ({})", esc(note));
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

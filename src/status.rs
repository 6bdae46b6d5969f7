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
    /// Job dirs and bytes by what a guard may do with them.
    pub(crate) totals: Totals,
}

/// Counts and bytes of one kind of job dir (bytes as far as known: see `Entry::size_measured`).
#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) dirs: usize,
    pub(crate) bytes: u64,
}

#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// `active`: a running job's dir, never reclaimed.
    pub(crate) live: Tally,
    /// `released`: protected until its linger ends, for the job's later steps.
    pub(crate) lingering: Tally,
    /// `expired`: a guard may reclaim it.
    pub(crate) reclaimable: Tally,
    /// `unknown`: kept, never reclaimed, until someone looks.
    pub(crate) unknown: Tally,
}

impl Totals {
    fn of(leases: &[Entry]) -> Totals {
        let mut t = Totals::default();
        for e in leases {
            let tally = match e.state {
                "active" => &mut t.live,
                "released" => &mut t.lingering,
                "expired" => &mut t.reclaimable,
                _ => &mut t.unknown,
            };
            tally.dirs += 1;
            tally.bytes += e.size_bytes.unwrap_or(0);
        }
        t
    }
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
    /// `true`: `size_bytes` was measured by this call (`--sizes`); `false`: it is the size the
    /// lease last recorded (at release; 0 or none while a job runs), possibly stale.
    pub(crate) size_measured: bool,
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
            size_measured: false,
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
        if sizes && let Some(measured) = fs::tree_size(root.fd(), &name, None) {
            entry.size_bytes = Some(measured);
            entry.size_measured = true;
        }
        leases.push(entry);
    }
    // By state (what a guard may do), then oldest first: the order a guard reclaims in.
    leases.sort_by(|a, b| {
        (state_rank(a.state), &a.created_at, &a.job_id).cmp(&(
            state_rank(b.state),
            &b.created_at,
            &b.job_id,
        ))
    });
    Ok(Status {
        root: root.path.display().to_string(),
        free_bytes: space.free,
        total_bytes: space.total,
        totals: Totals::of(&leases),
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
        totals: Totals::default(),
    })
}

fn state_rank(state: &str) -> u8 {
    match state {
        "active" => 0,
        "released" => 1,
        "expired" => 2,
        _ => 3,
    }
}

/// The human-readable table: a header line, one aligned row per job dir, totals. Lease strings
/// (job id, runner, workspace) are someone else's data: escaped, so a newline in one cannot start
/// a line of its own.
pub(crate) fn render(status: &Status) -> String {
    use comfy_table::{CellAlignment, Table, presets};
    use std::fmt::Write as _;
    let esc = |s: &str| crate::term::escape(s).into_owned();
    let mut out = String::new();
    let space = Space {
        free: status.free_bytes,
        total: status.total_bytes,
    };
    let _ = writeln!(
        out,
        "root {}: {} free of {} ({}% used), {} job dir{}",
        esc(&status.root),
        Bytes(status.free_bytes),
        Bytes(status.total_bytes),
        space.used_pct(),
        status.leases.len(),
        if status.leases.len() == 1 { "" } else { "s" }
    );
    if status.leases.is_empty() {
        return out;
    }
    let now = SystemTime::now();
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    };
    let ago = |t: &Option<String>| {
        parse(t).map_or_else(
            || "-".to_owned(),
            |t| Short(now.duration_since(t).unwrap_or_default()).to_string(),
        )
    };
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header([
        "STATE",
        "JOB",
        "HOLDER",
        "AGE",
        "RENEWED",
        "EXPIRES IN",
        "SIZE",
        "WORKSPACE",
    ]);
    let mut stale = false;
    for e in &status.leases {
        let holder = match (&e.host, e.pid) {
            (Some(h), Some(pid)) => format!("{} (pid {pid})", esc(h)),
            _ => "-".to_owned(),
        };
        let expires = if e.state == "released" {
            parse(&e.expires_at).map_or_else(
                || "-".to_owned(),
                |t| Short(t.duration_since(now).unwrap_or(Duration::ZERO)).to_string(),
            )
        } else {
            "-".to_owned()
        };
        let size = match e.size_bytes {
            Some(b) if e.size_measured => Bytes(b).to_string(),
            Some(b) => {
                stale = true;
                format!("{}*", Bytes(b))
            }
            None => "?".to_owned(),
        };
        let mut workspace = e.workspace.as_deref().map_or_else(|| "-".to_owned(), esc);
        if let Some(note) = &e.note {
            workspace = format!("({})", esc(note));
        }
        table.add_row([
            e.state.to_owned(),
            esc(&e.job_id),
            holder,
            ago(&e.created_at),
            if e.renewed_at.is_some() {
                format!("{} ago", ago(&e.renewed_at))
            } else {
                "-".to_owned()
            },
            expires,
            size,
            workspace,
        ]);
    }
    // Columns two spaces apart, the first at the margin, sizes right-aligned.
    if let Some(col) = table.column_mut(0) {
        col.set_padding((0, 1));
    }
    if let Some(col) = table.column_mut(6) {
        col.set_cell_alignment(CellAlignment::Right);
    }
    for line in table.lines() {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let t = &status.totals;
    let tally = |name: &str, x: Tally| {
        format!(
            "{name} {} dir{}, {}",
            x.dirs,
            if x.dirs == 1 { "" } else { "s" },
            Bytes(x.bytes)
        )
    };
    let mut totals = vec![
        tally("live", t.live),
        tally("lingering", t.lingering),
        tally("reclaimable", t.reclaimable),
    ];
    if t.unknown.dirs > 0 {
        totals.push(tally("unknown (kept)", t.unknown));
    }
    let _ = writeln!(out, "total: {}", totals.join("; "));
    if stale {
        let _ = writeln!(
            out,
            "* size recorded by the lease at release (0 while a job runs); `--sizes` measures now"
        );
    }
    out
}

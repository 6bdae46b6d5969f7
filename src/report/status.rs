//! `cargo guarded status` for people (an aligned table) and programs (`--json`).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde::Serialize;
use serde::ser::Serializer;

use crate::lease::Protected;
use crate::prune::BudgetState;
use crate::quantity::{Bytes, RoundDuration};
use crate::scope;
use crate::status::{Entry, LeaseState, Status, Tally};
use crate::term;

/// Lease strings (job id, runner, workspace, note) are someone else's data: escaped, so a
/// newline in one cannot start a line of its own.
fn esc(s: &str) -> String {
    term::escape(s).into_owned()
}

/// The human-readable table: a header line, one aligned row per job dir, totals. With a
/// `width` (the terminal's), the table fits it: long cells wrap inside their column.
pub(crate) fn render(status: &Status, width: Option<u16>) -> String {
    let mut out = String::new();
    let n = status.leases.len();
    let _ = writeln!(
        out,
        "root {}: {} free of {} ({}% used), {n} job dir{}",
        esc(&status.root),
        Bytes(status.space.free),
        Bytes(status.space.total),
        status.space.used_pct(),
        if n == 1 { "" } else { "s" }
    );
    if status.leases.is_empty() {
        return out;
    }
    let mut shown = [true; COLUMNS.len()];
    if let Some(width) = width {
        // On a narrow terminal the least needed columns go first, so that what is left fits
        // without wrapping every header.
        for col in NARROW_DROPS {
            let natural = table(&status.leases, &shown)
                .0
                .lines()
                .map(|l| l.trim_end().chars().count())
                .max()
                .unwrap_or(0);
            if natural <= usize::from(width) {
                break;
            }
            shown[col] = false;
        }
    }
    let (mut table, stale) = table(&status.leases, &shown);
    if let Some(width) = width {
        // comfy-table measures the terminal only with its crossterm feature; the width is given.
        table.set_width(width);
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    for line in table.lines() {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(out, "total: {}", totals(status).join("; "));
    for line in starts(status) {
        let _ = writeln!(out, "{line}");
    }
    for s in &status.starts {
        let _ = writeln!(out, "{}", super::saved::workspace(s, &esc(&s.workspace)));
    }
    if status.starts.len() > 1 {
        let _ = writeln!(out, "{}", super::saved::total(&status.warmth));
    }
    if stale {
        let _ = writeln!(
            out,
            "* size recorded by the lease at release (0 while a job runs); `--sizes` measures now"
        );
    }
    out
}

/// The table's columns, in order.
const COLUMNS: [&str; 11] = [
    "STATE",
    "JOB",
    "HOLDER",
    "AGE",
    "RENEWED",
    "EXPIRES IN",
    "SIZE",
    "BUDGET",
    "PRUNED",
    "SCOPE",
    "WORKSPACE",
];
/// Sizes, right-aligned.
const SIZE_COLUMNS: [usize; 3] = [6, 7, 8];
/// The columns a narrow terminal does without, least needed first (`--json` has them all).
const NARROW_DROPS: [usize; 7] = [7, 8, 3, 4, 2, 9, 10];

/// One row per job dir, with the `shown` columns; `true` if a size shown is the lease's record
/// rather than measured.
fn table(leases: &[Entry], shown: &[bool; COLUMNS.len()]) -> (Table, bool) {
    let now = SystemTime::now();
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    let pick = |cells: [String; COLUMNS.len()]| -> Vec<String> {
        cells
            .into_iter()
            .zip(shown)
            .filter_map(|(c, keep)| keep.then_some(c))
            .collect()
    };
    table.set_header(pick(COLUMNS.map(str::to_owned)));
    let mut stale = false;
    for e in leases {
        stale |= e.size_bytes.is_some() && !e.size_measured;
        table.add_row(pick(row(e, now)));
    }
    // Columns two spaces apart, the first at the margin, sizes right-aligned.
    if let Some(col) = table.column_mut(0) {
        col.set_padding((0, 1));
    }
    for sizes in SIZE_COLUMNS.into_iter().filter(|c| shown[*c]) {
        let at = shown[..sizes].iter().filter(|k| **k).count();
        if let Some(col) = table.column_mut(at) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    (table, stale)
}

fn row(e: &Entry, now: SystemTime) -> [String; 11] {
    let ago = |t: Option<SystemTime>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| RoundDuration(now.duration_since(t).unwrap_or_default()).to_string(),
        )
    };
    let holder = match (&e.host, e.pid) {
        (Some(h), Some(pid)) => format!("{} (pid {pid})", esc(h)),
        _ => "-".to_owned(),
    };
    let expires = match e.expires_at {
        Some(t) if matches!(e.state, LeaseState::Released | LeaseState::Gone) => {
            RoundDuration(t.duration_since(now).unwrap_or(Duration::ZERO)).to_string()
        }
        _ => "-".to_owned(),
    };
    let size = match e.size_bytes {
        Some(b) if e.size_measured => Bytes(b).to_string(),
        Some(b) => format!("{}*", Bytes(b)),
        None => "?".to_owned(),
    };
    // The dir's budget as its last prune left it; `over` when what recent jobs used alone
    // exceeds it (never pruned).
    let budget = e.budget.map_or_else(
        || "-".to_owned(),
        |b| {
            let over = if b.over() { " over" } else { "" };
            format!("{}{over}", Bytes(b.budget))
        },
    );
    // What pruning removed when the dir was last pruned (at adoption or release).
    let pruned = e
        .pruned
        .as_ref()
        .map_or_else(|| "-".to_owned(), |p| Bytes(p.bytes).to_string());
    let workspace = match (note(e), &e.workspace) {
        (Some(note), _) => format!("({})", esc(&note)),
        (None, Some(ws)) => esc(ws),
        (None, None) => "-".to_owned(),
    };
    let renewed = match e.renewed_at {
        Some(t) => format!("{} ago", ago(Some(t))),
        None => "-".to_owned(),
    };
    [
        e.state.to_string(),
        esc(&e.job_id),
        holder,
        ago(e.created_at),
        renewed,
        expires,
        size,
        budget,
        pruned,
        // Every writer's scope; `unknown` in leases of earlier versions.
        match e.state {
            LeaseState::Unknown if e.created_at.is_none() => "-".to_owned(),
            _ => esc(&scope::describe(e.scopes.as_deref())),
        },
        workspace,
    ]
}

/// What a row says besides its lease: why it is unknown, that its holder is gone (and when it
/// becomes reclaimable), or that its job's processes outlived their wrapper.
fn note(e: &Entry) -> Option<String> {
    if let Some(note) = &e.note {
        return Some(note.clone());
    }
    // `gc`'s own words for it (`Protected`'s).
    if let Some(gone @ Protected::Gone { .. }) = &e.kept {
        return Some(gone.detail().to_string());
    }
    e.orphans.then(|| {
        format!(
            "processes of job `{}` still hold it (its wrapper has exited)",
            e.job_id
        )
    })
}

/// `live 1 dir, 2 GiB`, …; unknown dirs only when there are any.
fn totals(status: &Status) -> Vec<String> {
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
    totals
}

/// `started: acme/widgets: 4 of 5 warm (3 seeded, 1 adopted, 1 fresh)`, one line per workspace.
fn starts(status: &Status) -> Vec<String> {
    status
        .starts
        .iter()
        .map(|s| {
            let warm = s.adopted + s.seeded + s.restored;
            let known = warm + s.fresh;
            let mut parts = vec![];
            for (n, what) in [
                (s.seeded, "seeded"),
                (s.adopted, "adopted"),
                (s.restored, "restored"),
                (s.fresh, "fresh"),
                (s.unknown, "not recorded"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {what}"));
                }
            }
            if s.resumed > 0 {
                let steps = if s.resumed == 1 { "step" } else { "steps" };
                parts.push(format!("{} later {steps} resumed", s.resumed));
            }
            let units = if s.units_verified + s.units_stale > 0 {
                format!(
                    "; units {} warm by content, {} made stale",
                    s.units_verified, s.units_stale
                )
            } else {
                String::new()
            };
            format!(
                "started: {}: {warm} of {known} warm ({}){units}",
                esc(&s.workspace),
                parts.join(", ")
            )
        })
        .collect()
}

/// A time in `--json`: RFC 3339, to the second.
fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

/// A time recorded as seconds since the epoch in a file someone else may have written: RFC 3339,
/// or nothing past year 9999 (what RFC 3339 can print).
fn epoch_secs(secs: u64) -> Option<String> {
    const YEAR_10000: u64 = 253_402_300_800;
    (secs < YEAR_10000)
        .then(|| rfc3339(Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))))?
}

/// `status --json`, in the shape docs/json.md's "JSON output" documents.
impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            root: &'a str,
            free_bytes: u64,
            total_bytes: u64,
            leases: &'a [Entry],
            totals: crate::status::Totals,
            /// Per workspace, how the jobs whose dirs are in the root started, and what warmth
            /// saved.
            starts: &'a [crate::status::Starts],
            /// What warmth saved, over every workspace (an added field).
            warmth: &'a crate::status::Saved,
        }
        Json {
            root: &self.root,
            free_bytes: self.space.free,
            total_bytes: self.space.total,
            leases: &self.leases,
            totals: self.totals,
            starts: &self.starts,
            warmth: &self.warmth,
        }
        .serialize(s)
    }
}

/// A dir's size against its budget as a prune left it: `leases[].budget` of `status --json`,
/// and the `pruned` event's `budget` (`report::json`).
#[derive(Serialize)]
pub(super) struct Budget {
    size: u64,
    budget: u64,
    working_set: u64,
    /// Over budget with nothing more prunable: what recent jobs used stays.
    over: bool,
}

impl From<BudgetState> for Budget {
    fn from(b: BudgetState) -> Budget {
        Budget {
            size: b.size,
            budget: b.budget,
            working_set: b.working_set,
            over: b.over(),
        }
    }
}

impl Serialize for Entry {
    // Long: one JSON object's whole field list, each field documented in docs/json.md's schema.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            job_id: &'a str,
            /// `active` | `released` | `gone` | `expired` | `unknown`
            state: String,
            dir: &'a str,
            target_dir: &'a str,
            workspace: Option<&'a str>,
            /// `fresh` | `adopted` | `seeded` | `restored`; absent in leases of earlier versions.
            origin: Option<&'a str>,
            /// Every writer's scope (`branch:main`, `pr:pull/12->main`, `local`); `null` in
            /// leases of earlier versions.
            scopes: Option<Vec<String>>,
            host: Option<&'a str>,
            pid: Option<u32>,
            created_at: Option<String>,
            renewed_at: Option<String>,
            expires_at: Option<String>,
            size_bytes: Option<u64>,
            size_measured: bool,
            /// What pruning removed when the dir was last pruned (at adoption or release).
            pruned: Option<Pruned<'a>>,
            /// The dir's size against its budget after its last prune (an added field).
            budget: Option<Budget>,
            /// What content verification decided when the dir's job started from it elsewhere
            /// (an added field).
            verified: Option<&'a crate::warm::LastVerdict>,
            /// What the job's units came to so far (an added field; docs/protocol.md#what-warmth-saved).
            warmth: Option<&'a crate::lease::Warmth>,
            /// The cold build of the dir's line the estimate is made from (an added field).
            cold: Option<&'a crate::lease::Cold>,
            #[serde(skip_serializing_if = "Option::is_none")]
            note: Option<String>,
        }
        #[derive(Serialize)]
        struct Pruned<'a> {
            units: usize,
            superseded: usize,
            /// Of `units`, those removed to bring the dir within its budget.
            budget: usize,
            at_release: bool,
            incremental: usize,
            bytes: u64,
            at: Option<String>,
            from: &'a str,
        }
        Json {
            job_id: &self.job_id,
            state: self.state.to_string(),
            dir: &self.dir,
            target_dir: &self.target_dir,
            workspace: self.workspace.as_deref(),
            origin: self.origin.as_deref(),
            scopes: self
                .scopes
                .as_ref()
                .map(|l| l.iter().map(ToString::to_string).collect()),
            host: self.host.as_deref(),
            pid: self.pid,
            created_at: rfc3339(self.created_at),
            renewed_at: rfc3339(self.renewed_at),
            expires_at: rfc3339(self.expires_at),
            size_bytes: self.size_bytes,
            size_measured: self.size_measured,
            pruned: self.pruned.as_ref().map(|p| Pruned {
                units: p.units,
                superseded: p.superseded,
                budget: p.budget,
                at_release: p.at_release,
                incremental: p.incremental,
                bytes: p.bytes,
                at: epoch_secs(p.at),
                from: &p.from,
            }),
            budget: self.budget.map(Budget::from),
            verified: self.verified.as_ref(),
            warmth: self.warmth.as_ref(),
            cold: self.cold.as_ref(),
            note: note(self).as_deref().map(|n| match self.state {
                // Where a program reads it, the time is absolute (RFC 3339).
                LeaseState::Gone => format!(
                    "holder gone; reclaimable at {}",
                    rfc3339(self.expires_at).unwrap_or_default()
                ),
                _ => n.to_owned(),
            }),
        }
        .serialize(s)
    }
}

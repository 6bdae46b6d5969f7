//! The `--events` reporter: a job's life (and `gc`'s sweep) as JSON lines appended to a file, a
//! public, versioned stream for CI tooling. Each event is one line, `{"v":1,"event":"<name>",…}`,
//! written with one `write` to a file opened for append, so a `tail -f` sees it as it happens
//! and the lines of runs sharing the file (steps of a job, a nested run) never mix. The fields
//! of each event are docs/json.md's "Events (`--events`)"; `tests/testsuite/events.rs` keeps the two in step.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use super::event::{Event, Reporter};
use super::status::Budget;
use crate::exit::Exit;
use crate::guard;
use crate::lease::{Cold, Level, Origin, Warmth};
use crate::precheck::{Group, NoSpace};
use crate::prune::{Moment, Outcome, Pruned};
use crate::scope::Scope;
use crate::status::Tally;
use crate::term;

/// The stream's format version, each line's `v`. Adding a field or an event keeps it; removing
/// or renaming one, or changing what one means, bumps it.
pub(crate) const EVENTS_VERSION: u32 = 1;

/// Appends every event to the `--events` file.
pub(crate) struct Json {
    file: File,
    path: PathBuf,
    /// Every line's `pid`: which run wrote it, where several share the file.
    pid: u32,
    /// The job the run is for, from `Starting` (or `Nested`) on.
    job_id: Option<String>,
    /// The job's dir, once it has one (`Acquired`, `Nested`).
    dir: Option<String>,
    /// A write failed: said once; nothing more is written.
    broken: bool,
}

impl Json {
    /// Open `path` for append, creating it if missing.
    pub(crate) fn append(path: &Path) -> Result<Json> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| {
                format!(
                    "failed to open the events file {} (--events, CARGO_GUARDED_EVENTS)",
                    path.display()
                )
            })?;
        Ok(Json {
            file,
            path: path.to_owned(),
            pid: std::process::id(),
            job_id: None,
            dir: None,
            broken: false,
        })
    }

    fn write(&mut self, at: SystemTime, event: &'static str, fields: Fields<'_>) {
        if self.broken {
            return;
        }
        let line = Line {
            v: EVENTS_VERSION,
            event,
            time: humantime::format_rfc3339_millis(at).to_string(),
            pid: self.pid,
            job_id: self.job_id.as_deref(),
            dir: self.dir.as_deref(),
            fields,
        };
        let written = serde_json::to_vec(&line)
            .map_err(std::io::Error::from)
            .and_then(|mut bytes| {
                bytes.push(b'\n');
                self.file.write_all(&bytes)?;
                self.file.flush()
            });
        if let Err(e) = written {
            self.broken = true;
            term::warn(format_args!(
                "failed to write to the events file {}: {e}; no more events are written there",
                self.path.display()
            ));
        }
    }
}

/// One line: what every event has, then its own fields.
#[derive(Serialize)]
struct Line<'a> {
    v: u32,
    event: &'static str,
    /// When it happened: RFC 3339 in UTC, to the millisecond, as the lease file records times.
    time: String,
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<&'a str>,
    #[serde(flatten)]
    fields: Fields<'a>,
}

/// Each event's own fields.
#[derive(Serialize)]
#[serde(untagged)]
enum Fields<'a> {
    /// `starting`, `nested`, `gave_up`: the common fields say it all.
    None {},
    /// `swept`, `collected`: the guard's report, as `gc --json` prints it.
    Sweep {
        root: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        hook: Option<bool>,
        report: &'a guard::Report,
    },
    Acquired {
        target_dir: String,
        origin: &'static str,
        /// The job whose dir was adopted or seeded from.
        from: Option<&'a str>,
        /// The adopted dir's size (when known), or the bytes a seed copied.
        from_bytes: Option<u64>,
        /// How long a seed's copy took.
        copy_secs: Option<f64>,
        /// The job's scope (`branch:main`, `pr:pull/12->main`, `local`).
        scope: String,
        /// Finished dirs of the workspace the scope rule passed over.
        passed_over: usize,
    },
    Pruned {
        moment: &'static str,
        outcome: &'static str,
        pruned: Option<PrunedJson>,
        budget: Option<Budget>,
        error: Option<String>,
    },
    /// Content verification of a dir built elsewhere (`docs/protocol.md#warm-starts-from-elsewhere`).
    Verified {
        verified: usize,
        /// Units made stale, by reason (`content_differs`, `no_record`, `path_moved`, `env_dep`).
        stale: std::collections::BTreeMap<&'static str, usize>,
        /// Checkout files given their recorded mtimes.
        restored: usize,
        /// The checkout the dir was last built in, when known.
        built_in: Option<String>,
    },
    Ready {
        tool: &'a str,
        command: &'a str,
        free_bytes: u64,
    },
    Refused {
        command: &'a str,
        free_bytes: u64,
        required_bytes: u64,
        /// `None`: no sweep ran.
        reclaimed_bytes: Option<u64>,
        holding: Holding,
    },
    /// What the job's units came to so far (docs/protocol.md#what-warmth-saved).
    Counted {
        /// `units_reused`, `units_compiled`, `steps`, `command_secs`, as the lease's `warmth`.
        #[serde(flatten)]
        warmth: &'a Warmth,
        /// The cold build the estimate is made from.
        cold: Option<&'a Cold>,
        saved_secs_estimate: Option<f64>,
    },
    Exited {
        exit: ExitJson,
    },
    /// `warning`, `note`: what the lease layer said on the way.
    Notice {
        what: &'static str,
        /// The dir it is about.
        path: Option<String>,
        why: Option<&'a str>,
        /// The terminal's words (a note's after its verb).
        message: String,
    },
}

/// What a prune removed, in the words of `status --json`'s `leases[].pruned`.
#[derive(Serialize)]
struct PrunedJson {
    units: usize,
    superseded: usize,
    budget: usize,
    incremental: usize,
    bytes: u64,
}

/// `{"code":N}` or `{"signal":N}`.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum ExitJson {
    Code(u8),
    Signal(i32),
}

/// What still held space in the root when the precheck refused, by lease state.
#[derive(Serialize)]
struct Holding {
    live: Tally,
    lingering: Tally,
    expired: Tally,
}

impl Reporter for Json {
    // Long: one arm per event, each naming its JSON fields (docs/json.md's "Events" table).
    fn report_at(&mut self, at: SystemTime, event: &Event<'_>) {
        match event {
            Event::Starting { job_id, .. } => {
                self.job_id = Some((*job_id).to_owned());
                self.dir = None;
                self.write(at, "starting", Fields::None {});
            }
            Event::Nested { dir, job_id } => {
                self.job_id = Some((*job_id).to_owned());
                self.dir = Some(dir.to_string_lossy().into_owned());
                self.write(at, "nested", Fields::None {});
            }
            Event::Swept { root, report } => {
                let root = root.to_string_lossy().into_owned();
                let hook = None;
                self.write(at, "swept", Fields::Sweep { root, hook, report });
            }
            Event::Acquired {
                job,
                origin,
                scope,
                passed_over,
                ..
            } => {
                self.job_id = Some(job.job_id.clone());
                self.dir = Some(job.dir.to_string_lossy().into_owned());
                let fields = acquired(&job.target_dir, origin, scope, *passed_over);
                self.write(at, "acquired", fields);
            }
            Event::Pruned {
                moment, outcome, ..
            } => self.write(at, "pruned", pruned(moment, outcome)),
            Event::Verified { verdict } => self.write(
                at,
                "verified",
                Fields::Verified {
                    verified: verdict.verified,
                    stale: verdict
                        .stale
                        .iter()
                        .map(|(why, names)| (why.key(), names.len()))
                        .collect(),
                    restored: verdict.restored,
                    built_in: verdict
                        .built_in
                        .as_ref()
                        .map(|p| p.to_string_lossy().into_owned()),
                },
            ),
            Event::Ready {
                tool,
                command,
                checked,
                ..
            } => self.write(
                at,
                "ready",
                Fields::Ready {
                    tool,
                    command,
                    free_bytes: checked.space.free,
                },
            ),
            Event::Refused {
                command, no_space, ..
            } => self.write(at, "refused", refused(command, no_space)),
            Event::GaveUp { .. } => self.write(at, "gave_up", Fields::None {}),
            Event::Counted { counted } => self.write(
                at,
                "counted",
                Fields::Counted {
                    warmth: &counted.warmth,
                    cold: counted.cold.as_ref(),
                    saved_secs_estimate: counted.saved_secs(),
                },
            ),
            Event::Exited { exit } => {
                let exit = match *exit {
                    Exit::Code(code) => ExitJson::Code(code),
                    Exit::Signal { signal, .. } => ExitJson::Signal(signal),
                };
                self.write(at, "exited", Fields::Exited { exit });
            }
            Event::Notice(notice) => {
                let event = match notice.level() {
                    Level::Warning => "warning",
                    Level::Note | Level::Detail => "note",
                };
                let fields = Fields::Notice {
                    what: notice.what(),
                    path: notice.dir().map(|p| p.to_string_lossy().into_owned()),
                    why: notice.why(),
                    message: super::notice::words(notice),
                };
                self.write(at, event, fields);
            }
            Event::Collected { root, report, hook } => {
                self.job_id = None;
                self.dir = None;
                let root = root.to_string_lossy().into_owned();
                let hook = Some(*hook);
                self.write(at, "collected", Fields::Sweep { root, hook, report });
            }
        }
    }
}

fn acquired<'a>(
    target_dir: &Path,
    origin: &'a Origin,
    scope: &Scope,
    passed_over: usize,
) -> Fields<'a> {
    let (from, from_bytes, copy_secs) = match origin {
        Origin::Adopted { from, size, .. } => (Some(from.as_str()), *size, None),
        Origin::Seeded(s) => (
            Some(s.from.as_str()),
            Some(s.copied.bytes),
            Some(secs(s.took)),
        ),
        Origin::Restored {
            from, bytes, took, ..
        } => (Some(from.as_str()), Some(*bytes), Some(secs(*took))),
        Origin::Fresh { .. } | Origin::Resumed => (None, None, None),
    };
    Fields::Acquired {
        target_dir: target_dir.to_string_lossy().into_owned(),
        origin: origin.name(),
        from,
        from_bytes,
        copy_secs,
        scope: scope.to_string(),
        passed_over,
    }
}

fn pruned<'a>(moment: &Moment<'_>, outcome: &Result<Outcome>) -> Fields<'a> {
    let moment = match moment {
        Moment::Adoption { .. } => "adoption",
        Moment::Release { .. } => "release",
    };
    let (outcome, ran, error) = match outcome {
        Ok(Outcome::Ran {
            pruned,
            first_error,
            ..
        }) => ("ran", Some(pruned), first_error.clone()),
        Ok(Outcome::Off) => ("off", None, None),
        Ok(Outcome::Emptied { .. }) => ("emptied", None, None),
        Ok(Outcome::Unobservable(why)) => ("unobservable", None, Some(why.clone())),
        Err(e) => ("failed", None, Some(format!("{e:#}"))),
    };
    Fields::Pruned {
        moment,
        outcome,
        pruned: ran.map(|p: &Pruned| PrunedJson {
            units: p.units,
            superseded: p.superseded,
            budget: p.budget,
            incremental: p.incremental,
            bytes: p.bytes,
        }),
        budget: ran.and_then(|p| p.state).map(Budget::from),
        error,
    }
}

fn refused<'a>(command: &'a str, n: &NoSpace) -> Fields<'a> {
    Fields::Refused {
        command,
        free_bytes: n.free,
        required_bytes: n.required,
        reclaimed_bytes: n.reclaimed.map(|(bytes, _)| bytes),
        holding: Holding {
            live: tally(n.holding.live),
            lingering: tally(n.holding.lingering),
            expired: tally(n.holding.expired),
        },
    }
}

/// `{"dirs":N,"bytes":N}`, as `status --json`'s `totals`.
fn tally(g: Group) -> Tally {
    Tally {
        dirs: g.dirs,
        bytes: g.bytes,
    }
}

/// Seconds, to the millisecond.
fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

//! What `store push` and `store gc` did, on the terminal.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::quantity::{Bytes, RoundDuration};
use crate::store::{Collected, Decision, Pushed, Why};
use crate::term;

/// `Pushed /root/job to s3://b/p: 812 files (310 MiB), 12 of 640 objects uploaded (4.1 MiB) in
/// 2.3s`.
pub(crate) fn pushed(dir: &Path, url: &str, p: &Pushed) {
    term::status(
        "Pushed",
        format_args!(
            "{} to {url}: {} files ({}), {} of {} objects uploaded ({}) in {:.1}s",
            dir.display(),
            p.files,
            Bytes(p.bytes),
            p.uploaded,
            p.objects,
            Bytes(p.uploaded_bytes),
            p.took.as_secs_f64()
        ),
    );
    term::verbose("Wrote", format_args!("manifest {}", p.manifest));
}

/// What `store gc` did (or would do), one line per manifest with its reason, a line per object
/// or marker removed or kept for a reason under `-v` (a count of each otherwise), then the
/// store's size before and after:
///
/// ```text
///     Removed manifests/3f2a…/1.90.0/main/1700000000000-a.json (12.1 KiB): least recently used
///             (last used 3d ago) while the store was over --max-size 10 GiB
///     Removed 120 objects (1.2 GiB) no manifest names (older than --grace 1h)
///   Collected fs:///srv/store: 11.2 GiB before, 9.8 GiB after (--max-size 10 GiB); 14 manifests
///             kept, naming 5210 objects (9.7 GiB) in 0.8s
/// ```
pub(crate) fn collected(url: &str, c: &Collected) {
    let dry = c.options.dry_run;
    let (removing, keeping) = if dry {
        ("Would remove", "Would keep")
    } else {
        ("Removed", "Kept")
    };
    let now = SystemTime::now();
    let cap = c
        .options
        .max_size
        .map(|m| format!("--max-size {}", Bytes(m)));
    let grace = RoundDuration(c.options.grace);
    let mut counts: BTreeMap<(&str, &str), (usize, u64)> = BTreeMap::new();
    for d in &c.decisions {
        let verb = if d.remove { removing } else { keeping };
        let Some(why) = reason(url, d, now, cap.as_deref(), &grace) else {
            continue;
        };
        if let Some(what) = tallied(&d.why) {
            let c = counts.entry((verb, what)).or_default();
            c.0 += 1;
            c.1 += d.bytes;
        }
        let line = format!("{} ({}): {why}", d.key, Bytes(d.bytes));
        match &d.failed {
            Some(e) => term::warn(format_args!("failed to remove {} from {url}: {e}", d.key)),
            None if d.key.starts_with("manifests/") => term::status(verb, line),
            None => term::verbose(verb, line),
        }
    }
    for ((verb, what), (n, bytes)) in counts {
        let unit = if what.starts_with("use") {
            ""
        } else {
            " objects"
        };
        let what = match what {
            "no manifest names" => format!("no manifest names (older than --grace {grace})"),
            "younger than --grace" => {
                format!("no manifest names yet, younger than --grace {grace}")
            }
            w => w.to_owned(),
        };
        term::status(verb, format_args!("{n}{unit} ({}): {what}", Bytes(bytes)));
    }
    let kept = c
        .decisions
        .iter()
        .filter(|d| matches!(d.why, Why::WithinCap { .. } | Why::OverCapUnreadable { .. }))
        .count();
    term::status(
        "Collected",
        format_args!(
            "{url}: {} before, {} after{}; {kept} manifests kept, naming {} objects ({}){} in {:.1}s",
            Bytes(c.before),
            Bytes(c.after),
            cap.map_or(String::new(), |c| format!(" ({c})")),
            c.referenced.0,
            Bytes(c.referenced.1),
            if dry {
                "; dry run: nothing removed"
            } else {
                ""
            },
            c.took.as_secs_f64()
        ),
    );
}

fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// Why a decision was taken, for its line; `None` for an unreadable manifest, which is warned
/// about here instead.
fn reason(
    url: &str,
    d: &Decision,
    now: SystemTime,
    cap: Option<&str>,
    grace: &RoundDuration,
) -> Option<String> {
    Some(match &d.why {
        Why::WithinCap { last_used } => format!(
            "last used {} ago{}",
            RoundDuration(since(now, *last_used)),
            cap.map_or(String::new(), |c| format!(", within {c}"))
        ),
        Why::OverCapUnreadable { last_used } => format!(
            "last used {} ago; the store is over {}, but an unreadable manifest stops gc",
            RoundDuration(since(now, *last_used)),
            cap.unwrap_or("the cap")
        ),
        Why::LeastRecentlyUsed { last_used } => format!(
            "least recently used (last used {} ago) while the store was over {}",
            RoundDuration(since(now, *last_used)),
            cap.unwrap_or("the cap")
        ),
        Why::Unreadable(why) => {
            term::warn(format_args!(
                "skipped {} in {url}: not a manifest this build can read ({why}); it may name \
                 any object, so no object is removed until it is fixed or removed",
                d.key
            ));
            return None;
        }
        Why::Unreferenced { age } => {
            format!("no manifest names it, {} old", RoundDuration(*age))
        }
        Why::Young { age } => format!(
            "no manifest names it yet, but it is {} old, younger than --grace {grace}: a push may \
             be about to",
            RoundDuration(*age)
        ),
        Why::MaybeReferenced => "an unreadable manifest may name it".to_owned(),
        Why::Orphan => "its manifest is gone".to_owned(),
    })
}

/// The count a decision about an object or marker adds to, for the lines said without `-v`.
fn tallied(why: &Why) -> Option<&'static str> {
    match why {
        Why::Unreferenced { .. } => Some("no manifest names"),
        Why::Young { .. } => Some("younger than --grace"),
        Why::MaybeReferenced => Some("an unreadable manifest may name"),
        Why::Orphan => Some("use markers of removed manifests"),
        Why::WithinCap { .. }
        | Why::OverCapUnreadable { .. }
        | Why::LeastRecentlyUsed { .. }
        | Why::Unreadable(_) => None,
    }
}

//! The exit-75 refusal (`precheck::NoSpace`) in words: what was free and required, what the
//! precheck reclaimed, what still holds space (live, lingering, expired, each with its bytes),
//! and which option or command frees each. `main` prints a short `error:` line, then one `note:`
//! line per part ([`notes`]), as cargo words a multi-part error; the GitHub annotation reuses the
//! parts.

use std::fmt;

use crate::precheck::{Group, NoSpace};
use crate::quantity::{Bytes, RoundDuration};

/// The short `error:` line: where, what was free and what was required, each also in bytes
/// (sizes that round alike, `2.0 GiB free, 2.0 GiB required`, still compare).
impl fmt::Display for NoSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not enough free disk space on {}: {} free ({} bytes), {} required ({} bytes) by \
             --min-free",
            self.root,
            Bytes(self.free),
            self.free,
            Bytes(self.required),
            self.required
        )
    }
}

/// The `note:` lines that follow the `error:` line, as cargo words a multi-part error: what the
/// precheck reclaimed, then one line per group of dirs that still holds space, with what frees it.
pub(crate) fn notes(n: &NoSpace) -> Vec<String> {
    let mut notes = vec![reclaimed(n)];
    let groups = groups(n, true);
    if groups.is_empty() {
        notes.push(NOTHING_HELD.into());
    }
    notes.extend(groups);
    notes
}

const NOTHING_HELD: &str = "no other job dir holds space in the root: the space is used outside it";

/// What the precheck reclaimed: `reclaimed 1.2 GiB from 2 expired dirs`.
pub(crate) fn reclaimed(n: &NoSpace) -> String {
    match n.reclaimed {
        None => "no sweep ran (free space was above --reclaim-below)".into(),
        Some((_, 0)) => "the sweep reclaimed nothing".into(),
        Some((bytes, dirs)) => format!(
            "reclaimed {} from {dirs} expired dir{}",
            Bytes(bytes),
            plural(dirs)
        ),
    }
}

/// What still holds space, and what frees it, on one line (a GitHub annotation): `still held in
/// the root: 2 live dirs hold 1.1 GiB, freed when their jobs end; …`. `name_live`: name the
/// biggest live jobs (not in an annotation, where other repositories' jobs must not be named).
pub(crate) fn holding(n: &NoSpace, name_live: bool) -> String {
    let parts = groups(n, name_live);
    if parts.is_empty() {
        NOTHING_HELD.into()
    } else {
        format!("still held in the root: {}", parts.join("; "))
    }
}

/// One phrase per kind of dir that still holds space: live, lingering, expired.
fn groups(n: &NoSpace, name_live: bool) -> Vec<String> {
    let h = &n.holding;
    let mut parts = Vec::new();
    if h.live.dirs > 0 {
        let biggest = if name_live && !n.biggest_live.is_empty() {
            let named: Vec<String> = n
                .biggest_live
                .iter()
                .map(|(job, size, holder)| match size {
                    Some(s) => format!("{job} {} by {holder}", Bytes(*s)),
                    None => format!("{job} by {holder}"),
                })
                .collect();
            format!(" (biggest: {})", named.join(", "))
        } else {
            String::new()
        };
        let whose = if h.live.dirs == 1 {
            "its job ends"
        } else {
            "their jobs end"
        };
        parts.push(format!(
            "{}{biggest}, freed when {whose}",
            group(h.live, "live")
        ));
    }
    if h.lingering.dirs > 0 {
        let first = h
            .first_expiry
            .map(|d| format!(", the first in {}", RoundDuration(d)))
            .unwrap_or_default();
        parts.push(format!(
            "{} (released; they expire after --linger{first}, then `cargo guarded gc` reclaims \
             them)",
            group(h.lingering, "lingering")
        ));
    }
    if h.expired.dirs > 0 {
        parts.push(format!(
            "{}, kept warm for reuse (`cargo guarded gc --all-expired` reclaims them; \
             --keep-expired 0 or a higher --reclaim-to stops keeping them)",
            group(h.expired, "expired")
        ));
    }
    parts
}

/// `3 expired dirs hold 1.2 GiB`; `at least` when some leases recorded no size, and no size at
/// all when none did (never `at least 0 B`).
fn group(g: Group, kind: &str) -> String {
    let dirs = format!("{} {kind} dir{}", g.dirs, plural(g.dirs));
    let (verb, it) = if g.dirs == 1 {
        ("holds", "its")
    } else {
        ("hold", "their")
    };
    if g.no_size >= g.dirs {
        format!("{dirs}, {it} size not recorded yet")
    } else if g.no_size > 0 {
        format!("{dirs} {verb} at least {}", Bytes(g.bytes))
    } else {
        format!("{dirs} {verb} {}", Bytes(g.bytes))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::precheck::Holding;

    fn refusal(reclaimed: Option<(u64, usize)>, holding: Holding) -> NoSpace {
        NoSpace {
            root: "/r".into(),
            free: 1 << 30,
            required: 2 << 30,
            reclaimed,
            holding,
            biggest_live: vec![("a".into(), Some(3 << 20), "ci-1 (pid 9)".into())],
        }
    }

    /// A refusal that said "after reclaiming every expired job dir; no live leases hold space"
    /// while expired and lingering dirs held space sent the reader the wrong way: each kind of
    /// holder is counted, a note each, after a short error line.
    #[test]
    fn says_what_was_reclaimed_and_what_still_holds_space() {
        let holding = Holding {
            live: Group {
                dirs: 1,
                bytes: 3 << 20,
                no_size: 0,
            },
            lingering: Group {
                dirs: 9,
                bytes: 9 << 20,
                no_size: 1,
            },
            first_expiry: Some(Duration::from_secs(120)),
            expired: Group {
                dirs: 2,
                bytes: 2 << 20,
                no_size: 0,
            },
        };
        let n = refusal(Some((5 << 20, 1)), holding);
        assert_eq!(
            n.to_string(),
            "not enough free disk space on /r: 1.0 GiB free (1073741824 bytes), 2.0 GiB required \
             (2147483648 bytes) by --min-free"
        );
        assert_eq!(
            notes(&n),
            [
                "reclaimed 5.0 MiB from 1 expired dir",
                "1 live dir holds 3.0 MiB (biggest: a 3.0 MiB by ci-1 (pid 9)), freed when its \
                 job ends",
                "9 lingering dirs hold at least 9.0 MiB (released; they expire after --linger, \
                 the first in 2m, then `cargo guarded gc` reclaims them)",
                "2 expired dirs hold 2.0 MiB, kept warm for reuse (`cargo guarded gc \
                 --all-expired` reclaims them; --keep-expired 0 or a higher --reclaim-to stops \
                 keeping them)",
            ]
        );
        let empty = refusal(None, Holding::default());
        assert_eq!(
            notes(&empty),
            [
                "no sweep ran (free space was above --reclaim-below)",
                "no other job dir holds space in the root: the space is used outside it",
            ]
        );
    }

    /// A live dir whose lease recorded no size yet reads as such, never `at least 0 B` or
    /// `size unknown`.
    #[test]
    fn an_unrecorded_size_is_said_so() {
        let mut n = refusal(
            None,
            Holding {
                live: Group {
                    dirs: 1,
                    bytes: 0,
                    no_size: 1,
                },
                ..Holding::default()
            },
        );
        n.biggest_live = vec![("k9".into(), None, "vm (pid 7)".into())];
        assert_eq!(
            notes(&n)[1],
            "1 live dir, its size not recorded yet (biggest: k9 by vm (pid 7)), freed when its \
             job ends"
        );
    }
}

//! The exit-75 refusal (`precheck::NoSpace`) in words: what was free and required, what the
//! precheck reclaimed, what still holds space (live, lingering, expired, each with its bytes),
//! and which option or command frees each. `main` prints it once as the `error:` line; the
//! GitHub annotation reuses its parts.

use std::fmt;

use crate::precheck::{Group, NoSpace};
use crate::quantity::{Bytes, RoundDuration};

impl fmt::Display for NoSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not enough free disk space on {}: {} free ({} bytes), {} required ({} bytes) by \
             --min-free; {}",
            self.root,
            Bytes(self.free),
            self.free,
            Bytes(self.required),
            self.required,
            reclaimed(self)
        )?;
        write!(f, "; {}", holding(self, true))
    }
}

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

/// What still holds space, and what frees it: `still held in the root: 2 dirs, 1.1 GiB live
/// (biggest: …), freed when their jobs end; …`. `name_live`: name the biggest live jobs (not in
/// a GitHub annotation, where other repositories' jobs must not be named).
pub(crate) fn holding(n: &NoSpace, name_live: bool) -> String {
    let h = &n.holding;
    let mut parts = Vec::new();
    if h.live.dirs > 0 && !name_live {
        parts.push(format!("{} live, freed when their jobs end", group(h.live)));
    } else if h.live.dirs > 0 {
        let biggest: Vec<String> = n
            .biggest_live
            .iter()
            .map(|(job, size, holder)| {
                let size = size.map_or_else(|| "size unknown".into(), |s| Bytes(s).to_string());
                format!("{job} {size} by {holder}")
            })
            .collect();
        parts.push(format!(
            "{} live (biggest: {}), freed when their jobs end",
            group(h.live),
            biggest.join(", ")
        ));
    }
    if h.lingering.dirs > 0 {
        let first = h
            .first_expiry
            .map(|d| format!(", the first in {}", RoundDuration(d)))
            .unwrap_or_default();
        parts.push(format!(
            "{} lingering (released; they expire after --linger{first}, then `cargo guarded gc` \
             reclaims them)",
            group(h.lingering)
        ));
    }
    if h.expired.dirs > 0 {
        parts.push(format!(
            "{} expired, kept warm for reuse (`cargo guarded gc --all-expired` reclaims them; \
             --keep-expired 0 or a higher --reclaim-to stops keeping them)",
            group(h.expired)
        ));
    }
    if parts.is_empty() {
        "no other job dir holds space in the root: the space is used outside it".into()
    } else {
        format!("still held in the root: {}", parts.join("; "))
    }
}

/// `3 dirs, 1.2 GiB` (`at least` when a lease recorded no size).
fn group(g: Group) -> String {
    let at_least = if g.no_size > 0 { "at least " } else { "" };
    format!(
        "{} dir{}, {at_least}{}",
        g.dirs,
        plural(g.dirs),
        Bytes(g.bytes)
    )
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

    /// The message of issue 21's report claimed "after reclaiming every expired job dir; no live
    /// leases hold space" while expired and lingering dirs held space: now each is counted.
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
        assert_eq!(
            refusal(Some((5 << 20, 1)), holding).to_string(),
            "not enough free disk space on /r: 1.0 GiB free (1073741824 bytes), 2.0 GiB required \
             (2147483648 bytes) by --min-free; reclaimed 5.0 MiB from 1 expired dir; still held in \
             the root: 1 dir, 3.0 MiB live (biggest: a 3.0 MiB by ci-1 (pid 9)), freed when their \
             jobs end; 9 dirs, at least 9.0 MiB lingering (released; they expire after --linger, \
             the first in 2m, then `cargo guarded gc` reclaims them); 2 dirs, 2.0 MiB expired, \
             kept warm for reuse (`cargo guarded gc --all-expired` reclaims them; \
             --keep-expired 0 or a higher --reclaim-to stops keeping them)"
        );
        let empty = refusal(None, Holding::default()).to_string();
        assert!(
            empty.ends_with(
                "no sweep ran (free space was above --reclaim-below); no other job dir holds \
                 space in the root: the space is used outside it"
            ),
            "{empty}"
        );
    }
}

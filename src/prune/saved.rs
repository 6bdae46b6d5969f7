//! What warmth saved (docs/protocol.md#what-warmth-saved). At each release, the units the job
//! used so far (over all its steps, each unit once) are counted as *compiled* (a file of the
//! unit's fingerprint dir was written since the job took its dir: cargo writes it when it
//! builds the unit) or *reused* (read since then, not written: cargo found it fresh). The counts,
//! the steps and their commands' wall time go into the lease (`warmth`); a job that started
//! from nothing and reused nothing is a cold build of its workspace (`cold`, sticky through
//! resumes, adoptions and seeds), and the estimate of time saved is the cold builds' time per
//! compiled unit times the units a job reused.
//!
//! Reads are pruning's signal (`atime`): a read is seen once a unit's atime is at most its mtime
//! or ctime, as pruning's reset at adoption, a seed's copy and a store's restore leave it. Where
//! a read could have gone unrecorded (`relatime` with neither reset, as in a dir adopted with
//! `--no-prune`), or reads are not recorded at all (`noatime`), units reused is unknown.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType};

use super::layout::{list, open_sub, unit_hash};
use crate::lease::{Cold, Origin, Session, TARGET, Warmth};
use crate::term;

/// `ST_RELATIME` in `statvfs`'s `f_flag`.
const ST_RELATIME: u64 = 4096;
/// `relatime` records a read anyway once the atime is this old.
const DAY_NS: u64 = 24 * 3600 * 1_000_000_000;

/// What a release counted: the job's counts so far, for the reporters.
#[derive(Debug, Clone)]
pub(crate) struct Counted {
    pub(crate) job_id: String,
    pub(crate) warmth: Warmth,
    /// The job started from nothing and reused no unit: a cold build.
    pub(crate) cold_now: bool,
    /// The cold build the estimate is made from (the job's own when it was cold and its time is
    /// known), if any is on record in the dir's line.
    pub(crate) cold: Option<Cold>,
}

impl Counted {
    /// The estimate of compile time the reused units saved, in seconds (`None`: unknown).
    pub(crate) fn saved_secs(&self) -> Option<f64> {
        estimate(secs_per_unit(self.cold.iter()), self.warmth.units_reused)
    }
}

/// Seconds per compiled unit over cold builds (each job once): their time over their units.
pub(crate) fn secs_per_unit<'a>(samples: impl IntoIterator<Item = &'a Cold>) -> Option<f64> {
    let mut seen = BTreeSet::new();
    let (mut units, mut secs) = (0u64, 0f64);
    for s in samples {
        if seen.insert(s.job_id.as_str()) {
            units = units.saturating_add(s.units);
            secs += s.secs;
        }
    }
    (units > 0).then(|| secs / units as f64)
}

/// Seconds saved by `reused` units at `rate` seconds a unit: unknown if either is.
pub(crate) fn estimate(rate: Option<f64>, reused: Option<u64>) -> Option<f64> {
    Some(rate? * reused? as f64)
}

/// At the release of a step whose command ran for `took` (`None`: not known, as for `hold`,
/// whose span is the job's), before pruning at release: count the job's units and record them in
/// its lease. `None` when the dir is no longer ours. Never fails the job: a lease that cannot be
/// written is a warning.
pub(crate) fn at_release(session: &Session, took: Option<Duration>) -> Option<Counted> {
    session.check().ok()?;
    let held = session.held();
    let lease = held.lease();
    let since = lease
        .created_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let units = count(held.dir_fd(), since);
    let step = took.map(|d| d.as_secs_f64());
    let warmth = Warmth {
        units_reused: units.reused,
        units_compiled: Some(units.compiled),
        steps: match &lease.warmth {
            None => Some(1),
            Some(w) => w.steps.map(|s| s.saturating_add(1)),
        },
        command_secs: match &lease.warmth {
            None => step,
            Some(w) => w.command_secs.zip(step).map(|(a, b)| a + b),
        },
    };
    let cold_now = lease.origin.as_deref() == Some(Origin::FRESH)
        && warmth.units_reused == Some(0)
        && units.compiled > 0;
    let cold = match warmth.command_secs {
        Some(secs) if cold_now => Some(Cold {
            job_id: lease.job_id.clone(),
            units: units.compiled,
            secs,
        }),
        _ => lease.cold.clone(),
    };
    if let Err(e) = held.record_warmth(warmth.clone(), cold.clone()) {
        term::warn(format_args!(
            "failed to record the units of {} in its lease: {e}; `status` counts them as unknown",
            held.path.display()
        ));
    }
    Some(Counted {
        job_id: lease.job_id,
        warmth,
        cold_now,
        cold,
    })
}

/// Units of the job dir compiled and reused since `since` (ns since the epoch); reused `None`
/// when reads cannot be told here.
#[derive(Debug, Default, PartialEq)]
struct Units {
    compiled: u64,
    reused: Option<u64>,
}

fn count(job_dir: BorrowedFd<'_>, since: u64) -> Units {
    let Some(target) = open_sub(job_dir, TARGET) else {
        return Units {
            compiled: 0,
            reused: Some(0),
        };
    };
    let observable = super::atime::atime_observable(target.as_fd()).is_ok();
    let relatime = rustix::fs::fstatvfs(&target).is_ok_and(|s| s.f_flag.bits() & ST_RELATIME != 0);
    let (mut compiled, mut reused, mut unsure) = (0, 0, 0);
    for (_, profile) in super::profiles(job_dir, target.as_fd()) {
        let Some(fp) = open_sub(profile.as_fd(), ".fingerprint") else {
            continue;
        };
        for (name, ty) in list(fp.as_fd()) {
            let Some(name) = name.to_str() else { continue };
            if ty != FileType::Directory || unit_hash(name).is_none() {
                continue;
            }
            match used(fp.as_fd(), name, since, relatime) {
                Use::Compiled => compiled += 1,
                Use::Reused => reused += 1,
                Use::Unsure => unsure += 1,
                Use::Unused => {}
            }
        }
    }
    Units {
        compiled,
        reused: (observable && unsure == 0).then_some(reused),
    }
}

/// How the job used one unit, by its fingerprint dir's files.
#[derive(Debug, PartialEq)]
enum Use {
    /// A file was written since the job took the dir.
    Compiled,
    /// A file was read since then, none written.
    Reused,
    /// Neither, and a read could have gone unrecorded: under `relatime`, a file's atime was after
    /// its mtime and ctime, and less than a day old, when the job began (which file cargo reads
    /// is cargo's business: any of them could be it).
    Unsure,
    Unused,
}

fn used(fp: BorrowedFd<'_>, unit: &str, since: u64, relatime: bool) -> Use {
    let Some(dir) = open_sub(fp, unit) else {
        return Use::Unused;
    };
    let (mut read, mut unsure) = (false, false);
    for (name, ty) in list(dir.as_fd()) {
        if ty != FileType::RegularFile {
            continue;
        }
        let Ok(st) = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let ns = |s: i64, n: i64| (s.max(0) as u64).saturating_mul(1_000_000_000) + n as u64;
        let atime = ns(st.st_atime, st.st_atime_nsec as i64);
        let mtime = ns(st.st_mtime, st.st_mtime_nsec as i64);
        let ctime = ns(st.st_ctime, st.st_ctime_nsec as i64);
        if mtime >= since {
            return Use::Compiled;
        }
        read |= atime >= since;
        unsure |=
            relatime && atime > mtime && atime > ctime && since.saturating_sub(atime) < DAY_NS;
    }
    if read {
        Use::Reused
    } else if unsure {
        Use::Unsure
    } else {
        Use::Unused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cold(job: &str, units: u64, secs: f64) -> Cold {
        Cold {
            job_id: job.into(),
            units,
            secs,
        }
    }

    #[test]
    fn the_estimate_is_the_cold_builds_time_per_unit_times_the_units_reused() {
        let a = cold("a", 10, 20.0);
        let b = cold("b", 30, 20.0);
        // Each cold job once, however many dirs carry it.
        assert_eq!(secs_per_unit([&a, &b, &a]), Some(1.0));
        assert_eq!(secs_per_unit([]), None);
        assert_eq!(estimate(Some(1.0), Some(12)), Some(12.0));
        assert_eq!(estimate(None, Some(12)), None);
        assert_eq!(estimate(Some(1.0), None), None);
        // More reused, more saved; a slower cold build, more saved.
        assert!(estimate(Some(1.0), Some(13)) > estimate(Some(1.0), Some(12)));
        assert!(estimate(secs_per_unit([&b]), Some(5)) < estimate(secs_per_unit([&a]), Some(5)));
    }

    #[test]
    fn a_unit_is_compiled_when_written_reused_when_read_and_unsure_when_a_read_could_hide() {
        let tmp = tempfile::tempdir().unwrap();
        let fp = tmp.path();
        let set = |unit: &str, atime: i64, mtime: i64| {
            std::fs::create_dir_all(fp.join(unit)).unwrap();
            let f = fp.join(unit).join("lib-x");
            std::fs::write(&f, "h").unwrap();
            let file = std::fs::File::options().write(true).open(&f).unwrap();
            let at = |s: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64);
            file.set_times(
                std::fs::FileTimes::new()
                    .set_accessed(at(atime))
                    .set_modified(at(mtime)),
            )
            .unwrap();
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let since = (now - 100) as u64 * 1_000_000_000;
        set("written-0000000000000001", now - 200, now - 50);
        set("read-0000000000000002", now - 50, now - 200);
        // Times set just now: the ctime is after both, so relatime would record a read.
        set("reset-0000000000000003", now - 300, now - 300);
        let dir = crate::fs::open_dir_nofollow(
            rustix::fs::CWD,
            std::ffi::OsStr::new(fp.to_str().unwrap()),
        )
        .unwrap();
        let fp = dir.as_fd();
        assert_eq!(
            used(fp, "written-0000000000000001", since, true),
            Use::Compiled
        );
        assert_eq!(used(fp, "read-0000000000000002", since, true), Use::Reused);
        assert_eq!(used(fp, "reset-0000000000000003", since, true), Use::Unused);
        // Read before the job began, in the last day, after its mtime and ctime (the ctime is
        // now, so the atime is set ahead): relatime would not record a read now.
        set("ahead-0000000000000005", now + 50, now - 200);
        let later = (now as u64 + 100) * 1_000_000_000;
        assert_eq!(used(fp, "ahead-0000000000000005", later, true), Use::Unsure);
        assert_eq!(
            used(fp, "ahead-0000000000000005", later, false),
            Use::Unused
        );
        assert_eq!(
            used(fp, "missing-0000000000000004", since, true),
            Use::Unused
        );
    }
}

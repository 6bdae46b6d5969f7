//! The sweep's scan: every job dir's lease read, the expired ones returned oldest first, every
//! other one kept with its reason; the root's size for `--max-root-size`.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::time::SystemTime;

use anyhow::Result;

use crate::fs;
use crate::lease::{self, Lease, Protected, Root};

use super::Sweep;
use super::report::{Kept, Report, WhyKept};

/// A dir whose lease says it has expired (or, for `gc --workspace`, is lingering); still to be
/// confirmed under its lock.
pub(super) struct Expired {
    pub(super) name: OsString,
    pub(super) lease: Lease,
    pub(super) since: SystemTime,
    pub(super) lingering: bool,
}

/// Read every job dir's lease: the expired ones, oldest-expired first (among equals, largest
/// first), are returned to be planned; every other one is kept, with its reason, in `report`.
pub(super) fn scan(
    root: &Root,
    opts: &Sweep,
    spare: Option<&OsStr>,
    now: &lease::Now,
    report: &mut Report,
) -> Result<Vec<Expired>> {
    let mut expired = Vec::new();
    let only = opts.workspace.as_deref();
    for (name, _) in root.job_names()? {
        if spare == Some(name.as_os_str()) {
            report
                .kept
                .push(Kept::new(root, &name, None, WhyKept::OwnDir));
            continue;
        }
        let opened = root.open_job(&name);
        let lease = match opened.as_ref().map(|dir| lease::read(dir.as_fd())) {
            Ok(Ok(lease)) => lease,
            // `gc --workspace`: a dir whose workspace cannot be read is not one of its dirs.
            _ if only.is_some() => continue,
            Ok(Err(why)) => {
                let reason = WhyKept::Lease(Protected::Unknown(why));
                report.kept.push(Kept::new(root, &name, None, reason));
                continue;
            }
            Err(skip) => {
                let reason = WhyKept::Lease(Protected::Skipped(skip.clone()));
                report.kept.push(Kept::new(root, &name, None, reason));
                continue;
            }
        };
        if only.is_some() && lease.workspace.as_deref() != only {
            continue;
        }
        // The same reading as `status`'s (`Protected::of_dir`: the lease, then its locks), so
        // a killed job's dir is "holder gone" in both.
        let verdict = match &opened {
            Ok(dir) => Protected::of_dir(dir.as_fd(), &lease, now, opts.trust),
            Err(_) => Protected::unless_expired(&lease::classify(&lease, now, opts.trust), &lease),
        };
        drop(opened);
        if only.is_some() && matches!(verdict, Err(Protected::Lingering { .. })) {
            expired.push(Expired {
                name,
                lease,
                since: now.wall,
                lingering: true,
            });
            continue;
        }
        match verdict {
            Ok(since) => expired.push(Expired {
                name,
                lease,
                since,
                lingering: false,
            }),
            Err(keep) => {
                let job_id = Some(lease.job_id.clone());
                report
                    .kept
                    .push(Kept::new(root, &name, job_id, WhyKept::Lease(keep)));
            }
        }
    }
    expired.sort_by(|a, b| {
        a.since
            .cmp(&b.since)
            .then(b.lease.size_bytes.cmp(&a.lease.size_bytes))
    });
    Ok(expired)
}

/// What the root holds: every dir under it (job dirs, `.trash/`), together each inode once
/// (the tool's one size function). Walked only when `--max-root-size` is set.
pub(super) fn root_size(root: &Root) -> u64 {
    let entries = fs::list(root.fd()).unwrap_or_default();
    let dirs: Vec<&OsStr> = entries
        .iter()
        .filter(|(_, ty)| *ty == rustix::fs::FileType::Directory)
        .map(|(name, _)| name.as_os_str())
        .collect();
    fs::trees_size(root.fd(), &dirs, None).unwrap_or(0)
}

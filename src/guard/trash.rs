//! `.trash/`: what a sweep claims there (leftovers of earlier sweeps, abandoned `.new-*` dirs),
//! each entry locked until deleted, and the deletes after the turn.

use std::ffi::{OsStr, OsString};
use std::fs::{File, TryLockError};
use std::os::fd::AsFd;

use rustix::fs::AtFlags;

use crate::fault;
use crate::fs;
use crate::lease::{self, NEW_PREFIX, Root, TRASH};

use super::Sweep;
use super::report::{Kept, Removed, Report, WhyKept};

/// A dir this sweep moved into `.trash/` (or a leftover there it claimed), locked by us until
/// it is deleted, so a concurrent sweep neither deletes it too nor reports it twice.
pub(super) struct Pending {
    pub(super) trash_name: OsString,
    pub(super) _lock: File,
    /// What to report once deleted; `None` for leftovers of an earlier sweep (reported then).
    pub(super) removed: Option<Removed>,
}

/// After the turn: delete what this sweep claimed in `.trash/`, counting what each freed.
pub(super) fn delete_pending(root: &Root, pending: Vec<Pending>, report: &mut Report) {
    for p in pending {
        let removal = delete_from_trash(root, &p.trash_name);
        let rest = root.join(TRASH).join(&p.trash_name);
        if let Some(e) = &removal.error {
            report
                .errors
                .push(format!("failed to delete {}: {e}", rest.display()));
        }
        match (p.removed, removal.error) {
            (
                Some(Removed::Expired {
                    job_id,
                    name,
                    dir,
                    expired_for,
                    lingering,
                    over_cap,
                    ..
                }),
                None,
            ) => report.removed.push(Removed::Expired {
                job_id,
                name,
                dir,
                bytes: removal.freed,
                expired_for,
                lingering,
                over_cap,
            }),
            // Never reported as removed: what stays is named, with the error.
            (
                Some(Removed::Expired {
                    job_id, name, dir, ..
                }),
                Some(e),
            ) => {
                report.other_freed += removal.freed;
                let reason = WhyKept::PartlyDeleted {
                    freed: removal.freed,
                    rest,
                    error: e.to_string(),
                };
                report.kept.push(Kept {
                    job_id: Some(job_id),
                    name,
                    dir,
                    reason,
                });
            }
            (Some(Removed::Unfinished { .. }), Some(_)) => report.other_freed += removal.freed,
            (
                Some(Removed::Unfinished {
                    name,
                    dir,
                    older_than,
                    ..
                }),
                None,
            ) => report.removed.push(Removed::Unfinished {
                name,
                dir,
                older_than,
                bytes: removal.freed,
            }),
            // A leftover of an earlier sweep (reported then).
            (None, _) => report.other_freed += removal.freed,
        }
    }
}

/// Lock a `.trash/` entry (a dir, never followed) for deletion; `WouldBlock` while another
/// sweep is deleting it.
pub(super) fn lock_trash_entry(root: &Root, name: &OsStr) -> std::io::Result<File> {
    let trash = fs::open_dir_nofollow(root.fd(), OsStr::new(TRASH))?;
    let entry = File::from(fs::open_dir_nofollow(trash.as_fd(), name)?);
    match entry.try_lock() {
        Ok(()) => Ok(entry),
        Err(TryLockError::WouldBlock) => Err(std::io::ErrorKind::WouldBlock.into()),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Under the turn: claim (lock) what earlier sweeps, possibly killed mid-delete, left in
/// `.trash/`. Entries another sweep is deleting right now are locked by it: skipped, neither
/// deleted twice nor reported twice.
pub(super) fn claim_trash(root: &Root, report: &mut Report, pending: &mut Vec<Pending>) {
    let Ok(trash) = fs::open_dir_nofollow(root.fd(), OsStr::new(TRASH)) else {
        return;
    };
    let Ok(entries) = fs::list(trash.as_fd()) else {
        return;
    };
    for (name, ty) in entries {
        if ty != rustix::fs::FileType::Directory {
            // A symlink or file: remove the entry itself, never what it points to.
            if let Err(e) = rustix::fs::unlinkat(&trash, &name, AtFlags::empty()) {
                report.errors.push(format!(
                    "failed to delete {}: {e}",
                    root.join(TRASH).join(&name).display()
                ));
            }
            continue;
        }
        match lock_trash_entry(root, &name) {
            Ok(lock) => pending.push(Pending {
                trash_name: name,
                _lock: lock,
                removed: None,
            }),
            // Another sweep is deleting it (or it is already gone).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotFound
                ) => {}
            Err(e) => report.errors.push(format!(
                "failed to lock {}: {e}",
                root.join(TRASH).join(&name).display()
            )),
        }
    }
}

/// Under the turn, after [`claim_trash`]: move abandoned `.new-*` dirs (half-created job dirs,
/// seed copies cut short) into `.trash/` and claim them, to be deleted with the rest; a dry run
/// only names them. Returns what they will free, measured as the deletion counts it (each inode
/// once, the dir's own blocks included), so a dry run says what the run frees.
pub(super) fn claim_unfinished(
    root: &Root,
    opts: &Sweep,
    report: &mut Report,
    pending: &mut Vec<Pending>,
) -> u64 {
    let Ok(entries) = fs::list(root.fd()) else {
        return 0;
    };
    let mut projected = 0u64;
    for (name, _) in entries {
        if !name.as_encoded_bytes().starts_with(NEW_PREFIX.as_bytes()) {
            continue;
        }
        let unfinished = |bytes| Removed::Unfinished {
            name: name.to_string_lossy().into_owned(),
            dir: root.join(&name).display().to_string(),
            older_than: opts.unfinished_age,
            bytes,
        };
        if opts.dry_run {
            if let Some(bytes) = would_claim_unfinished(root, &name, opts) {
                projected = projected.saturating_add(bytes);
                report.removed.push(unfinished(bytes));
            }
            continue;
        }
        let Some(trash_name) = lease::claim_unfinished(root, &name, opts.unfinished_age) else {
            continue;
        };
        let bytes = fs::open_dir_nofollow(root.fd(), OsStr::new(TRASH))
            .ok()
            .and_then(|trash| fs::tree_usage(trash.as_fd(), &trash_name, None))
            .map_or(0, |u| u.exclusive);
        match lock_trash_entry(root, &trash_name) {
            Ok(lock) => {
                projected = projected.saturating_add(bytes);
                pending.push(Pending {
                    trash_name,
                    _lock: lock,
                    removed: Some(unfinished(0)),
                });
            }
            Err(e) => report.errors.push(format!(
                "failed to lock {}: {e}",
                root.join(TRASH).join(&trash_name).display()
            )),
        }
    }
    projected
}

/// A dry run's [`lease::claim_unfinished`]: the `.new-*` dir is old enough and nobody holds its
/// locks; what deleting it would free, measured in place. Nothing is taken or moved.
fn would_claim_unfinished(root: &Root, name: &OsStr, opts: &Sweep) -> Option<u64> {
    let dir = root.open_job(name).ok()?;
    if !lease::unfinished_old_enough(&dir, opts.unfinished_age) {
        return None;
    }
    match lease::probe(dir.as_fd(), opts.trust) {
        lease::Holder::Gone | lease::Holder::Unseen => {
            fs::tree_usage(root.fd(), name, None).map(|u| u.exclusive)
        }
        lease::Holder::Live(_) | lease::Holder::Unknown(_) => None,
    }
}

/// Delete `name` in `.trash/`; what it freed (counted, see [`fs::Removal`]) and the first error.
fn delete_from_trash(root: &Root, name: &OsStr) -> fs::Removal {
    let trash = match fs::open_dir_nofollow(root.fd(), OsStr::new(TRASH)) {
        Ok(trash) => trash,
        Err(e) => {
            return fs::Removal {
                freed: 0,
                error: Some(e),
            };
        }
    };
    fault::point("guard-delete");
    fs::remove_tree(trash.as_fd(), name, root.mount)
}

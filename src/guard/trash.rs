//! `.trash/`: what a sweep claims there under its turn (leftovers of earlier sweeps, abandoned
//! `.new-*` dirs), each entry locked until deleted, and the deletes after the turn. Each step
//! returns what it did; the sweep records it in its report.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use crate::fault;
use crate::fs;
use crate::lease::{self, NEW_PREFIX, Root, Trash};

use super::Sweep;
use super::report::Removed;

/// A dir this sweep moved into `.trash/` (or a leftover there it claimed), locked by us until
/// it is deleted, so a concurrent sweep neither deletes it too nor reports it twice.
pub(super) struct Pending {
    trash_name: OsString,
    _lock: File,
    /// What to report once deleted; `None` for leftovers of an earlier sweep (reported then).
    removed: Option<Removed>,
}

/// What one claiming step did in `.trash/`.
#[derive(Default)]
pub(super) struct Claimed {
    /// Claimed and locked, to delete after the turn.
    pub(super) pending: Vec<Pending>,
    /// In a dry run: what would be claimed.
    pub(super) would: Vec<Removed>,
    /// What the claimed (or would-be claimed) dirs will free, as the deletion counts it.
    pub(super) bytes: u64,
    pub(super) errors: Vec<String>,
}

/// What deleting one claimed entry did.
pub(super) struct Deleted {
    /// What the claim said it was (`None`: a leftover of an earlier sweep).
    pub(super) removed: Option<Removed>,
    pub(super) removal: fs::Removal,
    /// Where what could not be deleted stays.
    pub(super) rest: PathBuf,
}

/// Lock `trash_name` in `.trash/`, claimed as `removed`.
pub(super) fn lock_claimed(
    trash: &Trash,
    trash_name: OsString,
    removed: Option<Removed>,
) -> Result<Pending, String> {
    match trash.lock(&trash_name) {
        Ok(lock) => Ok(Pending {
            trash_name,
            _lock: lock,
            removed,
        }),
        Err(e) => Err(format!(
            "failed to lock {}: {e}",
            trash.join(&trash_name).display()
        )),
    }
}

/// After the turn: delete what this sweep claimed in `.trash/`, counting what each freed.
pub(super) fn delete(trash: &Trash, pending: Vec<Pending>) -> Vec<Deleted> {
    pending
        .into_iter()
        .map(|p| {
            fault::point("guard-delete");
            Deleted {
                removal: trash.delete(&p.trash_name),
                rest: trash.join(&p.trash_name),
                removed: p.removed,
            }
        })
        .collect()
}

/// Under the turn: claim (lock) what earlier sweeps, possibly killed mid-delete, left in
/// `.trash/`. Entries another sweep is deleting right now are locked by it: skipped, neither
/// deleted twice nor reported twice.
pub(super) fn claim_leftovers(trash: &Trash) -> Claimed {
    let mut claimed = Claimed::default();
    let Ok(entries) = trash.entries() else {
        return claimed;
    };
    for (name, ty) in entries {
        if ty != rustix::fs::FileType::Directory {
            // A symlink or file: remove the entry itself, never what it points to.
            if let Err(e) = trash.unlink(&name) {
                let path = trash.join(&name);
                claimed
                    .errors
                    .push(format!("failed to delete {}: {e}", path.display()));
            }
            continue;
        }
        match trash.lock(&name) {
            Ok(lock) => claimed.pending.push(Pending {
                trash_name: name,
                _lock: lock,
                removed: None,
            }),
            // Another sweep is deleting it (or it is already gone).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::NotFound
                ) => {}
            Err(e) => {
                let path = trash.join(&name);
                claimed
                    .errors
                    .push(format!("failed to lock {}: {e}", path.display()));
            }
        }
    }
    claimed
}

/// Under the turn, after [`claim_leftovers`]: move abandoned `.new-*` dirs (half-created job
/// dirs, seed copies cut short) into `.trash/` and claim them, to be deleted with the rest; a dry
/// run (no `trash`) only names them. What they will free is measured as the deletion counts it
/// (each inode once, the dir's own blocks included), so a dry run says what the run frees.
pub(super) fn claim_unfinished(root: &Root, trash: Option<&Trash>, opts: &Sweep) -> Claimed {
    let mut claimed = Claimed::default();
    let Ok(entries) = fs::list(root.fd()) else {
        return claimed;
    };
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
        let Some(trash) = trash else {
            if let Some(bytes) = would_claim_unfinished(root, &name, opts) {
                claimed.bytes = claimed.bytes.saturating_add(bytes);
                claimed.would.push(unfinished(bytes));
            }
            continue;
        };
        let trash_name = match lease::claim_unfinished(root, trash, &name, opts.unfinished_age) {
            Ok(Some(trash_name)) => trash_name,
            Ok(None) => continue,
            Err(e) => {
                claimed.errors.push(e);
                continue;
            }
        };
        let bytes = trash.usage(&trash_name).unwrap_or(0);
        match lock_claimed(trash, trash_name, Some(unfinished(0))) {
            Ok(pending) => {
                claimed.bytes = claimed.bytes.saturating_add(bytes);
                claimed.pending.push(pending);
            }
            Err(e) => claimed.errors.push(e),
        }
    }
    claimed
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

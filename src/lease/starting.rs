//! Who else is starting a job of the workspace right now: a `.new-*` dir (a fresh dir or a seed
//! being built, or a job still choosing where to start) whose lease names the workspace and whose
//! lock is held. Part of the rule that decides adopt or seed (docs/protocol.md#seed).

use std::ffi::OsStr;
use std::os::fd::AsFd;

use rustix::fs::FileType;

use crate::fs;
use crate::locks::LockTrust;
use crate::workspace::WorkspaceKey;

use super::layout::NEW_PREFIX;
use super::probe::{Holder, probe};
use super::record::{Lease, State, read};
use super::root::Root;

/// Whether another job of `ours`'s workspace ran at some time during our job (it is running, or
/// its last renewal came after our job started): checked as our job releases, so that two jobs
/// that overlapped both record it (`Lease::together`), even when neither saw the other starting.
/// Reads each job dir's lease in the root (`root` is the root's fd; `name` our dir's name).
pub(super) fn overlapped(root: std::os::fd::BorrowedFd<'_>, name: &OsStr, ours: &Lease) -> bool {
    let Ok(names) = fs::list(root) else {
        return false;
    };
    names
        .iter()
        .filter(|(n, ty)| {
            matches!(ty, FileType::Directory | FileType::Unknown)
                && !n.as_encoded_bytes().starts_with(b".")
                && n != name
        })
        .any(|(n, _)| {
            let Ok(dir) = fs::open_dir_nofollow(root, n) else {
                return false;
            };
            read(dir.as_fd()).is_ok_and(|l| {
                l.workspace.is_some()
                    && l.workspace == ours.workspace
                    && l.toolchain == ours.toolchain
                    && l.job_id != ours.job_id
                    && (l.state == State::Active || l.renewed_at > ours.created_at)
            })
        })
}

/// How many other jobs of `key`'s workspace are starting: their `.new-*` dir (not `ours`) is
/// locked and its lease names the workspace. A dir left behind by a crash (its lock free) is not
/// a job starting.
pub(super) fn others(root: &Root, key: &WorkspaceKey, ours: &str, trust: LockTrust) -> usize {
    let Ok(names) = fs::list(root.fd()) else {
        return 0;
    };
    names
        .iter()
        .filter(|(n, ty)| {
            matches!(ty, FileType::Directory | FileType::Unknown)
                && n.as_encoded_bytes().starts_with(NEW_PREFIX.as_bytes())
                && n != ours
        })
        .filter(|(n, _)| {
            let Ok(dir) = fs::open_dir_nofollow(root.fd(), OsStr::new(n)) else {
                return false;
            };
            read(dir.as_fd()).is_ok_and(|l| l.same_key(key))
                && matches!(probe(dir.as_fd(), trust), Holder::Live(_))
        })
        .count()
}

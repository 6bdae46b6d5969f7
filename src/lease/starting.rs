//! Who else is starting a job of the workspace right now: a `.new-*` dir (a fresh dir or a seed
//! being built, or a job still choosing where to start) whose lease names the workspace and whose
//! lock is held. Part of the rule that decides adopt or seed (docs/protocol.md#seed).

use std::ffi::OsStr;
use std::os::fd::AsFd;

use crate::fs;
use crate::locks::LockTrust;
use crate::workspace::WorkspaceKey;

use super::NEW_PREFIX;
use super::probe::{Holder, probe};
use super::record::read;
use super::root::Root;

/// How many other jobs of `key`'s workspace are starting: their `.new-*` dir (not `ours`) is
/// locked and its lease names the workspace. A dir left behind by a crash (its lock free) is not
/// a job starting.
pub(super) fn others(root: &Root, key: &WorkspaceKey, ours: &str, trust: LockTrust) -> usize {
    let Ok(names) = fs::list(root.fd()) else {
        return 0;
    };
    names
        .iter()
        .filter(|(n, _)| n.as_encoded_bytes().starts_with(NEW_PREFIX.as_bytes()) && n != ours)
        .filter(|(n, _)| {
            let Ok(dir) = fs::open_dir_nofollow(root.fd(), OsStr::new(n)) else {
                return false;
            };
            read(dir.as_fd()).is_ok_and(|l| l.same_key(key))
                && matches!(probe(dir.as_fd(), trust), Holder::Live(_))
        })
        .count()
}

//! File-system primitives the lease protocol and the guard are built on: no-follow opens relative
//! to a directory fd, deletion that never follows a symlink or leaves the root's mount, size
//! walks with a time budget, and free space.
//!
//! Everything here works relative to an open directory fd (the `*at` syscalls, via rustix), so a
//! path component swapped for a symlink between two steps cannot redirect us (CVE-2022-21658).
//!
//! One file per concern: `open` (opens, reads and writes relative to a dir fd; identity),
//! `mount` (mount ids, filesystem kinds), `remove` (deleting a tree), `space` (free space),
//! `usage` (the one size function).

mod mount;
mod open;
mod remove;
mod space;
mod usage;

pub(crate) use mount::{MountId, fs_kind, mount_id_source, mount_of};
pub(crate) use open::{
    Identity, Staged, create_shared_file, identity, identity_at, is_symlink_at, list,
    open_dir_nofollow, open_read_only, read_capped, shared_mode, write_atomic,
};
pub(crate) use remove::{Removal, remove_tree};
pub(crate) use space::Space;
pub(crate) use usage::{Usage, tree_size, tree_usage, trees_size};

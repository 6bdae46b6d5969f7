//! The one size function of the tool: what a tree holds on disk, each inode once (cargo
//! hard-links binaries and build-script executables into several names) and, on filesystems
//! that share extents (XFS with reflink, btrfs), what deleting it would give back.
//!
//! Every size the tool records, prunes by or prints comes from here: [`tree_size`] (allocated
//! bytes, each inode once), [`tree_usage`] (the same plus the bytes not shared with another
//! file) and [`Usage`], the accumulator a walk of its own (pruning's per-unit sums) adds its
//! entries to so that a whole dir still counts each inode once.

// Unsafe: `FS_IOC_FIEMAP` is an ioctl rustix exposes only as a raw `ioctl` call.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::time::Instant;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};

use super::mount::{meta, mount_of};
use super::open::{Identity, open_dir_nofollow, os};

/// Allocated bytes of entries, each inode once: the arithmetic of `du -s --block-size=1`.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    /// Inodes with more than one link already counted (one link: it cannot come back).
    seen: HashSet<Identity>,
    bytes: u64,
}

impl Usage {
    /// Count the entry `st`; returns the bytes it adds: its allocated bytes (`st_blocks * 512`),
    /// or 0 for an inode already counted through another name.
    pub(crate) fn add(&mut self, st: &Stat) -> u64 {
        let linked = st.st_nlink > 1 && FileType::from_raw_mode(st.st_mode) != FileType::Directory;
        if linked && !self.seen.insert((st.st_dev, st.st_ino)) {
            return 0;
        }
        let bytes = (st.st_blocks as u64).saturating_mul(512);
        self.bytes = self.bytes.saturating_add(bytes);
        bytes
    }

    /// The bytes counted so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// What a tree holds and what deleting it would give back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TreeUsage {
    /// Allocated bytes, each inode once.
    pub(crate) bytes: u64,
    /// `bytes` less the extents the filesystem shares with another file (FIEMAP's
    /// `FIEMAP_EXTENT_SHARED`; a reflink copy's are all shared): what deletion frees at most.
    /// Equal to `bytes` on filesystems that cannot share extents (ext4, tmpfs). Extents two files
    /// of the tree share with each other count as shared: this errs low, never high.
    pub(crate) exclusive: u64,
}

/// Bytes used by the tree `name` in `parent` (allocated blocks, not apparent sizes; each inode
/// once), or `None` once `deadline` passes: sizes are for ordering and reports, never worth
/// stalling a build.
pub(crate) fn tree_size(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    deadline: Option<Instant>,
) -> Option<u64> {
    walk(parent, name, deadline, false).map(|u| u.bytes)
}

/// [`tree_size`] and the bytes deleting the tree would free: on a filesystem that can share
/// extents ([`shares_extents`]), each file's shared extents are left out of `exclusive`.
pub(crate) fn tree_usage(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    deadline: Option<Instant>,
) -> Option<TreeUsage> {
    walk(parent, name, deadline, shares_extents(parent))
}

/// [`trees_usage`]'s bytes: the size of several trees in `parent` together, each inode once.
pub(crate) fn trees_size(
    parent: BorrowedFd<'_>,
    names: &[&OsStr],
    deadline: Option<Instant>,
) -> Option<u64> {
    trees(parent, names, deadline, false).map(|u| u.bytes)
}

/// `statfs` magic numbers of the filesystems whose files can share extents (linux/magic.h).
const SHARING_MAGICS: &[i64] = &[0x5846_5342 /* xfs */, 0x9123_683E /* btrfs */];

/// Whether the filesystem of `fd` can share extents between files (XFS, btrfs), decided by its
/// magic number: FIEMAP is only asked where sharing can happen (on ext4 or tmpfs it cannot, and
/// the ioctl would cost a call per file for nothing).
pub(crate) fn shares_extents(fd: BorrowedFd<'_>) -> bool {
    // `f_type`'s width differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstatfs(fd).is_ok_and(|st| SHARING_MAGICS.contains(&(st.f_type as i64)))
}

fn trees(
    parent: BorrowedFd<'_>,
    names: &[&OsStr],
    deadline: Option<Instant>,
    fiemap: bool,
) -> Option<TreeUsage> {
    let mut walk = Walk::new(deadline, fiemap);
    for name in names {
        if let Ok(root) = open_dir_nofollow(parent, name) {
            walk.tree(root)?;
        }
    }
    Some(walk.done())
}

/// One tree, which must be there.
fn walk(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    deadline: Option<Instant>,
    fiemap: bool,
) -> Option<TreeUsage> {
    let root = open_dir_nofollow(parent, name).ok()?;
    let mut walk = Walk::new(deadline, fiemap);
    walk.tree(root)?;
    Some(walk.done())
}

/// One size walk over one or more trees.
struct Walk {
    usage: Usage,
    /// Bytes of counted files in shared extents.
    shared: u64,
    /// Ask FIEMAP for each regular file (the filesystem can share extents).
    fiemap: bool,
    deadline: Option<Instant>,
}

impl Walk {
    fn new(deadline: Option<Instant>, fiemap: bool) -> Walk {
        Walk {
            usage: Usage::default(),
            shared: 0,
            fiemap,
            deadline,
        }
    }

    /// Add the tree whose top is the open dir `root`, the top itself included (as `du -s`
    /// counts it, and as deleting the tree frees it); `None` once the deadline passes.
    fn tree(&mut self, root: OwnedFd) -> Option<()> {
        let mount = mount_of(root.as_fd()).ok()?;
        if let Ok(st) = rustix::fs::fstat(&root) {
            self.usage.add(&st);
        }
        // Pending dirs by (open parent, name), each opened only when its turn comes: the fds
        // held are those of dirs with pending children, not one per pending dir (a
        // `.fingerprint/` with thousands of subdirs would otherwise exhaust the fd limit).
        let mut stack: Vec<(Rc<OwnedFd>, OsString)> = Vec::new();
        let mut next = Some(root);
        loop {
            if let Some(fd) = next.take() {
                if self.deadline.is_some_and(|d| Instant::now() > d) {
                    return None;
                }
                // Never measure into another mount (a bind mount has the same device).
                if meta(fd.as_fd()).is_ok_and(|m| m.mount.same(&mount))
                    && let Ok(dir) = Dir::read_from(&fd)
                {
                    let fd = Rc::new(fd);
                    for entry in dir.flatten() {
                        let child = entry.file_name();
                        if child == c"." || child == c".." {
                            continue;
                        }
                        if self.entry(fd.as_fd(), os(child)) {
                            stack.push((fd.clone(), os(child).to_owned()));
                        }
                    }
                }
            }
            match stack.pop() {
                Some((parent, name)) => next = open_dir_nofollow(parent.as_fd(), &name).ok(),
                None => return Some(()),
            }
        }
    }

    /// Count the entry `name` of `dir`; `true` if it is a directory to go into.
    fn entry(&mut self, dir: BorrowedFd<'_>, name: &OsStr) -> bool {
        let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            return false;
        };
        let added = self.usage.add(&st);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => true,
            FileType::RegularFile if self.fiemap && added > 0 => {
                let shared = shared_bytes_at(dir, name, (st.st_dev, st.st_ino));
                self.shared = self.shared.saturating_add(shared.min(added));
                false
            }
            _ => false,
        }
    }

    fn done(&self) -> TreeUsage {
        TreeUsage {
            bytes: self.usage.bytes(),
            exclusive: self.usage.bytes().saturating_sub(self.shared),
        }
    }
}

/// The bytes of the regular file `name` in `dir` (whose identity is `id`) in extents shared
/// with another file. Opened without following a symlink and without blocking on a FIFO swapped
/// in, and only counted if it still is the inode `id`. 0 when it cannot be asked.
pub(super) fn shared_bytes_at(dir: BorrowedFd<'_>, name: &OsStr, id: Identity) -> u64 {
    let Ok(fd) = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return 0;
    };
    match rustix::fs::fstat(&fd) {
        Ok(now) if (now.st_dev, now.st_ino) == id => shared_bytes(fd.as_fd()),
        _ => 0,
    }
}

/// `FIEMAP_EXTENT_LAST`: the file's last extent.
const EXTENT_LAST: u32 = 0x1;
/// `FIEMAP_EXTENT_SHARED`: the extent is shared with another file (reflink, snapshot).
const EXTENT_SHARED: u32 = 0x2000;
/// Extents asked for per ioctl.
const EXTENTS_PER_CALL: usize = 64;

/// `struct fiemap` (linux/fiemap.h) with room for [`EXTENTS_PER_CALL`] extents after it.
#[repr(C)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [FiemapExtent; EXTENTS_PER_CALL],
}

/// `struct fiemap_extent`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

/// The ioctl number of `FS_IOC_FIEMAP`: `_IOWR('f', 11, struct fiemap)`, whose size is the
/// 32-byte header without the extents.
const FS_IOC_FIEMAP: rustix::ioctl::Opcode =
    rustix::ioctl::opcode::read_write::<[u64; 4]>(b'f', 11);

/// The bytes of the open file `fd` in shared extents (FIEMAP, without `FIEMAP_FLAG_SYNC`: data
/// not yet written back has no extent to share). 0 when the filesystem cannot say.
fn shared_bytes(fd: BorrowedFd<'_>) -> u64 {
    let mut shared = 0u64;
    let mut start = 0u64;
    loop {
        let mut map = Fiemap {
            start,
            length: u64::MAX - start,
            flags: 0,
            mapped_extents: 0,
            extent_count: EXTENTS_PER_CALL as u32,
            reserved: 0,
            extents: [FiemapExtent::default(); EXTENTS_PER_CALL],
        };
        // SAFETY: `Fiemap` is `struct fiemap` followed by `extent_count` extents, as the kernel
        // expects for FS_IOC_FIEMAP; it writes at most `extent_count` extents into it.
        let asked = unsafe {
            rustix::ioctl::ioctl(
                fd,
                rustix::ioctl::Updater::<FS_IOC_FIEMAP, Fiemap>::new(&mut map),
            )
        };
        if asked.is_err() {
            return shared;
        }
        let mapped = (map.mapped_extents as usize).min(EXTENTS_PER_CALL);
        if mapped == 0 {
            return shared;
        }
        for e in &map.extents[..mapped] {
            if e.flags & EXTENT_SHARED != 0 {
                shared = shared.saturating_add(e.length);
            }
        }
        let last = map.extents[mapped - 1];
        if last.flags & EXTENT_LAST != 0 || last.length == 0 {
            return shared;
        }
        start = last.logical.saturating_add(last.length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn a_hard_linked_file_counts_once() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("d/deps")).unwrap();
        std::fs::write(t.path().join("d/deps/app-1"), vec![1u8; 256 * 1024]).unwrap();
        std::fs::hard_link(t.path().join("d/deps/app-1"), t.path().join("d/app")).unwrap();
        let parent = File::open(t.path()).unwrap();
        let size = tree_size(parent.as_fd(), OsStr::new("d"), None).unwrap();
        let usage = tree_usage(parent.as_fd(), OsStr::new("d"), None).unwrap();
        assert!(size >= 256 * 1024, "{size}");
        assert!(size < 2 * 256 * 1024, "{size}: the hard link counted twice");
        assert_eq!(usage.bytes, size);
    }

    #[test]
    fn usage_add_returns_zero_for_an_inode_seen_before() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), vec![1u8; 8192]).unwrap();
        std::fs::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
        let stat = |n: &str| rustix::fs::stat(t.path().join(n)).unwrap();
        let mut usage = Usage::default();
        let first = usage.add(&stat("a"));
        assert!(first >= 8192);
        assert_eq!(usage.add(&stat("b")), 0);
        assert_eq!(usage.bytes(), first);
    }

    #[test]
    fn sizes_are_measured() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), vec![1u8; 10_000]).unwrap();
        let d = File::open(t.path()).unwrap();
        assert!(tree_size(d.as_fd(), OsStr::new("d"), None).unwrap() >= 10_000);
    }
}

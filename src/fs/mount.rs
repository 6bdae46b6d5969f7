//! Which mount a file is on (deletion never leaves the root's), as `statx` and
//! `/proc/self/fdinfo` tell it, and what kind of filesystem a directory is on.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// The mount a file lives on: its device and, where the kernel says, its mount id.
///
/// The device alone cannot tell a bind mount from its surroundings: a bind mount of the same
/// filesystem has the same `st_dev`. Its mount id (`statx` `STATX_MNT_ID`, Linux 5.8; before
/// that the `mnt_id:` line of `/proc/self/fdinfo`, Linux 3.15) differs. Only where neither is
/// available (`mnt: None`) is the device all we compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MountId {
    pub(crate) dev: u64,
    pub(crate) mnt: Option<u64>,
}

impl MountId {
    /// Whether `other` is provably on this same mount. An unknown mount id on either side when
    /// the other has one counts as a different mount: deletion then keeps it.
    pub(super) fn same(&self, other: &MountId) -> bool {
        self.dev == other.dev && self.mnt == other.mnt
    }
}

/// What deletion needs to know about an open file or an entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) mount: MountId,
    pub(crate) ino: u64,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) nlink: u64,
    /// Allocated bytes (`st_blocks * 512`).
    pub(super) bytes: u64,
}

impl Meta {
    pub(super) fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
}

/// The mount, identity and size of the open file `fd` (an `O_PATH` fd is fine).
pub(crate) fn meta(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    meta_at(fd, OsStr::new(""))
}

/// The same for the entry `name` in `dir` (not followed if it is a symlink); an empty `name`
/// means `dir` itself.
pub(super) fn meta_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Meta> {
    use rustix::fs::StatxFlags;
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    match rustix::fs::statx(
        dir,
        name,
        flags,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    ) {
        Ok(st) => {
            let mnt = if st.stx_mask & StatxFlags::MNT_ID.bits() != 0 {
                Some(st.stx_mnt_id)
            } else {
                mount_id_fallback(dir, name)
            };
            Ok(Meta {
                mount: MountId {
                    dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
                    mnt,
                },
                ino: st.stx_ino,
                mode: u32::from(st.stx_mode),
                uid: st.stx_uid,
                nlink: u64::from(st.stx_nlink),
                bytes: st.stx_blocks.saturating_mul(512),
            })
        }
        // Kernels before 4.11 (and some seccomp filters) have no statx.
        Err(Errno::NOSYS) => {
            let st = rustix::fs::statat(dir, name, flags)?;
            Ok(Meta {
                mount: MountId {
                    dev: st.st_dev,
                    mnt: mount_id_fallback(dir, name),
                },
                ino: st.st_ino,
                mode: st.st_mode,
                uid: st.st_uid,
                nlink: st.st_nlink,
                bytes: (st.st_blocks as u64).saturating_mul(512),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The mount id from `/proc/self/fdinfo/<fd>`, for kernels without `STATX_MNT_ID`. Only for
/// the fd itself: an entry by name has to be opened (`O_PATH`, no-follow) first.
fn mount_id_fallback(dir: BorrowedFd<'_>, name: &OsStr) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let opened;
    let fd = if name.is_empty() {
        dir
    } else {
        opened = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        opened.as_fd()
    };
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// How this kernel tells mounts apart, for `-v` and `doctor`.
pub(crate) fn mount_id_source(fd: BorrowedFd<'_>) -> &'static str {
    use rustix::fs::StatxFlags;
    match rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID) {
        Ok(st) if st.stx_mask & StatxFlags::MNT_ID.bits() != 0 => "statx mount ids",
        _ if mount_id_fallback(fd, OsStr::new("")).is_some() => "/proc/self/fdinfo mount ids",
        _ => {
            "devices only (no statx mount id, no /proc): a bind mount of the same filesystem \
              inside an expired dir is not recognised"
        }
    }
}

/// The mount of the open file `fd`.
pub(crate) fn mount_of(fd: BorrowedFd<'_>) -> io::Result<MountId> {
    Ok(meta(fd)?.mount)
}

/// A filesystem a root is likely to be on, by its `statfs` magic number (linux/magic.h): the one
/// table behind `doctor`'s filesystem line and lock trust (`locks::assess`).
#[derive(Debug)]
pub(crate) struct FsKind {
    pub(crate) magic: i64,
    pub(crate) name: &'static str,
    /// `Some(why)` where a `flock` can "succeed" while another client holds it (network and
    /// FUSE filesystems): the reason lock trust gives. `None`: kernel-enforced locks.
    pub(crate) locks_may_lie: Option<&'static str>,
}

const fn kind(magic: i64, name: &'static str, locks_may_lie: Option<&'static str>) -> FsKind {
    FsKind {
        magic,
        name,
        locks_may_lie,
    }
}

pub(crate) const FS_KINDS: &[FsKind] = &[
    kind(0xEF53, "ext2/3/4", None),
    kind(0x5846_5342, "xfs", None),
    kind(0x9123_683E, "btrfs", None),
    kind(0x2FC1_2FC1, "zfs", None),
    kind(0xF2F5_2010, "f2fs", None),
    kind(0x0102_1994, "tmpfs", None),
    kind(0x8584_58F6, "ramfs", None),
    kind(0x794C_7630, "overlayfs", None),
    kind(0x6969, "nfs", Some("nfs")),
    kind(0x517B, "smb", Some("smb")),
    kind(0xFF53_4D42, "cifs", Some("cifs")),
    kind(0xFE53_4D42, "smb2", Some("smb2")),
    kind(0x6573_5546, "fuse", Some("fuse (includes virtiofs)")),
    kind(0x0102_1997, "9p", Some("9p")),
    kind(0x00C3_6400, "ceph", Some("ceph")),
    kind(0x6B41_4653, "afs", Some("afs")),
];

/// The known filesystem with this `statfs` magic number.
pub(crate) fn fs_kind(magic: i64) -> Option<&'static FsKind> {
    FS_KINDS.iter().find(|k| k.magic == magic)
}

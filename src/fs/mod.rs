//! File-system primitives the lease protocol and the guard are built on: no-follow opens relative
//! to a directory fd, deletion that never follows a symlink or leaves the root's mount, size
//! walks with a time budget, and free space.
//!
//! Everything here works relative to an open directory fd (the `*at` syscalls, via rustix), so a
//! path component swapped for a symlink between two steps cannot redirect us (CVE-2022-21658).

use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

mod usage;
pub(crate) use usage::{Usage, shares_extents, tree_size, tree_usage, trees_size};

/// `(st_dev, st_ino)`: what a path has to still name for us to trust it is the dir we locked.
pub(crate) type Identity = (u64, u64);

/// Open `name` in `dir` as a directory, refusing symlinks (`ELOOP`) and non-directories
/// (`ENOTDIR`).
pub(crate) fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `(dev, ino)` of an open file.
pub(crate) fn identity(fd: BorrowedFd<'_>) -> io::Result<Identity> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// `(dev, ino)` of the entry `name` in `dir`, without following a symlink.
pub(crate) fn identity_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Identity> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok((st.st_dev, st.st_ino))
}

/// Whether the entry `name` in `dir` is a symlink (not followed).
pub(crate) fn is_symlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
}

/// Names in `dir`, without `.` and `..`.
pub(crate) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<(OsString, FileType)>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((OsStr::from_bytes(name).to_owned(), entry.file_type()));
    }
    Ok(out)
}

/// Read at most `cap` bytes of the regular file `name` in `dir`; `Ok(None)` if it is larger.
/// Never follows a symlink and never blocks on a FIFO (`O_NONBLOCK`, then a type check).
pub(crate) fn read_capped(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    cap: u64,
) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if st.st_size as u64 > cap {
        return Ok(None);
    }
    let mut buf = Vec::with_capacity(st.st_size as usize);
    File::from(fd).take(cap + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= cap).then_some(buf))
}

/// Replace `name` in `dir` atomically with `bytes` (temp file + rename), so a reader sees the old
/// or the new contents, never half of either. The temp name is unique, so concurrent writers
/// (several jobs creating one new root's `CACHEDIR.TAG`) never rename each other's file away.
pub(crate) fn write_atomic(dir: BorrowedFd<'_>, name: &str, bytes: &[u8]) -> io::Result<()> {
    Staged::write(dir, name, bytes)?.commit()
}

/// A replacement for `name` in `dir`, written in full to a temp file but not yet in place:
/// whatever can fail for want of space has failed by now, and `commit` is a rename over an
/// existing name. Dropped uncommitted, the temp file is removed.
pub(crate) struct Staged<'a> {
    dir: BorrowedFd<'a>,
    name: &'a str,
    tmp: Option<String>,
}

impl<'a> Staged<'a> {
    pub(crate) fn write(dir: BorrowedFd<'a>, name: &'a str, bytes: &[u8]) -> io::Result<Self> {
        use std::io::Write;
        let tmp = format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple());
        let fd = rustix::fs::openat(
            dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let staged = Staged {
            dir,
            name,
            tmp: Some(tmp),
        };
        File::from(fd).write_all(bytes)?;
        Ok(staged)
    }

    /// Put it in place (a rename within `dir`).
    pub(crate) fn commit(mut self) -> io::Result<()> {
        let tmp = self.tmp.take().unwrap_or_default();
        let renamed = rustix::fs::renameat(self.dir, tmp.as_str(), self.dir, self.name);
        if renamed.is_err() {
            let _ = rustix::fs::unlinkat(self.dir, tmp.as_str(), AtFlags::empty());
        }
        Ok(renamed?)
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = rustix::fs::unlinkat(self.dir, tmp.as_str(), AtFlags::empty());
        }
    }
}

/// `base` plus the write bits `dir` grants its group and others (and its sticky bit, for a
/// `base` with an execute bit, i.e. a dir): in a shared root (mode 1777) every user's jobs and
/// guards must be able to use the entries any of them created.
pub(crate) fn shared_mode(dir: BorrowedFd<'_>, base: u32) -> Mode {
    let dir_mode = rustix::fs::fstat(dir).map_or(0, |st| st.st_mode);
    let mut mode = base | (dir_mode & 0o022);
    if base & 0o100 != 0 {
        mode |= dir_mode & 0o1000;
    }
    Mode::from_raw_mode(mode)
}

/// Create the file `name` in `dir` with `dir`'s sharing mode (`fchmod` after create: the umask).
/// An existing one is opened read-only (`flock` works on any open file, and another user's file
/// need not be writable for us).
pub(crate) fn create_shared_file(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    match rustix::fs::openat(
        dir,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => {
            rustix::fs::fchmod(&fd, shared_mode(dir, 0o644))?;
            Ok(File::from(fd))
        }
        Err(Errno::EXIST) => open_read_only(dir, name),
        Err(e) => Err(e.into()),
    }
}

/// Open the file `name` in `dir` read-only, never following a symlink.
pub(crate) fn open_read_only(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let ro = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        ro,
        Mode::empty(),
    )?))
}

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
    fn same(&self, other: &MountId) -> bool {
        self.dev == other.dev && self.mnt == other.mnt
    }
}

/// What deletion needs to know about an open file or an entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) mount: MountId,
    pub(crate) ino: u64,
    mode: u32,
    uid: u32,
    nlink: u64,
    /// Allocated bytes (`st_blocks * 512`).
    bytes: u64,
}

impl Meta {
    fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
}

/// The mount, identity and size of the open file `fd` (an `O_PATH` fd is fine).
pub(crate) fn meta(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    meta_at(fd, OsStr::new(""))
}

/// The same for the entry `name` in `dir` (not followed if it is a symlink); an empty `name`
/// means `dir` itself.
fn meta_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Meta> {
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

/// What [`remove_tree`] did: the bytes it freed, and the first thing it could not remove.
#[derive(Debug, Default)]
pub(crate) struct Removal {
    /// Allocated bytes of what was unlinked: files whose link count was 1 at the unlink (a file
    /// with another hard link frees nothing yet) and removed directories; on a filesystem that
    /// shares extents, without a file's extents still shared at its unlink (a reflink copy's). Counted, not read back
    /// from `statvfs`, which lags behind on filesystems with delayed block accounting.
    pub(crate) freed: u64,
    /// The first error; what it concerns is still there, with its ancestors.
    pub(crate) error: Option<io::Error>,
}

impl Removal {
    fn fail(&mut self, e: impl Into<io::Error>) {
        self.error.get_or_insert(e.into());
    }

    /// The freed bytes, or the first error.
    pub(crate) fn result(self) -> io::Result<u64> {
        self.error.map_or(Ok(self.freed), Err)
    }
}

/// Directory fds [`remove_tree`] keeps open at most, whatever the depth: far below any fd limit.
const OPEN_DIRS: usize = 16;

/// Remove the tree `name` in `parent`, which must be on `mount`. What cannot be removed (a
/// mount point inside, an entry that fails) stays with its ancestors; everything else goes.
///
/// The rules, each because this is the one primitive that deletes, and what is inside a tree is
/// written by someone else:
/// - **Relative to an open directory fd, never a path** (`openat`/`unlinkat`): a path component
///   swapped for a symlink between two steps cannot redirect a deletion (CVE-2022-21658).
/// - **Never follow a symlink**: every open is `O_NOFOLLOW | O_DIRECTORY`, and a symlink is
///   unlinked as an entry; what it points to is not touched.
/// - **Never cross a mount**: a directory is only entered if its device *and mount id* equal
///   `mount`. A filesystem mounted inside (tmpfs, a bind mount of the same disk, which only the
///   mount id tells apart) keeps its files; the error names it.
/// - **Never leave the tree**: at most [`OPEN_DIRS`] directory fds are held, so a tree deeper
///   than the fd limit can still be deleted. An ancestor whose fd was closed is re-opened as
///   `..` of its child and must have the `(dev, ino, mount)` recorded when it was entered; a
///   dir moved elsewhere meanwhile fails the check and the walk stops there, keeping the rest.
///   Before each `rmdir`, the name must still be the dir that was emptied.
/// - **Only chmod what we own**: a directory without owner write or search permission (Go's
///   module cache is `0555`) gets them added before it is emptied, if and only if its owner is
///   our effective uid; anything else that denies us stays, with the error.
///
/// Iterative, so a deep tree cannot overflow the stack.
pub(crate) fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr, mount: MountId) -> Removal {
    let mut walk = Walk {
        parent,
        mount,
        shares_extents: shares_extents(parent),
        stack: Vec::new(),
        low: 0,
        out: Removal::default(),
    };
    match open_for_removal(parent, name, mount) {
        Ok((dir, meta)) => walk.enter(name.to_owned(), dir, meta),
        Err(e) => walk.out.fail(e),
    }
    while let Step::Continue = walk.step() {}
    walk.out
}

/// A directory [`remove_tree`] is inside of.
struct Frame {
    name: OsString,
    meta: Meta,
    /// `None` once closed to stay within [`OPEN_DIRS`]; re-opened through `..`.
    dir: Option<Dir>,
    /// Entries that stay: skipped when the dir is read again after a re-open.
    kept: std::collections::HashSet<OsString>,
}

/// The state of one [`remove_tree`]: the dirs from the tree's top down to where it is.
struct Walk<'a> {
    parent: BorrowedFd<'a>,
    mount: MountId,
    /// The filesystem can share extents (XFS, btrfs): a file frees only its unshared extents.
    shares_extents: bool,
    stack: Vec<Frame>,
    /// Frames `low..` hold an open dir; those below were closed.
    low: usize,
    out: Removal,
}

enum Step {
    Continue,
    Done,
}

impl Walk<'_> {
    /// Go down into `dir`, closing the highest open ancestor beyond [`OPEN_DIRS`].
    fn enter(&mut self, name: OsString, dir: Dir, meta: Meta) {
        self.stack.push(Frame {
            name,
            meta,
            dir: Some(dir),
            kept: Default::default(),
        });
        if self.stack.len() - self.low > OPEN_DIRS {
            self.stack[self.low].dir = None;
            self.low += 1;
        }
    }

    /// Remove the next entry of the dir on top or, once it has none left, the dir itself.
    fn step(&mut self) -> Step {
        let Some(top) = self.stack.last_mut() else {
            return Step::Done;
        };
        let dir = top.dir.as_mut().expect("the top frame is open");
        match dir.read() {
            Some(Ok(entry)) => {
                let child = os(entry.file_name());
                if child != "." && child != ".." && !top.kept.contains(child) {
                    let child = child.to_owned();
                    self.remove_entry(child);
                }
                Step::Continue
            }
            Some(Err(e)) => {
                // The rest of this dir stays; its `rmdir` then fails with ENOTEMPTY.
                self.out.fail(e);
                self.leave()
            }
            None => self.leave(),
        }
    }

    /// Unlink `child` of the dir on top, or go down into it if it is a directory.
    fn remove_entry(&mut self, child: OsString) {
        let top = self.stack.last_mut().expect("called with a frame on top");
        let fd = match top.dir.as_ref().expect("the top frame is open").fd() {
            Ok(fd) => fd,
            Err(e) => {
                self.out.fail(e);
                top.kept.insert(child);
                return;
            }
        };
        let st = match meta_at(fd, &child) {
            Ok(st) => st,
            Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => return,
            Err(e) => {
                self.out.fail(e);
                top.kept.insert(child);
                return;
            }
        };
        if st.file_type() == FileType::Directory {
            match open_for_removal(fd, &child, self.mount) {
                Ok((dir, meta)) => self.enter(child, dir, meta),
                Err(e) => {
                    self.out.fail(e);
                    top.kept.insert(child);
                }
            }
            return;
        }
        // Asked right before the unlink: an extent this tree shared with a file it already
        // deleted is no longer shared, one shared with a file outside is not freed.
        let shared =
            if self.shares_extents && st.nlink <= 1 && st.file_type() == FileType::RegularFile {
                usage::shared_bytes_at(fd, &child, (st.mount.dev, st.ino))
            } else {
                0
            };
        match rustix::fs::unlinkat(fd, &child, AtFlags::empty()) {
            Ok(()) if st.nlink <= 1 => self.out.freed += st.bytes.saturating_sub(shared),
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => {
                self.out.fail(e);
                top.kept.insert(child);
            }
        }
    }

    /// The dir on top is empty (or holds only what stays): remove it from its parent.
    fn leave(&mut self) -> Step {
        let done = self.stack.pop().expect("called with a frame on top");
        self.low = self.low.min(self.stack.len());
        if self.stack.is_empty() {
            drop(done.dir);
            self.out.freed +=
                rmdir_checked(self.parent, &done.name, &done.meta, &mut self.out).unwrap_or(0);
            return Step::Done;
        }
        if !self.reopen_top(&done) {
            // We can no longer prove where we are: stop, keeping everything left.
            return Step::Done;
        }
        drop(done.dir);
        let up = self.stack.last_mut().expect("checked above");
        let at = match up.dir.as_ref().expect("open or just re-opened").fd() {
            Ok(fd) => fd,
            Err(e) => {
                self.out.fail(e);
                up.kept.insert(done.name);
                return Step::Continue;
            }
        };
        match rmdir_checked(at, &done.name, &done.meta, &mut self.out) {
            Some(bytes) => self.out.freed += bytes,
            None => {
                up.kept.insert(done.name);
            }
        }
        Step::Continue
    }

    /// Re-open the dir on top if it was closed, as `..` of `child`, checking its identity.
    fn reopen_top(&mut self, child: &Frame) -> bool {
        let up = self.stack.last_mut().expect("called with a frame on top");
        if up.dir.is_some() {
            return true;
        }
        crate::fault::point("remove-tree-reopen");
        let child_fd = child.dir.as_ref().expect("the child frame is open").fd();
        match child_fd
            .map_err(io::Error::from)
            .and_then(|fd| reopen_parent(fd, &up.meta))
        {
            Ok(dir) => up.dir = Some(dir),
            Err(e) => {
                self.out.fail(e);
                return false;
            }
        }
        self.low = self.stack.len() - 1;
        true
    }
}

/// Open the directory `name` in `at` for emptying: not a symlink, on `mount`, and writable and
/// searchable by us (adding the owner bits only on a dir we own).
fn open_for_removal(at: BorrowedFd<'_>, name: &OsStr, mount: MountId) -> io::Result<(Dir, Meta)> {
    let on_mount = |meta: &Meta| {
        if meta.mount.same(&mount) {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{} is a mount point (another filesystem or a bind mount); left in place",
                Path::new(name).display()
            )))
        }
    };
    let euid = rustix::process::geteuid().as_raw();
    let fd = match open_dir_nofollow(at, name) {
        Ok(fd) => fd,
        Err(e) if Errno::from_io_error(&e) == Some(Errno::ACCESS) => {
            // Not even readable by us (mode 0000, 0333…). An `O_PATH` fd names the inode without
            // read permission, so the check and the chmod concern the same dir even if the name
            // is swapped meanwhile (a chmod by name would follow a symlink put there).
            let path = rustix::fs::openat(
                at,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let meta = meta(path.as_fd())?;
            on_mount(&meta)?;
            if meta.uid != euid {
                return Err(e);
            }
            use std::os::fd::AsRawFd;
            rustix::fs::chmod(
                format!("/proc/self/fd/{}", path.as_raw_fd()),
                Mode::from_raw_mode((meta.mode & 0o7777) | 0o700),
            )?;
            rustix::fs::openat(
                &path,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?
        }
        Err(e) => return Err(e),
    };
    let meta = meta(fd.as_fd())?;
    on_mount(&meta)?;
    if meta.file_type() != FileType::Directory {
        return Err(io::Error::from(Errno::NOTDIR));
    }
    // Emptying a dir needs write and search permission on it. Only on our own dirs: we never
    // change the mode of something another user owns.
    if meta.mode & 0o300 != 0o300 && meta.uid == euid {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode((meta.mode & 0o7777) | 0o700))?;
    }
    Ok((Dir::new(fd)?, meta))
}

/// Re-open the parent of the open dir `child` through `..`, and check it is the dir recorded as
/// `expected` when the walk entered it.
fn reopen_parent(child: BorrowedFd<'_>, expected: &Meta) -> io::Result<Dir> {
    let fd = open_dir_nofollow(child, OsStr::new(".."))?;
    let found = meta(fd.as_fd())?;
    if found.ino != expected.ino || !found.mount.same(&expected.mount) {
        return Err(io::Error::other(
            "a directory was moved while it was being deleted; the rest is left in place",
        ));
    }
    Ok(Dir::new(fd)?)
}

/// `rmdir` `name` in `at` if it still is the dir `expected` that was emptied; the bytes freed,
/// or `None` (the error recorded) if it stays.
fn rmdir_checked(
    at: BorrowedFd<'_>,
    name: &OsStr,
    expected: &Meta,
    out: &mut Removal,
) -> Option<u64> {
    match meta_at(at, name) {
        Ok(now) if now.ino == expected.ino && now.mount.same(&expected.mount) => {}
        Ok(_) => {
            out.fail(io::Error::other(format!(
                "{} was replaced while it was being deleted; left in place",
                Path::new(name).display()
            )));
            return None;
        }
        Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => return Some(0),
        Err(e) => {
            out.fail(e);
            return None;
        }
    }
    match rustix::fs::unlinkat(at, name, AtFlags::REMOVEDIR) {
        Ok(()) => Some(expected.bytes),
        // Someone else removed it first: nothing freed by us.
        Err(Errno::NOENT) => Some(0),
        // Not empty because of what already failed: that error says why.
        Err(Errno::NOTEMPTY) if out.error.is_some() => None,
        Err(e) => {
            out.fail(e);
            None
        }
    }
}

fn os(name: &CStr) -> &OsStr {
    OsStr::from_bytes(name.to_bytes())
}

/// Free space for unprivileged users, what is used, and the filesystem's total size, as `df`
/// counts them.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Space {
    /// What an unprivileged job may still write (`f_bavail`).
    pub(crate) free: u64,
    /// The filesystem's size (`f_blocks`), as `df` shows it.
    pub(crate) total: u64,
    /// Used (`f_blocks - f_bfree`). The blocks reserved for root (ext4's `-m 5`) are neither
    /// used nor free for a job: they are in `total` only.
    #[serde(skip)]
    pub(crate) used: u64,
}

impl Space {
    pub(crate) fn of(path: &Path) -> io::Result<Space> {
        // Free is what an unprivileged job may still write (`f_bavail`, not `f_bfree`: the
        // blocks reserved for root are no room for a build); all in fragment-size units.
        let st = rustix::fs::statvfs(path)?;
        Ok(Space {
            free: st.f_bavail.saturating_mul(st.f_frsize),
            total: st.f_blocks.saturating_mul(st.f_frsize),
            used: st
                .f_blocks
                .saturating_sub(st.f_bfree)
                .saturating_mul(st.f_frsize),
        })
    }

    /// What percentages are of, as `df`'s `Use%` computes it: used plus free for unprivileged
    /// users (`f_blocks - f_bfree + f_bavail`). A percentage threshold (`--reclaim-below 15%`,
    /// `--min-free`) is a share of this too, so "85% used" is exactly `--reclaim-below 15%`.
    pub(crate) fn base(&self) -> u64 {
        self.used.saturating_add(self.free)
    }

    /// The same filesystem with `free` bytes free: what a sweep freed is no longer used.
    pub(crate) fn with_free(self, free: u64) -> Space {
        Space {
            free,
            used: self.base().saturating_sub(free),
            total: self.total,
        }
    }

    /// Used share of the disk in whole percent, rounded up, as `df` prints `Use%`.
    pub(crate) fn used_pct(&self) -> u64 {
        let base = self.base() as u128;
        if base == 0 {
            return 0;
        }
        (self.used as u128 * 100).div_ceil(base) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn remove_tree_does_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), "keep").unwrap();
        let victim = t.path().join("victim");
        std::fs::create_dir_all(victim.join("a/b/c")).unwrap();
        std::fs::write(victim.join("a/b/c/file"), "x").unwrap();
        symlink(&outside, victim.join("a/link")).unwrap();
        let parent = File::open(t.path()).unwrap();
        let mount = mount_of(parent.as_fd()).unwrap();
        remove_tree(parent.as_fd(), OsStr::new("victim"), mount)
            .result()
            .unwrap();
        assert!(!victim.exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("precious")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn remove_tree_refuses_a_symlink_at_the_top() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        symlink(t.path().join("real"), t.path().join("link")).unwrap();
        let parent = File::open(t.path()).unwrap();
        let mount = mount_of(parent.as_fd()).unwrap();
        assert!(
            remove_tree(parent.as_fd(), OsStr::new("link"), mount)
                .result()
                .is_err()
        );
        assert!(t.path().join("real").exists());
    }

    /// Deeper than [`OPEN_DIRS`], so ancestors are closed and re-opened through `..`; every
    /// file's blocks are counted.
    #[test]
    fn remove_tree_deletes_a_tree_deeper_than_its_open_dirs_and_counts_bytes() {
        let t = tempfile::tempdir().unwrap();
        let mut deep = t.path().join("victim");
        for i in 0..(OPEN_DIRS * 5) {
            deep.push(format!("d{i}"));
            std::fs::create_dir_all(&deep).unwrap();
            std::fs::write(deep.join("f"), vec![1u8; 8192]).unwrap();
            std::fs::write(deep.parent().unwrap().join(format!("g{i}")), "x").unwrap();
        }
        let before = tree_size(
            File::open(t.path()).unwrap().as_fd(),
            OsStr::new("victim"),
            None,
        )
        .unwrap();
        let parent = File::open(t.path()).unwrap();
        let mount = mount_of(parent.as_fd()).unwrap();
        let freed = remove_tree(parent.as_fd(), OsStr::new("victim"), mount)
            .result()
            .unwrap();
        assert!(!t.path().join("victim").exists());
        // `tree_size` leaves out the top dir's own blocks.
        assert!(
            freed >= before && freed >= (OPEN_DIRS as u64 * 5 * 8192),
            "{freed} < {before}"
        );
    }

    /// A hard-linked file frees nothing until its last link goes.
    #[test]
    fn remove_tree_counts_a_hard_linked_file_once() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("victim/a")).unwrap();
        std::fs::write(t.path().join("victim/a/f"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(t.path().join("victim/a/f"), t.path().join("outside")).unwrap();
        let parent = File::open(t.path()).unwrap();
        let mount = mount_of(parent.as_fd()).unwrap();
        let freed = remove_tree(parent.as_fd(), OsStr::new("victim"), mount)
            .result()
            .unwrap();
        assert!(freed < 64 * 1024, "{freed}");
        assert_eq!(
            std::fs::read(t.path().join("outside")).unwrap().len(),
            64 * 1024
        );
    }

    #[test]
    fn read_capped_rejects_large_and_special_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("big"), vec![b'x'; 100]).unwrap();
        std::fs::write(t.path().join("small"), "hi").unwrap();
        let d = File::open(t.path()).unwrap();
        assert_eq!(read_capped(d.as_fd(), OsStr::new("big"), 10).unwrap(), None);
        assert_eq!(
            read_capped(d.as_fd(), OsStr::new("small"), 10)
                .unwrap()
                .unwrap(),
            b"hi"
        );
        assert!(read_capped(d.as_fd(), OsStr::new("."), 10).is_err());
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

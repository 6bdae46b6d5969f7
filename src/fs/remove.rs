//! Deleting a tree: never following a symlink, never leaving the root's mount, a bounded number
//! of open dirs however deep it is, and counting what it freed as it unlinks.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::mount::{Meta, MountId, meta, meta_at};
use super::open::{open_dir_nofollow, os};
use super::usage::{self, shares_extents};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::mount::mount_of;
    use crate::fs::usage::tree_size;
    use std::fs::File;
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
}

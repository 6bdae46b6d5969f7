//! The root (docs/protocol.md#the-root): opening or laying it out, proving it is one, and
//! opening its job dirs relative to its fd.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::fs;

use super::layout::{GUARD_LOCK, ROOT_MARKER, TOOLCHAIN_CACHE, TRASH};
use super::trash::Trash;

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This directory holds cargo-guarded job dirs (Rust target dirs).\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// The shared root, opened once; every other path is resolved relative to its fd.
pub(crate) struct Root {
    pub(crate) path: PathBuf,
    fd: OwnedFd,
    /// The root's mount (device and mount id): deletion never leaves it, not even into a bind
    /// mount of the same filesystem.
    pub(crate) mount: fs::MountId,
}

impl Root {
    /// Open an existing root (for `status` and `gc`, which must not create one by accident). It
    /// must prove it is one before anything in it is read as a job dir or deleted: `gc --root
    /// ~` must not empty `~/.trash`. A symlink as the root is refused too (the marker would be
    /// checked in one dir and the sweep could run in another if the link changes).
    pub(crate) fn open(path: &Path) -> Result<Root> {
        let root = Root::open_dir(path)?;
        match root.kind() {
            RootKind::Marked => {}
            // Made by an earlier version: ours beyond doubt, so give it the marker.
            RootKind::Legacy => {
                let _ = root.write_marker();
            }
            // Nothing in it to delete or misread; the first job or sweep lays it out.
            RootKind::Empty => {}
            RootKind::Foreign => bail!(
                "{} is not a cargo-guarded root (it has no {ROOT_MARKER} marker); refusing to \
                 touch it. Pass the root your jobs use, or a new or empty directory",
                path.display()
            ),
        }
        Ok(root)
    }

    /// Open the root for a job, creating it with its layout if needed. An existing non-empty
    /// directory that is not a root is refused: laying one out there would let a later `gc`
    /// delete files in it.
    pub(crate) fn create(path: &Path) -> Result<Root> {
        if path.exists() && !path.is_dir() {
            bail!("root {} exists but is not a directory", path.display());
        }
        std::fs::create_dir_all(path)
            .with_context(|| format!("failed to create root {}", path.display()))?;
        let root = Root::open(path)?;
        root.ensure_layout()?;
        Ok(root)
    }

    fn open_dir(path: &Path) -> Result<Root> {
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("failed to stat root {}", path.display()))?;
        if meta.file_type().is_symlink() {
            bail!(
                "root {} is a symlink; pass the directory itself ({})",
                path.display(),
                std::fs::canonicalize(path)
                    .map_or_else(|_| "unresolvable".into(), |p| p.display().to_string())
            );
        }
        if !meta.is_dir() {
            bail!("root {} is not a directory", path.display());
        }
        let fd = rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .with_context(|| format!("failed to open root {}", path.display()))?;
        let mount = fs::mount_of(fd.as_fd())
            .with_context(|| format!("failed to stat root {}", path.display()))?;
        if mount.mnt.is_none() {
            crate::term::verbose(
                "Note",
                format_args!(
                    "mounts under {} are told apart by {}",
                    path.display(),
                    fs::mount_id_source(fd.as_fd())
                ),
            );
        }
        Ok(Root {
            path: path.to_owned(),
            fd,
            mount,
        })
    }

    /// Whether this directory is a root: our marker, or the layout earlier versions wrote
    /// (`CACHEDIR.TAG` with our comment line, and `.trash/`), or nothing at all.
    fn kind(&self) -> RootKind {
        let is_file = |name: &str| {
            rustix::fs::statat(self.fd(), name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file())
        };
        if is_file(ROOT_MARKER) {
            return RootKind::Marked;
        }
        let tag = fs::read_capped(self.fd(), OsStr::new("CACHEDIR.TAG"), 4096)
            .ok()
            .flatten()
            .unwrap_or_default();
        let ours = tag
            .split(|b| *b == b'\n')
            .any(|l| l == CACHEDIR_TAG.lines().nth(1).unwrap_or_default().as_bytes());
        if ours && fs::open_dir_nofollow(self.fd(), OsStr::new(TRASH)).is_ok() {
            return RootKind::Legacy;
        }
        // Empty but for the lock files a `status` or `doctor` on it may have left.
        match fs::list(self.fd()) {
            Ok(entries)
                if entries
                    .iter()
                    .all(|(n, _)| n == ".locktest" || n == GUARD_LOCK) =>
            {
                RootKind::Empty
            }
            // Race closed: jobs starting together on a new root. Another one may have laid the
            // root out between our marker check and this listing; the marker is written first,
            // so if the listing shows anything of the layout, it shows the marker too.
            Ok(entries) if entries.iter().any(|(n, _)| n == ROOT_MARKER) => RootKind::Marked,
            _ => RootKind::Foreign,
        }
    }

    fn write_marker(&self) -> io::Result<()> {
        let fd = match rustix::fs::openat(
            self.fd(),
            ROOT_MARKER,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => fd,
            // Another job starting on the same new root laid it out first: it is a root.
            Err(Errno::EXIST) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        rustix::fs::fchmod(&fd, self.shared_mode(0o644))?;
        io::Write::write_all(
            &mut File::from(fd),
            b"cargo-guarded root: job dirs in here are leased; \
            `cargo guarded gc` deletes only expired ones\n",
        )
    }

    /// The root's own entries: the marker, `CACHEDIR.TAG` (so backup tools skip it), `.trash/`,
    /// `.toolchains/` and the guard's lock file, each shared as widely as the root itself.
    pub(crate) fn ensure_layout(&self) -> Result<()> {
        if self.kind() != RootKind::Marked {
            self.write_marker()
                .with_context(|| format!("failed to write {}", self.join(ROOT_MARKER).display()))?;
        }
        if !self.join("CACHEDIR.TAG").exists() {
            fs::write_atomic(self.fd(), "CACHEDIR.TAG", CACHEDIR_TAG.as_bytes()).with_context(
                || format!("failed to write {}", self.join("CACHEDIR.TAG").display()),
            )?;
            let _ = rustix::fs::chmodat(
                self.fd(),
                "CACHEDIR.TAG",
                self.shared_mode(0o644),
                rustix::fs::AtFlags::empty(),
            );
        }
        for dir in [TRASH, TOOLCHAIN_CACHE] {
            self.create_shared_dir(dir)
                .with_context(|| format!("failed to create {}", self.join(dir).display()))?;
        }
        // Best effort: a user who may not create it still locks an existing one read-only.
        let _ = self.open_lock_file(GUARD_LOCK);
        Ok(())
    }

    /// `base` plus the write bits the root grants its group and others (and its sticky bit for
    /// dirs): with a 1777 root, every user's jobs and guards must be able to use these entries.
    fn shared_mode(&self, base: u32) -> Mode {
        fs::shared_mode(self.fd(), base)
    }

    /// Create a directory of the root with its shared mode; an existing one is fine. The mode is
    /// set after creation, because `mkdir` applies the umask.
    fn create_shared_dir(&self, name: &str) -> io::Result<()> {
        match rustix::fs::mkdirat(self.fd(), name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {
                let fd = fs::open_dir_nofollow(self.fd(), OsStr::new(name))?;
                rustix::fs::fchmod(&fd, self.shared_mode(0o755))?;
                Ok(())
            }
            Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A lock file of the root (`.guard.lock`): opened read-only, since `flock` works on any
    /// open file and another user's file need not be writable for us; created if missing.
    pub(crate) fn open_lock_file(&self, name: &str) -> io::Result<File> {
        match fs::open_read_only(self.fd(), OsStr::new(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_shared_file(self.fd(), OsStr::new(name))
            }
            other => other,
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Its `.trash/`, opened once for a sweep's claims and deletes (after [`Root::ensure_layout`]).
    pub(crate) fn trash(&self) -> Result<Trash> {
        Trash::open(self.fd(), &self.path, self.mount)
            .with_context(|| format!("failed to open {}", self.join(TRASH).display()))
    }

    /// The root's job dirs (names only; not yet opened), skipping our own dot-names.
    pub(crate) fn job_names(&self) -> Result<Vec<(OsString, rustix::fs::FileType)>> {
        let mut names = fs::list(self.fd())
            .with_context(|| format!("failed to list root {}", self.path.display()))?;
        names.retain(|(n, _)| !n.as_encoded_bytes().starts_with(b".") && n != "CACHEDIR.TAG");
        names.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(names)
    }

    /// Open a job dir without following a symlink and check it is on the root's filesystem.
    pub(crate) fn open_job(&self, name: &OsStr) -> Result<File, NotAJobDir> {
        let fd =
            fs::open_dir_nofollow(self.fd(), name).map_err(|e| match Errno::from_io_error(&e) {
                // `O_DIRECTORY | O_NOFOLLOW` on a symlink gives ENOTDIR or ELOOP: say which it was.
                Some(Errno::LOOP | Errno::NOTDIR) if fs::is_symlink_at(self.fd(), name) => {
                    NotAJobDir::Symlink
                }
                Some(Errno::LOOP | Errno::NOTDIR) => NotAJobDir::NotDir,
                Some(Errno::NOENT) => NotAJobDir::Gone,
                _ => NotAJobDir::Io(e.to_string()),
            })?;
        // A job dir that is itself a mount point (another filesystem, or a bind mount of the
        // root's own, which only the mount id tells apart) is not a job dir we may touch.
        let mount = fs::mount_of(fd.as_fd()).map_err(|e| NotAJobDir::Io(e.to_string()))?;
        if mount != self.mount {
            return Err(NotAJobDir::MountPoint);
        }
        Ok(File::from(fd))
    }

    /// Race closed: between our `open` and our lock, a guard (holding the lock) may have renamed
    /// the dir into `.trash/`, or an adopter may have renamed it to its own job's name. Locking
    /// the inode we opened then tells us nothing about the name. Only if the name still points at
    /// the inode we locked do we own the job dir.
    pub(super) fn still_names(&self, name: &OsStr, locked: &File) -> bool {
        match (
            fs::identity_at(self.fd(), name),
            fs::identity(locked.as_fd()),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootKind {
    Marked,
    Legacy,
    Empty,
    Foreign,
}

/// Why an entry of the root is not a job dir we may touch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NotAJobDir {
    Symlink,
    NotDir,
    /// A mount point: another filesystem, or a bind mount of the root's own.
    MountPoint,
    Gone,
    Io(String),
}

impl std::fmt::Display for NotAJobDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotAJobDir::Symlink => write!(f, "skipped: symlink"),
            NotAJobDir::NotDir => write!(f, "skipped: not a directory"),
            NotAJobDir::MountPoint => write!(
                f,
                "skipped: a mount point (another filesystem or a bind mount)"
            ),
            NotAJobDir::Gone => write!(f, "skipped: vanished while being examined"),
            NotAJobDir::Io(e) => write!(f, "skipped: {e}"),
        }
    }
}

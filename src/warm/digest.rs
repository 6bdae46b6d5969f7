//! Content digests of a checkout's files (SHA-256, as cargo's own `-Zchecksum-freshness`
//! offers), cached by what `stat` says of the file, and reads that leave access times alone.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What `stat` says of a file: when all of it is unchanged, so is the content (the ctime moves
/// on every content or metadata change and cannot be set back by anyone, unlike the mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stat {
    pub(super) size: u64,
    pub(super) mtime_ns: u64,
    pub(super) ctime_ns: u64,
    pub(super) ino: u64,
    pub(super) dev: u64,
}

impl Stat {
    pub(super) fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec() as u64),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec() as u64),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// A recorded file: its stat when digested, and the digest (`None` for a directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    pub(super) stat: Stat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) sha256: Option<String>,
}

/// Digests of one pass, reusing a previous record's where the file's stat is unchanged.
pub(super) struct Digests<'a> {
    pub(super) previous: &'a BTreeMap<String, Entry>,
    pub(super) done: BTreeMap<String, Option<Entry>>,
    /// Files actually read this pass (the rest came from `previous`).
    pub(super) read: usize,
}

impl<'a> Digests<'a> {
    pub(super) fn new(previous: &'a BTreeMap<String, Entry>) -> Self {
        Digests {
            previous,
            done: BTreeMap::new(),
            read: 0,
        }
    }

    /// `rel` (relative to `checkout`) as it is now: a file with its digest, a directory with
    /// its stat, or `None` when it is missing or unreadable.
    pub(super) fn entry(&mut self, checkout: &Path, rel: &str) -> Option<Entry> {
        if let Some(done) = self.done.get(rel) {
            return done.clone();
        }
        let entry = self.compute(checkout, rel);
        self.done.insert(rel.to_owned(), entry.clone());
        entry
    }

    fn compute(&mut self, checkout: &Path, rel: &str) -> Option<Entry> {
        let path = checkout.join(rel);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        let stat = Stat::of(&meta);
        if meta.is_dir() {
            return Some(Entry { stat, sha256: None });
        }
        if meta.is_symlink() && !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            // A link to a directory (whose files are listed through it) or a dangling one: what
            // it points to is its content.
            let target = std::fs::read_link(&path).ok()?;
            let digest = sha256_hex(target.as_os_str().as_encoded_bytes());
            return Some(Entry {
                stat,
                sha256: Some(format!("link:{digest}")),
            });
        }
        if let Some(prev) = self.previous.get(rel)
            && prev.stat == stat
            && prev.sha256.is_some()
        {
            return Some(prev.clone());
        }
        // A symlink is judged by what it points to, as cargo and rustc read it; anything but a
        // regular file (a FIFO would block the read forever) has no digest.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        self.read += 1;
        Some(Entry {
            stat,
            sha256: Some(hex(&hasher.finalize())),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes` in lowercase hex: the one content digest of the tool (an input
/// recorded for content verification, an object in the store).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A time in ns since the epoch (times before it count as the epoch).
pub(super) fn ns(secs: i64, nanos: u64) -> u64 {
    (secs.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nanos)
}

/// Read a small file of a job dir without recording the read in its atime (`O_NOATIME`; where
/// that is refused, the atime is put back afterwards), never following a symlink. `None`:
/// missing, unreadable or larger than `cap`.
pub(super) fn read_noatime(dir: BorrowedFd<'_>, name: &OsStr, cap: u64) -> Option<Vec<u8>> {
    // Non-blocking: a FIFO planted in the dir must not hang the read (it is then no file).
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let (fd, restore) = match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty())
    {
        Ok(fd) => (fd, None),
        Err(rustix::io::Errno::PERM) => {
            let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
            let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?;
            let atime = Timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec as _,
            };
            (fd, Some(atime))
        }
        Err(_) => return None,
    };
    let regular = rustix::fs::fstat(&fd)
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file());
    let mut bytes = Vec::new();
    let read = std::fs::File::from(fd)
        .take(cap + 1)
        .read_to_end(&mut bytes);
    if let Some(atime) = restore {
        let omit = Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        };
        let _ = rustix::fs::utimensat(
            dir,
            name,
            &Timestamps {
                last_access: atime,
                last_modification: omit,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        );
    }
    (regular && read.is_ok() && bytes.len() as u64 <= cap).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_digested_once_and_a_fifo_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "hello").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let previous = BTreeMap::new();
        let mut d = Digests::new(&previous);
        let a = d.entry(dir.path(), "a").unwrap();
        assert_eq!(
            a.sha256.as_deref(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
        assert_eq!(d.entry(dir.path(), "fifo"), None);
        assert_eq!(d.entry(dir.path(), "missing"), None);
        // A second pass with the first as its record reads nothing while the stat is unchanged.
        let recorded: BTreeMap<String, Entry> = [("a".to_owned(), a.clone())].into();
        let mut again = Digests::new(&recorded);
        assert_eq!(again.entry(dir.path(), "a"), Some(a));
        assert_eq!(again.read, 0);
        std::fs::write(dir.path().join("a"), "other").unwrap();
        let mut changed = Digests::new(&recorded);
        assert_ne!(
            changed.entry(dir.path(), "a").unwrap().sha256,
            recorded["a"].sha256
        );
        assert_eq!(changed.read, 1);
    }
}

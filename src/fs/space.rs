//! Free space as `df` counts it.

use std::io;
use std::path::Path;

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

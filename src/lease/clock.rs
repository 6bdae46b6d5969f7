//! The clocks a lease is written and judged on (docs/protocol.md#clocks): the wall clock, and
//! `CLOCK_BOOTTIME` with what makes two readings of it comparable (the boot id and the time
//! namespace).
//!
//! Race closed: a wall-clock step between the write of a lease and its judging. A forward step
//! (NTP correcting a VM after resume, a wrong RTC at boot) longer than the linger would end a
//! lingering lease at once, and on untrusted-lock filesystems one longer than TTL plus margin
//! would make a live dir reclaimable; a backward step would keep a dir protected for as long as
//! the step. `CLOCK_BOOTTIME` never steps (it counts suspend too), so on the lease's own kernel and
//! time namespace the age of a lease is measured on it.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use rustix::time::{ClockId, clock_gettime};

use crate::fault;

use super::record::Lease;

/// A reading of `CLOCK_BOOTTIME`, and where it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Boot {
    /// The kernel's boot id: `CLOCK_BOOTTIME` restarts at every boot.
    pub(crate) boot_id: String,
    /// The inode of `/proc/self/ns/time`: a time namespace shifts `CLOCK_BOOTTIME` per container
    /// while the boot id stays the kernel's. `None` on kernels without time namespaces (before
    /// 5.6), where the boot id alone decides.
    pub(crate) time_ns: Option<u64>,
    /// Milliseconds since boot (suspend included).
    pub(crate) boottime_ms: u64,
}

/// The clocks as one observer reads them, once per decision.
#[derive(Debug, Clone)]
pub(crate) struct Now {
    /// The wall clock (shifted by `CARGO_GUARDED_CLOCK_OFFSET` in the clock-step tests).
    pub(crate) wall: SystemTime,
    /// `None` where the boot id cannot be read: ages are then judged on the wall clock alone.
    pub(crate) boot: Option<Boot>,
}

impl Now {
    pub(crate) fn read() -> Now {
        Now {
            wall: fault::wall_clock(),
            boot: read_boot(),
        }
    }

    /// The wall clock alone (unit tests, and leases of other machines).
    #[cfg(test)]
    pub(crate) fn wall(wall: SystemTime) -> Now {
        Now { wall, boot: None }
    }

    /// Record with `renewed_at` the clocks it was read on, so a reader on the same kernel and
    /// time namespace can measure the lease's age on `CLOCK_BOOTTIME`.
    pub(super) fn stamp(&self, lease: &mut Lease) {
        lease.renewed_at = self.wall;
        lease.boottime_ms = self.boot.as_ref().map(|b| b.boottime_ms);
        lease.time_ns = self.boot.as_ref().and_then(|b| b.time_ns);
        if let Some(b) = &self.boot {
            lease.boot_id = Some(b.boot_id.clone());
        }
    }

    /// The moment to judge `lease` at, on the lease's own wall clock: `renewed_at` plus the
    /// `CLOCK_BOOTTIME` elapsed since, when the lease was written on this kernel and in this
    /// time namespace; else this observer's wall clock (across hosts and containers with their
    /// own time namespace, with the margin `classify` adds where locks are untrusted).
    ///
    /// A lease without the optional fields (an older writer), or whose boot time lies ahead of
    /// ours (not written on this boot whatever its boot id says), is judged on the wall clock.
    pub(crate) fn judging(&self, lease: &Lease) -> SystemTime {
        let (Some(boot), Some(then)) = (&self.boot, lease.boottime_ms) else {
            return self.wall;
        };
        let same_clock = lease.boot_id.as_deref() == Some(boot.boot_id.as_str())
            && lease.time_ns == boot.time_ns;
        if !same_clock || then > boot.boottime_ms {
            return self.wall;
        }
        let elapsed = Duration::from_millis(boot.boottime_ms - then);
        lease.renewed_at.checked_add(elapsed).unwrap_or(self.wall)
    }
}

fn read_boot() -> Option<Boot> {
    let (boot_id, time_ns) = kernel()?;
    let t = clock_gettime(ClockId::Boottime);
    let boottime_ms =
        u64::try_from(t.tv_sec).ok()? * 1000 + u64::try_from(t.tv_nsec).ok()? / 1_000_000;
    Some(Boot {
        boot_id: boot_id.clone(),
        time_ns: *time_ns,
        boottime_ms,
    })
}

/// This kernel's boot id and this process's time namespace: fixed for the process's life, so
/// read once (every lease judged and every heartbeat reads the clocks).
fn kernel() -> Option<&'static (String, Option<u64>)> {
    static KERNEL: OnceLock<Option<(String, Option<u64>)>> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            let time_ns = rustix::fs::stat("/proc/self/ns/time")
                .ok()
                .map(|st| st.st_ino);
            Some((boot_id.trim().to_owned(), time_ns))
        })
        .as_ref()
}

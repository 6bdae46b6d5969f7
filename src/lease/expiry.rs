//! Expiry (docs/protocol.md#expiry): what a lease says about its dir, judged on the observer's
//! clocks. Pure; shared by the guard, adoption and `status`.

use std::time::{Duration, SystemTime};

use crate::locks::LockTrust;

use super::clock::Now;
use super::record::{Lease, State, untrusted_margin};

/// What a lease says about its dir, judged on the observer's clocks (`Now::judging`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expiry {
    /// Active with a fresh heartbeat.
    Live { renewed_ago: Duration },
    /// Released, still protected so later steps of the job find their dir.
    Lingering { expires_in: Duration },
    /// Expired since this moment: reclaimable once its lock is also free.
    Expired { since: SystemTime },
}

/// Expiry rule: released and past `expires_at`, or active with no heartbeat for longer than its
/// TTL. Where locks cannot be trusted, the lease is the only signal, so it must be stale by a
/// further TTL (a safety margin against a slow heartbeat) before it counts. Ages are measured on
/// `CLOCK_BOOTTIME` where the lease was written on this kernel and time namespace, else on the
/// wall clock (`Now::judging`).
pub(crate) fn classify(lease: &Lease, now: &Now, trust: LockTrust) -> Expiry {
    let now = now.judging(lease);
    let margin = match trust {
        LockTrust::Trusted => Duration::ZERO,
        LockTrust::Untrusted(_) => untrusted_margin(lease.ttl()),
    };
    let since = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    // `parse` rejected leases whose times overflow; should one get here anyway, it stays
    // unexpired (kept) rather than panicking.
    match lease.state {
        State::Released => {
            let Some(until) = lease.expires_at.checked_add(margin) else {
                return Expiry::Lingering {
                    expires_in: Duration::MAX,
                };
            };
            match until.duration_since(now) {
                Ok(left) if !left.is_zero() => Expiry::Lingering { expires_in: left },
                _ => Expiry::Expired { since: until },
            }
        }
        State::Active => {
            let stale = lease
                .renewed_at
                .checked_add(lease.ttl())
                .and_then(|t| t.checked_add(margin));
            if let Some(stale) = stale
                && now > stale
            {
                Expiry::Expired { since: stale }
            } else {
                Expiry::Live {
                    renewed_ago: since(lease.renewed_at),
                }
            }
        }
    }
}

//! The protocol's version and the bounds of a lease's durations: what `--ttl` and `--linger`
//! accept, default to and warn about.

use std::time::Duration;

/// Version of `lease.json`'s schema. A guard keeps (never deletes) a lease of any other version.
pub(crate) const PROTOCOL: u32 = 1;
/// The longest `--ttl`/`--linger` (and `ttl_secs` in a lease) we accept: 3650 days (10 years).
/// Longer is a typo (`20000y`), and it keeps `now + ttl` far from `SystemTime`'s limits and
/// inside the years RFC 3339 can print (up to 9999), so every lease we write can be read back.
pub(crate) const MAX_LEASE_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

/// The shortest `--ttl` we accept: the heartbeat renews a lease every `ttl/5` but at most every
/// 100 ms (`record::heartbeat_interval`), so below this a live job's dir would expire between
/// two beats (`0s` even as it starts).
pub(crate) const MIN_TTL: Duration = Duration::from_secs(1);
/// Beyond this a `--ttl` or `--linger` gets a warning: a dir whose job died (TTL) or ended
/// (linger) stays out of the guard's reach that long, which is rarely what was meant.
pub(crate) const SANE_LEASE_CEILING: Duration = Duration::from_secs(24 * 3600);
/// `--ttl`'s default: an active lease whose heartbeat stopped this long ago is expired. The
/// heartbeat renews it every `ttl/5`, at most every 60 s (`record::heartbeat_interval`), so
/// several missed beats stay inside it.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
/// `--linger`'s default: how long a released lease stays protected, so that the job's later
/// steps find their dir (docs/protocol.md#release).
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_secs(60 * 60);

//! Quantities: durations, sizes and free-space thresholds, parsed and printed (not cargo's build
//! *units*, which are `prune/`'s concern).
//!
//! Pure functions: the CLI and the environment both parse through here, so `--ttl 10m` and
//! `CARGO_GUARDED_TTL=10m` accept exactly the same spellings.

use std::fmt;
use std::time::Duration;

/// A duration such as `10m`, `1h 30m`, `0s` (humantime's syntax). The error is ours: humantime's
/// own ("expected number (and few variations)") speaks of its parser, not of the option.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|_| {
        format!("invalid duration `{s}`; use a number with a unit, e.g. `90s`, `10m`, `1h 30m`")
    })
}

/// A lease duration (`--ttl`, `--linger`): a duration of at most `max`. Anything longer is a
/// typo, and clock arithmetic on it could overflow.
pub(crate) fn parse_duration_at_most(s: &str, max: Duration) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err(format!(
            "duration `{s}` is negative; durations cannot be negative"
        ));
    }
    let d = parse_duration(s)?;
    if d > max {
        return Err(format!(
            "duration `{s}` is longer than the maximum of {} days",
            max.as_secs() / 86400
        ));
    }
    Ok(d)
}

/// A size such as `2GiB`, `500MB`, `512KiB`, or `0` (bytesize's units: `GiB`/`Gi` are binary,
/// 1024³ bytes; `GB`/`G` are decimal, 1000³; case does not matter); `forms` (every spelling the option accepts,
/// e.g. "`2GiB`, `500MB` or `15%`") is named in its errors. A bare number other than `0` is
/// refused: `--min-free 2` meant 2 GiB to whoever typed it, never 2 bytes. The messages are
/// ours: bytesize's ("couldn't parse … into a ByteSize, cannot parse float from empty string")
/// describe its parser, not what to type.
pub(crate) fn parse_size(s: &str, forms: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!(
            "size `{s}` is negative; sizes cannot be negative (use `0` for none)"
        ));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match t.parse::<f64>() {
            Ok(0.0) => Ok(0),
            _ => Err(format!(
                "size `{s}` has no unit; use e.g. {forms} (a bare number is only accepted as `0`)"
            )),
        };
    }
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("invalid size `{s}`; use e.g. {forms}"))
}

/// A free-space threshold: an absolute size, or a percentage of the filesystem's size as `df`'s
/// `Use%` counts it (`fs::Space::base`: used plus free, without root's reserve).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Threshold {
    Bytes(u64),
    Percent(f64),
}

impl Threshold {
    pub(crate) fn parse(s: &str) -> Result<Threshold, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let pct: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("invalid percentage `{s}`; use e.g. `15%` or `2GiB`"))?;
            if pct < 0.0 {
                return Err(format!(
                    "percentage `{s}` is negative; shares of the disk cannot be negative"
                ));
            }
            if !(0.0..=100.0).contains(&pct) {
                return Err(format!("percentage `{s}` is outside 0%..=100%"));
            }
            Ok(Threshold::Percent(pct))
        } else {
            parse_size(t, "`2GiB`, `500MB` or `15%`").map(Threshold::Bytes)
        }
    }

    /// The threshold in bytes on a filesystem whose `Space::base` is `total` bytes.
    pub(crate) fn bytes(self, total: u64) -> u64 {
        match self {
            Threshold::Bytes(b) => b,
            Threshold::Percent(p) => ((total as f64) * p / 100.0).ceil() as u64,
        }
    }

    /// `self` raised by `points` percentage points (or by that share of `total` for sizes).
    pub(crate) fn plus_points(self, points: f64, total: u64) -> u64 {
        match self {
            Threshold::Percent(p) => Threshold::Percent((p + points).min(100.0)).bytes(total),
            Threshold::Bytes(b) => b.saturating_add(Threshold::Percent(points).bytes(total)),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Bytes(b) => write!(f, "{}", Bytes(*b)),
            Threshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Bytes printed the way people read them: `1.6 GiB`.
pub(crate) struct Bytes(pub(crate) u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

/// A duration as an option takes it (`10m`, `1h`, `1m 30s`; humantime's spelling, which
/// `parse_duration` reads back): how help texts and the README state a default.
pub(crate) struct DurationArg(pub(crate) Duration);

impl fmt::Display for DurationArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size as an option takes it: in the largest binary unit that holds it whole, with no space
/// (`2GiB`, `16GiB`, `1536KiB`, `0`), which `parse_size` reads back. `Bytes` rounds (`2.0 GiB`)
/// and speaks to a reader; this is what one types.
pub(crate) struct SizeArg(pub(crate) u64);

impl fmt::Display for SizeArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u32); 6] = [
            ("EiB", 60),
            ("PiB", 50),
            ("TiB", 40),
            ("GiB", 30),
            ("MiB", 20),
            ("KiB", 10),
        ];
        let b = self.0;
        if b == 0 {
            return f.write_str("0");
        }
        match UNITS.iter().find(|(_, shift)| b.trailing_zeros() >= *shift) {
            Some((unit, shift)) => write!(f, "{}{unit}", b >> shift),
            None => write!(f, "{b}B"),
        }
    }
}

/// A threshold as an option takes it: `15%`, `2GiB`.
pub(crate) struct ThresholdArg(pub(crate) Threshold);

impl fmt::Display for ThresholdArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Threshold::Bytes(b) => write!(f, "{}", SizeArg(b)),
            Threshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A duration in its largest whole unit (`4s`, `12m`, `2h`, `3d`), for "renewed 4s ago".
pub(crate) struct RoundDuration(pub(crate) Duration);

impl fmt::Display for RoundDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        match s {
            0..60 => write!(f, "{s}s"),
            60..3600 => write!(f, "{}m", s / 60),
            3600..172_800 => write!(f, "{}h", s / 3600),
            _ => write!(f, "{}d", s / 86_400),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(Threshold::parse("15%").unwrap(), Threshold::Percent(15.0));
        assert_eq!(Threshold::parse("100%").unwrap().bytes(1000), 1000);
        assert_eq!(Threshold::parse("2GiB").unwrap(), Threshold::Bytes(2 << 30));
        assert_eq!(Threshold::parse("15%").unwrap().plus_points(5.0, 1000), 200);
        assert!(Threshold::parse("150%").is_err());
        assert!(Threshold::parse("lots").is_err());
        assert!(Threshold::parse("-3%").is_err());
    }

    /// What `--help` says of the units is what the parser does: `G` is decimal, `Gi` binary;
    /// a negative size or share says so instead of calling the value invalid.
    #[test]
    fn units_are_as_help_says_and_sizes_are_never_negative() {
        let parse_size = |s| parse_size(s, "`2GiB`");
        assert_eq!(parse_size("2G").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("2gb").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("2Gi").unwrap(), 2 << 30);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("500M").unwrap(), 500_000_000);
        for bad in ["-5GiB", " -1", "-0.5G"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("sizes cannot be negative"), "{bad}: {e}");
        }
        let e = Threshold::parse("-5%").unwrap_err();
        assert!(e.contains("cannot be negative"), "{e}");
        let e = parse_duration_at_most("-5m", Duration::MAX).unwrap_err();
        assert!(e.contains("negative"), "{e}");
    }

    /// A bare number other than `0` is refused (bytes or gigabytes? the reader cannot tell),
    /// naming the accepted forms; no error quotes bytesize's or humantime's own messages, which
    /// name neither the option nor the forms it takes.
    #[test]
    fn a_size_needs_a_unit_and_errors_are_ours() {
        let parse_size = |s| parse_size(s, "`2GiB`, `500MB`");
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(Threshold::parse("0").unwrap(), Threshold::Bytes(0));
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        let e = Threshold::parse("15").unwrap_err();
        assert_eq!(
            e,
            "size `15` has no unit; use e.g. `2GiB`, `500MB` or `15%` (a bare number is only \
             accepted as `0`)"
        );
        assert!(parse_size("3").unwrap_err().contains("`2GiB`, `500MB`"));
        for bad in ["abc", "", "2 GiBB", "GiB"] {
            let e = parse_size(bad).unwrap_err();
            assert_eq!(e, format!("invalid size `{bad}`; use e.g. `2GiB`, `500MB`"));
        }
        let e = parse_duration("soon").unwrap_err();
        assert!(!e.contains("variations") && e.contains("`10m`"), "{e}");
        let e = parse_duration("10").unwrap_err();
        assert!(
            e.starts_with("invalid duration `10`; use a number with a unit"),
            "{e}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(
            parse_duration("ten minutes")
                .unwrap_err()
                .contains("ten minutes")
        );
    }

    /// What help texts print as a default is what the option reads back.
    #[test]
    fn defaults_are_spelled_as_typed() {
        for (d, spelled) in [(600, "10m"), (3600, "1h"), (90, "1m 30s"), (0, "0s")] {
            let d = Duration::from_secs(d);
            assert_eq!(DurationArg(d).to_string(), spelled);
            assert_eq!(parse_duration(spelled).unwrap(), d);
        }
        for (b, spelled) in [
            (2 << 30, "2GiB"),
            (16 << 30, "16GiB"),
            (1536 << 10, "1536KiB"),
            (1000, "1000B"),
            (0, "0"),
        ] {
            assert_eq!(SizeArg(b).to_string(), spelled);
            assert_eq!(parse_size(spelled, "").unwrap(), b);
        }
        for t in [
            Threshold::Percent(15.0),
            Threshold::Percent(2.5),
            Threshold::Bytes(2 << 30),
        ] {
            assert_eq!(Threshold::parse(&ThresholdArg(t).to_string()).unwrap(), t);
        }
        assert_eq!(ThresholdArg(Threshold::Percent(15.0)).to_string(), "15%");
    }

    #[test]
    fn short_durations() {
        assert_eq!(RoundDuration(Duration::from_secs(4)).to_string(), "4s");
        assert_eq!(RoundDuration(Duration::from_secs(7300)).to_string(), "2h");
        assert_eq!(
            RoundDuration(Duration::from_secs(86_400 * 3)).to_string(),
            "3d"
        );
    }
}

//! An object's bytes as stored: zstd-compressed (level 3), addressed by the SHA-256 of the
//! uncompressed content, so dedup across jobs stays exact whatever compressor wrote it. What comes
//! back from the store is untrusted: decompression stops one byte past the size the manifest
//! records (a small object that inflates without end cannot fill the disk or memory), and the
//! digest is checked on what came out. Both run on the runtime's blocking threads, never on the
//! thread that drives the transfers.

use std::io::Read;

use super::manifest::Object;

/// zstd's default level: a debug binary 4x smaller, an rlib 4.8x, at hundreds of MB/s a core.
const LEVEL: i32 = 3;

/// A decompressed object larger than this is grown as it comes rather than allocated up front:
/// the size it is checked against comes from an untrusted manifest.
const PREALLOCATE_AT_MOST: u64 = 64 << 20;

/// The SHA-256 of `bytes`, in lowercase hex, as content verification records inputs.
pub(crate) fn digest(bytes: &[u8]) -> String {
    crate::warm::sha256_hex(bytes)
}

/// `bytes` as stored.
pub(crate) fn compress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(bytes, LEVEL)
}

/// The most bytes an object whose content takes `size` can be stored as: zstd's bound for one
/// frame, and a little more for another compressor's framing.
pub(crate) fn stored_bound(size: u64) -> u64 {
    let bound =
        usize::try_from(size).map_or(u64::MAX, |s| zstd::zstd_safe::compress_bound(s) as u64);
    bound.saturating_add(64 << 10)
}

/// Why stored bytes are not the object a manifest names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bad {
    /// Not a zstd stream, or cut short.
    Corrupt(String),
    /// It decompresses to more than the recorded size (decompression stopped there).
    TooLarge,
    /// It decompresses to fewer bytes than recorded.
    TooSmall(u64),
    /// The content's digest is another.
    Digest(String),
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::Corrupt(e) => write!(f, "does not decompress ({e})"),
            Bad::TooLarge => write!(f, "decompresses past its recorded size"),
            Bad::TooSmall(n) => write!(f, "decompresses to {n} bytes, fewer than recorded"),
            Bad::Digest(d) => write!(f, "decompresses to content of digest {d}"),
        }
    }
}

/// The content of `stored`, if it is `object`'s: at most its size plus one byte is decompressed.
pub(crate) fn decompress(stored: &[u8], object: &Object) -> Result<Vec<u8>, Bad> {
    let decoder =
        zstd::stream::read::Decoder::new(stored).map_err(|e| Bad::Corrupt(e.to_string()))?;
    let mut out = Vec::with_capacity(object.size.min(PREALLOCATE_AT_MOST) as usize);
    decoder
        .take(object.size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Bad::Corrupt(e.to_string()))?;
    let got = out.len() as u64;
    if got > object.size {
        return Err(Bad::TooLarge);
    }
    if got < object.size {
        return Err(Bad::TooSmall(got));
    }
    let sha = digest(&out);
    if sha != object.sha256 {
        return Err(Bad::Digest(sha));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object_of(bytes: &[u8]) -> Object {
        Object {
            sha256: digest(bytes),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn a_round_trip_gives_the_content_back_smaller() {
        let content = b"fn main() { println!(\"hello\"); }\n".repeat(1000);
        let stored = compress(&content).unwrap();
        assert!(stored.len() * 10 < content.len(), "{}", stored.len());
        assert_eq!(decompress(&stored, &object_of(&content)).unwrap(), content);
    }

    #[test]
    fn stored_bytes_that_are_not_the_object_are_refused() {
        let content = vec![7u8; 100_000];
        let object = object_of(&content);
        let stored = compress(&content).unwrap();
        // Cut short, and garbage.
        assert!(matches!(
            decompress(&stored[..stored.len() / 2], &object),
            Err(Bad::Corrupt(_))
        ));
        assert!(matches!(
            decompress(b"not zstd at all", &object),
            Err(Bad::Corrupt(_))
        ));
        // Another content of the same size, one that inflates past the size, one short of it.
        let other = compress(&vec![8u8; 100_000]).unwrap();
        assert!(matches!(decompress(&other, &object), Err(Bad::Digest(_))));
        let bomb = compress(&vec![7u8; 50_000_000]).unwrap();
        assert_eq!(decompress(&bomb, &object), Err(Bad::TooLarge));
        let short = compress(&content[1..]).unwrap();
        assert_eq!(decompress(&short, &object), Err(Bad::TooSmall(99_999)));
    }

    #[test]
    fn the_stored_bound_holds_what_compression_makes_and_no_more_than_a_little_over() {
        let noise: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let stored = compress(&noise).unwrap().len() as u64;
        assert!(stored <= stored_bound(noise.len() as u64));
        assert!(stored_bound(1 << 30) < (1 << 30) + (8 << 20));
        assert_eq!(stored_bound(u64::MAX), u64::MAX);
    }

    #[test]
    fn an_object_that_inflates_without_end_is_stopped_at_its_recorded_size() {
        // 64 GiB of zeros in 2.5 MiB: one frame of a MiB, 65,536 times (a decoder reads every
        // frame of a stream). Decompressed in full it would take the memory of this machine.
        let frame = compress(&vec![0u8; 1 << 20]).unwrap();
        let bomb = frame.repeat(1 << 16);
        assert!(bomb.len() < 4 << 20, "{}", bomb.len());
        let content = vec![0u8; 100_000];
        assert_eq!(decompress(&bomb, &object_of(&content)), Err(Bad::TooLarge));
    }
}

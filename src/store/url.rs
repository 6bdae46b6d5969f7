//! `--store URL`: `s3://bucket/prefix` (the standard AWS variables: credentials, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` for S3-compatible servers) or `fs://path` (a shared volume), parsed into
//! an OpenDAL operator. Errors name the value.

use anyhow::{Result, anyhow, bail};
use opendal::Operator;

/// Where a store is, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    S3 { bucket: String, prefix: String },
    Fs { path: String },
}

/// Parse `--store`'s value.
pub(crate) fn parse(url: &str) -> Result<Location> {
    let bad = |why: &str| {
        anyhow!("invalid --store `{url}`: {why}; expected `s3://BUCKET[/PREFIX]` or `fs:///PATH`")
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        // S3's bucket naming rules, loosely: what could never be a bucket is a typo.
        if !bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(bad(&format!("`{bucket}` is not a bucket name")));
        }
        if prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(bad("`.` or `..` in the prefix"));
        }
        return Ok(Location::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        });
    }
    if let Some(path) = url.strip_prefix("fs://") {
        if !path.starts_with('/') {
            return Err(bad("the path must be absolute (`fs:///srv/store`)"));
        }
        return Ok(Location::Fs {
            path: path.to_owned(),
        });
    }
    Err(bad("unknown scheme"))
}

/// `--store`'s value parsed, and what the store needs from the environment there: a region for
/// S3, which OpenDAL reads only from `AWS_REGION` or `AWS_DEFAULT_REGION`.
pub(crate) fn check(url: &str) -> Result<Location> {
    let at = parse(url)?;
    if matches!(at, Location::S3 { .. }) {
        let has_region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
        if !has_region {
            bail!(
                "--store `{url}` needs a region: set AWS_REGION (or AWS_DEFAULT_REGION); for an \
                 S3-compatible server (MinIO, Ceph, R2), any region it accepts, with \
                 AWS_ENDPOINT_URL naming the server"
            );
        }
    }
    Ok(at)
}

/// The operator for a location: credentials only through OpenDAL's standard configuration (the
/// AWS variables and files), never from our arguments, so they are never printed.
pub(crate) fn operator(url: &str, at: &Location) -> Result<Operator> {
    match at {
        Location::S3 { bucket, prefix } => {
            let builder = opendal::services::S3::default()
                .bucket(bucket)
                .root(&format!("/{prefix}"));
            Operator::new(builder).map_err(|e| anyhow!("--store `{url}`: {e}"))
        }
        Location::Fs { path } => {
            // Written to a temporary file and renamed: a partial object is never visible.
            let builder = opendal::services::Fs::default()
                .root(path)
                .atomic_write_dir(&format!("{}/.tmp", path.trim_end_matches('/')));
            Operator::new(builder).map_err(|e| anyhow!("--store `{url}`: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes_and_names_the_value_when_wrong() {
        assert_eq!(
            parse("s3://cache/ci/rust").unwrap(),
            Location::S3 {
                bucket: "cache".into(),
                prefix: "ci/rust".into()
            }
        );
        assert_eq!(
            parse("s3://cache").unwrap(),
            Location::S3 {
                bucket: "cache".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            parse("fs:///srv/store").unwrap(),
            Location::Fs {
                path: "/srv/store".into()
            }
        );
        for bad in [
            "s3://",
            "s3://Big_Bucket/x",
            "fs://rel/path",
            "gs://b",
            "s3://b/../x",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }
}

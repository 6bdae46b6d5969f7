//! Warm starts on a fresh host: a finished dir's files in an object store (S3 or a shared volume,
//! through Apache OpenDAL), each stored once by its content digest, compressed with zstd, and a
//! manifest per push (docs/protocol.md#the-store). `push` uploads the job's own dir; `pull` lays
//! the newest manifest the scope rule allows out in a fresh dir, verifying every object's digest,
//! and content verification then decides which path units are reused, as for a seed. Compiled
//! only with the `store` feature; a job without `--store` never gets here (no runtime, no
//! syscalls). `gc` keeps the store under a size cap, least recently used manifests first.

mod codec;
mod gc;
mod manifest;
mod probe;
mod pull;
mod push;
mod url;

use std::time::Duration;

use anyhow::{Context, Result};
use opendal::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};

pub(crate) use gc::{Collected, Decision, Options as GcOptions, Why, gc};
pub(crate) use probe::probe;
pub(crate) use pull::{Want, pull};
pub(crate) use push::{Pushed, Source, push};

/// Objects in flight at once, each way.
const CONCURRENCY: usize = 16;

/// An open store: its operator, and the runtime it runs on (current-thread, started only here).
pub(crate) struct Store {
    url: String,
    op: Operator,
    rt: tokio::runtime::Runtime,
}

impl Store {
    /// Open `--store URL`: parse it, start the runtime, build the operator (nothing is sent yet).
    pub(crate) fn open(url: &str) -> Result<Store> {
        let at = url::check(url)?;
        // rustls with ring, installed once for the process. rustls deprecates ring's provider for
        // lacking post-quantum key exchange; its replacement, aws-lc-rs, is a large C build, and
        // a build cache's transfers are not secrets kept for decades.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal_http_transport_reqwest::install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the store's runtime")?;
        let op = {
            let _in_runtime = rt.enter();
            url::operator(url, &at)?
                .layer(
                    RetryLayer::new()
                        .with_max_times(2)
                        .with_min_delay(Duration::from_millis(200))
                        .with_jitter(),
                )
                .layer(
                    TimeoutLayer::new()
                        .with_timeout(Duration::from_secs(30))
                        .with_io_timeout(Duration::from_secs(20)),
                )
        };
        Ok(Store {
            url: url.to_owned(),
            op,
            rt,
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

/// Check `--store`'s value before anything is done: its form, and a region for S3.
pub(crate) fn check(url: &str) -> Result<()> {
    url::check(url).map(drop)
}

//! `cargo guarded store push`: the job's dir uploaded to `--store`, under its lease; `store gc`:
//! the store kept under `--max-size`.

#[cfg(feature = "store")]
use std::ffi::OsStr;
#[cfg(feature = "store")]
use std::os::fd::AsFd;

use anyhow::anyhow;

use crate::cli::{self, StoreGcArgs};
use crate::config::Config;
use crate::exit::CliResult;
#[cfg(feature = "store")]
use crate::exit::Exit;
#[cfg(feature = "store")]
use crate::lease::{self, Root};
use crate::report::Reporters;
#[cfg(feature = "store")]
use crate::store;

use super::job::check_store;
#[cfg(feature = "store")]
use super::job::{acquire, nested};

/// `cargo guarded store push`: upload the job's own dir, under its lease (a parent's, or taken
/// now), to `--store`.
pub(crate) fn push(cfg: &Config, out: &mut Reporters) -> CliResult {
    check_store(cfg)?;
    let Some(url) = &cfg.store else {
        return Err(
            anyhow!("`store push` needs a store: --store URL or CARGO_GUARDED_STORE").into(),
        );
    };
    #[cfg(not(feature = "store"))]
    return Err(anyhow!("{url}: unreachable without the `store` feature ({out:p})").into());
    #[cfg(feature = "store")]
    {
        let path = cfg.root.join(&cfg.job_name);
        let no_dir = || {
            anyhow!(
                "no dir of job `{}` in {} to push: run the job's steps first",
                cfg.job_id,
                cfg.root.display()
            )
        };
        let store = store::Store::open(url)?;
        let push = |dir: &std::path::Path, lease: &lease::Lease| {
            let pushed = store::push(
                &store,
                &store::Source {
                    dir,
                    lease,
                    writer: &cfg.scope.scope,
                    cargo_home: cfg.cargo_home.as_deref(),
                },
            )?;
            crate::report::store::pushed(dir, store.url(), &pushed);
            Ok::<_, anyhow::Error>(())
        };
        if let Some(parent) = nested(cfg)? {
            // Inside the job's `hold`: its lease is ours.
            let root = Root::open(&cfg.root)?;
            let dir = root
                .open_job(OsStr::new(&cfg.job_name))
                .map_err(|_| no_dir())?;
            let lease = lease::read(dir.as_fd()).map_err(|e| anyhow!("{e}"))?;
            push(&parent.path, &lease)?;
            return Ok(Exit::SUCCESS);
        }
        let exists = Root::open(&cfg.root)
            .is_ok_and(|root| root.open_job(OsStr::new(&cfg.job_name)).is_ok());
        if !exists {
            return Err(no_dir().into());
        }
        let (session, _) = acquire(
            cfg,
            "store",
            vec!["store".into(), "push".into()],
            &|| Ok(()),
            out,
        )?;
        let pushed = push(&path, &session.held().lease());
        session.finish()?;
        pushed?;
        Ok(Exit::SUCCESS)
    }
}

/// `cargo guarded store gc`: keep `--store` under `--max-size` (store/gc.rs decides, report/
/// renders); exits 1 when a removal failed, as `gc` does.
pub(crate) fn gc(cfg: &Config, args: &StoreGcArgs) -> CliResult {
    check_store(cfg)?;
    let Some(url) = &cfg.store else {
        return Err(anyhow!("`store gc` needs a store: --store URL or CARGO_GUARDED_STORE").into());
    };
    let grace = args.grace.unwrap_or(cli::DEFAULT_STORE_GC_GRACE);
    #[cfg(not(feature = "store"))]
    return Err(anyhow!("{url}: unreachable without the `store` feature ({grace:?})").into());
    #[cfg(feature = "store")]
    {
        let store = store::Store::open(url)?;
        let options = store::GcOptions {
            max_size: args.max_size,
            grace,
            dry_run: args.dry_run,
        };
        let collected = store::gc(&store, options)?;
        crate::report::store::collected(store.url(), &collected);
        Ok(if collected.failed() == 0 {
            Exit::SUCCESS
        } else {
            Exit::ERROR
        })
    }
}

//! Push: every regular file of a job dir's `target/` and `build/` (cargo's `incremental/` dirs and
//! coverage profiles left out, as a seed leaves them) stored once, zstd-compressed, as
//! `objects/<sha256 of the content>.zst`, objects the store has skipped; then the manifest. Objects first, manifest last: a push cut short
//! leaves objects no manifest names, never a manifest naming a missing object. Pushes are
//! idempotent and safe from many hosts at once: an object's name is its content.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::codec;
use super::manifest::{self, File, Manifest, Object};
use super::{CONCURRENCY, Store};
use crate::lease::{BUILD_DIR, Lease, TARGET};
use crate::quantity::Bytes;
use crate::scope::Scope;
use crate::term;
use crate::warm::RECORD;
use anyhow::{Context, Result, anyhow, bail};

/// What a push reads: the job's own dir, under its lease.
pub(crate) struct Source<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) lease: &'a Lease,
    /// The pushing job's scope: the manifest goes under it.
    pub(crate) writer: &'a Scope,
    pub(crate) cargo_home: Option<&'a Path>,
}

/// What a push did.
#[derive(Debug)]
pub(crate) struct Pushed {
    pub(crate) files: usize,
    pub(crate) bytes: u64,
    /// Distinct objects the manifest names, and those the store lacked: uploaded, compressed to
    /// `uploaded_bytes`.
    pub(crate) objects: usize,
    pub(crate) uploaded: usize,
    pub(crate) uploaded_bytes: u64,
    pub(crate) manifest: String,
    pub(crate) took: Duration,
}

/// A file found in the dir.
struct Local {
    rel: String,
    meta: std::fs::Metadata,
}

/// Push the dir at `src.dir` to `store`.
pub(crate) fn push(store: &Store, src: &Source<'_>) -> Result<Pushed> {
    let start = Instant::now();
    let Some(workspace) = src.lease.workspace.as_deref() else {
        bail!(
            "the lease of {} records no workspace key: nothing to push it under",
            src.dir.display()
        );
    };
    let mut found = Vec::new();
    for top in [TARGET, BUILD_DIR] {
        walk(&src.dir.join(top), top, &mut found)
            .with_context(|| format!("failed to read {}", src.dir.join(top).display()))?;
    }
    if found.is_empty() {
        bail!(
            "{} has no files under target/ or build/: nothing to push",
            src.dir.display()
        );
    }
    // One upload per inode: hard links share it.
    let mut inodes: HashMap<(u64, u64), usize> = HashMap::new();
    let mut first: Vec<PathBuf> = Vec::new();
    let of_file: Vec<usize> = found
        .iter()
        .map(|f| {
            *inodes
                .entry((f.meta.dev(), f.meta.ino()))
                .or_insert_with(|| {
                    first.push(src.dir.join(&f.rel));
                    first.len() - 1
                })
        })
        .collect();
    let record = src.dir.join(RECORD);
    let with_record = record.is_file();
    if with_record {
        first.push(record);
    }
    let stored = store.rt.block_on(upload_all(store, &first, src.dir))?;
    let files = listed(&found, &of_file, &stored);
    let created_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let m = Manifest {
        version: manifest::VERSION,
        job_id: src.lease.job_id.clone(),
        workspace: workspace.to_owned(),
        toolchain: src.lease.toolchain.clone(),
        cargo_home: src.cargo_home.map(|p| p.to_string_lossy().into_owned()),
        scopes: src.lease.scopes.clone().unwrap_or_default(),
        created_ms,
        inputs: with_record.then(|| stored[stored.len() - 1].object.clone()),
        files,
    };
    let path = format!(
        "{}{}",
        manifest::dir(src.writer, workspace, m.toolchain.as_deref()),
        manifest::name(created_ms, &m.job_id)
    );
    let bytes = serde_json::to_vec(&m)?;
    store
        .rt
        .block_on(store.op.write(&path, bytes))
        .map_err(|e| anyhow!("failed to write {path} to {}: {e}", store.url))?;
    Ok(Pushed {
        files: m.files.len(),
        bytes: m.bytes(),
        objects: stored.len(),
        uploaded: stored.iter().filter(|s| s.uploaded).count(),
        uploaded_bytes: stored
            .iter()
            .filter(|s| s.uploaded)
            .map(|s| s.stored_bytes)
            .sum(),
        manifest: path,
        took: start.elapsed(),
    })
}

/// The manifest's files: each found file with its inode's object, and a link group for inodes
/// that more than one path names.
fn listed(found: &[Local], of_file: &[usize], stored: &[Stored]) -> Vec<File> {
    let mut links: HashMap<usize, u32> = HashMap::new();
    let counts = of_file.iter().fold(HashMap::new(), |mut m, i| {
        *m.entry(*i).or_insert(0) += 1;
        m
    });
    found
        .iter()
        .zip(of_file)
        .map(|(f, &i)| {
            let next = links.len() as u32;
            File {
                path: f.rel.clone(),
                object: stored[i].object.clone(),
                mode: f.meta.mode() & 0o777,
                mtime_s: f.meta.mtime(),
                mtime_ns: f.meta.mtime_nsec() as u32,
                link: (counts[&i] > 1).then(|| *links.entry(i).or_insert(next)),
            }
        })
        .collect()
}

/// Every regular file under `dir` (relative path `rel`), but cargo's `incremental/` dirs and
/// coverage profiles. Symlinks and names that are not UTF-8 are left out.
fn walk(dir: &Path, rel: &str, out: &mut Vec<Local>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let kind = entry.file_type()?;
        let child = format!("{rel}/{name}");
        if kind.is_dir() {
            if name != "incremental" {
                walk(&entry.path(), &child, out)?;
            }
        } else if kind.is_file() && !name.ends_with(".profraw") && !name.ends_with(".profdata") {
            out.push(Local {
                rel: child,
                meta: entry.metadata()?,
            });
        }
    }
    Ok(())
}

struct Stored {
    object: Object,
    uploaded: bool,
    /// What the upload sent: the object compressed.
    stored_bytes: u64,
}

/// Upload each file the store lacks, `CONCURRENCY` at a time; in `paths`' order. Files checked
/// and bytes uploaded show on a terminal.
async fn upload_all(store: &Store, paths: &[PathBuf], dir: &Path) -> Result<Vec<Stored>> {
    let progress = term::Activity::on_terminal_after(
        Duration::from_secs(1),
        "Pushing",
        format_args!("{} to {}", dir.display(), store.url),
    );
    let (mut done, mut uploaded, mut bytes) = (0, 0, 0);
    let mut out: Vec<Option<Stored>> = (0..paths.len()).map(|_| None).collect();
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < paths.len() || !tasks.is_empty() {
        while next < paths.len() && tasks.len() < CONCURRENCY {
            let (op, path, url) = (store.op.clone(), paths[next].clone(), store.url.clone());
            let i = next;
            tasks.spawn(async move { (i, upload(&op, path, &url).await) });
            next += 1;
        }
        if let Some(joined) = tasks.join_next().await {
            let (i, stored) = joined.context("an upload task failed")?;
            let stored = stored?;
            done += 1;
            if stored.uploaded {
                uploaded += 1;
                bytes += stored.stored_bytes;
            }
            progress.detail(format_args!(
                "{done}/{} files checked, {uploaded} uploaded ({})",
                paths.len(),
                Bytes(bytes)
            ));
            out[i] = Some(stored);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

async fn upload(op: &opendal::Operator, path: PathBuf, url: &str) -> Result<Stored> {
    // Reading, hashing and compressing run on the runtime's blocking threads: the thread that
    // drives the transfers keeps them going, and files are hashed and compressed in parallel.
    let (bytes, object) = tokio::task::spawn_blocking(move || {
        let bytes =
            read_noatime(&path).with_context(|| format!("failed to read {}", path.display()))?;
        let object = Object {
            sha256: codec::digest(&bytes),
            size: bytes.len() as u64,
        };
        anyhow::Ok((bytes, object))
    })
    .await
    .context("a read task failed")??;
    let key = manifest::object_path(&object.sha256);
    let have = op
        .exists(&key)
        .await
        .map_err(|e| anyhow!("failed to look up {key} in {url}: {e}"))?;
    let mut stored_bytes = 0;
    if !have {
        let compressed = tokio::task::spawn_blocking(move || codec::compress(&bytes))
            .await
            .context("a compression task failed")?
            .with_context(|| format!("failed to compress {key}"))?;
        stored_bytes = compressed.len() as u64;
        op.write(&key, compressed)
            .await
            .map_err(|e| anyhow!("failed to write {key} to {url}: {e}"))?;
    }
    Ok(Stored {
        object,
        uploaded: !have,
        stored_bytes,
    })
}

/// Read a file without touching its atime (pruning reads atimes), where the kernel lets us.
fn read_noatime(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME | libc::O_NOFOLLOW)
        .open(path)
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
        })?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

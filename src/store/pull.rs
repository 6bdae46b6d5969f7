//! Pull: into a fresh dir, the newest manifest of the job's workspace and toolchain whose writers
//! the scope rule allows, every object fetched concurrently, decompressed (at most to its recorded
//! size) and its digest checked before use.
//! Files are laid out as the manifest says: mode, mtime to the nanosecond, atime equal to it (so
//! pruning starts clean), hard links. An object whose content or size differs is dropped, and with it
//! every file of the units it belonged to: a unit is never used half restored. The dir's
//! `inputs.json` comes back too; content verification then decides which path units are reused.

use std::collections::{HashMap, HashSet};
use std::fs::{FileTimes, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::codec;
use super::manifest::{self, Manifest, Object};
use super::{CONCURRENCY, Store};
use crate::lease::{BUILD_DIR, TARGET};
use crate::prune::output_hash;
use crate::quantity::Bytes;
use crate::scope::Scope;
use crate::term;
use crate::warm::RECORD;
use anyhow::{Context, Result, anyhow, bail};

/// An object whose content is larger than this is fetched in `RANGE`-sized ranged requests (of
/// its compressed bytes, about a quarter of its content for a binary or an rlib), `RANGES_AT_ONCE`
/// at a time.
const RANGED_ABOVE: u64 = 32 << 20;
const RANGE: u64 = 4 << 20;
const RANGES_AT_ONCE: usize = 4;

/// Manifests read (newest first) before giving up on finding one the scope allows.
const MAX_MANIFESTS_READ: usize = 32;

/// What the job wants from the store.
pub(crate) struct Want<'a> {
    pub(crate) workspace: &'a str,
    pub(crate) toolchain: Option<&'a str>,
    /// The scope rule: `Ok` when the job may start from a dir these writers wrote.
    pub(crate) allows: &'a dyn Fn(&[Scope]) -> Result<(), String>,
    /// A manifest whose files take more than this is not restored: `--seed-max-size`, or the
    /// free space above the line where a sweep would start reclaiming.
    pub(crate) max_bytes: u64,
    /// A pull that takes longer is given up (`--store-timeout`): the job builds cold.
    pub(crate) timeout: Duration,
}

/// What a pull laid out.
#[derive(Debug)]
pub(crate) struct Restored {
    /// The job that pushed the manifest.
    pub(crate) from: String,
    pub(crate) files: usize,
    pub(crate) bytes: u64,
    /// Files left out: their unit had an object whose digest differed.
    pub(crate) left_out: usize,
    pub(crate) took: Duration,
    /// The `CARGO_HOME` the dir was built with.
    pub(crate) cargo_home: Option<String>,
}

/// Lay out in `dir` (a fresh job dir, ours) the newest allowed manifest. `Ok(None)`: the store
/// has none for this workspace the scope allows. On an error or past `want.timeout`, what was
/// laid out is removed again: the job builds cold. `progress` shows objects and bytes fetched on
/// a terminal.
pub(crate) fn pull(
    store: &Store,
    dir: &Path,
    want: &Want<'_>,
    progress: &term::Activity,
) -> Result<Option<Restored>> {
    let start = Instant::now();
    let result = store
        .rt
        .block_on(async {
            tokio::time::timeout(want.timeout, restore(store, dir, want, progress))
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow!(
                        "gave up after {}",
                        humantime::format_duration(want.timeout)
                    ))
                })
        })
        .map(|r| {
            r.map(|mut r| {
                r.took = start.elapsed();
                r
            })
        });
    if result.is_err() {
        for top in [TARGET, BUILD_DIR] {
            let _ = std::fs::remove_dir_all(dir.join(top));
        }
        let _ = std::fs::remove_file(dir.join(RECORD));
    }
    result
}

async fn restore(
    store: &Store,
    dir: &Path,
    want: &Want<'_>,
    progress: &term::Activity,
) -> Result<Option<Restored>> {
    let Some((path, m)) = choose(store, want).await? else {
        return Ok(None);
    };
    // Recorded alongside the downloads, for `store gc`'s order of use; read-only credentials
    // (a pull request's) cannot, and the restore does not depend on it.
    let used = tokio::spawn(super::gc::mark_used(store.op.clone(), path.clone()));
    let mut objects: Vec<Object> = m.files.iter().map(|f| f.object.clone()).collect();
    objects.extend(m.inputs.clone());
    objects.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    objects.dedup();
    let mut by_sha: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, f) in m.files.iter().enumerate() {
        by_sha.entry(&f.object.sha256).or_default().push(i);
    }
    let mut bad_units: HashSet<String> = HashSet::new();
    let mut bad_files: HashSet<usize> = HashSet::new();
    let total_bytes: u64 = objects.iter().map(|o| o.size).sum();
    let (mut done, mut done_bytes) = (0, 0);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < objects.len() || !tasks.is_empty() {
        while next < objects.len() && tasks.len() < CONCURRENCY {
            let (op, object, url) = (store.op.clone(), objects[next].clone(), store.url.clone());
            let files = by_sha.get(object.sha256.as_str()).map_or(&[][..], |v| v);
            let layout = Layout {
                files: files.iter().map(|&i| place(dir, &m.files[i])).collect(),
                record: (m.inputs.as_ref() == Some(&object)).then(|| dir.join(RECORD)),
            };
            tasks.spawn(async move {
                let got = fetch(&op, &object, &url, layout).await;
                (object, got)
            });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (object, got) = joined.context("a download task failed")?;
        done += 1;
        done_bytes += object.size;
        progress.detail(format_args!(
            "{done}/{} objects, {}/{}",
            objects.len(),
            Bytes(done_bytes),
            Bytes(total_bytes)
        ));
        if !got? {
            // Dropped, never used: the files that needed it, and their units, are left out.
            for &i in by_sha.get(object.sha256.as_str()).map_or(&[][..], |v| v) {
                bad_files.insert(i);
                bad_units.extend(units_of(&m.files[i].path));
            }
        }
    }
    let marked = used.await.map_err(|e| e.to_string());
    if let Err(e) = marked.and_then(|r| r.map_err(|e| e.to_string())) {
        term::verbose(
            "Note",
            format_args!("could not record the use of {path}: {e}"),
        );
    }
    let left_out = leave_out(dir, &m, &bad_files, &bad_units);
    Ok(Some(Restored {
        from: m.job_id.clone(),
        files: m.files.len() - left_out,
        bytes: m.bytes(),
        left_out,
        took: Duration::ZERO,
        cargo_home: m.cargo_home.clone(),
    }))
}

/// Remove the files a dropped object left incomplete: its own, and every file of a unit that lost
/// one (a unit is whole or absent, so cargo rebuilds it). Returns how many were left out.
fn leave_out(
    dir: &Path,
    m: &Manifest,
    bad_files: &HashSet<usize>,
    bad_units: &HashSet<String>,
) -> usize {
    let mut left_out = 0;
    for (i, f) in m.files.iter().enumerate() {
        if bad_files.contains(&i) || units_of(&f.path).any(|u| bad_units.contains(&u)) {
            left_out += 1;
            let _ = std::fs::remove_file(dir.join(&f.path));
        }
    }
    left_out
}

/// The units a path belongs to: the `-<hash>` of any of its components (`deps/libx-<hash>.rlib`,
/// `.fingerprint/x-<hash>/…`, `build/x-<hash>/out/…`).
fn units_of(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/')
        .filter_map(|c| output_hash(c).map(str::to_owned))
}

/// The newest manifest of the workspace and toolchain whose writers the scope rule allows.
async fn choose(store: &Store, want: &Want<'_>) -> Result<Option<(String, Manifest)>> {
    // Only this workspace's and toolchain's prefix: a pull's listing does not grow with the store.
    let key_dir = manifest::key_dir(want.workspace, want.toolchain);
    let entries = super::gc::list(store, &key_dir).await?;
    let mut found: Vec<(u64, String)> = entries
        .into_iter()
        .filter_map(|e| {
            let (_scope, name) = e.key.strip_prefix(&key_dir)?.split_once('/')?;
            (!name.contains('/')).then_some(())?;
            Some((manifest::created_ms(name)?, e.key))
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    for (_, path) in found.into_iter().take(MAX_MANIFESTS_READ) {
        let bytes = match store.op.read(&path).await {
            Ok(b) if b.len() as u64 <= manifest::MAX_MANIFEST_BYTES => b.to_vec(),
            Ok(_) => continue,
            // Removed since the listing (a store's own cleanup): the next one.
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
            Err(e) => bail!("failed to read {path} in {}: {e}", store.url),
        };
        let m = match Manifest::parse(&bytes) {
            Ok(m) => m,
            Err(why) => {
                term::verbose("Note", format_args!("not restoring from {path}: {why}"));
                continue;
            }
        };
        if m.workspace != want.workspace || m.toolchain.as_deref() != want.toolchain {
            continue;
        }
        if m.bytes() > want.max_bytes {
            term::status(
                "Note",
                format_args!(
                    "not restoring from {path}: its files take {}, over --seed-max-size or the \
                     free space this root can spare",
                    Bytes(m.bytes())
                ),
            );
            continue;
        }
        match (want.allows)(&m.scopes) {
            Ok(()) => return Ok(Some((path, m))),
            Err(why) => term::verbose("Note", format_args!("not restoring from {path}: {why}")),
        }
    }
    Ok(None)
}

/// Where one object's content goes: the files that have it, and the dir's `inputs.json` if it is
/// that.
struct Layout {
    files: Vec<Place>,
    record: Option<PathBuf>,
}

struct Place {
    path: PathBuf,
    mode: u32,
    mtime: SystemTime,
    link: Option<u32>,
}

fn place(dir: &Path, f: &manifest::File) -> Place {
    Place {
        path: dir.join(&f.path),
        // Permission bits only: a manifest never makes a setuid or setgid file.
        mode: f.mode & 0o777,
        mtime: SystemTime::UNIX_EPOCH
            .checked_add(Duration::new(f.mtime_s.max(0) as u64, f.mtime_ns))
            .unwrap_or(SystemTime::UNIX_EPOCH),
        link: f.link,
    }
}

/// Fetch an object and lay its files out: `Ok(false)` when the store lacks it or its stored bytes
/// are not the object's (corrupt, cut short, another content, or more than its recorded size),
/// and nothing was written.
async fn fetch(op: &opendal::Operator, object: &Object, url: &str, layout: Layout) -> Result<bool> {
    let key = manifest::object_path(&object.sha256);
    let failed = |e: opendal::Error| match e.kind() {
        opendal::ErrorKind::NotFound => Ok(false),
        _ => Err(anyhow!("failed to read {key} in {url}: {e}")),
    };
    // OpenDAL reads an object in one request unless asked: a large one (a binary, a big rlib)
    // in ranged requests, a few at once, each retried on its own. Ranges need the stored length
    // (OpenDAL would ask for it too): one larger than any compression of the content is refused
    // before it is downloaded.
    let read = if object.size > RANGED_ABOVE {
        let len = match op.stat(&key).await {
            Ok(meta) => meta.content_length(),
            Err(e) => return failed(e),
        };
        if len > codec::stored_bound(object.size) {
            term::warn(format_args!(
                "{key} in {url} takes {len} bytes, more than any compression of its content: \
                 dropped, and the units that needed it are left out (they build)"
            ));
            return Ok(false);
        }
        op.read_with(&key)
            .range(0..len)
            .concurrent(RANGES_AT_ONCE)
            .chunk(RANGE as usize)
            .await
    } else {
        op.read(&key).await
    };
    let stored = match read {
        Ok(b) => b.to_vec(),
        Err(e) => return failed(e),
    };
    // Decompressing (bounded by the recorded size), hashing and writing on a blocking thread:
    // objects are laid out in parallel, and the runtime's thread keeps the transfers going.
    let (want, url) = (object.clone(), url.to_owned());
    tokio::task::spawn_blocking(move || match codec::decompress(&stored, &want) {
        Ok(bytes) => lay_out(&bytes, &layout).map(|()| true),
        Err(why) => {
            term::warn(format_args!(
                "{key} in {url} {why}, not the object its manifest names: dropped, and the units \
                 that needed it are left out (they build)"
            ));
            Ok(false)
        }
    })
    .await
    .context("a decompression task failed")?
}

/// Write an object's files: each with its mode and mtime, hard links as grouped.
fn lay_out(bytes: &[u8], layout: &Layout) -> Result<()> {
    if let Some(record) = &layout.record {
        write_file(record, bytes, 0o644, None)?;
    }
    let mut linked: HashMap<u32, &Path> = HashMap::new();
    for f in &layout.files {
        if let Some(first) = f.link.and_then(|g| linked.get(&g)) {
            let fail = || format!("failed to link {}", f.path.display());
            if let Some(parent) = f.path.parent() {
                std::fs::create_dir_all(parent).with_context(fail)?;
            }
            std::fs::hard_link(first, &f.path).with_context(fail)?;
            continue;
        }
        write_file(&f.path, bytes, f.mode, Some(f.mtime))?;
        if let Some(g) = f.link {
            linked.insert(g, &f.path);
        }
    }
    Ok(())
}

/// Write a new file: its mode, and its mtime with the atime equal to it.
fn write_file(path: &Path, bytes: &[u8], mode: u32, mtime: Option<SystemTime>) -> Result<()> {
    let fail = || format!("failed to write {}", path.display());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(fail)?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .with_context(fail)?;
    f.write_all(bytes).with_context(fail)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(fail)?;
    if let Some(t) = mtime {
        f.set_times(FileTimes::new().set_accessed(t).set_modified(t))
            .with_context(fail)?;
    }
    Ok(())
}

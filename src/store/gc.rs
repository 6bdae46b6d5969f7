//! `store gc`: keep a store under `--max-size`, least recently used manifests first, then the
//! objects no manifest names any more (docs/protocol.md#the-store).
//!
//! "Used": an object store keeps no access time, so a pull records its use of a manifest as a
//! marker object, `used/<the manifest's path under manifests/>`, written at most once a day
//! ([`mark_used`]); a manifest's last use is its marker's last-modified time, or its push's time
//! when no pull has used it. A manifest's own last-modified would be its push's time only: a
//! release branch's manifest that every job still restores from would go first.
//!
//! Concurrent pushes: a push writes its objects, then its manifest. An object no manifest names
//! yet may be one a push is still writing the manifest for, so an unreferenced object younger
//! than `--grace` is kept. Manifests go before their objects: no manifest a pull can read ever
//! names an object this removed, but for the race the protocol documents as not closed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use opendal::Operator;

use super::manifest::{self, MANIFESTS, is_digest};
use super::{CONCURRENCY, Store};

const OBJECTS: &str = "objects/";
const USED: &str = "used/";
/// A pull records its use of a manifest at most this often: the order of use a cap needs is a
/// matter of days, and every marker written is a request.
const MARK_EVERY: Duration = Duration::from_secs(24 * 3600);

/// What `store gc` was asked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Remove least recently used manifests until the store holds at most this; `None`: only
    /// objects no manifest names.
    pub(crate) max_size: Option<u64>,
    pub(crate) grace: Duration,
    pub(crate) dry_run: bool,
}

/// One entry of the store, as listed.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub(crate) key: String,
    pub(crate) bytes: u64,
    pub(crate) modified: SystemTime,
}

/// What was decided for one entry, and why.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub(crate) key: String,
    pub(crate) bytes: u64,
    pub(crate) remove: bool,
    pub(crate) why: Why,
    /// The removal failed: the error.
    pub(crate) failed: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Why {
    /// A manifest kept: the store is within the cap with it.
    WithinCap { last_used: SystemTime },
    /// A manifest kept although the store is over the cap: an unreadable manifest stops gc.
    OverCapUnreadable { last_used: SystemTime },
    /// A manifest removed: the least recently used while the store was over the cap.
    LeastRecentlyUsed { last_used: SystemTime },
    /// A manifest that could not be read as one: left alone, and no object is removed this run
    /// (it may name any of them).
    Unreadable(String),
    /// An object no manifest names, older than the grace.
    Unreferenced { age: Duration },
    /// An object no manifest names, younger than the grace: a push may be about to name it.
    Young { age: Duration },
    /// An object no readable manifest names, kept because an unreadable one may.
    MaybeReferenced,
    /// A use marker whose manifest is gone (or going).
    Orphan,
}

/// What a `store gc` did (or, dry, would do).
#[derive(Debug)]
pub(crate) struct Collected {
    pub(crate) options: Options,
    /// Bytes in the store before, and after (planned, less what failed to be removed).
    pub(crate) before: u64,
    pub(crate) after: u64,
    /// Every manifest, and every object or marker that is removed or kept for a reason other
    /// than a manifest naming it.
    pub(crate) decisions: Vec<Decision>,
    /// Objects kept because a surviving manifest names them: how many, and their bytes.
    pub(crate) referenced: (usize, u64),
    pub(crate) took: Duration,
}

impl Collected {
    /// Removals that failed.
    pub(crate) fn failed(&self) -> usize {
        self.decisions.iter().filter(|d| d.failed.is_some()).count()
    }
}

/// A manifest as gc sees it: the objects it names, or why it cannot say.
#[derive(Debug, Clone)]
pub(crate) struct Named {
    pub(crate) listed: Listed,
    pub(crate) refs: Result<HashSet<String>, String>,
    /// Its use marker, if a pull wrote one.
    pub(crate) used: Option<Listed>,
}

impl Named {
    /// Its last use: the marker's time, else its push's (its name's milliseconds, else its
    /// last-modified time).
    fn last_used(&self) -> SystemTime {
        let name = self.listed.key.rsplit('/').next().unwrap_or_default();
        let pushed = manifest::created_ms(name)
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
            .unwrap_or(self.listed.modified);
        self.used
            .as_ref()
            .map_or(pushed, |u| u.modified.max(pushed))
    }
}

/// Collect garbage in `store`.
pub(crate) fn gc(store: &Store, options: Options) -> Result<Collected> {
    let start = Instant::now();
    store.rt.block_on(async {
        let (manifests, objects, used) = tokio::try_join!(
            list(store, MANIFESTS),
            list(store, OBJECTS),
            list(store, USED)
        )?;
        let named = read_all(store, manifests, used.clone()).await?;
        let mut planned = plan(&named, &objects, &used, SystemTime::now(), options);
        if !options.dry_run {
            remove(&store.op, &mut planned.decisions).await;
            planned.after += planned
                .decisions
                .iter()
                .filter(|d| d.failed.is_some())
                .map(|d| d.bytes)
                .sum::<u64>();
        }
        planned.took = start.elapsed();
        Ok(planned)
    })
}

/// Every file under `prefix`, with its size and last-modified time (now when the store gives
/// none: an entry of unknown age is young).
pub(super) async fn list(store: &Store, prefix: &str) -> Result<Vec<Listed>> {
    let entries = match store.op.list_with(prefix).recursive(true).await {
        Ok(e) => e,
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => bail!("failed to list {prefix} in {}: {e}", store.url),
    };
    Ok(entries
        .into_iter()
        .filter(|e| e.metadata().is_file())
        .map(|e| Listed {
            key: e.path().to_owned(),
            bytes: e.metadata().content_length(),
            modified: e
                .metadata()
                .last_modified()
                .map_or_else(SystemTime::now, SystemTime::from),
        })
        .collect())
}

/// Read every manifest for the objects it names, `CONCURRENCY` at a time; pair each with its use
/// marker. A manifest gone since the listing (another gc) is left out.
async fn read_all(store: &Store, manifests: Vec<Listed>, used: Vec<Listed>) -> Result<Vec<Named>> {
    let mut markers: HashMap<String, Listed> = used
        .into_iter()
        .filter_map(|u| Some((manifest_of(&u.key)?, u)))
        .collect();
    let mut out = Vec::with_capacity(manifests.len());
    let mut tasks = tokio::task::JoinSet::new();
    let mut pending = manifests.into_iter();
    loop {
        while tasks.len() < CONCURRENCY
            && let Some(m) = pending.next()
        {
            let (op, url) = (store.op.clone(), store.url.clone());
            tasks.spawn(async move {
                let refs = named_by(&op, &m, &url).await;
                (m, refs)
            });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (listed, refs) = done?;
        let Some(refs) = refs? else {
            continue;
        };
        let used = markers.remove(&listed.key);
        out.push(Named { listed, refs, used });
    }
    out.sort_by(|a, b| a.listed.key.cmp(&b.listed.key));
    Ok(out)
}

/// The digests a manifest names: every string in it that is one, whatever its version (a newer
/// cargo-guarded's manifest keeps its objects too). `Ok(None)`: gone since the listing.
async fn named_by(
    op: &Operator,
    m: &Listed,
    url: &str,
) -> Result<Option<Result<HashSet<String>, String>>> {
    if m.bytes > manifest::MAX_MANIFEST_BYTES {
        return Ok(Some(Err(format!(
            "larger than a manifest can be ({} bytes)",
            m.bytes
        ))));
    }
    let bytes = match op.read(&m.key).await {
        Ok(b) => b.to_vec(),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("failed to read {} in {url}: {e}", m.key),
    };
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return Ok(Some(Err(format!("not JSON: {e}")))),
    };
    let mut refs = HashSet::new();
    digests(&value, &mut refs);
    Ok(Some(Ok(refs)))
}

fn digests(v: &serde_json::Value, out: &mut HashSet<String>) {
    match v {
        serde_json::Value::String(s) if is_digest(s) => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| digests(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| digests(v, out)),
        _ => {}
    }
}

/// The content digest an object's key names: `objects/<sha256>.zst` (or `objects/<sha256>`, as
/// an earlier format stored it, so its manifests keep it and it goes with them).
fn digest_of(key: &str) -> Option<&str> {
    let name = key.strip_prefix(OBJECTS)?;
    let stem = name.split_once('.').map_or(name, |(stem, _)| stem);
    is_digest(stem).then_some(stem)
}

/// The manifest a use marker is for.
fn manifest_of(marker: &str) -> Option<String> {
    Some(format!("{MANIFESTS}{}", marker.strip_prefix(USED)?))
}

/// The marker that records a pull's use of `manifest`.
fn marker_of(manifest: &str) -> Option<String> {
    Some(format!("{USED}{}", manifest.strip_prefix(MANIFESTS)?))
}

/// Decide: unreferenced objects older than the grace go; then, while over the cap, the least
/// recently used manifest (with its marker), and the objects only it named that are older than
/// the grace. No object goes while a manifest cannot be read. Pure: what the store holds and the
/// time in, decisions out.
// Long: one pass over manifests, objects and markers, in the order the removals must happen.
pub(crate) fn plan(
    named: &[Named],
    objects: &[Listed],
    used: &[Listed],
    now: SystemTime,
    options: Options,
) -> Collected {
    let mut size: u64 = named.iter().map(|m| m.listed.bytes).sum::<u64>()
        + objects.iter().map(|o| o.bytes).sum::<u64>()
        + used.iter().map(|u| u.bytes).sum::<u64>();
    let before = size;
    let blocked = named.iter().any(|m| m.refs.is_err());
    let mut refs: HashMap<&str, usize> = HashMap::new();
    for m in named {
        for r in m.refs.iter().flatten() {
            *refs.entry(r.as_str()).or_default() += 1;
        }
    }
    let by_digest: HashMap<&str, &Listed> = objects
        .iter()
        .filter_map(|o| Some((digest_of(&o.key)?, o)))
        .collect();
    let mut decisions = Vec::new();
    // An object no manifest names: gone if old enough and no manifest is unreadable.
    let unreferenced = |o: &Listed, size: &mut u64, decisions: &mut Vec<Decision>| {
        let age = now.duration_since(o.modified).unwrap_or_default();
        let (remove, why) = if blocked {
            (false, Why::MaybeReferenced)
        } else if age < options.grace {
            (false, Why::Young { age })
        } else {
            (true, Why::Unreferenced { age })
        };
        if remove {
            *size -= o.bytes;
        }
        decisions.push(decision(&o.key, o.bytes, remove, why));
    };
    let mut object_decisions = Vec::new();
    for (digest, o) in &by_digest {
        if !refs.contains_key(digest) {
            unreferenced(o, &mut size, &mut object_decisions);
        }
    }
    let mut order: Vec<&Named> = named.iter().filter(|m| m.refs.is_ok()).collect();
    order.sort_by_key(|m| (m.last_used(), m.listed.key.clone()));
    let mut removed: HashSet<&str> = HashSet::new();
    for m in order {
        let last_used = m.last_used();
        let over = options.max_size.is_some_and(|max| size > max);
        if !over || blocked {
            let why = if over {
                Why::OverCapUnreadable { last_used }
            } else {
                Why::WithinCap { last_used }
            };
            decisions.push(decision(&m.listed.key, m.listed.bytes, false, why));
            continue;
        }
        size -= m.listed.bytes;
        removed.insert(&m.listed.key);
        decisions.push(decision(
            &m.listed.key,
            m.listed.bytes,
            true,
            Why::LeastRecentlyUsed { last_used },
        ));
        for r in m.refs.iter().flatten() {
            let n = refs.get_mut(r.as_str()).expect("counted above");
            *n -= 1;
            if *n == 0
                && let Some(o) = by_digest.get(r.as_str())
            {
                unreferenced(o, &mut size, &mut object_decisions);
            }
        }
    }
    for m in named.iter().filter(|m| m.refs.is_err()) {
        let Err(why) = &m.refs else { continue };
        decisions.push(decision(
            &m.listed.key,
            m.listed.bytes,
            false,
            Why::Unreadable(why.clone()),
        ));
    }
    // Markers of removed manifests, and of manifests no longer there.
    let present: HashSet<&str> = named.iter().map(|m| m.listed.key.as_str()).collect();
    for u in used {
        let of = manifest_of(&u.key).unwrap_or_default();
        if removed.contains(of.as_str()) || !present.contains(of.as_str()) {
            size -= u.bytes;
            decisions.push(decision(&u.key, u.bytes, true, Why::Orphan));
        }
    }
    object_decisions.sort_by(|a, b| a.key.cmp(&b.key));
    decisions.extend(object_decisions);
    let referenced = by_digest
        .iter()
        .filter(|(d, _)| refs.get(*d).is_some_and(|n| *n > 0))
        .fold((0, 0), |(n, b), (_, o)| (n + 1, b + o.bytes));
    Collected {
        options,
        before,
        after: size,
        decisions,
        referenced,
        took: Duration::ZERO,
    }
}

fn decision(key: &str, bytes: u64, remove: bool, why: Why) -> Decision {
    Decision {
        key: key.to_owned(),
        bytes,
        remove,
        why,
        failed: None,
    }
}

/// Carry out the removals, in the decisions' order (manifests, then markers, then objects), each
/// kind finished before the next starts: a manifest never names an object already gone.
async fn remove(op: &Operator, decisions: &mut [Decision]) {
    let kinds = [MANIFESTS, USED, OBJECTS];
    for kind in kinds {
        let mut tasks = tokio::task::JoinSet::new();
        let todo: Vec<(usize, String)> = decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| d.remove && d.key.starts_with(kind))
            .map(|(i, d)| (i, d.key.clone()))
            .collect();
        let mut todo = todo.into_iter();
        let mut of_task = HashMap::new();
        loop {
            while tasks.len() < CONCURRENCY
                && let Some((i, key)) = todo.next()
            {
                let op = op.clone();
                let task = tasks.spawn(async move { op.delete(&key).await });
                of_task.insert(task.id(), i);
            }
            let Some(done) = tasks.join_next_with_id().await else {
                break;
            };
            let (i, failed) = match done {
                Ok((id, Err(e))) if e.kind() != opendal::ErrorKind::NotFound => {
                    (of_task[&id], e.to_string())
                }
                Ok(_) => continue,
                Err(e) => (of_task[&e.id()], format!("the removal's task failed: {e}")),
            };
            decisions[i].failed = Some(failed);
        }
    }
}

/// Record that a pull used `manifest` (at most once a [`MARK_EVERY`]): gc's order of use.
pub(crate) async fn mark_used(op: Operator, manifest: String) -> opendal::Result<()> {
    let Some(key) = marker_of(&manifest) else {
        return Ok(());
    };
    if let Ok(meta) = op.stat(&key).await
        && let Some(t) = meta.last_modified()
        && SystemTime::from(t) + MARK_EVERY > SystemTime::now()
    {
        return Ok(());
    }
    op.write(&key, Vec::<u8>::new()).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(hours_ago: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 * 3600 - hours_ago * 3600)
    }

    fn now() -> SystemTime {
        at(0)
    }

    fn digest(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn object(n: u8, bytes: u64, hours_ago: u64) -> Listed {
        Listed {
            key: manifest::object_path(&digest(n)),
            bytes,
            modified: at(hours_ago),
        }
    }

    fn named(name: &str, refs: &[u8], hours_ago: u64, used_hours_ago: Option<u64>) -> Named {
        Named {
            listed: Listed {
                key: format!("manifests/w/t/s/{name}"),
                bytes: 10,
                modified: at(hours_ago),
            },
            refs: Ok(refs.iter().map(|n| digest(*n)).collect()),
            used: used_hours_ago.map(|h| Listed {
                key: format!("used/w/t/s/{name}"),
                bytes: 0,
                modified: at(h),
            }),
        }
    }

    fn options(max_size: Option<u64>) -> Options {
        Options {
            max_size,
            grace: HOUR,
            dry_run: false,
        }
    }

    fn removed(c: &Collected) -> Vec<&str> {
        c.decisions
            .iter()
            .filter(|d| d.remove)
            .map(|d| d.key.as_str())
            .collect()
    }

    #[test]
    fn objects_are_known_by_their_content_digest_whatever_their_suffix() {
        let d = digest(1);
        assert_eq!(digest_of(&manifest::object_path(&d)), Some(d.as_str()));
        assert_eq!(digest_of(&format!("objects/{d}")), Some(d.as_str()));
        assert_eq!(digest_of("objects/x.zst"), None);
        assert_eq!(digest_of(&format!("manifests/{d}.zst")), None);
    }

    #[test]
    fn the_least_recently_used_manifest_goes_first_with_the_objects_only_it_named() {
        // `old` was pushed first but a pull used it an hour ago; `new` no pull has used.
        let named = vec![
            named("a.json", &[1, 2], 48, Some(1)),
            named("b.json", &[2, 3], 24, None),
        ];
        let objects = vec![object(1, 100, 48), object(2, 100, 48), object(3, 100, 24)];
        let used: Vec<Listed> = named.iter().filter_map(|m| m.used.clone()).collect();
        let c = plan(&named, &objects, &used, now(), options(Some(250)));
        assert_eq!(
            removed(&c),
            ["manifests/w/t/s/b.json", &manifest::object_path(&digest(3))]
        );
        assert_eq!(c.before, 320);
        assert_eq!(c.after, 210);
        assert_eq!(c.referenced, (2, 200));
    }

    #[test]
    fn unreferenced_objects_younger_than_the_grace_stay() {
        let named = vec![named("a.json", &[1], 48, None)];
        let objects = vec![object(1, 100, 48), object(2, 100, 48), object(3, 100, 0)];
        let c = plan(&named, &objects, &[], now(), options(None));
        assert_eq!(removed(&c), [manifest::object_path(&digest(2))]);
        let young = c.decisions.iter().find(|d| d.key.contains(&digest(3)));
        assert!(matches!(young.unwrap().why, Why::Young { .. }));
    }

    #[test]
    fn an_unreadable_manifest_stops_every_object_removal() {
        let mut bad = named("bad.json", &[], 1, None);
        bad.refs = Err("not JSON".into());
        let named = vec![named("a.json", &[1], 48, None), bad];
        let objects = vec![object(1, 100, 48), object(2, 100, 48)];
        let c = plan(&named, &objects, &[], now(), options(Some(0)));
        assert!(removed(&c).is_empty(), "{:?}", c.decisions);
        assert!(
            c.decisions
                .iter()
                .any(|d| matches!(d.why, Why::Unreadable(_)))
        );
        assert!(
            c.decisions
                .iter()
                .any(|d| matches!(d.why, Why::OverCapUnreadable { .. }))
        );
    }

    #[test]
    fn a_marker_whose_manifest_is_gone_goes() {
        let orphan = Listed {
            key: "used/w/t/s/gone.json".into(),
            bytes: 0,
            modified: at(5),
        };
        let c = plan(&[], &[], &[orphan], now(), options(None));
        assert_eq!(removed(&c), ["used/w/t/s/gone.json"]);
    }
}

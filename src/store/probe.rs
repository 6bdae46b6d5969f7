//! What `doctor` asks of a store: whether it can be listed, whether this job can write to it, and
//! the `CARGO_HOME` of the newest manifest of the workspace (registry units rebuild under
//! another).

use super::Store;
use super::manifest::{self, MANIFESTS, Manifest};

/// What a probe found.
#[derive(Debug)]
pub(crate) struct Probe {
    /// Entries listed: the workspace's manifests, or the top of `manifests/` without one (`Err`:
    /// why the store could not be listed).
    pub(crate) listed: Result<usize, String>,
    /// `None`: not tried. A probe object is written and deleted.
    pub(crate) writable: Option<Result<(), String>>,
    /// The newest manifest of the workspace (any toolchain), its `CARGO_HOME`.
    pub(crate) cargo_home: Option<Option<String>>,
}

/// Probe `store`; write a probe object only when `write`.
pub(crate) fn probe(store: &Store, write: bool, workspace: Option<&str>) -> Probe {
    store.rt.block_on(async {
        // The workspace's own prefix (every toolchain), or the top of the manifests: reaching
        // the store is the question, not how large it is.
        let prefix = workspace.map_or_else(|| MANIFESTS.to_owned(), manifest::workspace_dir);
        let listed = store
            .op
            .list_with(&prefix)
            .recursive(workspace.is_some())
            .await
            .map(|e| e.iter().map(|e| e.path().to_owned()).collect::<Vec<_>>())
            .or_else(|e| match e.kind() {
                opendal::ErrorKind::NotFound => Ok(Vec::new()),
                _ => Err(e.to_string()),
            });
        let mut cargo_home = None;
        if let (Ok(paths), Some(_)) = (&listed, workspace) {
            let newest = paths
                .iter()
                .max_by_key(|p| p.rsplit('/').next().and_then(manifest::created_ms));
            if let Some(path) = newest
                && let Ok(bytes) = store.op.read(path).await
                && let Ok(m) = Manifest::parse(&bytes.to_vec())
            {
                cargo_home = Some(m.cargo_home);
            }
        }
        let writable = if write {
            let key = format!("probes/{}", uuid::Uuid::new_v4().simple());
            let wrote = store.op.write(&key, vec![0u8]).await.map(drop);
            let _ = store.op.delete(&key).await;
            Some(wrote.map_err(|e| e.to_string()))
        } else {
            None
        };
        Probe {
            listed: listed.map(|l| l.len()),
            writable,
            cargo_home,
        }
    })
}

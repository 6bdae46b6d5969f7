//! What `store push` did, on the terminal.

use std::path::Path;

use crate::quantity::Bytes;
use crate::store::Pushed;
use crate::term;

/// `Pushed /root/job to s3://b/p: 812 files (310 MiB), 12 of 640 objects uploaded (4.1 MiB) in
/// 2.3s`.
pub(crate) fn pushed(dir: &Path, url: &str, p: &Pushed) {
    term::status(
        "Pushed",
        format_args!(
            "{} to {url}: {} files ({}), {} of {} objects uploaded ({}) in {:.1}s",
            dir.display(),
            p.files,
            Bytes(p.bytes),
            p.uploaded,
            p.objects,
            Bytes(p.uploaded_bytes),
            p.took.as_secs_f64()
        ),
    );
    term::verbose("Wrote", format_args!("manifest {}", p.manifest));
}

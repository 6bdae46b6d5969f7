//! Whether a job dir is ours to use (docs/protocol.md, invariant 9): checked on every dir a job
//! resumes (`acquire`) or adopts (`adopt`).

use std::fs::File;

use rustix::io::Errno;

use super::layout::{LEASE_FILE, TARGET};

/// Race closed (shared roots, mode 1777): another user may pre-create a job's dir with a valid
/// lease and a `target` symlink into their own files, or into ours. A job dir we resume or adopt,
/// its lease and its `target/` must belong to us and be a real dir, file and dir.
pub(super) fn check_owned(dir: &File) -> Result<(), String> {
    use rustix::fs::FileType;
    let me = rustix::process::geteuid().as_raw();
    let st = rustix::fs::fstat(dir).map_err(|e| format!("cannot stat it ({e})"))?;
    if st.st_uid != me {
        return Err(format!(
            "owned by uid {}, not by this user (uid {me})",
            st.st_uid
        ));
    }
    for (name, want, what) in [
        (LEASE_FILE, FileType::RegularFile, "a regular file"),
        (TARGET, FileType::Directory, "a directory"),
    ] {
        match rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) != want => {
                return Err(format!("its {name} is not {what}"));
            }
            Ok(st) if st.st_uid != me => {
                return Err(format!(
                    "its {name} is owned by uid {}, not by uid {me}",
                    st.st_uid
                ));
            }
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => return Err(format!("cannot stat its {name} ({e})")),
        }
    }
    Ok(())
}

//! The words of what the lease layer says on the way (`lease::Notice`): one line each, as the
//! terminal says it (a warning, or a note after its verb), and as `--events` and GitHub's
//! annotations carry it.

use crate::lease::Notice;

/// The verb a note is said with on the terminal (`     Discarded the seed copied from …`); a
/// warning has none (`warning: …`).
pub(crate) fn verb(notice: &Notice) -> &'static str {
    match notice {
        Notice::SeedDiscarded { .. } => "Discarded",
        Notice::Ended { .. } => "Ended",
        _ => "Note",
    }
}

/// What is said, after the verb or `warning:`.
pub(crate) fn words(notice: &Notice) -> String {
    match notice {
        Notice::TakenOver { dir, why, job_id } => {
            format!(
                "{} had {why}; taking it over for job `{job_id}`",
                dir.display()
            )
        }
        Notice::WarmFromAny => "--warm-from any: this job may start from a dir of its workspace \
                                that any job wrote, whatever its ref or pull request (the scope \
                                rule is off)"
            .to_owned(),
        Notice::NotAdopting { dir, why } => format!("not adopting {}: {why}", dir.display()),
        Notice::OtherScope { dir, why } => {
            format!(
                "not adopting or seeding from {}: scope: {why}",
                dir.display()
            )
        }
        Notice::Ended { job_id, .. } => {
            format!("released lease of job `{job_id}` from this runner")
        }
        Notice::NotAdopted { dir, why } => format!("did not adopt {}: {why}", dir.display()),
        Notice::SeedSkipped { dir, why } | Notice::SeedRefused { dir, why } => {
            format!("not seeding from {}: {why}", dir.display())
        }
        Notice::SeedDiscarded { dir, why } => {
            format!("the seed copied from {}: {why}", dir.display())
        }
        Notice::RenewalFailing { dir, error } => format!(
            "failed to renew lease in {}: {error} (the lock still protects it; retrying quietly)",
            dir.display()
        ),
        Notice::RenewalRecovered { dir } => {
            format!("renewing the lease in {} works again", dir.display())
        }
        Notice::ReleaseFailed { error, .. } => format!(
            "{error}; the lease ends with this process (its lock is released), protected only by \
             its last heartbeat"
        ),
        Notice::Survivors { dir } => format!(
            "processes of this job (started by this step, or by an earlier one that was killed) \
             still run after this step ended; {} stays protected (kept by every guard) until \
             they exit",
            dir.display()
        ),
        Notice::Lost { error, .. } => error.clone(),
    }
}

//! Job ids: derived from the CI environment (or the workspace, locally) and sanitized into one
//! safe path component, which is the job dir's name under the root.

use std::path::Path;

/// Longest job dir name we create; ids longer than this are cut and suffixed with a hash.
pub(crate) const MAX_NAME_LEN: usize = 96;
/// Names in the root that are cargo-guarded's own files, never a job dir.
const RESERVED: &[&str] = &["CACHEDIR.TAG"];

/// Reads one environment variable (empty counts as unset); a parameter so that derivation and
/// detection are testable without touching the process environment.
pub(crate) type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A CI system whose job ids we derive: the one table `derive` and `ci_name` read.
struct Ci {
    name: &'static str,
    /// Variables it always sets: any one of them says we run in it.
    markers: &'static [&'static str],
    /// Its job id from its variables; `None` when they do not name a job.
    job_id: fn(Vars) -> Option<String>,
    /// The variables `job_id` reads.
    id_vars: &'static [&'static str],
}

const CIS: &[Ci] = &[
    Ci {
        name: "GitHub Actions",
        markers: &["GITHUB_ACTIONS", "GITHUB_RUN_ID"],
        job_id: github_job_id,
        id_vars: &[
            "GITHUB_RUN_ID",
            "GITHUB_JOB",
            "GITHUB_REPOSITORY",
            "GITHUB_RUN_ATTEMPT",
            "RUNNER_NAME",
            "RUNNER_TRACKING_ID",
        ],
    },
    Ci {
        name: "GitLab CI",
        markers: &["GITLAB_CI", "CI_JOB_ID"],
        job_id: |var| var("CI_JOB_ID").map(|id| format!("gl-{id}")),
        id_vars: &["CI_JOB_ID"],
    },
    Ci {
        name: "Buildkite",
        markers: &["BUILDKITE", "BUILDKITE_JOB_ID"],
        job_id: |var| var("BUILDKITE_JOB_ID").map(|id| format!("bk-{id}")),
        id_vars: &["BUILDKITE_JOB_ID"],
    },
];

/// `CI` is set, but by no CI whose job ids `derive` knows.
pub(crate) const UNRECOGNISED_CI: &str = "unrecognised CI (CI is set)";

/// The CI system we run in, by the variables it always sets; `CI` alone means one whose job
/// ids we cannot derive.
pub(crate) fn ci_name(var: Vars) -> Option<&'static str> {
    match CIS
        .iter()
        .find(|ci| ci.markers.iter().any(|m| var(m).is_some()))
    {
        Some(ci) => Some(ci.name),
        None => var("CI").map(|_| UNRECOGNISED_CI),
    }
}

/// The CI systems a job id is derived from, by name (for the test that `--job-id`'s help names
/// them all).
#[cfg(test)]
pub(crate) fn ci_names() -> impl Iterator<Item = &'static str> {
    CIS.iter().map(|ci| ci.name)
}

/// The job id as the CI system knows it, or a stable per-workspace id for local builds.
pub(crate) fn derive(var: Vars, workspace_root: &Path) -> String {
    if let Some(id) = CIS.iter().find_map(|ci| (ci.job_id)(var)) {
        return id;
    }
    // Locally: one dir per workspace, so repeated builds stay warm.
    let base = workspace_root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    format!(
        "local-{base}-{}",
        short_hash(workspace_root.as_os_str().as_encoded_bytes())
    )
}

/// A warning when the detected CI's job id variables are set but not UTF-8 (`var` sees them as
/// unset; `not_utf8` says which are): the id then ignores them, or, when they were the ones that
/// name the job, falls back to the workspace path (`derived`), which concurrent jobs checked out
/// at the same path share. Said as for an unrecognised CI, never silently.
pub(crate) fn unreadable_vars(
    var: Vars,
    not_utf8: &dyn Fn(&str) -> bool,
    derived: &str,
) -> Option<String> {
    let ci = CIS
        .iter()
        .find(|ci| ci.markers.iter().any(|m| var(m).is_some() || not_utf8(m)))?;
    let bad: Vec<&str> = ci.id_vars.iter().copied().filter(|v| not_utf8(v)).collect();
    if bad.is_empty() {
        return None;
    }
    let what = format!(
        "{} (from {}) {} not valid UTF-8, so the job id cannot use {}",
        bad.join(", "),
        ci.name,
        if bad.len() == 1 { "is" } else { "are" },
        if bad.len() == 1 { "it" } else { "them" },
    );
    Some(if (ci.job_id)(var).is_none() {
        format!(
            "{what}: it is derived from the workspace path instead ({derived}), and concurrent \
             jobs checked out at the same path would share one dir and take turns; set \
             CARGO_GUARDED_JOB_ID (or pass --job-id) to the CI's job id"
        )
    } else {
        format!(
            "{what} (job id: {derived}); set CARGO_GUARDED_JOB_ID (or pass --job-id) to the CI's job id"
        )
    })
}

/// GitHub Actions: one id per job of a run attempt. RUNNER_NAME separates matrix legs that run
/// at once on different runners of one host. Matrix legs that run one after another on one
/// runner share all of those (GITHUB_JOB is the job's key, not the leg); the runner's
/// RUNNER_TRACKING_ID (`github_<uuid>`, a new one for every job it runs, the same in every step
/// of that job) tells them apart, so a second leg does not "resume" the first's lease.
fn github_job_id(var: Vars) -> Option<String> {
    let (run, job) = (var("GITHUB_RUN_ID")?, var("GITHUB_JOB")?);
    let repo = var("GITHUB_REPOSITORY").unwrap_or_default();
    let attempt = var("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into());
    let runner = var("RUNNER_NAME").unwrap_or_default();
    let leg = var("RUNNER_TRACKING_ID")
        .map(|t| format!("-{}", short_hash(t.as_bytes())))
        .unwrap_or_default();
    Some(format!("gh-{repo}-{run}-{attempt}-{job}-{runner}{leg}"))
}

/// One safe path component for `id`: ASCII letters, digits, `.`, `_`, `-`; never empty, never a
/// dot-name (those belong to cargo-guarded), never `..` or one of our `RESERVED` names, at most
/// `MAX_NAME_LEN` bytes. Ids that had to change get a hash of the original appended, so distinct
/// ids stay distinct.
pub(crate) fn sanitize(id: &str) -> String {
    let mut out = String::with_capacity(id.len().min(MAX_NAME_LEN));
    for c in id.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    let trimmed = out.trim_start_matches(['.', '-', '_']);
    let mut name: String = trimmed.chars().take(MAX_NAME_LEN - 9).collect();
    if name != id || name.is_empty() || RESERVED.contains(&name.as_str()) {
        if name.is_empty() {
            name.push_str("job");
        }
        name.push('-');
        name.push_str(&short_hash(id.as_bytes()));
    }
    name
}

/// Eight hex digits of a stable hash (UUID v5, i.e. SHA-1): the same on every machine and
/// toolchain, unlike `DefaultHasher`.
pub(crate) fn short_hash(bytes: &[u8]) -> String {
    let u = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, bytes);
    u.simple().to_string()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<_, _> = pairs.iter().copied().collect();
        move |k| map.get(k).map(|v| v.to_string())
    }

    #[test]
    fn github_ids_are_per_job_and_runner() {
        let vars = [
            ("GITHUB_REPOSITORY", "acme/widgets"),
            ("GITHUB_RUN_ID", "123"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_JOB", "coverage"),
            ("RUNNER_NAME", "runner-3"),
        ];
        let id = derive(&env(&vars), Path::new("/w"));
        assert_eq!(id, "gh-acme/widgets-123-2-coverage-runner-3");
        assert!(sanitize(&id).starts_with("gh-acme_widgets-123-2-coverage-runner-3-"));
    }

    #[test]
    fn sequential_matrix_legs_on_one_runner_get_their_own_ids() {
        let leg = |tracking: &'static str| {
            let vars = [
                ("GITHUB_REPOSITORY", "acme/widgets"),
                ("GITHUB_RUN_ID", "123"),
                ("GITHUB_JOB", "test"),
                ("RUNNER_NAME", "runner-3"),
                ("RUNNER_TRACKING_ID", tracking),
            ];
            derive(&env(&vars), Path::new("/w"))
        };
        let first = leg("github_7d3c1e0a-0000-4000-8000-000000000001");
        let second = leg("github_7d3c1e0a-0000-4000-8000-000000000002");
        assert_ne!(first, second);
        assert_ne!(sanitize(&first), sanitize(&second));
        // Every step of one leg: the same id.
        assert_eq!(first, leg("github_7d3c1e0a-0000-4000-8000-000000000001"));
    }

    #[test]
    fn gitlab_and_buildkite() {
        assert_eq!(
            derive(&env(&[("CI_JOB_ID", "77")]), Path::new("/w")),
            "gl-77"
        );
        assert_eq!(
            derive(&env(&[("BUILDKITE_JOB_ID", "ab-c")]), Path::new("/w")),
            "bk-ab-c"
        );
    }

    #[test]
    fn the_ci_is_named_by_the_variables_it_always_sets() {
        assert_eq!(
            ci_name(&env(&[("GITHUB_ACTIONS", "true")])),
            Some("GitHub Actions")
        );
        assert_eq!(ci_name(&env(&[("CI_JOB_ID", "1")])), Some("GitLab CI"));
        assert_eq!(ci_name(&env(&[("BUILDKITE", "true")])), Some("Buildkite"));
        assert_eq!(ci_name(&env(&[("CI", "true")])), Some(UNRECOGNISED_CI));
        assert_eq!(ci_name(&env(&[])), None);
    }

    #[test]
    fn local_ids_follow_the_workspace() {
        let a = derive(&env(&[]), Path::new("/home/me/proj"));
        assert!(a.starts_with("local-proj-"), "{a}");
        assert_eq!(a, derive(&env(&[]), Path::new("/home/me/proj")));
        assert_ne!(a, derive(&env(&[]), Path::new("/home/you/proj")));
    }

    #[test]
    fn hostile_ids_give_one_safe_component() {
        let long = "x".repeat(5000);
        for id in [
            "../../etc",
            "/",
            ".",
            "..",
            "",
            "a/b",
            "ünïcødé ☃",
            &long,
            "-rf",
            ".trash",
        ] {
            let name = sanitize(id);
            assert!(!name.is_empty(), "{id:?}");
            assert!(name.len() <= MAX_NAME_LEN, "{id:?} -> {name}");
            assert!(!name.starts_with(['.', '-']), "{id:?} -> {name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{id:?} -> {name}"
            );
        }
        assert_ne!(sanitize("a/b"), sanitize("a_b"));
        assert!(sanitize("CACHEDIR.TAG").starts_with("CACHEDIR.TAG-"));
        assert_eq!(sanitize("plain-id_1.2"), "plain-id_1.2");
    }
}

//! Trust scopes: which ref (and which kind of event) a job builds for, read from the CI's
//! variables (one table of CI systems), and the rule that says from whose dirs a job may start
//! warm: its own ref's, its pull request's base branch's, or the default branch's, as GitHub's
//! own cache decides which caches a run may restore.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Reads one environment variable (empty counts as unset).
pub(crate) type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The variable naming GitHub's event payload, the one file a scope is read from.
pub(crate) const GITHUB_EVENT_PATH: &str = "GITHUB_EVENT_PATH";

/// More writers than this and a dir's scope list ends in `unknown`: a lease stays small, and a dir
/// that many refs wrote is one no CI job should trust anyway.
const MAX_SCOPES: usize = 16;
/// Longer refs are cut and end in a hash of the whole, so two long refs stay apart.
const MAX_REF_LEN: usize = 200;

/// What kind of event a job ran for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// A push to (or a scheduled run on) a branch.
    Branch,
    Tag,
    /// A pull or merge request, or an event that builds one's code with the base's rights
    /// (`pull_request_target`, `workflow_run`).
    Pr,
    /// No CI.
    Local,
    /// A CI whose variables we cannot read a ref from (`CI` is set, by no CI in the table).
    Ci,
    /// Written before scopes were recorded, or by a version that knows kinds we do not: no CI
    /// job trusts it.
    #[serde(other)]
    Unknown,
}

/// One writer's scope, as a lease records it: `{"kind": "pr", "ref": "pull/12", "base": "main"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Scope {
    pub(crate) kind: Kind,
    /// The branch or tag; for a pull request its own name (`pull/12`, or GitLab's source branch,
    /// `<project id>:<branch>` from a fork).
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub(crate) reference: Option<String>,
    /// A pull request's base (target) branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) base: Option<String>,
    /// GitLab: whether the ref is protected (its jobs see the protected variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) protected: Option<bool>,
}

impl Scope {
    fn new(kind: Kind, reference: Option<String>) -> Scope {
        Scope {
            kind,
            reference: reference.map(|r| cap(&r)),
            base: None,
            protected: None,
        }
    }

    pub(crate) fn local() -> Scope {
        Scope::new(Kind::Local, None)
    }

    /// What a lease without scopes (or with more than `MAX_SCOPES`) stands for.
    pub(crate) fn unknown() -> Scope {
        Scope::new(Kind::Unknown, None)
    }

    fn pr(reference: String, base: Option<String>) -> Scope {
        Scope {
            base: base.map(|b| cap(&b)),
            ..Scope::new(Kind::Pr, Some(reference))
        }
    }

    fn is_branch(&self, name: Option<&str>) -> bool {
        self.kind == Kind::Branch && name.is_some() && self.reference.as_deref() == name
    }
}

/// The stable string form, for `status` and events: `branch:main`, `tag:v1.0`,
/// `pr:pull/12->main`, `branch:feature,unprotected`, `local`, `ci`, `unknown`.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Branch => "branch",
            Kind::Tag => "tag",
            Kind::Pr => "pr",
            Kind::Local => "local",
            Kind::Ci => "ci",
            Kind::Unknown => "unknown",
        };
        f.write_str(kind)?;
        if let Some(r) = &self.reference {
            write!(f, ":{r}")?;
        }
        if let Some(b) = &self.base {
            write!(f, "->{b}")?;
        }
        match self.protected {
            Some(true) => f.write_str(",protected"),
            Some(false) => f.write_str(",unprotected"),
            None => Ok(()),
        }
    }
}

/// A dir's writers, as `status` lists them: `branch:main + pr:pull/3->main`; `unknown` for a
/// lease written before scopes were recorded.
pub(crate) fn describe(scopes: Option<&[Scope]>) -> String {
    match scopes {
        None | Some([]) => Scope::unknown().to_string(),
        Some(list) => list
            .iter()
            .map(Scope::to_string)
            .collect::<Vec<_>>()
            .join(" + "),
    }
}

/// The scopes a dir's lease records once `own` wrote in it: the earlier writers' (`earlier`;
/// `None` from a lease written before scopes were recorded, which stays untrusted as `unknown`)
/// and `own`, each once.
pub(crate) fn merged(earlier: Option<&[Scope]>, own: &Scope) -> Vec<Scope> {
    let mut out = match earlier {
        Some(list) if !list.is_empty() => list.to_vec(),
        _ => vec![Scope::unknown()],
    };
    if !out.contains(own) {
        out.push(own.clone());
    }
    if out.len() > MAX_SCOPES {
        out.truncate(MAX_SCOPES - 1);
        out.push(Scope::unknown());
    }
    out
}

/// The job's side of the rule: its scope and the repository's default branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobScope {
    pub(crate) scope: Scope,
    /// From the CI (GitLab, Buildkite, GitHub's event payload), else `--default-branch`; `None`:
    /// unknown, and the job warms only from its own ref's dirs.
    pub(crate) default_branch: Option<String>,
}

impl JobScope {
    /// `Ok` when the job may start from a dir these writers wrote; else why not. A dir is as
    /// trusted as its least trusted writer.
    pub(crate) fn allows(&self, writers: Option<&[Scope]>) -> Result<(), String> {
        let Some(writers) = writers.filter(|w| !w.is_empty()) else {
            return match self.scope.kind {
                Kind::Local => Ok(()),
                _ => Err("written before scopes were recorded".into()),
            };
        };
        writers.iter().try_for_each(|w| self.allows_one(w))
    }

    fn allows_one(&self, w: &Scope) -> Result<(), String> {
        let job = &self.scope;
        let refused = |why: &str| Err(format!("written by {w}, {why}"));
        match (job.kind, w.kind) {
            (Kind::Local, Kind::Local | Kind::Unknown) => return Ok(()),
            (Kind::Local, _) => return refused("a CI job (local runs are kept apart)"),
            (_, Kind::Local) => return refused("a local run (kept apart from CI)"),
            (_, Kind::Unknown) => return refused("an unknown scope"),
            (Kind::Ci, Kind::Ci) => return Ok(()),
            (Kind::Ci, _) | (_, Kind::Ci) => return refused("another CI's job"),
            _ => {}
        }
        if job.protected == Some(true) && w.protected == Some(false) {
            return refused("an unprotected ref");
        }
        if w.kind == job.kind && w.reference == job.reference {
            return Ok(());
        }
        let Some(default) = self.default_branch.as_deref() else {
            return refused("not this job's ref, and the default branch is unknown");
        };
        let base = job.base.as_deref().filter(|_| job.kind == Kind::Pr);
        if w.is_branch(Some(default)) || w.is_branch(base) {
            return Ok(());
        }
        let trusted = match base {
            Some(b) => format!("{}, its base {b} or the default branch {default}", own(job)),
            None => format!("{} or the default branch {default}", own(job)),
        };
        refused(&format!("not {trusted}"))
    }
}

/// "this job's ref (branch:main)".
fn own(job: &Scope) -> String {
    format!(
        "this job's ref ({})",
        Scope {
            base: None,
            ..job.clone()
        }
    )
}

/// What GitHub's event payload says that its variables do not (`$GITHUB_EVENT_PATH`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Event {
    #[serde(default)]
    repository: Option<Repository>,
    #[serde(default)]
    pull_request: Option<PullRequest>,
    #[serde(default)]
    workflow_run: Option<WorkflowRun>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    default_branch: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    number: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct WorkflowRun {
    head_branch: Option<String>,
    head_repository: Option<Repository2>,
}

#[derive(Debug, Deserialize)]
struct Repository2 {
    full_name: Option<String>,
}

impl Event {
    /// The payload's fields we read; anything unreadable is an empty payload (the default
    /// branch is then unknown unless `--default-branch` names it).
    pub(crate) fn parse(bytes: &[u8]) -> Event {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

/// A CI system whose scopes we read: the one table `detect` reads.
struct Ci {
    /// Variables it always sets: any one of them says we run in it.
    markers: &'static [&'static str],
    /// The job's scope and the default branch, from its variables (and GitHub's payload).
    scope: fn(Vars, &Event) -> JobScope,
    /// Whether `scope` reads the event payload.
    reads_event: bool,
}

const CIS: &[Ci] = &[
    Ci {
        markers: &["GITHUB_ACTIONS", "GITHUB_RUN_ID"],
        scope: github,
        reads_event: true,
    },
    Ci {
        markers: &["GITLAB_CI", "CI_JOB_ID"],
        scope: gitlab,
        reads_event: false,
    },
    Ci {
        markers: &["BUILDKITE", "BUILDKITE_JOB_ID"],
        scope: buildkite,
        reads_event: false,
    },
];

/// The job's scope from the CI's variables; `event` reads GitHub's payload (called only under
/// GitHub Actions). `default_branch` (`--default-branch`) stands in when the CI does not say.
pub(crate) fn detect(
    var: Vars,
    event: &dyn Fn() -> Event,
    default_branch: Option<&str>,
) -> JobScope {
    let mut job = match CIS
        .iter()
        .find(|ci| ci.markers.iter().any(|m| var(m).is_some()))
    {
        Some(ci) => {
            let payload = if ci.reads_event {
                event()
            } else {
                Event::default()
            };
            (ci.scope)(var, &payload)
        }
        None if var("CI").is_some() => JobScope {
            scope: Scope::new(Kind::Ci, None),
            default_branch: None,
        },
        None => JobScope {
            scope: Scope::local(),
            default_branch: None,
        },
    };
    if job.default_branch.is_none() {
        job.default_branch = default_branch.map(str::to_owned);
    }
    job
}

/// Events that run with the base branch's ref and rights but build, or may build, a pull
/// request's code.
const GITHUB_PR_EVENTS: &[&str] = &[
    "pull_request",
    "pull_request_target",
    "pull_request_review",
    "pull_request_review_comment",
];

/// GitHub Actions: the ref from `GITHUB_REF`, except that pull request events (and
/// `workflow_run`, which often builds one) count as the pull request whatever `GITHUB_REF` says:
/// `pull_request_target` runs with the base's ref and secrets.
fn github(var: Vars, event: &Event) -> JobScope {
    let name = var("GITHUB_EVENT_NAME").unwrap_or_default();
    let git_ref = var("GITHUB_REF").unwrap_or_default();
    let number = git_ref
        .strip_prefix("refs/pull/")
        .and_then(|r| r.split('/').next())
        .map(str::to_owned)
        .or_else(|| event.pull_request.as_ref()?.number.map(|n| n.to_string()));
    let scope = if name == "workflow_run" {
        // The triggering run's head: a fork's branch is named with its repository.
        let run = event.workflow_run.as_ref();
        let head = run.and_then(|r| r.head_branch.clone());
        let repo = run
            .and_then(|r| r.head_repository.as_ref()?.full_name.clone())
            .unwrap_or_default();
        let reference = match head {
            Some(h) => format!("workflow_run/{repo}:{h}"),
            // Nothing to tell it by: a ref no other job has.
            None => format!("workflow_run/{}", var("GITHUB_RUN_ID").unwrap_or_default()),
        };
        Scope::pr(reference, None)
    } else if GITHUB_PR_EVENTS.contains(&name.as_str()) || git_ref.starts_with("refs/pull/") {
        let reference = match number {
            Some(n) => format!("pull/{n}"),
            None => format!("{name}/{}", var("GITHUB_RUN_ID").unwrap_or_default()),
        };
        Scope::pr(reference, var("GITHUB_BASE_REF"))
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        Scope::new(Kind::Tag, Some(tag.to_owned()))
    } else {
        let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(&git_ref);
        Scope::new(
            Kind::Branch,
            Some(branch.to_owned()).filter(|b| !b.is_empty()),
        )
    };
    JobScope {
        scope,
        default_branch: event
            .repository
            .as_ref()
            .and_then(|r| r.default_branch.clone()),
    }
}

/// GitLab CI: `CI_MERGE_REQUEST_*` is set only in merge request pipelines; a fork's merge request
/// is told apart by its source project; protected and unprotected refs are kept apart.
fn gitlab(var: Vars, _: &Event) -> JobScope {
    let protected = var("CI_COMMIT_REF_PROTECTED").map(|p| p == "true");
    let mut scope = if var("CI_MERGE_REQUEST_IID").is_some() {
        let branch = var("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
            .or_else(|| var("CI_COMMIT_REF_NAME"))
            .unwrap_or_default();
        let source = var("CI_MERGE_REQUEST_SOURCE_PROJECT_ID");
        let project = var("CI_MERGE_REQUEST_PROJECT_ID").or_else(|| var("CI_PROJECT_ID"));
        let reference = match source {
            Some(s) if Some(&s) != project.as_ref() => format!("{s}:{branch}"),
            _ => branch,
        };
        Scope::pr(reference, var("CI_MERGE_REQUEST_TARGET_BRANCH_NAME"))
    } else if let Some(tag) = var("CI_COMMIT_TAG") {
        Scope::new(Kind::Tag, Some(tag))
    } else {
        Scope::new(Kind::Branch, var("CI_COMMIT_REF_NAME"))
    };
    scope.protected = protected;
    JobScope {
        scope,
        default_branch: var("CI_DEFAULT_BRANCH"),
    }
}

/// Buildkite: `BUILDKITE_PULL_REQUEST` is the pull request's number, or the string `false`.
fn buildkite(var: Vars, _: &Event) -> JobScope {
    let pr = var("BUILDKITE_PULL_REQUEST").filter(|p| p != "false");
    let scope = match pr {
        Some(n) => Scope::pr(
            format!("pull/{n}"),
            var("BUILDKITE_PULL_REQUEST_BASE_BRANCH"),
        ),
        None => match var("BUILDKITE_TAG") {
            Some(tag) => Scope::new(Kind::Tag, Some(tag)),
            None => Scope::new(Kind::Branch, var("BUILDKITE_BRANCH")),
        },
    };
    JobScope {
        scope,
        default_branch: var("BUILDKITE_PIPELINE_DEFAULT_BRANCH"),
    }
}

/// A ref as recorded: at most `MAX_REF_LEN` bytes; a longer one is cut and ends in a hash of the
/// whole, so distinct refs stay distinct.
fn cap(r: &str) -> String {
    if r.len() <= MAX_REF_LEN {
        return r.to_owned();
    }
    let mut cut = MAX_REF_LEN - 10;
    while !r.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, r.as_bytes());
    format!("{}~{}", &r[..cut], &hash.simple().to_string()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<_, _> = pairs.iter().copied().collect();
        move |k| map.get(k).map(|v| v.to_string())
    }

    fn payload(json: &str) -> impl Fn() -> Event + '_ {
        move || Event::parse(json.as_bytes())
    }

    fn one(s: &Scope) -> Option<&[Scope]> {
        Some(std::slice::from_ref(s))
    }

    const MAIN_PAYLOAD: &str = r#"{"repository": {"default_branch": "main"}}"#;

    fn scope_of(pairs: &[(&str, &str)], json: &str) -> JobScope {
        detect(&env(pairs), &payload(json), None)
    }

    #[test]
    fn github_push_pr_and_tag() {
        let push = scope_of(
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_EVENT_NAME", "push"),
                ("GITHUB_REF", "refs/heads/main"),
            ],
            MAIN_PAYLOAD,
        );
        assert_eq!(push.scope.to_string(), "branch:main");
        assert_eq!(push.default_branch.as_deref(), Some("main"));
        let pr = scope_of(
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_EVENT_NAME", "pull_request"),
                ("GITHUB_REF", "refs/pull/12/merge"),
                ("GITHUB_BASE_REF", "release"),
                ("GITHUB_HEAD_REF", "feature"),
            ],
            MAIN_PAYLOAD,
        );
        assert_eq!(pr.scope.to_string(), "pr:pull/12->release");
        let tag = scope_of(
            &[("GITHUB_ACTIONS", "true"), ("GITHUB_REF", "refs/tags/v1")],
            "not json",
        );
        assert_eq!(tag.scope.to_string(), "tag:v1");
        assert_eq!(tag.default_branch, None);
    }

    #[test]
    fn pull_request_target_and_workflow_run_count_as_the_pull_request() {
        let target = scope_of(
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_EVENT_NAME", "pull_request_target"),
                ("GITHUB_REF", "refs/heads/main"),
                ("GITHUB_BASE_REF", "main"),
            ],
            r#"{"repository": {"default_branch": "main"}, "pull_request": {"number": 7}}"#,
        );
        assert_eq!(target.scope.to_string(), "pr:pull/7->main");
        let run = scope_of(
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_EVENT_NAME", "workflow_run"),
                ("GITHUB_REF", "refs/heads/main"),
            ],
            r#"{"workflow_run": {"head_branch": "main",
                "head_repository": {"full_name": "fork/widgets"}}}"#,
        );
        assert_eq!(run.scope.kind, Kind::Pr);
        assert_eq!(
            run.scope.reference.as_deref(),
            Some("workflow_run/fork/widgets:main")
        );
        // main's job never takes what either wrote.
        let main = scope_of(
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_REF", "refs/heads/main"),
            ],
            MAIN_PAYLOAD,
        );
        assert!(main.allows(Some(&[target.scope])).is_err());
        assert!(main.allows(Some(&[run.scope])).is_err());
    }

    #[test]
    fn gitlab_merge_requests_forks_and_protection() {
        let mr = |source: &str| {
            scope_of(
                &[
                    ("GITLAB_CI", "true"),
                    ("CI_PROJECT_ID", "10"),
                    ("CI_DEFAULT_BRANCH", "main"),
                    ("CI_COMMIT_REF_NAME", "main"),
                    ("CI_COMMIT_REF_PROTECTED", "false"),
                    ("CI_MERGE_REQUEST_IID", "3"),
                    ("CI_MERGE_REQUEST_PROJECT_ID", "10"),
                    ("CI_MERGE_REQUEST_SOURCE_PROJECT_ID", source),
                    ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "main"),
                    ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main"),
                ],
                "",
            )
        };
        assert_eq!(mr("10").scope.to_string(), "pr:main->main,unprotected");
        // A fork's `main` is not ours.
        assert_eq!(mr("99").scope.to_string(), "pr:99:main->main,unprotected");
        assert_ne!(mr("10").scope, mr("99").scope);
        let branch = |name: &str, protected: &str| {
            scope_of(
                &[
                    ("CI_JOB_ID", "1"),
                    ("CI_DEFAULT_BRANCH", "main"),
                    ("CI_COMMIT_REF_NAME", name),
                    ("CI_COMMIT_REF_PROTECTED", protected),
                ],
                "",
            )
        };
        let main = branch("main", "true");
        assert_eq!(main.scope.to_string(), "branch:main,protected");
        assert!(main.allows(one(&main.scope)).is_ok());
        // Protected and unprotected refs are kept apart: the protected job does not trust it.
        let unprotected_main = branch("main", "false");
        assert!(main.allows(one(&unprotected_main.scope)).is_err());
        // An unprotected branch may warm from the protected default branch.
        let feature = branch("feature", "false");
        assert!(feature.allows(one(&main.scope)).is_ok());
        assert!(main.allows(Some(&[mr("10").scope])).is_err());
    }

    #[test]
    fn buildkite_pull_request_false_is_a_branch_build() {
        let bk = |pr: &str| {
            scope_of(
                &[
                    ("BUILDKITE", "true"),
                    ("BUILDKITE_BRANCH", "feature"),
                    ("BUILDKITE_PULL_REQUEST", pr),
                    ("BUILDKITE_PULL_REQUEST_BASE_BRANCH", "main"),
                    ("BUILDKITE_PIPELINE_DEFAULT_BRANCH", "main"),
                ],
                "",
            )
        };
        assert_eq!(bk("false").scope.to_string(), "branch:feature");
        assert_eq!(bk("42").scope.to_string(), "pr:pull/42->main");
        assert_eq!(bk("42").default_branch.as_deref(), Some("main"));
    }

    #[test]
    fn local_and_unrecognised_ci() {
        assert_eq!(scope_of(&[], "").scope, Scope::local());
        assert_eq!(scope_of(&[("CI", "true")], "").scope.to_string(), "ci");
    }

    #[test]
    fn the_rule() {
        let main = Scope::new(Kind::Branch, Some("main".into()));
        let release = Scope::new(Kind::Branch, Some("release".into()));
        let pr1 = Scope::pr("pull/1".into(), Some("release".into()));
        let pr2 = Scope::pr("pull/2".into(), Some("main".into()));
        let job = |scope: &Scope, default: Option<&str>| JobScope {
            scope: scope.clone(),
            default_branch: default.map(str::to_owned),
        };
        let d = Some("main");
        // A pull request: its own, its base's, the default branch's.
        for ok in [&pr1, &release, &main] {
            assert!(job(&pr1, d).allows(one(ok)).is_ok(), "{ok}");
        }
        assert!(job(&pr1, d).allows(one(&pr2)).is_err());
        // Sticky: one untrusted writer is enough.
        assert!(
            job(&main, d)
                .allows(Some(&[main.clone(), pr2.clone()]))
                .is_err()
        );
        assert!(job(&main, d).allows(one(&release)).is_err());
        // Unknown default branch: only the job's own ref.
        assert!(job(&pr1, None).allows(one(&pr1)).is_ok());
        assert!(job(&pr1, None).allows(one(&main)).is_err());
        assert!(job(&pr1, None).allows(one(&release)).is_err());
        // Leases without scopes: local jobs only.
        assert!(job(&main, d).allows(None).is_err());
        assert!(job(&Scope::local(), None).allows(None).is_ok());
        assert!(job(&Scope::local(), None).allows(one(&main)).is_err());
        assert!(job(&main, d).allows(Some(&[Scope::local()])).is_err());
        let why = job(&main, d).allows(Some(&[pr2])).unwrap_err();
        assert_eq!(
            why,
            "written by pr:pull/2->main, not this job's ref (branch:main) or the default \
             branch main"
        );
    }

    #[test]
    fn merged_scopes_are_sticky_and_bounded() {
        let main = Scope::new(Kind::Branch, Some("main".into()));
        assert_eq!(merged(None, &main), [Scope::unknown(), main.clone()]);
        assert_eq!(merged(Some(&[]), &main), [Scope::unknown(), main.clone()]);
        assert_eq!(merged(one(&main), &main), vec![main.clone()]);
        let many: Vec<Scope> = (0..40)
            .map(|i| Scope::new(Kind::Branch, Some(format!("b{i}"))))
            .collect();
        let out = merged(Some(&many), &main);
        assert_eq!(out.len(), MAX_SCOPES);
        assert_eq!(out.last(), Some(&Scope::unknown()));
        let long = "x".repeat(1000);
        let a = cap(&format!("{long}a"));
        assert!(a.len() <= MAX_REF_LEN + 1);
        assert_ne!(a, cap(&format!("{long}b")));
    }

    #[test]
    fn unknown_kinds_read_as_unknown() {
        let s: Scope = serde_json::from_str(r#"{"kind": "merge_train", "ref": "x"}"#).unwrap();
        assert_eq!(s.kind, Kind::Unknown);
    }
}

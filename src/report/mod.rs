//! All rendering of what the operations return (`guard`, `precheck`, `status`, `doctor`,
//! `prune`):
//! terminal text (through `term`), `--json`, and GitHub Actions' outputs, step summary and
//! annotations. The operations decide and print nothing; their callers hand the results here.

pub(crate) mod doctor;
pub(crate) mod github;
pub(crate) mod no_space;
pub(crate) mod prune;
pub(crate) mod status;
pub(crate) mod sweep;

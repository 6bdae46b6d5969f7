//! All rendering: of what the operations return (`guard`, `precheck`, `status`, `doctor`,
//! `prune`), and of a job's life as `event`s told to reporters (`terminal`, `github`, `json`).
//! Terminal text goes through `term`; `--json`; GitHub Actions' outputs, step summary and
//! annotations; `--events`' JSON lines.
//! The operations decide and print nothing; `run` tells the reporters `main` chose what
//! happened, and `main` hands the other commands' results here.

pub(crate) mod doctor;
pub(crate) mod event;
pub(crate) mod github;
pub(crate) mod json;
pub(crate) mod no_space;
pub(crate) mod notice;
pub(crate) mod prune;
pub(crate) mod saved;
pub(crate) mod status;
#[cfg(feature = "store")]
pub(crate) mod store;
pub(crate) mod sweep;
pub(crate) mod terminal;
pub(crate) mod warm;

pub(crate) use event::{Event, JobDir, Reporter, Reporters};

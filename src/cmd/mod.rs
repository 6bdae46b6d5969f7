//! The commands, one file each: the wrapped run (`run`, `exec` too), `env`, `hold`, `store
//! push`, `gc`, `status`, `doctor`, the printing commands (`help`) and the checks before a
//! wrapped run (`preflight`). What the commands that run under a job's lease share about taking
//! it is `job`; what a child of the job is told, `job_env`; what they do as they release it, `release`. `main` parses, resolves, chooses the
//! reporters and dispatches here; each command returns its `Exit`.

pub(crate) mod doctor;
pub(crate) mod env;
pub(crate) mod gc;
pub(crate) mod help;
pub(crate) mod hold;
mod job;
mod job_env;
pub(crate) mod preflight;
mod release;
pub(crate) mod run;
pub(crate) mod status;
pub(crate) mod store;

//! The integration tests, as one binary (cargo's own `tests/testsuite` shape): it links once, and
//! a shared helper (a moto server, a built fixture) starts once for every module that needs it.
//! Each module is one subject; `common/` holds what they share. Run one subject with
//! `cargo test --test testsuite <module>::`, e.g. `cargo test --test testsuite structure::`.

mod common;

mod action;
mod adopt;
mod bad_input;
mod cli;
mod core;
mod documented_defaults;
mod env_options;
mod events;
mod fs_hardening;
mod guard;
mod install;
mod job_lock;
mod lease_hardening;
mod llvm_cov;
mod progress;
mod prune;
mod release;
mod run_hardening;
mod saved;
mod scope;
mod seed;
mod session;
mod signals;
mod sizes;
mod snapshots;
mod store;
mod structure;
mod supervision;
mod warm;

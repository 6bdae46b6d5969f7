//! `cargo guarded doctor` for people and programs.

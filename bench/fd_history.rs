//! Issue 19's benchmark: sharkdp/fd's history from v10.0.0 to v10.3.0, `BENCH_JOBS` (default 8)
//! of the main line's commits that changed `Cargo.lock`, spread evenly over the range, so the
//! swap of `jemalloc-sys` for `tikv-jemalloc-sys` (a renamed package: another identity, nothing
//! replaces its 300 MiB of units) is replayed. One job each by `common::history` (pruned and
//! never-pruned roots side by side; after every job's release, the pruned dir against a fresh
//! build of that commit, goal <= 1.3x; units compiled, goal: the same). Crates come from the
//! registry (cached or fetched).
//!
//! The repository is read from `FD_GIT` (a git dir, bare or not; default
//! `/work/.mirror/sharkdp+fd/repo`).

mod common;

use common::history::{History, Pick, replay};

fn main() {
    replay(&History {
        name: "fd_history",
        git_var: "FD_GIT",
        default_git: "/work/.mirror/sharkdp+fd/repo",
        range: "v10.0.0..v10.3.0",
        pick: Pick::Spread,
        first_parent: true,
    });
}

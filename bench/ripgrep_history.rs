//! Issues 9 and 19's benchmark on a real history: ripgrep's last `BENCH_JOBS` (default 8)
//! commits that changed `Cargo.lock` between tags 14.1.1 and 15.1.0, replayed one job each by
//! `common::history` (pruned and never-pruned roots side by side; after every job's release,
//! the pruned dir against a fresh build of that commit, goal <= 1.3x; units compiled, goal: the
//! same). Crates come from the registry (cached or fetched).
//!
//! The repository is read from `RIPGREP_GIT` (a git dir, bare or not; default
//! `/work/.mirror/BurntSushi+ripgrep/repo`).

mod common;

use common::history::{History, Pick, replay};

fn main() {
    replay(&History {
        name: "ripgrep_history",
        git_var: "RIPGREP_GIT",
        default_git: "/work/.mirror/BurntSushi+ripgrep/repo",
        range: "14.1.1..15.1.0",
        pick: Pick::Last,
        first_parent: false,
    });
}

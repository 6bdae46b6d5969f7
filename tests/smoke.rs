mod common;

use common::*;

#[test]
fn build_lands_in_the_job_dir_and_is_warm_the_second_time() {
    let env = Env::new();
    let ws = env.fixture("small");
    let first = env.ok(&ws, ["build"]);
    assert!(compiled_anything(&first), "{}", describe(&first));
    assert!(!ws.join("target").exists(), "./target must not be created");
    let dirs = env.job_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(env.root.join(&dirs[0]).join("target/debug/app").exists());
    assert_eq!(env.lease(&dirs[0])["state"], "released");
    let second = env.ok(&ws, ["build"]);
    assert!(!compiled_anything(&second), "{}", describe(&second));
}

//! Unit tests of the protocol: expiry, parsing, and a property test of random interleavings
//! with a third party's renames.

use std::ffi::OsStr;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rustix::fs::{Mode, RenameFlags};

use super::acquire::acquire;
use super::layout::TRASH;
use super::limits::PROTOCOL;
use super::record::parse;
use super::step::third_party;
use super::*;
use crate::fs;
use crate::locks::LockTrust;
use crate::scope::{JobScope, Scope};
use crate::workspace::WorkspaceKey;

/// The names the property test plays with: three jobs, and `x`, at first a symlink out of
/// the root.
const NAMES: [&str; 4] = ["j0", "j1", "j2", "x"];
const STEPS: [&str; 5] = [
    "guard-rename",
    "trash-renamed",
    "adopt-locked",
    "acquire-before-publish",
    "acquire-resume-locked",
];

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        job: usize,
        adopt: bool,
    },
    Release(usize),
    /// The job's process dies: lock gone, lease left active (TTL 0: expired at once).
    Crash(usize),
    Claim(usize),
    ClaimUnfinished,
    /// A third party renames `a` to `b` (swapping them if `exchange`) now...
    Rename {
        a: usize,
        b: usize,
        exchange: bool,
    },
    /// ...or when the protocol next reaches `STEPS[step]`.
    RenameAt {
        step: usize,
        a: usize,
        b: usize,
        exchange: bool,
    },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (0..3usize, any::<bool>()).prop_map(|(job, adopt)| Op::Acquire { job, adopt }),
        (0..4usize).prop_map(Op::Release),
        (0..4usize).prop_map(Op::Crash),
        (0..4usize).prop_map(Op::Claim),
        Just(Op::ClaimUnfinished),
        (0..4usize, 0..4usize, any::<bool>()).prop_map(|(a, b, exchange)| Op::Rename {
            a,
            b,
            exchange
        }),
        (0..5usize, 0..4usize, 0..4usize, any::<bool>()).prop_map(|(step, a, b, exchange)| {
            Op::RenameAt {
                step,
                a,
                b,
                exchange,
            }
        }),
    ]
}

fn rename(root_path: &Path, a: usize, b: usize, exchange: bool) {
    let Ok(d) = File::open(root_path) else {
        return;
    };
    let flags = if exchange {
        RenameFlags::EXCHANGE
    } else {
        RenameFlags::NOREPLACE
    };
    let _ = rustix::fs::renameat_with(&d, NAMES[a], &d, NAMES[b], flags);
}

/// Whether the inode of `held` is a top-level entry of the root (not in `.trash/`) and
/// still holds its files.
fn alive(root: &Root, held: &Held) -> bool {
    let named = fs::list(root.fd())
        .unwrap()
        .iter()
        .any(|(n, _)| n != TRASH && fs::identity_at(root.fd(), n).is_ok_and(|i| i == held.ident));
    let files = rustix::fs::statat(&held.dir, "target/keep", rustix::fs::AtFlags::empty()).is_ok();
    named && files
}

fn run(ops: Vec<Op>) {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), "keep").unwrap();
    let root = Root::create(&tmp.path().join("root")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("x")).unwrap();
    let owner = Owner::this_process(None);
    let mut held: Vec<Held> = Vec::new();
    for op in ops {
        apply(&root, &owner, &mut held, op);
        for h in &held {
            assert!(alive(&root, h), "lost live dir {}", h.path.display());
        }
        assert!(
            outside.join("precious").exists(),
            "deleted outside the root"
        );
    }
    third_party::disarm();
}

/// One step of the property test: a job's, the guard's or the third party's.
fn apply(root: &Root, owner: &Owner, held: &mut Vec<Held>, op: Op) {
    match op {
        Op::Acquire { job, adopt } => held.extend(acquire_job(root, owner, job, adopt)),
        Op::Release(i) if i < held.len() => {
            let _ = held.remove(i).release(Duration::ZERO);
        }
        Op::Crash(i) if i < held.len() => drop(held.remove(i)),
        Op::Release(_) | Op::Crash(_) => {}
        Op::Claim(n) => {
            let trash = root.trash().unwrap();
            if let Claim::Trashed { trash_name, .. } = claim(
                root,
                Some(&trash),
                OsStr::new(NAMES[n]),
                LockTrust::Trusted,
                false,
            ) {
                trash.delete(&trash_name).result().unwrap();
            }
        }
        Op::ClaimUnfinished => {
            for (n, _) in fs::list(root.fd()).unwrap() {
                if n.as_encoded_bytes().starts_with(NEW_PREFIX.as_bytes()) {
                    let _ = claim_unfinished(root, &root.trash().unwrap(), &n, Duration::ZERO);
                }
            }
        }
        Op::Rename { a, b, exchange } => rename(&root.path, a, b, exchange),
        Op::RenameAt {
            step,
            a,
            b,
            exchange,
        } => {
            let path = root.path.clone();
            third_party::arm(STEPS[step], Box::new(move || rename(&path, a, b, exchange)));
        }
    }
}

/// Job `job` takes its lease (TTL 0: expired as soon as it is left) and builds: a file in
/// `target/` that must survive for as long as the job holds the dir.
fn acquire_job(root: &Root, owner: &Owner, job: usize, adopt: bool) -> Option<Held> {
    let key = || WorkspaceKey {
        workspace: "ws".into(),
        toolchain: None,
    };
    let local = JobScope {
        scope: Scope::local(),
        default_branch: None,
    };
    let req = Request {
        tool: "cargo",
        job_id: NAMES[job],
        name: NAMES[job],
        owner,
        ttl: Duration::ZERO,
        command: vec![],
        wait: Some(Duration::ZERO),
        key: &key,
        adopt,
        seed: None,
        trust: LockTrust::Trusted,
        interrupted: &|| Ok(()),
        scope: &local,
        warm_from_any: false,
        passed_over: Default::default(),
        notices: std::sync::Arc::new(super::notice::Unheard),
    };
    let (h, _) = acquire(root, &req).ok()?;
    let _ = rustix::fs::mkdirat(&h.dir, TARGET, Mode::from_raw_mode(0o755));
    std::fs::write(
        format!("/proc/self/fd/{}/target/keep", {
            use std::os::fd::AsRawFd;
            h.dir.as_raw_fd()
        }),
        "live",
    )
    .unwrap();
    Some(h)
}

fn lease(state: State, renewed_ago: u64, ttl: u64, expires_in: i64) -> (Lease, SystemTime) {
    let now = SystemTime::now();
    let renewed = now - Duration::from_secs(renewed_ago);
    let expires = if expires_in >= 0 {
        now + Duration::from_secs(expires_in as u64)
    } else {
        now - Duration::from_secs((-expires_in) as u64)
    };
    let l = Lease {
        protocol: PROTOCOL,
        job_id: "j".into(),
        token: "t".into(),
        workspace: None,
        toolchain: None,
        host: "h".into(),
        boot_id: None,
        runner: Some("runner-3".into()),
        pid: 4121,
        created_at: renewed,
        renewed_at: renewed,
        expires_at: expires,
        heartbeat_secs: 1,
        ttl_secs: ttl,
        state,
        size_bytes: None,
        size_measured_at: None,
        boottime_ms: None,
        time_ns: None,
        command: vec![],
        origin: None,
        job_lock: None,
        scopes: None,
        tool: None,
        together: None,
        warmth: None,
        cold: None,
    };
    (l, now)
}

#[test]
fn active_lease_expires_after_its_ttl() {
    let (l, now) = lease(State::Active, 4, 600, 596);
    let v = classify(&l, &Now::wall(now), LockTrust::Trusted);
    assert!(matches!(v, Expiry::Live { .. }));
    assert_eq!(
        v.reason(&l),
        "lease held by runner-3 (pid 4121), renewed 4s ago"
    );
    let (l, now) = lease(State::Active, 700, 600, -100);
    assert!(matches!(
        classify(&l, &Now::wall(now), LockTrust::Trusted),
        Expiry::Expired { .. }
    ));
}

#[test]
fn released_lease_lingers_until_expiry() {
    let (l, now) = lease(State::Released, 0, 600, 2400);
    let v = classify(&l, &Now::wall(now), LockTrust::Trusted);
    assert!(
        v.reason(&l).starts_with("released, expires in 39m")
            || v.reason(&l).starts_with("released, expires in 40m")
    );
    let (l, now) = lease(State::Released, 7200, 600, -10);
    assert!(matches!(
        classify(&l, &Now::wall(now), LockTrust::Trusted),
        Expiry::Expired { .. }
    ));
}

#[test]
fn untrusted_locks_need_a_margin() {
    let (l, now) = lease(State::Active, 700, 600, -100);
    assert!(matches!(
        classify(&l, &Now::wall(now), LockTrust::Untrusted("nfs")),
        Expiry::Live { .. }
    ));
}

#[test]
fn parse_rejects_what_it_does_not_know() {
    assert!(parse(b"").unwrap_err().contains("unreadable"));
    assert!(
        parse(b"{\"protocol\": 2}")
            .unwrap_err()
            .contains("unknown lease protocol version 2")
    );
    assert!(
        parse(b"{\"protocol\": \"1\"}")
            .unwrap_err()
            .contains("unknown")
    );
    assert!(parse(b"{}").unwrap_err().contains("no protocol"));
    assert!(
        parse(b"{\"protocol\": 1}")
            .unwrap_err()
            .contains("unreadable")
    );
    let (l, _) = lease(State::Active, 0, 600, 600);
    let bytes = serde_json::to_vec(&l).unwrap();
    assert_eq!(parse(&bytes).unwrap().job_id, "j");
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(200))]

    /// Random interleavings of the protocol's steps with a third party's renames (plain and
    /// `RENAME_EXCHANGE`, also in the middle of a step) never lose a live dir and never
    /// delete outside the root.
    #[test]
    fn no_interleaving_loses_a_live_dir(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops);
    }

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_json_like_input(s in "\\{\"protocol\": ?[0-9]{1,3}(, \"[a-z_]{1,12}\": (\"[^\"]{0,20}\"|[0-9]{1,20}|null|\\[\\]))*\\}") {
        let _ = parse(s.as_bytes());
    }
}

/// `Now::judging`: boot time where the lease was written on this kernel and time namespace,
/// the wall clock otherwise (docs/protocol.md#clocks).
#[test]
fn ages_are_measured_on_boot_time_only_on_the_same_kernel_and_time_namespace() {
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let (mut l, _) = lease(State::Released, 10, 600, 3600);
    l.renewed_at = wall;
    l.boot_id = Some("b".into());
    l.time_ns = Some(7);
    l.boottime_ms = Some(50_000);
    let now = |boot_id: &str, time_ns, boottime_ms, step: i64| Now {
        wall: if step >= 0 {
            wall + Duration::from_secs(step as u64 + 10)
        } else {
            wall - Duration::from_secs((-step) as u64) + Duration::from_secs(10)
        },
        boot: Some(clock::Boot {
            boot_id: boot_id.into(),
            time_ns,
            boottime_ms,
        }),
    };
    let ten_s_later = wall + Duration::from_secs(10);
    // Same boot and namespace: ten seconds of boot time, whatever the wall clock did.
    assert_eq!(now("b", Some(7), 60_000, 7200).judging(&l), ten_s_later);
    assert_eq!(now("b", Some(7), 60_000, -86_400).judging(&l), ten_s_later);
    // Another namespace, another boot, a boot time ahead of ours, no boot time recorded: the
    // observer's wall clock.
    let stepped = now("b", Some(8), 60_000, 7200);
    assert_eq!(stepped.judging(&l), stepped.wall);
    let stepped = now("c", Some(7), 60_000, 7200);
    assert_eq!(stepped.judging(&l), stepped.wall);
    let stepped = now("b", Some(7), 40_000, 7200);
    assert_eq!(stepped.judging(&l), stepped.wall);
    l.boottime_ms = None;
    let stepped = now("b", Some(7), 60_000, 7200);
    assert_eq!(stepped.judging(&l), stepped.wall);
}

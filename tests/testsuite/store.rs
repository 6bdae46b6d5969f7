//! Warm starts on a fresh host from an object store (docs/protocol.md#the-store): a job pushes
//! its dir, and a job on another host (another root), in a fresh clone of the same content,
//! starts from it and compiles nothing; a corrupted object is never used; a store that cannot be
//! reached never fails a job; a pull request's push never warms main. Real cargo on
//! `fixtures/warm`, against `fs://` and a real S3 server on loopback (moto's `moto_server`,
//! PyPI `moto[server]`, which `.ci/run` installs).

#[cfg(not(feature = "store"))]
#[test]
fn the_store_tests_need_the_store_feature() {
    // `.ci/run` runs the suite with `--all-features`; a plain `cargo test` has no store to test.
    crate::common::require::<()>(
        "store::",
        Err("this build has no `store` feature (run `cargo test --all-features`)".into()),
    );
}

#[cfg(feature = "store")]
mod with_store {
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    use crate::common::*;

    /// A checkout of the fixture at `<tmp>/<name>`, a git work tree with an `origin`, as CI checks
    /// out: its workspace key is the same on every host.
    fn checkout(env: &Env, name: &str) -> PathBuf {
        let dir = env.fixture_as("warm", name);
        for args in [
            &["init", "-q", "."][..],
            &[
                "remote",
                "add",
                "origin",
                "https://example.com/acme/warm.git",
            ],
        ] {
            assert_success(&output(Command::new("git").args(args).current_dir(&dir)));
        }
        dir
    }

    /// The checkout replaced by a fresh clone of the same content at the same path: every mtime
    /// new, as on a new host.
    fn fresh_clone(env: &Env, dir: &Path) {
        let tmp = env.path().join("clone.tmp");
        copy_dir(dir, &tmp);
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::rename(&tmp, dir).unwrap();
    }

    /// What the app of `fixtures/warm` prints, built from the checkout's own sources.
    fn expected(dir: &Path) -> String {
        format!(
            "answer=1 word=word-1 data=data-1 assets=2 plain=plain-1 mac=mac-1 dir={}/lib",
            dir.display()
        )
    }

    type Vars = Vec<(String, String)>;

    fn vars(list: &[(&str, &str)]) -> Vars {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `cargo guarded -v --job-id JOB ARGS` on host `host` (its own root), with `vars`.
    fn job(env: &Env, host: &str, ws: &Path, vars: &Vars, id: &str, args: &[&str]) -> Output {
        let mut cmd = env.cmd(ws);
        cmd.env("CARGO_GUARDED_ROOT", env.path().join(host))
            .env("RUNNER_NAME", host)
            .env("CARGO_GUARDED_MIN_FREE", "0")
            // A restore takes at most the free space above the sweep line: on a host whose disk
            // is near it, the tests would restore nothing.
            .env("CARGO_GUARDED_RECLAIM_BELOW", "0%")
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .args(["guarded", "-v", "--job-id", id])
            .args(args);
        output(&mut cmd)
    }

    fn ok(env: &Env, host: &str, ws: &Path, vars: &Vars, id: &str, args: &[&str]) -> Output {
        let out = job(env, host, ws, vars, id, args);
        assert_success(&out);
        out
    }

    fn origin(env: &Env, host: &str, id: &str) -> String {
        let text =
            std::fs::read_to_string(env.path().join(host).join(id).join("lease.json")).unwrap();
        let lease: serde_json::Value = serde_json::from_str(&text).unwrap();
        lease["origin"].as_str().unwrap_or_default().to_owned()
    }

    /// Build on host A, push, then build on a fresh host in a fresh clone: restored, nothing
    /// compiled, the app right. The store holds the app's binary compressed.
    fn round_trip(env: &Env, store: &Vars, at: &At) {
        let ws = checkout(env, "w");
        let out = ok(env, "host-a", &ws, store, "a", &["build"]);
        assert!(!compiled(&out).is_empty(), "{}", describe(&out));
        // A file large enough to be fetched in ranged requests (a binary of a real project), and
        // that compresses to several ranges: xorshift's bytes do not compress.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let big: Vec<u8> = (0..40u32 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(env.path().join("host-a/a/target/debug/big.bin"), &big).unwrap();
        let out = ok(env, "host-a", &ws, store, "a", &["store", "push"]);
        assert!(stderr(&out).contains("Pushed"), "{}", describe(&out));
        // A debug binary is stored compressed, under the digest of its content.
        let app = std::fs::read(env.path().join("host-a/a/target/debug/app")).unwrap();
        let stored = at.size(&object_key(&app));
        assert!(
            stored * 2 < app.len() as u64,
            "the app's {} bytes stored as {stored}",
            app.len()
        );
        // Pushed again (another host with the same units): nothing new is uploaded.
        let out = ok(env, "host-a", &ws, store, "a", &["store", "push"]);
        assert!(stderr(&out).contains(" 0 of "), "{}", describe(&out));

        fresh_clone(env, &ws);
        let events = env.path().join("events.jsonl");
        let events_arg = format!("--events={}", events.display());
        let args = [events_arg.as_str(), "--restore-mtimes", "build"];
        let out = ok(env, "host-b", &ws, store, "b", &args);
        assert!(stderr(&out).contains("Restored"), "{}", describe(&out));
        assert_eq!(compiled(&out), Vec::<String>::new(), "{}", describe(&out));
        assert_eq!(origin(env, "host-b", "b"), "restored");
        let got = std::fs::read(env.path().join("host-b/b/target/debug/big.bin")).unwrap();
        assert!(got == big, "the large file came back different");
        // The `acquired` event, and `status`'s count of how jobs started, say so too.
        let acquired: serde_json::Value = std::fs::read_to_string(&events)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .find(|e: &serde_json::Value| e["event"] == "acquired")
            .unwrap();
        assert_eq!(acquired["origin"], "restored", "{acquired}");
        assert_eq!(acquired["from"], "a", "{acquired}");
        let status = ok(env, "host-b", &ws, store, "b", &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(status["starts"][0]["restored"], 1, "{status}");
        let out = ok(env, "host-b", &ws, store, "b", &["run", "-q"]);
        assert_eq!(stdout(&out).trim(), expected(&ws), "{}", describe(&out));
    }

    fn fs_store(env: &Env) -> (PathBuf, Vars) {
        let dir = env.path().join("store");
        let url = format!("fs://{}", dir.display());
        (dir, vars(&[("CARGO_GUARDED_STORE", &url)]))
    }

    #[test]
    fn a_fresh_host_starts_warm_from_a_shared_volume() {
        let env = Env::new();
        let (dir, store) = fs_store(&env);
        round_trip(&env, &store, &At::Fs(dir));
    }

    #[test]
    fn a_fresh_host_starts_warm_from_an_s3_server() {
        let env = Env::new();
        let Some(moto) = moto(&env) else {
            return;
        };
        round_trip(&env, &s3_vars(moto.port), &At::S3(moto.port));
    }

    /// Where a test reads and writes a store's objects behind the tool's back: an `fs://` store's
    /// dir, or moto's S3 on loopback (which takes unsigned requests).
    enum At {
        Fs(PathBuf),
        S3(u16),
    }

    impl At {
        /// The stored bytes of the object at `key`.
        fn size(&self, key: &str) -> u64 {
            match self {
                At::Fs(dir) => std::fs::metadata(dir.join(key))
                    .unwrap_or_else(|e| panic!("{key}: {e}"))
                    .len(),
                At::S3(port) => {
                    let reply = s3_request(*port, "HEAD", key, &[]);
                    assert!(reply.starts_with("HTTP/1.1 200"), "{key}: {reply}");
                    reply
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().unwrap())
                        })
                        .unwrap_or_else(|| panic!("no length for {key}: {reply}"))
                }
            }
        }

        /// Replace the object at `key` with `bytes`.
        fn put(&self, key: &str, bytes: &[u8]) {
            match self {
                At::Fs(dir) => {
                    assert!(dir.join(key).is_file(), "{key} is not in the store");
                    std::fs::write(dir.join(key), bytes).unwrap();
                }
                At::S3(port) => {
                    let _ = self.size(key);
                    let reply = s3_request(*port, "PUT", key, bytes);
                    assert!(reply.starts_with("HTTP/1.1 200"), "{key}: {reply}");
                }
            }
        }
    }

    /// One plain HTTP request to moto for `key` in the tests' bucket and prefix; the reply. moto
    /// checks no signature, but reads an object only for a request that names credentials.
    fn s3_request(port: u16, method: &str, key: &str, body: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "{method} /cache/ci/{key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=00\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// Where the store keeps a file of this content: the SHA-256 of the content, compressed.
    fn object_key(content: &[u8]) -> String {
        use sha2::Digest;
        let sha: String = sha2::Sha256::digest(content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("objects/{sha}.zst")
    }

    /// The one rlib of package `name` in host A's job dir.
    fn rlib(env: &Env, name: &str) -> Vec<u8> {
        let deps = env.path().join("host-a/a/target/debug/deps");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&deps)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with(&format!("lib{name}-")) && n.ends_with(".rlib")
            })
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        std::fs::read(found.pop().unwrap()).unwrap()
    }

    /// Objects that are not what their manifest names: `plain`'s rlib stored as another content
    /// of its size (a valid zstd stream, the digest wrong), `lib`'s as one that decompresses past
    /// the size the manifest records. Both are dropped, with their units, which build: the job
    /// succeeds and the app is right. A stream that is not zstd at all (`mac`'s) too, and a large
    /// file's object longer than any compression of its content.
    fn tampered_objects_are_dropped(env: &Env, store: &Vars, at: &At) {
        let ws = checkout(env, "w");
        ok(env, "host-a", &ws, store, "a", &["build"]);
        ok(env, "host-a", &ws, store, "a", &["store", "push"]);
        let plain = rlib(env, "plain");
        let mut other = plain.clone();
        other[plain.len() / 2] ^= 0xff;
        at.put(
            &object_key(&plain),
            &zstd::bulk::compress(&other, 3).unwrap(),
        );
        let lib = rlib(env, "lib");
        let longer = [&lib[..], &vec![0u8; 1 << 20][..]].concat();
        at.put(
            &object_key(&lib),
            &zstd::bulk::compress(&longer, 3).unwrap(),
        );
        let mac = std::fs::read_dir(env.path().join("host-a/a/target/debug/deps"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("libmac-") && n.ends_with(".so")
            })
            .unwrap();
        let mac = std::fs::read(mac).unwrap();
        at.put(&object_key(&mac), &mac);
        // A large file (fetched in ranges) whose stored object is larger than any compression of
        // its content: refused before it is downloaded.
        let big = vec![0u8; 33 << 20];
        let big_path = "target/debug/big.bin";
        std::fs::write(env.path().join("host-a/a").join(big_path), &big).unwrap();
        ok(env, "host-a", &ws, store, "a", &["store", "push"]);
        at.put(&object_key(&big), &vec![1u8; 36 << 20]);

        fresh_clone(env, &ws);
        let out = ok(
            env,
            "host-b",
            &ws,
            store,
            "b",
            &["--restore-mtimes", "build"],
        );
        let err = stderr(&out);
        for (content, why) in [
            (&plain, "decompresses to content of digest"),
            (&lib, "decompresses past its recorded size"),
            (&mac, "does not decompress"),
            (&big, "more than any compression of its content"),
        ] {
            let key = object_key(content);
            assert!(
                err.lines().any(|l| l.contains(&key) && l.contains(why)),
                "no `{key}` that {why} in {}",
                describe(&out)
            );
        }
        assert!(err.contains("left out"), "{}", describe(&out));
        assert!(!err.contains("panicked"), "{}", describe(&out));
        assert_eq!(origin(env, "host-b", "b"), "restored");
        assert!(!env.path().join("host-b/b").join(big_path).exists());
        let built = compiled(&out);
        for unit in ["plain", "lib", "mac"] {
            assert!(
                built.contains(&unit.to_owned()),
                "{unit}: {}",
                describe(&out)
            );
        }
        let out = ok(env, "host-b", &ws, store, "b", &["run", "-q"]);
        assert_eq!(stdout(&out).trim(), expected(&ws), "{}", describe(&out));
    }

    #[test]
    fn tampered_objects_on_a_shared_volume_are_dropped_and_their_units_build() {
        let env = Env::new();
        let (dir, store) = fs_store(&env);
        tampered_objects_are_dropped(&env, &store, &At::Fs(dir));
    }

    #[test]
    fn tampered_objects_on_an_s3_server_are_dropped_and_their_units_build() {
        let env = Env::new();
        let Some(moto) = moto(&env) else {
            return;
        };
        tampered_objects_are_dropped(&env, &s3_vars(moto.port), &At::S3(moto.port));
    }

    #[test]
    fn two_hosts_pushing_the_same_units_at_once_leave_a_store_that_restores() {
        let env = Env::new();
        let (dir, store) = fs_store(&env);
        let ws = checkout(&env, "w");
        ok(&env, "host-a", &ws, &store, "a", &["build"]);
        ok(&env, "host-c", &ws, &store, "c", &["build"]);
        let push = |host: &str, id: &str| {
            let mut cmd = env.cmd(&ws);
            cmd.env("CARGO_GUARDED_ROOT", env.path().join(host))
                .envs(store.iter().map(|(k, v)| (k, v)))
                .args(["guarded", "--job-id", id, "store", "push"]);
            spawn_logged(&mut cmd, &env.path().join(format!("push-{id}")))
        };
        let (a, c) = (push("host-a", "a"), push("host-c", "c"));
        assert_success(&a.finish(300));
        assert_success(&c.finish(300));
        assert_eq!(find_manifests(&dir.join("manifests")).len(), 2);
        // No temporary file of either push is left where objects are.
        for entry in std::fs::read_dir(dir.join("objects")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(name.len() == 68 && name.ends_with(".zst"), "{name}");
        }
        fresh_clone(&env, &ws);
        let out = ok(
            &env,
            "host-b",
            &ws,
            &store,
            "b",
            &["--restore-mtimes", "build"],
        );
        assert!(stderr(&out).contains("Restored"), "{}", describe(&out));
        assert_eq!(compiled(&out), Vec::<String>::new(), "{}", describe(&out));
    }

    #[test]
    fn a_job_with_store_push_pushes_at_release() {
        let env = Env::new();
        let (_, store) = fs_store(&env);
        let ws = checkout(&env, "w");
        let out = ok(&env, "host-a", &ws, &store, "a", &["--store-push", "build"]);
        assert!(stderr(&out).contains("Pushed"), "{}", describe(&out));
        fresh_clone(&env, &ws);
        let out = ok(
            &env,
            "host-b",
            &ws,
            &store,
            "b",
            &["--restore-mtimes", "build"],
        );
        assert!(stderr(&out).contains("Restored"), "{}", describe(&out));
        assert_eq!(compiled(&out), Vec::<String>::new(), "{}", describe(&out));
        // Without a store it is refused before anything is done.
        let out = job(
            &env,
            "host-c",
            &ws,
            &Vars::new(),
            "c",
            &["--store-push", "build"],
        );
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(
            stderr(&out).contains("--store-push needs a store"),
            "{}",
            describe(&out)
        );
        assert!(!env.path().join("host-c/c").exists());
    }

    #[test]
    fn doctor_checks_the_store() {
        let env = Env::new();
        let (_, store) = fs_store(&env);
        let ws = checkout(&env, "w");
        ok(&env, "host-a", &ws, &store, "a", &["--store-push", "build"]);
        // A pull request's job that can write, on a host with another CARGO_HOME.
        let payload = env.path().join("event.json");
        std::fs::write(&payload, "{}").unwrap();
        let mut pr = [
            store.clone(),
            github("pull_request", "refs/pull/7/merge", Some("main"), &payload),
        ]
        .concat();
        let cargo_home = std::env::var("CARGO_HOME")
            .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
        let elsewhere = env.path().join("cargo-home");
        std::os::unix::fs::symlink(&cargo_home, &elsewhere).unwrap();
        pr.push((
            "CARGO_HOME".into(),
            elsewhere.to_string_lossy().into_owned(),
        ));
        let out = ok(&env, "host-b", &ws, &pr, "b", &["doctor"]);
        let text = stdout(&out);
        assert!(
            text.contains("this pull-request job can write to the store"),
            "{}",
            describe(&out)
        );
        assert!(
            text.contains("registry units rebuild"),
            "{}",
            describe(&out)
        );
        // A store that cannot be listed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = job(&env, "host-b", &ws, &s3_vars(port), "b", &["doctor"]);
        assert!(
            stdout(&out).contains("cannot list the store s3://cache/ci"),
            "{}",
            describe(&out)
        );
    }

    fn find_manifests(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(find_manifests(&path));
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_store_that_cannot_be_reached_never_fails_the_job() {
        let env = Env::new();
        let ws = checkout(&env, "w");
        // A port nothing listens on.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = s3_vars(port);
        let out = ok(&env, "host-a", &ws, &store, "a", &["build"]);
        let err = stderr(&out);
        assert_eq!(
            err.matches("could not restore from the store").count(),
            1,
            "{}",
            describe(&out)
        );
        assert!(err.contains("building cold"), "{}", describe(&out));
        assert!(!compiled(&out).is_empty(), "{}", describe(&out));
        assert_eq!(origin(&env, "host-a", "a"), "fresh");
        // A push to it is an error that says where.
        let out = job(&env, "host-a", &ws, &store, "a", &["store", "push"]);
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(stderr(&out).contains("s3://cache/ci"), "{}", describe(&out));
    }

    #[test]
    fn a_store_that_never_answers_is_given_up_after_the_timeout() {
        let env = Env::new();
        let ws = checkout(&env, "w");
        // A server that takes connections (the kernel's backlog) and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let store = s3_vars(silent.local_addr().unwrap().port());
        let out = ok(
            &env,
            "host-a",
            &ws,
            &store,
            "a",
            &["--store-timeout", "2s", "build"],
        );
        let err = stderr(&out);
        assert!(err.contains("gave up after 2s"), "{}", describe(&out));
        assert!(err.contains("building cold"), "{}", describe(&out));
        assert!(!compiled(&out).is_empty(), "{}", describe(&out));
        drop(silent);
    }

    /// GitHub Actions' variables for a push to main or a pull request against it.
    fn github(event: &str, git_ref: &str, base: Option<&str>, payload: &Path) -> Vars {
        let mut v = vars(&[
            ("GITHUB_RUN_ID", "100"),
            ("GITHUB_EVENT_NAME", event),
            ("GITHUB_REF", git_ref),
            ("GITHUB_EVENT_PATH", &payload.to_string_lossy()),
        ]);
        if let Some(b) = base {
            v.push(("GITHUB_BASE_REF".into(), b.into()));
        }
        v
    }

    #[test]
    fn main_never_starts_from_what_a_pull_request_pushed() {
        let env = Env::new();
        let (_, store) = fs_store(&env);
        let payload = env.path().join("event.json");
        std::fs::write(&payload, r#"{"repository": {"default_branch": "main"}}"#).unwrap();
        let pr = [
            store.clone(),
            github("pull_request", "refs/pull/7/merge", Some("main"), &payload),
        ]
        .concat();
        let main = [
            store.clone(),
            github("push", "refs/heads/main", None, &payload),
        ]
        .concat();
        let ws = checkout(&env, "w");
        ok(&env, "host-a", &ws, &pr, "pr", &["build"]);
        ok(&env, "host-a", &ws, &pr, "pr", &["store", "push"]);

        let out = ok(&env, "host-b", &ws, &main, "m", &["build"]);
        assert!(!stderr(&out).contains("Restored"), "{}", describe(&out));
        assert!(!compiled(&out).is_empty(), "{}", describe(&out));
        assert!(
            stderr(&out).contains("written by pr:"),
            "{}",
            describe(&out)
        );
        ok(&env, "host-b", &ws, &main, "m", &["store", "push"]);

        // The other way round is allowed: a pull request warms from its base branch's push.
        let out = ok(&env, "host-c", &ws, &pr, "pr2", &["build"]);
        assert!(stderr(&out).contains("Restored"), "{}", describe(&out));
        assert!(stderr(&out).contains("job `m`"), "{}", describe(&out));
    }

    #[test]
    fn a_job_without_a_store_is_as_before() {
        let env = Env::new();
        let (_, store) = fs_store(&env);
        let ws = checkout(&env, "w");
        ok(&env, "host-a", &ws, &store, "a", &["build"]);
        ok(&env, "host-a", &ws, &store, "a", &["store", "push"]);
        let out = ok(&env, "host-b", &ws, &Vars::new(), "b", &["build"]);
        assert!(!stderr(&out).contains("store"), "{}", describe(&out));
        assert!(!compiled(&out).is_empty(), "{}", describe(&out));
        assert_eq!(origin(&env, "host-b", "b"), "fresh");
        // `store push` needs a store.
        let out = job(&env, "host-b", &ws, &Vars::new(), "b", &["store", "push"]);
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(stderr(&out).contains("needs a store"), "{}", describe(&out));
    }

    /// Every file of an `fs://` store under `manifests/`, `objects/` and `used/`, by its path
    /// relative to the store, with its size.
    fn store_files(dir: &Path) -> std::collections::BTreeMap<String, u64> {
        fn walk(dir: &Path, rel: &str, out: &mut std::collections::BTreeMap<String, u64>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                let child = format!("{rel}{name}");
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), &format!("{child}/"), out);
                } else {
                    out.insert(child, entry.metadata().unwrap().len());
                }
            }
        }
        let mut out = std::collections::BTreeMap::new();
        for top in ["manifests", "objects", "used"] {
            walk(&dir.join(top), &format!("{top}/"), &mut out);
        }
        out
    }

    /// The objects a manifest of an `fs://` store names.
    fn named_objects(dir: &Path, manifest: &str) -> std::collections::BTreeSet<String> {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(manifest)).unwrap()).unwrap();
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .chain(m.get("inputs").filter(|i| !i.is_null()))
            .map(|f| format!("objects/{}.zst", f["sha256"].as_str().unwrap()))
            .collect()
    }

    /// The manifest a `store gc` line with `verb` names.
    fn manifest_line(err: &str, verb: &str) -> String {
        let at = format!("{verb} manifests/");
        let line = err
            .lines()
            .find(|l| l.contains(&at))
            .unwrap_or_else(|| panic!("no `{at}` in {err}"));
        let key = &line[line.find(&at).unwrap() + verb.len() + 1..];
        key.split(' ').next().unwrap().to_owned()
    }

    /// Two pushes of one job's dir, the second after a one-line change to `plain`, to every
    /// store of `stores` (the same bytes to each); `Ok` the two manifests' paths in the first
    /// store, which is an `fs://` one.
    fn two_pushes(env: &Env, ws: &Path, stores: &[Vars]) -> (String, String) {
        let fs_dir = PathBuf::from(stores[0][0].1.strip_prefix("fs://").unwrap());
        for round in 0..2 {
            if round == 1 {
                let lib = ws.join("plain/src/lib.rs");
                let text = std::fs::read_to_string(&lib).unwrap();
                std::fs::write(&lib, text + "pub fn two() -> u32 { 2 }\n").unwrap();
            }
            ok(env, "host-a", ws, &stores[0], "a", &["build"]);
            for store in stores {
                ok(env, "host-a", ws, store, "a", &["store", "push"]);
            }
        }
        let manifests: Vec<String> = store_files(&fs_dir)
            .into_keys()
            .filter(|k| k.starts_with("manifests/"))
            .collect();
        assert_eq!(manifests.len(), 2, "{manifests:?}");
        (manifests[0].clone(), manifests[1].clone())
    }

    /// Over the cap, the least recently used manifest goes, and with it the objects only it
    /// named once they are older than the grace; the surviving manifest restores on a fresh host
    /// with nothing compiled. `gc_store` is what gc runs against; `stores[0]`, an `fs://` store
    /// with the same contents, is what the test inspects.
    fn gc_over_the_cap(env: &Env, stores: &[Vars], gc_store: &Vars) {
        let fs_dir = PathBuf::from(stores[0][0].1.strip_prefix("fs://").unwrap());
        let ws = checkout(env, "w");
        let (old, new) = two_pushes(env, &ws, stores);
        let before = store_files(&fs_dir);
        let only_old: Vec<String> = named_objects(&fs_dir, &old)
            .difference(&named_objects(&fs_dir, &new))
            .cloned()
            .collect();
        assert!(!only_old.is_empty(), "the change made no new unit");
        let total: u64 = before.values().sum();
        let cap = format!("{}B", total - 1);
        let gc = |args: &[&str]| {
            ok(
                env,
                "host-a",
                &ws,
                gc_store,
                "a",
                &[&["store", "gc"], args].concat(),
            )
        };

        // A dry run says what it would remove, and removes nothing.
        let out = gc(&["--dry-run", "--max-size", &cap, "--grace", "0s"]);
        let err = stderr(&out);
        let (gone, kept) = (
            manifest_line(&err, "Would remove"),
            manifest_line(&err, "Would keep"),
        );
        // The older (their names sort by the push's time), and in the fs store the same one.
        assert!(gone < kept, "{}", describe(&out));
        if gc_store == &stores[0] {
            assert_eq!((&gone, &kept), (&old, &new), "{}", describe(&out));
        }
        assert!(err.contains("least recently used"), "{}", describe(&out));
        assert_eq!(store_files(&fs_dir), before);

        // Over the cap: the older manifest goes; the objects only it named are younger than the
        // default grace, so a push could be about to name them: kept.
        let out = gc(&["--max-size", &cap]);
        let err = stderr(&out);
        assert_eq!(manifest_line(&err, "Removed"), gone, "{}", describe(&out));
        assert_eq!(manifest_line(&err, "Kept"), kept, "{}", describe(&out));
        assert!(
            err.contains("younger than --grace 1h"),
            "{}",
            describe(&out)
        );
        if gc_store == &stores[0] {
            let after = store_files(&fs_dir);
            assert!(!after.contains_key(&old), "{after:?}");
            for o in &only_old {
                assert!(after.contains_key(o), "{o} removed within the grace");
            }
        }

        // Past the grace, they go; every object the surviving manifest names stays.
        let out = gc(&["--grace", "0s"]);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("Removed {} objects", only_old.len())),
            "{}",
            describe(&out)
        );
        if gc_store == &stores[0] {
            let after = store_files(&fs_dir);
            for o in &only_old {
                assert!(!after.contains_key(o), "{o} kept");
            }
            for o in named_objects(&fs_dir, &new) {
                assert!(
                    after.contains_key(&o),
                    "{o} of the surviving manifest removed"
                );
            }
        }

        // The survivor restores on a fresh host, and the pull records its use.
        fresh_clone(env, &ws);
        let out = ok(
            env,
            "host-b",
            &ws,
            gc_store,
            "b",
            &["--restore-mtimes", "build"],
        );
        assert!(stderr(&out).contains("Restored"), "{}", describe(&out));
        assert_eq!(compiled(&out), Vec::<String>::new(), "{}", describe(&out));
        if gc_store == &stores[0] {
            let marker = kept.replacen("manifests/", "used/", 1);
            assert!(store_files(&fs_dir).contains_key(&marker), "no {marker}");
        }
    }

    #[test]
    fn store_gc_removes_the_least_recently_used_manifest_on_a_shared_volume() {
        let env = Env::new();
        let (_, store) = fs_store(&env);
        gc_over_the_cap(&env, std::slice::from_ref(&store), &store);
    }

    #[test]
    fn store_gc_removes_the_least_recently_used_manifest_on_an_s3_server() {
        let env = Env::new();
        let Some(moto) = moto(&env) else {
            return;
        };
        let (_, fs) = fs_store(&env);
        let s3 = s3_vars(moto.port);
        gc_over_the_cap(&env, &[fs, s3.clone()], &s3);
    }

    /// A push cut short between its objects and its manifest (or one still under way) left an
    /// object no manifest names: kept within the grace, removed after it. An unreadable manifest
    /// is reported and left alone, and while it is there no object is removed (it may name any).
    #[test]
    fn store_gc_keeps_a_young_unnamed_object_and_skips_garbage_manifests() {
        let env = Env::new();
        let (dir, store) = fs_store(&env);
        let ws = checkout(&env, "w");
        ok(&env, "host-a", &ws, &store, "a", &["build"]);
        ok(&env, "host-a", &ws, &store, "a", &["store", "push"]);
        let pushing = format!("objects/{}.zst", "ab".repeat(32));
        std::fs::write(dir.join(&pushing), "a unit a push is uploading").unwrap();
        let gc = |args: &[&str]| {
            ok(
                &env,
                "host-a",
                &ws,
                &store,
                "a",
                &[&["store", "gc"], args].concat(),
            )
        };

        let out = gc(&[]);
        assert!(
            stderr(&out).contains(&format!("Kept {pushing}")),
            "{}",
            describe(&out)
        );
        assert!(dir.join(&pushing).exists());

        // Garbage where manifests are: reported, never a panic, nothing removed.
        let garbage = dir.join("manifests/00/garbage.json");
        std::fs::create_dir_all(garbage.parent().unwrap()).unwrap();
        std::fs::write(&garbage, "{ not json").unwrap();
        let before = store_files(&dir);
        let out = gc(&["--grace", "0s", "--max-size", "0"]);
        let err = stderr(&out);
        assert!(
            err.contains("skipped manifests/00/garbage.json"),
            "{}",
            describe(&out)
        );
        assert!(err.contains("not JSON"), "{}", describe(&out));
        assert!(!err.contains("panicked"), "{}", describe(&out));
        assert_eq!(store_files(&dir), before);

        std::fs::remove_file(&garbage).unwrap();
        let out = gc(&["--grace", "0s"]);
        assert!(
            stderr(&out).contains(&format!("Removed {pushing}")),
            "{}",
            describe(&out)
        );
        assert!(!dir.join(&pushing).exists());
        // The manifest, under no cap, is kept with its objects: the store still restores.
        fresh_clone(&env, &ws);
        let out = ok(
            &env,
            "host-b",
            &ws,
            &store,
            "b",
            &["--restore-mtimes", "build"],
        );
        assert_eq!(compiled(&out), Vec::<String>::new(), "{}", describe(&out));
        // `store push` takes none of gc's options.
        let out = job(
            &env,
            "host-a",
            &ws,
            &store,
            "a",
            &["store", "push", "--dry-run"],
        );
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(
            stderr(&out).contains("`store gc`'s options"),
            "{}",
            describe(&out)
        );
    }

    fn s3_vars(port: u16) -> Vars {
        vars(&[
            ("CARGO_GUARDED_STORE", "s3://cache/ci"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{port}")),
        ])
    }

    /// moto's S3 server, or a skip (a failure under `CARGO_GUARDED_REQUIRE_TOOLS`).
    fn moto(env: &Env) -> Option<Moto> {
        let found = Moto::program()
            .ok_or_else(|| "moto_server not on PATH (pip install 'moto[server]')".to_owned());
        let program = require("an S3 server on loopback", found)?;
        Some(Moto::start(&program, &env.path().join("moto.log")))
    }
}

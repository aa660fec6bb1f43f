//! Backup and restore (R-OPS-2): a backup taken while the gateway answers requests restores
//! into a new data dir that serves the same terminals and people and whose audit log verifies,
//! with the restore on record; a wrong key, a damaged or cut-off file and a non-empty target
//! are refused and leave nothing behind. On PostgreSQL the backup holds the files around the
//! database and says so.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const USER_ROUTE: &str = r#"
[[route]]
name = "my-page"
methods = ["GET"]
path = "/debug/me"
level = "user"
action = "view"
"#;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn sha256_hex(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap();
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &bytes,
    ))
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Enrolls `terminal` of `facility` with an access code and a CSR; its cert and key land in
/// `g.out` as `terminal.crt` / `terminal.key`, where `g.cert` finds them.
fn redeem(g: &Gateway, code: &str, pin: &str, terminal: &str) -> (u16, serde_json::Value) {
    let (key, csr) = new_csr(&g.out, terminal);
    let body = serde_json::json!({"code": code, "pin": pin, "csr": csr}).to_string();
    let (s, b, _) = curl(
        &format!("https://localhost:{}/enroll/csr", g.enroll_port),
        &g.ca(),
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&b).unwrap_or(serde_json::Value::Null);
    if s == 200 {
        std::fs::write(
            g.out.join(format!("{terminal}.crt")),
            v["certificate"].as_str().unwrap(),
        )
        .unwrap();
    } else {
        let _ = std::fs::remove_file(key);
    }
    (s, v)
}

/// What the load saw: each answer's status, when it arrived and how long it took.
struct Answer {
    status: u16,
    done: Instant,
    took: Duration,
}

/// Requests in sequence on one keep-alive connection as t1 until `stop`.
async fn load(g: &Gateway, c: usize, stop: &AtomicBool) -> Vec<Answer> {
    use http_body_util::BodyExt;
    let tls = tls_connect(g, "t1").await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut seen = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let req = http::Request::get(format!("/?c={c}&n={n}"))
            .header("host", "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let t = Instant::now();
        let resp = sender.send_request(req).await.expect("the gateway answers");
        let status = resp.status().as_u16();
        resp.into_body().collect().await.expect("a whole answer");
        seen.push(Answer {
            status,
            done: Instant::now(),
            took: t.elapsed(),
        });
    }
    seen
}

fn key_files() -> [&'static str; 7] {
    [
        "ca/issuing.key",
        "ca/root.key",
        "tls/server.key",
        "assertion.key",
        "audit/checkpoint.key",
        "enroll-pin.key",
        "sekisho.toml",
    ]
}

#[test]
fn a_backup_taken_while_serving_restores_into_a_gateway_that_works() {
    let mut g = Gateway::start_with(
        Db::Sqlite,
        Options {
            extra_config: format!("{}{USER_ROUTE}", Options::default().extra_config),
            ..Default::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    // A terminal enrolled with an access code, a person with a password of their own, and a
    // second access code handed out but not yet used.
    let (code, pin) = enroll_code(&g, "f1", "pc-2");
    let (s, v) = redeem(&g, &code, &pin, "pc-2");
    assert_eq!(s, 200, "{v}");
    let (code3, pin3) = enroll_code(&g, "f1", "pc-3");
    sign_in(&g, "t1", "nurse00001", "nurse", work.path());
    let key = work.path().join("backup.key");
    let out = run_ok(&["backup", "keygen", "--out", key.to_str().unwrap()]);
    assert!(out.contains("Keep it apart"), "{out}");
    assert_eq!(mode(&key), 0o600);

    // The backup, while four keep-alive connections keep asking.
    let backups = work.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let file = backups.join("sekisho-1.backup");
    let stop = AtomicBool::new(false);
    let (answers, window, out) = std::thread::scope(|s| {
        let conns: Vec<_> = (0..4)
            .map(|c| {
                let (g, stop) = (&g, &stop);
                s.spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(load(g, c, stop))
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        let started = Instant::now();
        let o = run(&[
            "backup",
            "--data-dir",
            g.data_str(),
            "--out",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        let ended = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let answers: Vec<Answer> = conns.into_iter().flat_map(|h| h.join().unwrap()).collect();
        (answers, (started, ended), o)
    });
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("Backup written to"), "{printed}");
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.done >= window.0 && a.done <= window.1)
        .collect();
    let slowest = during.iter().map(|a| a.took).max().unwrap_or_default();
    eprintln!(
        "backup took {:?} (wall, the CLI process), {} bytes; {} answers while it ran, slowest {:?}; {} answers in all",
        window.1 - window.0,
        std::fs::metadata(&file).unwrap().len(),
        during.len(),
        slowest,
        answers.len()
    );
    eprintln!("{printed}");
    assert!(
        answers.iter().all(|a| a.status == 200),
        "every request is answered while the backup runs"
    );
    assert!(
        during.len() >= 4,
        "the gateway kept answering while the backup ran: {} answers",
        during.len()
    );

    // The file: private, encrypted (nothing readable in it), and nothing left beside it or in
    // the data dir.
    assert_eq!(mode(&file), 0o600);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"SEKISHO-BACKUP\0"));
    for plain in [
        &b"BEGIN"[..],
        b"sekisho.toml",
        b"nurse00001",
        b"[[route]]",
        b"SQLite format",
    ] {
        assert!(
            !bytes.windows(plain.len()).any(|w| w == plain),
            "{:?} readable in the backup",
            String::from_utf8_lossy(plain)
        );
    }
    assert_eq!(listing(&backups), ["sekisho-1.backup"]);
    assert!(
        !listing(&g.data)
            .iter()
            .any(|n| n.starts_with(".sekisho-backup")),
        "the snapshot directory was removed: {:?}",
        listing(&g.data)
    );

    // On record in the log it backed up: who, before it started, and what it made.
    let sha = sha256_hex(&file);
    let made = g.wait_audit(|r| r["event"] == "operation" && r["reason"] == "backup_made");
    let detail = made["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("sha256:{sha}")), "{detail}");
    assert!(
        made["actor"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{TEST_OPERATOR} (")),
        "{made}"
    );
    let tree_size: u64 = detail
        .split("audit tree size ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a tree size in {detail}"));
    assert!(tree_size > during.len() as u64, "{detail}");
    assert!(
        !detail.contains("sekisho-backup-key"),
        "no key material: {detail}"
    );
    let started = g.wait_audit(|r| r["event"] == "operation" && r["reason"] == "backup_started");
    assert_eq!(started["actor"], made["actor"]);

    // The gateway is gone, and so is its data dir.
    g.stop();
    let original = work.path().join("original");
    std::fs::rename(&g.data, &original).unwrap();
    let restores = work.path().join("restores");
    std::fs::create_dir(&restores).unwrap();
    let target = restores.join("gw");
    let restore = |file: &Path, key: &Path, target: &Path| {
        run(&[
            "restore",
            "--in",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
        ])
    };

    // A wrong key: said so, nothing written.
    let other = work.path().join("other.key");
    run_ok(&["backup", "keygen", "--out", other.to_str().unwrap()]);
    let o = restore(&file, &other, &target);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("wrong key"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("nothing was restored"),
        "{}",
        stderr(&o)
    );
    assert!(listing(&restores).is_empty(), "{:?}", listing(&restores));

    // A flipped byte anywhere, or a file cut short: refused, nothing written.
    for (name, change) in [
        ("flipped-middle", bytes.len() / 2),
        ("flipped-header", 40),
        ("flipped-last", bytes.len() - 1),
    ] {
        let mut bad = bytes.clone();
        bad[change] ^= 0x20;
        let p = work.path().join(name);
        std::fs::write(&p, &bad).unwrap();
        let o = restore(&p, &key, &target);
        assert!(!o.status.success(), "{name}");
        assert!(
            stderr(&o).contains("damaged or was altered"),
            "{name}: {}",
            stderr(&o)
        );
        assert!(
            listing(&restores).is_empty(),
            "{name}: {:?}",
            listing(&restores)
        );
    }
    let cut = work.path().join("cut");
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
    let o = restore(&cut, &key, &target);
    assert!(
        stderr(&o).contains("damaged or was altered"),
        "{}",
        stderr(&o)
    );
    assert!(listing(&restores).is_empty());

    // A data dir that is not empty is left as it is.
    let busy = restores.join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    let o = restore(&file, &key, &busy);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));
    assert_eq!(listing(&busy), ["keep.txt"]);
    assert_eq!(
        std::fs::read_to_string(busy.join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(listing(&restores), ["busy"]);

    // The restore: keys as init makes them, the restore on record, the log verified.
    let o = restore(&file, &key, &target);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let printed = stdout(&o);
    assert!(printed.contains("audit verify:    OK"), "{printed}");
    assert_eq!(listing(&restores), ["busy", "gw"]);
    assert_eq!(mode(&target), 0o700);
    for k in key_files() {
        assert_eq!(mode(&target.join(k)), mode(&original.join(k)), "{k}");
    }
    assert_eq!(mode(&target.join("ca/root.key")), 0o600);
    for same in [
        "ca/issuing.key",
        "enroll-pin.key",
        "audit/checkpoint.key",
        "sekisho.toml",
    ] {
        assert_eq!(
            std::fs::read(target.join(same)).unwrap(),
            std::fs::read(original.join(same)).unwrap(),
            "{same}"
        );
    }
    let out = run_ok(&["audit", "verify", "--data-dir", target.to_str().unwrap()]);
    assert!(out.contains("audit log OK"), "{out}");

    // The restored gateway: the terminals' certificates, the person's own password, and the
    // access code handed out before the backup.
    g.data = target.clone();
    g.store_url = format!("sqlite://{}", target.join("sekisho.db").display());
    let restored = g.audit_records();
    let on_record = restored
        .iter()
        .position(|r| r["event"] == "operation" && r["reason"] == "restored")
        .expect("the restore is on record");
    assert_eq!(on_record as u64, tree_size, "right after the backed-up log");
    let detail = restored[on_record]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("sha256:{sha}"))
            && detail.contains(&format!("tree size {tree_size}")),
        "{detail}"
    );
    assert!(restored.iter().any(|r| r["reason"] == "backup_started"));
    assert!(
        !restored[..on_record]
            .iter()
            .any(|r| r["reason"] == "backup_made"),
        "the snapshot was taken before the backup's own last record"
    );
    g.serve();
    assert_eq!(g.curl_t1("/", &[]).0, 200);
    let (c, k) = g.cert("pc-2");
    assert_eq!(g.curl("/", &["--cert", &c, "--key", &k]).0, 200, "pc-2");
    let jar = work.path().join("after.jar").to_str().unwrap().to_string();
    let (s, _, loc) = post(
        &g,
        "t1",
        &jar,
        "/.sekisho/login",
        &[("id", "nurse00001"), ("password", "kx7#Rw2q")],
    );
    assert_eq!(s, 303);
    assert_ne!(loc, "/.sekisho/password");
    let (s, body) = get(&g, "t1", &jar, "/debug/me");
    assert_eq!(s, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["assertion_claims"]["user"], "nurse00001");
    let (s, v) = redeem(&g, &code3, &pin3, "pc-3");
    assert_eq!(s, 200, "the PIN key came back with the data dir: {v}");
    let out = run_ok(&["audit", "verify", "--data-dir", target.to_str().unwrap()]);
    assert!(out.contains("audit log OK"), "{out}");
}

/// Refusals that need no running gateway, and the passphrase.
#[test]
fn backup_refuses_what_it_cannot_do_safely() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("gw");
    let ds = d.to_str().unwrap();
    run_ok(&["init", "--data-dir", ds, "--upstream", "http://127.0.0.1:1"]);
    let key = dir.path().join("k");
    run_ok(&["backup", "keygen", "--out", key.to_str().unwrap()]);
    let ks = key.to_str().unwrap();
    let o = run(&["backup", "keygen", "--out", ks]);
    assert!(!o.status.success(), "a key file is never replaced");
    let out = dir.path().join("b");
    let os = out.to_str().unwrap();
    // Nobody named: no backup.
    let o = sekisho()
        .env_remove("SEKISHO_OPERATOR")
        .args(["backup", "--data-dir", ds, "--out", os, "--key", ks])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--operator"), "{}", stderr(&o));
    // Into the data dir, or over a file: refused.
    let inside = d.join("b");
    let o = run(&[
        "backup",
        "--data-dir",
        ds,
        "--out",
        inside.to_str().unwrap(),
        "--key",
        ks,
    ]);
    assert!(
        stderr(&o).contains("outside the data dir"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&out, "earlier backup").unwrap();
    let o = run(&["backup", "--data-dir", ds, "--out", os, "--key", ks]);
    assert!(stderr(&o).contains("never replaces"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "earlier backup");
    std::fs::remove_file(&out).unwrap();
    // A link in the data dir would not come back: refused, and nothing is left.
    std::os::unix::fs::symlink("ca.crt", d.join("link")).unwrap();
    let o = run(&["backup", "--data-dir", ds, "--out", os, "--key", ks]);
    assert!(stderr(&o).contains("is a link"), "{}", stderr(&o));
    assert!(!out.exists());
    assert_eq!(listing(dir.path()), ["gw", "k"]);
    assert!(!listing(&d).iter().any(|n| n.starts_with(".sekisho-backup")));
    std::fs::remove_file(d.join("link")).unwrap();
    // A short passphrase is refused; a good one round-trips, and a key file does not open it.
    let o = sekisho()
        .env("BACKUP_PASS", "short")
        .args([
            "backup",
            "--data-dir",
            ds,
            "--out",
            os,
            "--passphrase-env",
            "BACKUP_PASS",
        ])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("at least 12"), "{}", stderr(&o));
    let pass = "kōri no ue no 関所 2026";
    let o = sekisho()
        .env("BACKUP_PASS", pass)
        .args([
            "backup",
            "--data-dir",
            ds,
            "--out",
            os,
            "--passphrase-env",
            "BACKUP_PASS",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let target = dir.path().join("restored");
    let o = run(&[
        "restore",
        "--in",
        os,
        "--key",
        ks,
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("made with a passphrase"),
        "{}",
        stderr(&o)
    );
    let pass_file = dir.path().join("pass");
    std::fs::write(&pass_file, format!("{pass}\n")).unwrap();
    let o = run(&[
        "restore",
        "--in",
        os,
        "--passphrase-file",
        pass_file.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = run_ok(&["audit", "verify", "--data-dir", target.to_str().unwrap()]);
    assert!(out.contains("audit log OK"), "{out}");
}

/// On PostgreSQL the database is backed up with PostgreSQL's tools: the backup holds the rest
/// of the data dir and says so, and a data dir restored from it serves from the same database.
#[test]
fn a_postgres_backup_holds_the_files_and_says_the_database_is_not_in_it() {
    let mut g = Gateway::start(Db::Postgres);
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("k");
    run_ok(&["backup", "keygen", "--out", key.to_str().unwrap()]);
    let file = work.path().join("b");
    let out = run_ok(&[
        "backup",
        "--data-dir",
        g.data_str(),
        "--out",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(
        out.contains("PostgreSQL database is NOT in this backup"),
        "{out}"
    );
    assert!(out.contains("pg_basebackup"), "{out}");
    g.wait_audit(|r| {
        r["reason"] == "backup_made" && r["detail"].as_str().unwrap().contains("of postgres")
    });
    g.stop();
    let target: PathBuf = work.path().join("gw");
    let out = run_ok(&[
        "restore",
        "--in",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(out.contains("database was not in the backup"), "{out}");
    assert!(!target.join("sekisho.db").exists());
    for k in key_files() {
        assert_eq!(
            std::fs::read(target.join(k)).unwrap(),
            std::fs::read(g.data.join(k)).unwrap(),
            "{k}"
        );
    }
    g.data = target.clone();
    g.serve();
    assert_eq!(g.curl_t1("/", &[]).0, 200);
    let out = run_ok(&["audit", "verify", "--data-dir", target.to_str().unwrap()]);
    assert!(out.contains("audit log OK"), "{out}");
}

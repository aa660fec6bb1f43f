//! Several gateway replicas on one PostgreSQL store, as `deploy/README.md` deploys them (a copy
//! of one data dir each, their own listeners and `node` name), checked across the replicas:
//! lockout counts failures made on any of them and locks on all, and unlock lifts it on all;
//! suspension and revocation end sessions and close live connections on every replica within a
//! second; consent withdrawal and care-team removal apply on every replica within a second;
//! an enrollment code redeemed at the same moment on two replicas is spent once; and the audit
//! log stays one verifiable log holding every node's records. Latencies are measured from the
//! return of the CLI command that made the change, and printed.

mod common;

use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The issue's promise for revocations, suspensions and patient facts on every replica.
const WITHIN: Duration = Duration::from_secs(1);

const USER_ROUTE: &str = r#"
[[route]]
name = "my-page"
methods = ["GET"]
path = "/debug/me"
level = "user"
action = "view"
"#;

const RECORD: &str = "/api/patients/P-0001/summary";

/// The tests take turns: the figures are about propagation across replicas, and on a small
/// machine several clusters at once would measure CPU contention instead.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// N gateways on one PostgreSQL database. `first` made the data dir (terminals t1–t3 of f1)
/// and owns the database; the others are `Gateway::replica` copies of it.
struct Cluster {
    // Dropped before `first`, which drops the database.
    replicas: Vec<Gateway>,
    first: Gateway,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Self::start_with(n, Vec::new())
    }

    /// As [`Cluster::start`], with text replacements in the shared sekisho.toml.
    fn start_with(n: usize, replace: Vec<(&'static str, &'static str)>) -> Cluster {
        let opts = Options {
            extra_config: format!("{}{USER_ROUTE}", Options::default().extra_config),
            replace,
            ..Default::default()
        };
        let first = Gateway::start_prepared(Db::Postgres, opts, |g| {
            set_node(g, &node_name(0));
            for t in ["t2", "t3"] {
                g.add_terminal("f1", t, &g.out.clone());
            }
        });
        let replicas = (1..n).map(|i| first.replica(&node_name(i))).collect();
        Cluster { replicas, first }
    }

    fn nodes(&self) -> Vec<&Gateway> {
        std::iter::once(&self.first)
            .chain(self.replicas.iter())
            .collect()
    }
}

fn node_name(i: usize) -> String {
    format!("gw-{}", (b'a' + i as u8) as char)
}

/// Names the first gateway's node (the replicas get theirs from `Gateway::replica`), so every
/// node's audit records are told apart whatever the machine's host name.
fn set_node(g: &Gateway, node: &str) {
    let cfg = g.data.join("sekisho.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.lines().any(|l| l.starts_with("node = ")), "{text}");
    let text: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("node = ") {
                format!("node = {node:?}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&cfg, text.join("\n") + "\n").unwrap();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The session cookie curl keeps in `jar` (Netscape format), as a `Cookie` header value.
fn cookie(jar: &str) -> String {
    let text = std::fs::read_to_string(jar).unwrap();
    let value = text
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 7 && f[5] == "__Host-sekisho").then(|| f[6].to_string())
        })
        .unwrap_or_else(|| panic!("no session cookie in {text}"));
    format!("__Host-sekisho={value}")
}

/// "STATUS CODE" of a GET as terminal `term` with `cookie`, the refusal's code read from the
/// JSON answer ("-" when there is none): a fresh mTLS connection, no curl, so that polling is
/// fine-grained.
fn observe(
    rt: &tokio::runtime::Runtime,
    g: &Gateway,
    term: &str,
    cookie: &str,
    path: &str,
) -> String {
    let (s, body) = rt.block_on(call_with(
        g,
        term,
        "GET",
        path,
        &[("cookie", cookie), ("accept", "application/json")],
        "",
    ));
    let code = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| "-".into());
    format!("{s} {code}")
}

/// Runs the CLI command `args` while every node is asked `observe` every 20 ms, each on its own
/// thread from before the command starts, until it answers `want`. Returns per node how long
/// after the command returned that was (zero when before: a node may poll the change before
/// the command's process has exited); panics when a node did not within 3 s.
fn until_every_node(
    nodes: &[&Gateway],
    args: &[&str],
    want: &str,
    observe: impl Fn(&tokio::runtime::Runtime, &Gateway) -> String + Sync,
) -> Vec<Duration> {
    let go = Barrier::new(nodes.len() + 1);
    let (returned, seen) = std::thread::scope(|s| {
        let pollers: Vec<_> = nodes
            .iter()
            .map(|g| {
                let (go, observe) = (&go, &observe);
                s.spawn(move || {
                    let rt = rt();
                    go.wait();
                    let deadline = Instant::now() + Duration::from_secs(3);
                    loop {
                        let got = observe(&rt, g);
                        if got == want {
                            return Ok(Instant::now());
                        }
                        if Instant::now() >= deadline {
                            return Err(got);
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        go.wait();
        let started = Instant::now();
        run_ok(args);
        let returned = Instant::now();
        eprintln!(
            "sekisho {} {} ran for {:?}",
            args[0],
            args[1],
            returned - started
        );
        let seen: Vec<_> = pollers.into_iter().map(|p| p.join().unwrap()).collect();
        (returned, seen)
    });
    nodes
        .iter()
        .zip(seen)
        .map(|(g, seen)| match seen {
            Ok(at) => at.saturating_duration_since(returned),
            Err(last) => panic!(
                "port {}: still {last:?} 3 s after {args:?}, wanted {want:?}",
                g.port
            ),
        })
        .collect()
}

/// Prints the figures and holds them to the promise.
fn report(what: &str, nodes: &[&Gateway], took: &[Duration]) {
    for (i, t) in took.iter().enumerate() {
        eprintln!("{what}: {} after {t:?}", node_name(i));
    }
    for (i, t) in took.iter().enumerate() {
        assert!(
            *t <= WITHIN,
            "{what}: {} (port {}) took {t:?}, more than {WITHIN:?}",
            node_name(i),
            nodes[i].port
        );
    }
}

// ---- lockout ----

/// Wrong passwords given alternately on the replicas add up to `[signin] max_failures`: one
/// short of it no replica has locked the account; at it, every replica refuses even the right
/// password. `sekisho user unlock` on a replica's own data dir lifts the lock on all of them.
#[test]
fn failures_on_different_replicas_add_up_and_the_lock_and_unlock_hold_on_all() {
    let _turn = turn();
    let c = Cluster::start(2);
    let nodes = c.nodes();
    let max: usize = std::fs::read_to_string(c.first.data.join("sekisho.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("max_failures = "))
        .expect("[signin] max_failures in sekisho.toml")
        .trim()
        .parse()
        .unwrap();
    assert!(max >= 2, "failures must be spread over the replicas");
    let temp = add_user(&c.first, "clerk00001", "jp-mhlw-qa-a");
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("jar").to_str().unwrap().to_string();
    let login = |g: &Gateway, term: &str, password: &str| {
        let (s, _, loc) = post(
            g,
            term,
            &jar,
            "/.sekisho/login",
            &[("id", "clerk00001"), ("password", password)],
        );
        (s, loc)
    };
    let account_failures = || {
        c.first.sql_rows(
            "SELECT failures FROM lockouts WHERE scope = 'account' AND subject = 'clerk00001'",
        )
    };
    let locked = || {
        run_ok(&["user", "list", "--data-dir", c.first.data_str()])
            .lines()
            .any(|l| l.starts_with("clerk00001") && l.contains("locked"))
    };
    for i in 0..max {
        if i == max - 1 {
            // Every replica has fewer than `max` failures of its own; together one short.
            assert_eq!(account_failures(), [[(max - 1).to_string()]]);
            assert!(!locked(), "locked after {i} failures");
        }
        let (s, _) = login(nodes[i % nodes.len()], "t1", "wrong-Pass1!");
        assert_eq!(s, 401, "failure {i}");
    }
    assert_eq!(account_failures(), [[max.to_string()]]);
    assert!(
        locked(),
        "not locked after {max} failures over the replicas"
    );
    for (i, g) in nodes.iter().enumerate() {
        let node = node_name(i);
        // The failures were counted where they were made.
        let bad = g
            .audit_records()
            .into_iter()
            .filter(|r| r["reason"] == "bad_password" && r["node"] == node.as_str())
            .count();
        assert!(bad >= 1 && bad < max, "{node}: {bad} failures of its own");
        // Locked here too, even with the right password (on another terminal: the lock is the
        // account's, not t1's).
        assert_eq!(login(g, "t2", &temp), (401, String::new()), "{node}");
        g.wait_audit(|r| {
            r["event"] == "auth"
                && r["reason"] == "account_locked"
                && r["user"] == "clerk00001"
                && r["node"] == node.as_str()
        });
    }

    // Unlocked with the replica's copy of the data dir: every replica lets the right password
    // in (to the forced change of the temporary password).
    run_ok(&[
        "user",
        "unlock",
        "--data-dir",
        c.replicas[0].data_str(),
        "--id",
        "clerk00001",
    ]);
    for (i, g) in nodes.iter().enumerate() {
        let got = within_a_poll(|| login(g, "t3", &temp), |(s, _)| *s == 303);
        assert_eq!(
            (got.0, got.1.as_str()),
            (303, "/.sekisho/password"),
            "{}: still locked after the unlock",
            node_name(i)
        );
    }
    c.first
        .wait_audit(|r| r["event"] == "registry" && r["reason"] == "account_unlocked");
}

// ---- suspension and revocation ----

/// A person signed in through one replica is signed in on all (sessions are the terminal's, in
/// the store); `sekisho user suspend` ends the session on every replica within a second. Then
/// `sekisho terminal suspend` and `revoke` close a keep-alive connection held open on each
/// replica within a second, each replica on its own (the change reaches it from the store).
#[test]
fn suspension_and_revocation_end_sessions_and_close_connections_on_every_replica() {
    let _turn = turn();
    let c = Cluster::start(3);
    let nodes = c.nodes();
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let jar = sign_in(&c.first, "t1", "nurse00001", "nurse", dir.path());
    let cookie = cookie(&jar);
    let me = |rt: &tokio::runtime::Runtime, g: &Gateway| observe(rt, g, "t1", &cookie, "/debug/me");
    for (i, g) in nodes.iter().enumerate() {
        let got = within_a_poll(|| me(&rt, g), |s| s == "200 -");
        assert_eq!(got, "200 -", "{}: the session is not there", node_name(i));
    }
    let d = c.replicas[1].data_str();
    let took = until_every_node(
        &nodes,
        &["user", "suspend", "--data-dir", d, "--id", "nurse00001"],
        "401 signin_required",
        me,
    );
    report("user suspend: session ended", &nodes, &took);

    for (change, term, reason) in [
        ("suspend", "t2", "terminal_suspended"),
        ("revoke", "t3", "terminal_revoked"),
    ] {
        let took = until_every_connection_closed(
            &nodes,
            term,
            &["terminal", change, "--data-dir", d, "--terminal", term],
        );
        report(
            &format!("terminal {change}: keep-alive connection closed"),
            &nodes,
            &took,
        );
        // Closed because the terminal lost access (not by a timeout), each by its own node.
        for i in 0..nodes.len() {
            let node = node_name(i);
            c.first.wait_audit(|r| {
                r["event"] == "connection"
                    && r["reason"] == reason
                    && r["terminal"] == term
                    && r["node"] == node.as_str()
            });
        }
        // And nothing new gets in anywhere: refused with a page, or (revoked: on the CRL every
        // replica installed) in the handshake.
        let refused = if change == "suspend" { 403 } else { 0 };
        for g in &nodes {
            let (cert, key) = g.cert(term);
            let (s, _, _) = g.curl("/", &["--cert", &cert, "--key", &key]);
            assert_eq!(s, refused, "{change} {term} on port {}", g.port);
        }
    }
}

/// Holds a keep-alive connection of `term` open on every node (one request answered), runs the
/// CLI command `args`, and returns per node how long after the command returned the node closed
/// it; panics when one stays open for 3 s.
fn until_every_connection_closed(nodes: &[&Gateway], term: &str, args: &[&str]) -> Vec<Duration> {
    let go = Barrier::new(nodes.len() + 1);
    let (returned, closed) = std::thread::scope(|s| {
        let holders: Vec<_> = nodes
            .iter()
            .map(|g| {
                let go = &go;
                s.spawn(move || {
                    let rt = rt();
                    rt.block_on(async {
                        let tls = tls_connect(g, term).await;
                        let (mut sender, conn) =
                            hyper::client::conn::http1::handshake::<
                                _,
                                http_body_util::Empty<bytes::Bytes>,
                            >(hyper_util::rt::TokioIo::new(tls))
                            .await
                            .unwrap();
                        let conn = tokio::spawn(conn);
                        let req = http::Request::get("/")
                            .header("host", "localhost")
                            .body(http_body_util::Empty::new())
                            .unwrap();
                        let resp = sender.send_request(req).await.unwrap();
                        assert_eq!(resp.status(), 200, "port {}", g.port);
                        drop(resp);
                        go.wait();
                        // The sender is kept: dropping it would close the connection from our side.
                        let closed = tokio::time::timeout(Duration::from_secs(3), conn).await;
                        let at = Instant::now();
                        drop(sender);
                        closed.map(|_| at)
                    })
                })
            })
            .collect();
        go.wait();
        let started = Instant::now();
        run_ok(args);
        let returned = Instant::now();
        eprintln!(
            "sekisho {} {} ran for {:?}",
            args[0],
            args[1],
            returned - started
        );
        let closed: Vec<_> = holders.into_iter().map(|h| h.join().unwrap()).collect();
        (returned, closed)
    });
    nodes
        .iter()
        .zip(closed)
        .map(|(g, closed)| match closed {
            Ok(at) => at.saturating_duration_since(returned),
            Err(_) => panic!("port {}: the connection outlived {args:?} by 3 s", g.port),
        })
        .collect()
}

// ---- consent and care team ----

/// A patient readable through every replica; `sekisho patient withdraw` and `sekisho careteam
/// remove`, run on a replica's data dir, are refused by every replica within a second.
#[test]
fn withdrawal_and_care_team_removal_apply_on_every_replica_within_a_second() {
    let _turn = turn();
    let c = Cluster::start(3);
    let nodes = c.nodes();
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let jar = sign_in(&c.first, "t1", "nurse00001", "nurse", dir.path());
    consented_patient(&c.first, "P-0001", &["u:nurse00001"]);
    let cookie = cookie(&jar);
    let record = |rt: &tokio::runtime::Runtime, g: &Gateway| observe(rt, g, "t1", &cookie, RECORD);
    let readable_everywhere = || {
        for (i, g) in nodes.iter().enumerate() {
            let got = within_a_poll(|| record(&rt, g), |s| s == "200 -");
            assert_eq!(got, "200 -", "{}: the record is not readable", node_name(i));
        }
    };
    readable_everywhere();
    let d = c.replicas[0].data_str();
    let took = until_every_node(
        &nodes,
        &["patient", "withdraw", "--data-dir", d, "--id", "P-0001"],
        "403 patient_no_consent",
        record,
    );
    report("patient withdraw: refused", &nodes, &took);

    run_ok(&["patient", "consent", "--data-dir", d, "--id", "P-0001"]);
    readable_everywhere();
    let took = until_every_node(
        &nodes,
        &[
            "careteam",
            "remove",
            "--data-dir",
            d,
            "--patient",
            "P-0001",
            "--user",
            "nurse00001",
        ],
        "403 patient_not_in_care_team",
        record,
    );
    report("careteam remove: refused", &nodes, &took);
}

// ---- enrollment ----

/// One access code redeemed at the same moment on two replicas' enrollment listeners (the
/// connections made first, the requests released together), ten times with fresh codes: each
/// time exactly one gets a certificate, the other `enroll_used`, and the registry holds one
/// certificate for the terminal — the one handed out.
#[test]
fn an_enrollment_code_redeemed_on_two_replicas_at_once_is_spent_once() {
    let _turn = turn();
    let c = Cluster::start(2);
    let nodes = c.nodes();
    let dir = tempfile::tempdir().unwrap();
    let csrs: Vec<String> = (0..nodes.len())
        .map(|i| new_csr(dir.path(), &format!("racer-{i}")).1)
        .collect();
    let mut wins = vec![0; nodes.len()];
    for round in 0..10 {
        let terminal = format!("pc-{round}");
        let (code, pin) = enroll_code(&c.first, "f1", &terminal);
        let go = Barrier::new(nodes.len());
        let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
            let racers: Vec<_> = nodes
                .iter()
                .zip(&csrs)
                .map(|(g, csr)| {
                    let body =
                        serde_json::json!({"code": code, "pin": pin, "csr": csr}).to_string();
                    let go = &go;
                    s.spawn(move || rt().block_on(enroll_at_once(g, go, body)))
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let won: Vec<usize> = (0..answers.len())
            .filter(|&i| answers[i].0 == 200)
            .collect();
        let brief: Vec<_> = answers
            .iter()
            .map(|(s, v)| (*s, v.get("serial").or(v.get("error")).cloned()))
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {brief:?}");
        let winner = won[0];
        wins[winner] += 1;
        for (i, (s, v)) in answers.iter().enumerate() {
            if i != winner {
                assert_eq!(
                    (*s, v["error"].as_str()),
                    (410, Some("enroll_used")),
                    "round {round}, {}: {v}",
                    node_name(i)
                );
            }
        }
        let serial = answers[winner].1["serial"]
            .as_str()
            .expect("the certificate's serial")
            .to_lowercase();
        let certs = c.first.sql_rows(&format!(
            "SELECT LOWER(serial) FROM certificates WHERE terminal = '{terminal}'"
        ));
        assert_eq!(
            certs,
            [[serial]],
            "round {round}: one certificate, the one handed out"
        );
    }
    eprintln!(
        "enrollment races won per node: {:?}",
        (0..nodes.len())
            .map(|i| (node_name(i), wins[i]))
            .collect::<Vec<_>>()
    );
    // Each node's records reach the shared log from its own journal.
    for g in &nodes {
        g.settle_audit();
    }
    let log = c.first.audit_records();
    let count = |reason: &str| {
        log.iter()
            .filter(|r| r["event"] == "enrollment" && r["reason"] == reason)
            .count()
    };
    assert_eq!((count("enrolled"), count("enroll_used")), (10, 10));
}

/// Connects to `g`'s enrollment listener (TLS, no client certificate), waits at `go`, then
/// posts `body` to `/enroll/csr`; (status, JSON answer).
async fn enroll_at_once(g: &Gateway, go: &Barrier, body: String) -> (u16, Value) {
    use http_body_util::BodyExt;
    use rustls_pki_types::ServerName;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(g.ca()).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", g.enroll_port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/enroll/csr")
        .header("host", format!("localhost:{}", g.enroll_port))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    go.wait();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

// ---- one log ----

/// Requests through the replicas in turn: the shared log holds each one's records, and `sekisho audit verify` on either data dir checks all of them — a
/// record of the second node changed in the store is named by a verify run on the first's.
#[test]
fn the_audit_log_is_one_verifiable_log_of_every_replicas_records() {
    let _turn = turn();
    let c = Cluster::start(2);
    let nodes = c.nodes();
    let rounds = 4;
    for n in 0..rounds {
        for g in &nodes {
            let (s, _, _) = g.curl_t1(&format!("/debug/headers?n={n}"), &[]);
            assert_eq!(s, 200);
        }
    }
    let requests = |log: &[Value]| -> Vec<String> {
        log.iter()
            .filter(|r| r["event"] == "request" && r["route"] == "debug-headers")
            .map(|r| r["node"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    // Each node's records reach the shared log from its journal, a few milliseconds after
    // they were answered: wait for every node's, then count them. Across nodes the log's order
    // is the order the records reached the store (docs/audit.md, "The durability point").
    for g in &nodes {
        g.settle_audit();
    }
    let log = c.first.audit_records();
    let got = requests(&log);
    for i in 0..nodes.len() {
        assert_eq!(
            got.iter().filter(|n| **n == node_name(i)).count(),
            rounds,
            "{} request records of {} in the shared log: {got:?}",
            rounds,
            node_name(i)
        );
    }
    assert_eq!(got.len(), rounds * nodes.len(), "{got:?}");

    for g in &nodes {
        let held: i64 = g.sql_rows("SELECT COUNT(*) FROM audit_records")[0][0]
            .parse()
            .unwrap();
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{out}");
        let verified: i64 = out
            .lines()
            .find_map(|l| l.strip_prefix("records: "))
            .and_then(|l| l.split_whitespace().next())
            .expect("a record count")
            .parse()
            .unwrap();
        assert!(verified >= held, "verified {verified} of {held} records");
    }

    // The second node's record is in the tree the first node's verify checks.
    let idx = c.first.sql_rows(&format!(
        "SELECT idx FROM audit_records WHERE record LIKE '%\"node\":\"{}\"%' \
         AND record LIKE '%\"event\":\"request\"%' ORDER BY idx LIMIT 1",
        node_name(1)
    ))[0][0]
        .clone();
    c.first.sql(&format!(
        "UPDATE audit_records SET record = REPLACE(record, '\"decision\":\"permit\"', '\"decision\":\"deny\"') WHERE idx = {idx}"
    ));
    let o = run(&["audit", "verify", "--data-dir", c.first.data_str()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("record {idx}: changed")), "{text}");
    c.first.sql(&format!(
        "UPDATE audit_records SET record = REPLACE(record, '\"decision\":\"deny\"', '\"decision\":\"permit\"') WHERE idx = {idx}"
    ));
    let out = run_ok(&["audit", "verify", "--data-dir", c.first.data_str()]);
    assert!(out.contains("audit log OK"), "{out}");
}

// ---- idle timeout ----

/// With `signin.idle_minutes = 1` on two replicas: requests to one of them keep the session
/// on both past the minute (the other, which sees none of them, neither ends it nor refuses
/// it); once they stop, the session ends on both a minute after the last request, and one
/// replica, not both, puts the end on record.
#[test]
fn requests_on_one_replica_keep_the_session_on_all_and_idleness_ends_it_on_all() {
    let _turn = turn();
    let c = Cluster::start_with(2, vec![("idle_minutes = 15", "idle_minutes = 1")]);
    let nodes = c.nodes();
    let dir = tempfile::tempdir().unwrap();
    let jar = sign_in(&c.first, "t1", "nurse00001", "nurse", dir.path());
    let ck = cookie(&jar);
    let rt = rt();
    let signed_in = |g: &Gateway| {
        let (s, v) = rt.block_on(call_with(
            g,
            "t1",
            "GET",
            "/.sekisho/auth/status",
            &[("cookie", ck.as_str())],
            "",
        ));
        assert_eq!(s, 200, "{v}");
        serde_json::from_str::<Value>(&v).unwrap()["signed_in"] == true
    };
    let opened = Instant::now();
    // The other replica learns of the new session from the store (within a second).
    while !signed_in(nodes[1]) {
        assert!(
            opened.elapsed() < Duration::from_secs(2),
            "the session has not reached the second replica"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        assert_eq!(observe(&rt, nodes[0], "t1", &ck, "/debug/me"), "200 -");
        assert!(signed_in(nodes[1]), "after {:?}", opened.elapsed());
        if opened.elapsed() > Duration::from_secs(75) {
            break;
        }
        std::thread::sleep(Duration::from_secs(10));
    }
    // The second replica, past the minute since it last read the session, asks the store
    // before refusing, and finds it alive.
    let last = Instant::now();
    assert_eq!(observe(&rt, nodes[1], "t1", &ck, "/debug/me"), "200 -");
    let mut ended = [None, None];
    while ended.iter().any(Option::is_none) {
        for (i, g) in nodes.iter().enumerate() {
            if ended[i].is_none() && !signed_in(g) {
                ended[i] = Some(last.elapsed());
            }
        }
        assert!(
            last.elapsed() < Duration::from_secs(66),
            "still signed in {:?} after the last request: {ended:?}",
            last.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, t) in ended.iter().enumerate() {
        let t = t.unwrap();
        eprintln!("idle end: {} after {:.1} s", node_name(i), t.as_secs_f64());
        assert!(
            t >= Duration::from_secs(59),
            "{}: ended early, {t:?}",
            node_name(i)
        );
    }
    c.first
        .wait_audit(|r| r["reason"] == "session_idle" && r["user"] == "nurse00001");
    std::thread::sleep(Duration::from_secs(3));
    let on_record = c
        .first
        .audit_records()
        .into_iter()
        .filter(|r| r["reason"] == "session_idle" && r["user"] == "nurse00001")
        .count();
    assert_eq!(on_record, 1, "one replica ends it on record");
}

//! Witnessed checkpoints under the real gateway (`docs/audit.md`, "Witnesses"): signed
//! checkpoints reach a directory witness and an HTTPS witness as batches commit; an HTTPS
//! witness that is down fails no request and gets the newest checkpoint when it is back;
//! `audit verify --witness` catches the newest batch deleted with its checkpoint and head —
//! which plain `verify` passes — and a log rewritten and re-signed with the real key; and
//! `sekisho audit witness`, another node's receiving side, refuses smaller and forked
//! checkpoints. On SQLite and PostgreSQL.

mod common;
// The CA and localhost certificate the receivers present (shared with the notify tests).
#[path = "notify_rig/pki.rs"]
mod pki;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use pki::TestPki;

const TOKEN: &str = "0f3c9a1e7b5d2c8f4a6e1b3d5c7a9e2f";

// --- An HTTPS witness written from docs/audit.md, not with the gateway's code -------------

#[derive(Default)]
struct Held {
    note: Option<String>,
    posts: usize,
}

/// (size, root) from a note's first lines: origin, size, root.
fn size_root(note: &str) -> Option<(u64, String)> {
    let mut l = note.lines();
    l.next()?;
    Some((l.next()?.parse().ok()?, l.next()?.to_string()))
}

struct Receiver {
    held: Arc<Mutex<Held>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    fn start(rt: &tokio::runtime::Runtime, addr: SocketAddr, pki: &TestPki) -> Receiver {
        let held = Arc::new(Mutex::new(Held::default()));
        let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
        let h = held.clone();
        let task = rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, h) = (acceptor.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| answer(h.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Receiver { held, task }
    }

    fn size(&self) -> u64 {
        let h = self.held.lock().unwrap();
        h.note.as_deref().and_then(size_root).map_or(0, |(s, _)| s)
    }

    fn note(&self) -> Option<String> {
        self.held.lock().unwrap().note.clone()
    }

    fn stop(self) {
        self.task.abort();
    }
}

async fn answer(
    held: Arc<Mutex<Held>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let reply = |status: u16, refusal: Option<&str>, body: String| {
        let mut r = hyper::Response::builder().status(status);
        if let Some(why) = refusal {
            r = r.header("sekisho-witness-refusal", why);
        }
        Ok(r.body(Full::new(Bytes::from(body))).unwrap())
    };
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if bearer != format!("Bearer {TOKEN}") {
        return reply(401, None, "token\n".into());
    }
    let method = req.method().clone();
    let body = String::from_utf8_lossy(&req.into_body().collect().await?.to_bytes()).into_owned();
    let mut h = held.lock().unwrap();
    if method == hyper::Method::GET {
        return match &h.note {
            Some(n) => reply(200, None, n.clone()),
            None => reply(404, None, String::new()),
        };
    }
    h.posts += 1;
    let Some((size, root)) = size_root(&body) else {
        return reply(400, None, "not a checkpoint\n".into());
    };
    let verdict = match h.note.as_deref().and_then(size_root) {
        Some((s, _)) if size < s => Some("older"),
        Some((s, r)) if size == s && root != r => Some("fork"),
        _ => None,
    };
    match verdict {
        Some(why) => reply(409, Some(why), h.note.clone().unwrap_or_default()),
        None => {
            h.note = Some(body.clone());
            reply(200, None, body)
        }
    }
}

// --- The rig --------------------------------------------------------------------------------

struct Rig {
    rt: tokio::runtime::Runtime,
    pki: TestPki,
    files: tempfile::TempDir,
    /// The directory witness: "other storage" (another temporary directory).
    nas: PathBuf,
    https: SocketAddr,
}

impl Rig {
    fn new() -> Rig {
        use std::os::unix::fs::PermissionsExt;
        let files = tempfile::tempdir().unwrap();
        let pki = TestPki::new();
        std::fs::write(files.path().join("witness-ca.pem"), &pki.ca_pem).unwrap();
        let token = files.path().join("witness.token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let nas = files.path().join("nas");
        std::fs::create_dir(&nas).unwrap();
        let https = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Rig {
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
            pki,
            files,
            nas,
            https,
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/sekisho/witness", self.https.port())
    }

    /// The gateway's options: both witnesses, copying at most every 50 ms.
    fn options(&self) -> Options {
        let mut o = Options::default();
        o.replace
            .push(("witness_interval_ms = 1000", "witness_interval_ms = 50"));
        o.replace
            .push(("witness_poll_ms = 5000", "witness_poll_ms = 200"));
        o.extra_config.push_str(&format!(
            r#"
[[audit.witness]]
name = "nas"
dir = "{}"

[[audit.witness]]
name = "peer"
url = "{}"
ca_file = "{}"
token_file = "{}"
"#,
            self.nas.display(),
            self.url(),
            self.files.path().join("witness-ca.pem").display(),
            self.files.path().join("witness.token").display(),
        ));
        o
    }

    fn receiver(&self) -> Receiver {
        Receiver::start(&self.rt, self.https, &self.pki)
    }

    fn store(&self, g: &Gateway) -> sekisho_store::Store {
        self.rt
            .block_on(sekisho_store::Store::open(&g.store_url))
            .unwrap()
    }
}

fn newest(g: &Gateway) -> u64 {
    g.sql_rows("SELECT MAX(tree_size) FROM audit_checkpoints")[0][0]
        .parse()
        .unwrap()
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("latest"))
        .ok()
        .as_deref()
        .and_then(size_root)
        .map_or(0, |(s, _)| s)
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A metric's value for one witness from `/metrics`.
fn metric(g: &Gateway, name: &str, witness: &str) -> Option<f64> {
    let (_, text) = g.mgmt_get("/metrics")?;
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("witness=\"{witness}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn verify(g: &Gateway, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["audit", "verify", "--data-dir", g.data_str()];
    args.extend_from_slice(extra);
    let o = run(&args);
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

// --- The tests -------------------------------------------------------------------------------

#[test]
fn checkpoints_reach_both_witnesses_and_a_dropped_batch_is_caught_only_with_them() {
    for db in BOTH {
        let rig = Rig::new();
        let peer = rig.receiver();
        let mut g = Gateway::start_with(db, rig.options());
        for round in 0..3 {
            for _ in 0..4 {
                assert_eq!(g.curl_t1("/", &[]).0, 200, "{db:?}");
            }
            // Outcomes are queued after the answers: wait for the log to settle first.
            std::thread::sleep(Duration::from_millis(200));
            let want = newest(&g);
            wait_until(
                &format!("{db:?} round {round}: both witnesses hold {want}"),
                || dir_size(&rig.nas) >= want && peer.size() >= want,
            );
        }
        assert!(
            metric(&g, "sekisho_audit_witness_tree_size", "peer").unwrap() > 0.0,
            "{db:?}"
        );
        g.stop();
        // Stopping gives the witnesses the last checkpoint.
        let n = newest(&g);
        assert_eq!(dir_size(&rig.nas), n, "{db:?}");
        assert_eq!(peer.size(), n, "{db:?}");
        assert_eq!(
            peer.note().unwrap(),
            g.sql_rows(&format!(
                "SELECT note FROM audit_checkpoints WHERE tree_size = {n}"
            ))[0][0],
            "{db:?}: the witness holds the log's signed note as it is"
        );
        let history = std::fs::read_to_string(rig.nas.join("checkpoints")).unwrap();
        assert!(
            history.matches("\n\n\u{2014} ").count() >= 3,
            "{db:?}: {history}"
        );

        let (code, out) = verify(&g, &["--witness", rig.nas.to_str().unwrap()]);
        assert_eq!(code, 0, "{db:?}: {out}");
        assert!(
            out.contains("witness nas: its newest checkpoint"),
            "{db:?}: {out}"
        );
        let (code, out) = verify(&g, &["--all-witnesses"]);
        assert_eq!(code, 0, "{db:?}: {out}");
        assert!(
            out.contains("witness peer: its newest checkpoint"),
            "{db:?}: {out}"
        );

        // Those runs were recorded (and so checkpointed) while the gateway was stopped; once
        // it serves again, their checkpoints reach the witnesses too (from the store).
        assert!(newest(&g) > n, "{db:?}");
        g.serve();
        let want = newest(&g);
        wait_until(
            &format!("{db:?}: the CLI's checkpoint {want} is copied"),
            || dir_size(&rig.nas) >= want && peer.size() >= want,
        );
        g.stop();

        // The attack the foundation's note admitted: the newest batch deleted with its
        // checkpoint, the head moved back.
        let store = rig.store(&g);
        let (was, now) = rig
            .rt
            .block_on(sekisho_audit::forge::drop_newest_batch(&store))
            .unwrap();
        rig.rt.block_on(store.close());
        assert_eq!(was, dir_size(&rig.nas), "{db:?}");
        let (code, out) = verify(&g, &["--witness", rig.nas.to_str().unwrap()]);
        assert_eq!(code, 1, "{db:?}: {out}");
        assert!(
            out.contains(&format!(
                "PROBLEM: witness nas: TRUNCATED: the witness holds a signed checkpoint at tree size {was}, the log has {now} records"
            )),
            "{db:?}: {out}"
        );
        // Plain verify cannot see it.
        let (code, out) = verify(&g, &[]);
        assert_eq!(code, 0, "{db:?}: {out}");
        assert!(out.contains("audit log OK"), "{db:?}: {out}");
        // Both witnesses still say so (the verify runs appended records since: truncated
        // below the witnessed size, or a different root at it).
        let (code, out) = verify(&g, &["--witness", &rig.url()]);
        assert_eq!(code, 1, "{db:?}: {out}");
        assert!(
            out.contains("PROBLEM: witness peer: ")
                && out.contains(&format!("tree size {was}"))
                && (out.contains("TRUNCATED") || out.contains("FORKED")),
            "{db:?}: {out}"
        );
        peer.stop();
    }
}

#[test]
fn an_https_witness_that_is_down_fails_no_request_and_catches_up() {
    for db in BOTH {
        let rig = Rig::new();
        let g = Gateway::start_with(db, rig.options());
        for _ in 0..10 {
            assert_eq!(
                g.curl_t1("/", &[]).0,
                200,
                "{db:?}: a witness down fails nothing"
            );
        }
        wait_until("the failures are counted", || {
            metric(&g, "sekisho_audit_witness_failures_total", "peer").unwrap_or(0.0) > 0.0
        });
        // The directory witness went on meanwhile.
        wait_until("the directory witness keeps up", || dir_size(&rig.nas) > 0);
        let peer = rig.receiver();
        for _ in 0..3 {
            assert_eq!(g.curl_t1("/", &[]).0, 200);
        }
        std::thread::sleep(Duration::from_millis(200));
        let want = newest(&g);
        wait_until(
            &format!("{db:?}: the witness gets {want} when it is back"),
            || peer.size() >= want,
        );
        wait_until("the gauge says so", || {
            metric(&g, "sekisho_audit_witness_tree_size", "peer") == Some(peer.size() as f64)
        });
        peer.stop();
    }
}

#[test]
fn a_log_rewritten_and_re_signed_with_the_real_key_is_caught_by_the_witness() {
    for db in BOTH {
        let rig = Rig::new();
        let mut opts = rig.options();
        // The directory witness only.
        opts.extra_config = opts
            .extra_config
            .split("[[audit.witness]]\nname = \"peer\"")
            .next()
            .unwrap()
            .to_string();
        let mut g = Gateway::start_with(db, opts);
        for _ in 0..6 {
            assert_eq!(g.curl_t1("/", &[]).0, 200);
        }
        g.stop();
        let seen = dir_size(&rig.nas);
        assert_eq!(seen, newest(&g), "{db:?}");
        let cfg = sekisho::config::Config::load(&g.data).unwrap();
        let origin = sekisho::serve::audit_origin(&cfg);
        let key =
            sekisho_audit::CheckpointKey::load_or_create(&g.data.join("audit"), &origin).unwrap();
        let store = rig.store(&g);
        rig.rt
            .block_on(sekisho_audit::forge::rewrite_record(
                &store,
                &key,
                &origin,
                2,
                |r| r.replacen("\"decision\":\"", "\"decision\":\"x", 1),
            ))
            .unwrap();
        rig.rt.block_on(store.close());
        let (code, out) = verify(&g, &["--witness", rig.nas.to_str().unwrap()]);
        assert_eq!(code, 1, "{db:?}: {out}");
        assert!(
            out.contains("PROBLEM: witness nas: FORKED: the log's root at tree size"),
            "{db:?}: {out}"
        );
        // While the node's journal still holds the records' original bytes, plain verify finds
        // the rewritten one there; once the journal has moved on (its segments are removed as
        // they are indexed), a re-signed fork passes plain verify: the witness is what catches it.
        let (code, out) = verify(&g, &[]);
        assert_eq!(code, 1, "{db:?}: {out}");
        assert!(
            out.contains("is indexed, but the log holds that request's record with other bytes"),
            "{db:?}: {out}"
        );
        std::fs::remove_dir_all(g.data.join("audit/journal-localhost")).unwrap();
        let (code, out) = verify(&g, &[]);
        assert_eq!(
            code, 0,
            "{db:?}: a re-signed fork passes plain verify: {out}"
        );
    }
}

/// Another node as the HTTPS witness: `sekisho audit witness` with its own certificate, the
/// log's verifier key and the token; it takes the gateway's checkpoints and refuses smaller
/// and forked ones, and `verify --witness DIR` reads what it kept.
#[test]
fn another_node_is_a_witness_that_refuses_smaller_and_forked_checkpoints() {
    for db in BOTH {
        let rig = Rig::new();
        // Another Sekisho node: its own data dir, whose server certificate (from its own CA)
        // the witness presents; the gateway trusts that node's CA.
        let node_dir = rig.files.path().join("node");
        run_ok(&[
            "init",
            "--data-dir",
            node_dir.to_str().unwrap(),
            "--upstream",
            "http://127.0.0.1:9",
            "--hostname",
            "localhost",
        ]);
        std::fs::copy(
            node_dir.join("ca.crt"),
            rig.files.path().join("witness-ca.pem"),
        )
        .unwrap();
        let kept = rig.files.path().join("kept");
        std::fs::create_dir(&kept).unwrap();
        // The gateway's "peer" witness is the node.
        let mut g = Gateway::start_with(db, rig.options());
        let log_key = g.data.join("audit/checkpoint.pub");
        let _node = Killed(
            sekisho()
                .args([
                    "audit",
                    "witness",
                    "--dir",
                    kept.to_str().unwrap(),
                    "--listen",
                    &rig.https.to_string(),
                    "--cert",
                    node_dir.join("tls/server.crt").to_str().unwrap(),
                    "--key",
                    node_dir.join("tls/server.key").to_str().unwrap(),
                    "--log-key",
                    log_key.to_str().unwrap(),
                    "--token-file",
                    rig.files.path().join("witness.token").to_str().unwrap(),
                ])
                .spawn()
                .unwrap(),
        );
        for _ in 0..4 {
            assert_eq!(g.curl_t1("/", &[]).0, 200);
        }
        std::thread::sleep(Duration::from_millis(200));
        let want = newest(&g);
        wait_until(&format!("{db:?}: the node keeps {want}"), || {
            dir_size(&kept) >= want
        });
        g.stop();
        let n = newest(&g);
        assert_eq!(dir_size(&kept), n, "{db:?}");

        // Smaller and forked checkpoints, signed with the log's real key, are refused.
        let cfg = sekisho::config::Config::load(&g.data).unwrap();
        let origin = sekisho::serve::audit_origin(&cfg);
        let k =
            sekisho_audit::CheckpointKey::load_or_create(&g.data.join("audit"), &origin).unwrap();
        let client = sekisho_audit::witness::HttpsWitness::new(
            "node",
            &rig.url(),
            &std::fs::read(node_dir.join("ca.crt")).unwrap(),
            Some(zeroize::Zeroizing::new(TOKEN.to_string())),
            Duration::from_secs(5),
        )
        .unwrap();
        let offer = |size: u64, root: [u8; 32]| {
            let cp =
                sekisho_audit::SignedCheckpoint::parse(&k.sign_checkpoint(&origin, size, &root))
                    .unwrap();
            rig.rt.block_on(client.submit(&cp)).unwrap()
        };
        use sekisho_audit::witness::{Outcome, Refusal};
        assert!(
            matches!(offer(n - 1, [1; 32]), Outcome::Refused { refusal: Refusal::Older { .. }, held: Some(h) } if h.size() == n),
            "{db:?}"
        );
        assert!(
            matches!(
                offer(n, [2; 32]),
                Outcome::Refused {
                    refusal: Refusal::Fork { .. },
                    ..
                }
            ),
            "{db:?}"
        );
        assert_eq!(dir_size(&kept), n, "{db:?}: nothing refused was kept");
        let (code, out) = verify(&g, &["--witness", kept.to_str().unwrap()]);
        assert_eq!(code, 0, "{db:?}: {out}");
    }
}

/// A child process killed when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

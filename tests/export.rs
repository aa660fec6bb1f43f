//! The audit export under the real gateway (`docs/audit.md`, "Export"): a TLS syslog receiver
//! (RFC 5425) gets every record as an ATNA message, a FHIR server every record as an
//! AuditEvent, a file every record as a JSON line — each validated against its schema. A
//! receiver that is down fails no request and gets everything when it is back, with nothing
//! twice; a syslog receiver that dies with messages unread gets them again (told apart by
//! their sequenceId) and misses none; a gateway restart repeats nothing. SQLite and PostgreSQL.

mod common;
#[path = "notify_rig/pki.rs"]
mod pki;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use pki::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

// --- A syslog-over-TLS receiver written from RFC 5425, not with the gateway's code ----------

#[derive(Default)]
struct Heard {
    /// Every message, in arrival order, across the receiver's lives.
    messages: Vec<String>,
}

impl Heard {
    /// The leaf index each message names (`[meta sequenceId]` is the index + 1).
    fn indexes(&self) -> Vec<u64> {
        self.messages
            .iter()
            .map(|m| {
                let at = m.find("sequenceId=\"").expect("a sequenceId") + 12;
                let n: u64 = m[at..].split('"').next().unwrap().parse().unwrap();
                n - 1
            })
            .collect()
    }
}

struct SyslogReceiver {
    stop: watch::Sender<bool>,
}

impl SyslogReceiver {
    /// Listens on `addr`; with `die_after`, it dies (closes everything unread, stops listening)
    /// once it has read that many more messages.
    fn start(
        rt: &tokio::runtime::Runtime,
        addr: SocketAddr,
        pki: &TestPki,
        heard: Arc<Mutex<Heard>>,
        die_after: Option<usize>,
    ) -> SyslogReceiver {
        let (stop, _) = watch::channel(false);
        let listener = rt.block_on(bind(addr));
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
        let (stop_tx, mut stop_rx) = (stop.clone(), stop.subscribe());
        rt.spawn(async move {
            let budget = Arc::new(Mutex::new(die_after));
            loop {
                let (tcp, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
                    _ = stop_rx.changed() => return,
                };
                let (acceptor, heard, budget) = (acceptor.clone(), heard.clone(), budget.clone());
                let (stop_tx, mut stop) = (stop_tx.clone(), stop_tx.subscribe());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = tokio::select! {
                            r = tls.read(&mut chunk) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
                            _ = stop.changed() => return, // dropped: unread data is lost
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        // Octet-counted frames: MSG-LEN SP SYSLOG-MSG.
                        while let Some(sp) = buf.iter().position(|&b| b == b' ') {
                            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
                            if buf.len() < sp + 1 + len {
                                break;
                            }
                            let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap();
                            buf.drain(..sp + 1 + len);
                            heard.lock().unwrap().messages.push(msg);
                            let mut b = budget.lock().unwrap();
                            if let Some(left) = b.as_mut() {
                                *left = left.saturating_sub(1);
                                if *left == 0 {
                                    // Dies with whatever else it was sent unread.
                                    let _ = stop_tx.send(true);
                                    return;
                                }
                            }
                        }
                    }
                    // The sender closed (close_notify, FIN): close our side too.
                    let _ = tls.shutdown().await;
                });
            }
        });
        SyslogReceiver { stop }
    }

    fn stop(self) {
        let _ = self.stop.send(true);
    }
}

/// Binds `addr`, waiting for the previous life's listener (stopped a moment ago) to let go.
async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot listen on {addr}: {e}"),
        }
    }
}

// --- A FHIR server that takes batch Bundles of PUTs, from the FHIR R4 spec -----------------

#[derive(Default)]
struct Arr {
    resources: BTreeMap<String, serde_json::Value>,
    puts: BTreeMap<String, usize>,
}

struct FhirServer {
    stop: watch::Sender<bool>,
}

impl FhirServer {
    fn start(
        rt: &tokio::runtime::Runtime,
        addr: SocketAddr,
        pki: &TestPki,
        arr: Arc<Mutex<Arr>>,
    ) -> FhirServer {
        let (stop, _) = watch::channel(false);
        let listener = rt.block_on(bind(addr));
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
        let mut stop_rx = stop.subscribe();
        let stop_tx = stop.clone();
        rt.spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
                    _ = stop_rx.changed() => return,
                };
                let (acceptor, arr) = (acceptor.clone(), arr.clone());
                let mut stop = stop_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| take(arr.clone(), req));
                    tokio::select! {
                        _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), svc) => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        });
        FhirServer { stop }
    }

    fn stop(self) {
        let _ = self.stop.send(true);
    }
}

async fn take(
    arr: Arc<Mutex<Arr>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    assert_eq!(req.method(), hyper::Method::POST);
    assert_eq!(req.uri().path(), "/fhir");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let bundle: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(bundle["type"], "batch");
    let mut answers = Vec::new();
    let mut a = arr.lock().unwrap();
    for e in bundle["entry"].as_array().unwrap() {
        assert_eq!(e["request"]["method"], "PUT");
        let url = e["request"]["url"].as_str().unwrap();
        let id = url.strip_prefix("AuditEvent/").unwrap().to_string();
        assert_eq!(e["resource"]["id"], id.as_str());
        let fresh = a
            .resources
            .insert(id.clone(), e["resource"].clone())
            .is_none();
        *a.puts.entry(id).or_default() += 1;
        answers.push(serde_json::json!({"response": {"status": if fresh { "201 Created" } else { "200 OK" }}}));
    }
    let out =
        serde_json::json!({"resourceType": "Bundle", "type": "batch-response", "entry": answers});
    Ok(hyper::Response::builder()
        .header("content-type", "application/fhir+json")
        .body(Full::new(Bytes::from(out.to_string())))
        .unwrap())
}

// --- The rig ---------------------------------------------------------------------------------

struct Rig {
    rt: tokio::runtime::Runtime,
    pki: TestPki,
    files: tempfile::TempDir,
    syslog: SocketAddr,
    fhir: SocketAddr,
    heard: Arc<Mutex<Heard>>,
    arr: Arc<Mutex<Arr>>,
}

impl Rig {
    fn new() -> Rig {
        let files = tempfile::tempdir().unwrap();
        let pki = TestPki::new();
        std::fs::write(files.path().join("receivers-ca.pem"), &pki.ca_pem).unwrap();
        Rig {
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            pki,
            files,
            syslog: SocketAddr::from(([127, 0, 0, 1], free_port())),
            fhir: SocketAddr::from(([127, 0, 0, 1], free_port())),
            heard: Arc::default(),
            arr: Arc::default(),
        }
    }

    fn jsonl(&self) -> PathBuf {
        self.files.path().join("audit.jsonl")
    }

    fn ndjson(&self) -> PathBuf {
        self.files.path().join("audit-events.ndjson")
    }

    fn options(&self) -> Options {
        let mut o = Options::default();
        o.replace
            .push(("export_poll_ms = 1000", "export_poll_ms = 100"));
        o.replace
            .push(("export_confirm_ms = 2000", "export_confirm_ms = 300"));
        let ca = self.files.path().join("receivers-ca.pem");
        o.extra_config.push_str(&format!(
            r#"
[[audit.export]]
name = "siem"
format = "atna"
syslog = "localhost:{}"
ca_file = "{}"

[[audit.export]]
name = "arr"
format = "fhir"
url = "https://localhost:{}/fhir"
ca_file = "{}"

[[audit.export]]
name = "archive"
format = "jsonl"
file = "{}"

[[audit.export]]
name = "fhir-archive"
format = "fhir"
file = "{}"
"#,
            self.syslog.port(),
            ca.display(),
            self.fhir.port(),
            ca.display(),
            self.jsonl().display(),
            self.ndjson().display(),
        ));
        o
    }

    fn syslog_receiver(&self, die_after: Option<usize>) -> SyslogReceiver {
        SyslogReceiver::start(
            &self.rt,
            self.syslog,
            &self.pki,
            self.heard.clone(),
            die_after,
        )
    }

    fn fhir_server(&self) -> FhirServer {
        FhirServer::start(&self.rt, self.fhir, &self.pki, self.arr.clone())
    }

    fn fhir_indexes(&self) -> BTreeSet<u64> {
        let a = self.arr.lock().unwrap();
        a.resources
            .keys()
            .map(|id| id.rsplit('-').next().unwrap().parse().unwrap())
            .collect()
    }

    fn jsonl_indexes(&self) -> Vec<u64> {
        std::fs::read_to_string(self.jsonl())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["idx"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    /// Waits until every destination has every record of the log (0..size).
    fn wait_all(&self, g: &Gateway) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let size = tree_size(g);
            let syslog: BTreeSet<u64> = self.heard.lock().unwrap().indexes().into_iter().collect();
            let fhir = self.fhir_indexes();
            let jsonl = self.jsonl_indexes();
            let all = |s: &BTreeSet<u64>| (0..size).all(|i| s.contains(&i));
            if all(&syslog) && all(&fhir) && jsonl.len() as u64 >= size {
                assert_eq!(
                    jsonl,
                    (0..jsonl.len() as u64).collect::<Vec<_>>(),
                    "the file: in order, once"
                );
                return size;
            }
            assert!(
                Instant::now() < deadline,
                "not everything arrived: size {size}, syslog {}, fhir {}, file {}",
                syslog.len(),
                fhir.len(),
                jsonl.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tree_size(g: &Gateway) -> u64 {
    g.sql_rows("SELECT tree_size FROM audit_head")[0][0]
        .parse()
        .unwrap()
}

fn metric(g: &Gateway, name: &str, destination: &str) -> Option<f64> {
    let (_, text) = g.mgmt_get("/metrics")?;
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("destination=\"{destination}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn requests(g: &Gateway, n: usize) {
    for i in 0..n {
        let (status, _, _) = g.curl_t1("/debug/headers", &[]);
        assert_eq!(
            status, 200,
            "request {i}: an export never holds a request up"
        );
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every ATNA message as its own file; xmllint against IHE's schema (all) and DICOM's (those
/// without IHE's PurposeOfUse).
fn validate_atna(messages: &[String], dir: &Path) {
    let (mut all, mut plain) = (Vec::new(), Vec::new());
    for (i, m) in messages.iter().enumerate() {
        // RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD BOM MSG, facility 10.
        let (header, xml) = m.split_once('\u{FEFF}').expect("a BOM before the message");
        let f: Vec<&str> = header.splitn(7, ' ').collect();
        assert!(f[0] == "<85>1" || f[0] == "<84>1", "{header}");
        assert_eq!(
            (f[2], f[3], f[4], f[5]),
            ("gw-export", "sekisho", "-", "IHE+RFC-3881"),
            "{header}"
        );
        assert!(f[6].starts_with("[meta sequenceId=\""), "{header}");
        let p = dir.join(format!("{i}.xml"));
        std::fs::write(&p, xml).unwrap();
        if !xml.contains("<PurposeOfUse") {
            plain.push(p.clone());
        }
        all.push(p);
    }
    let schemas = root().join("crates/export/schemas");
    for (flag, schema, files) in [
        ("--schema", schemas.join("dicom-audit-ihe.xsd"), &all),
        ("--relaxng", schemas.join("dicom-audit.rng"), &plain),
    ] {
        let out = Command::new("xmllint")
            .arg("--noout")
            .arg(flag)
            .arg(&schema)
            .args(files.iter())
            .output()
            .expect("xmllint runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn validate_fhir(resources: Vec<serde_json::Value>, dir: &Path) {
    let schema = Command::new("sh")
        .arg(root().join("tests/tools/fhir-schema.sh"))
        .arg(root().join("target/fhir-schema"))
        .output()
        .unwrap();
    assert!(
        schema.status.success(),
        "{}",
        String::from_utf8_lossy(&schema.stderr)
    );
    let f = dir.join("events.ndjson");
    std::fs::write(
        &f,
        resources
            .iter()
            .map(|r| format!("{r}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = Command::new("python3")
        .arg(root().join("tests/tools/fhir_validate.py"))
        .arg("--schema")
        .arg(String::from_utf8(schema.stdout).unwrap().trim())
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn every_destination_gets_every_record_validated_after_outages_crashes_and_restarts() {
    for db in BOTH {
        let rig = Rig::new();
        let syslog = rig.syslog_receiver(None);
        let fhir = rig.fhir_server();
        let mut opts = rig.options();
        opts.replace
            .push(("node = \"localhost\"", "node = \"gw-export\""));
        let mut g = Gateway::start_with(db, opts);

        // Allowed, refused, about a patient, and a path full of what XML and JSON escape.
        requests(&g, 3);
        assert_eq!(g.curl_t1("/nope", &[]).0, 403);
        assert_eq!(g.curl_t1("/api/patients/P-0001/summary", &[]).0, 401);
        assert_eq!(g.curl_t1("/nope/%3Cx%3E%22%26%5D%5D%3E", &[]).0, 403);
        let size = rig.wait_all(&g);
        assert!(size >= 7, "{db:?}: {size}");
        let dir = tempfile::tempdir().unwrap();
        validate_atna(&rig.heard.lock().unwrap().messages, dir.path());
        validate_fhir(
            rig.arr
                .lock()
                .unwrap()
                .resources
                .values()
                .cloned()
                .collect(),
            dir.path(),
        );
        // The NDJSON file: the same events, valid, once each, in order.
        let deadline = Instant::now() + Duration::from_secs(10);
        let events: Vec<serde_json::Value> = loop {
            let events: Vec<serde_json::Value> = std::fs::read_to_string(rig.ndjson())
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if events.len() as u64 >= size || Instant::now() > deadline {
                break events;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let order: Vec<u64> = events
            .iter()
            .map(|e| {
                e["id"]
                    .as_str()
                    .unwrap()
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(order, (0..order.len() as u64).collect::<Vec<_>>(), "{db:?}");
        assert!(
            order.len() as u64 >= size,
            "{db:?}: {} of {size}",
            order.len()
        );
        validate_fhir(events, dir.path());
        let patient_event = rig
            .arr
            .lock()
            .unwrap()
            .resources
            .values()
            .find(|r| r["entity"][0]["what"]["identifier"]["value"] == "P-0001")
            .cloned()
            .expect("the patient's refusal, as an AuditEvent");
        assert_eq!(patient_event["outcome"], "4");
        // Syslog's cursor moves once messages are confirmed (300 ms here).
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(&g, "sekisho_audit_export_lag_records", "siem") != Some(0.0) {
            assert!(Instant::now() < deadline, "{db:?}: the syslog lag stays");
            std::thread::sleep(Duration::from_millis(50));
        }

        // Both receivers down: requests go on; the lag shows; all arrives once they are back,
        // nothing twice.
        syslog.stop();
        fhir.stop();
        requests(&g, 5);
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(&g, "sekisho_audit_export_lag_records", "arr").unwrap_or(0.0) < 5.0 {
            assert!(Instant::now() < deadline, "{db:?}: the lag never showed");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(metric(&g, "sekisho_audit_export_failures", "arr").unwrap_or(0.0) >= 1.0);
        let syslog = rig.syslog_receiver(None);
        let fhir = rig.fhir_server();
        rig.wait_all(&g);
        assert!(
            rig.arr.lock().unwrap().puts.values().all(|&n| n == 1),
            "{db:?}: a FHIR event sent twice"
        );
        let heard = rig.heard.lock().unwrap().indexes();
        assert_eq!(
            heard.len(),
            heard.iter().collect::<BTreeSet<_>>().len(),
            "{db:?}: a syslog message sent twice: {heard:?}"
        );

        // The syslog receiver dies with messages unread: they come again; none is missed.
        syslog.stop();
        let before = rig.heard.lock().unwrap().messages.len();
        let dying = rig.syslog_receiver(Some(2));
        requests(&g, 10);
        let deadline = Instant::now() + Duration::from_secs(10);
        while rig.heard.lock().unwrap().messages.len() < before + 2 {
            assert!(
                Instant::now() < deadline,
                "{db:?}: the dying receiver heard nothing"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(dying);
        std::thread::sleep(Duration::from_millis(300));
        let syslog = rig.syslog_receiver(None);
        let size = rig.wait_all(&g);
        let heard = rig.heard.lock().unwrap().indexes();
        assert_eq!(
            heard.iter().collect::<BTreeSet<_>>().len() as u64,
            size,
            "{db:?}"
        );

        // A restart: the gateway closes the connection in order; nothing is repeated.
        let repeated = heard.len();
        g.stop();
        g.serve();
        requests(&g, 2);
        let size = rig.wait_all(&g);
        let heard = rig.heard.lock().unwrap().indexes();
        assert_eq!(
            heard.len() - repeated,
            heard[repeated..].iter().collect::<BTreeSet<_>>().len(),
            "{db:?}: repeated after a restart"
        );
        assert!(
            heard[repeated..]
                .iter()
                .all(|i| !heard[..repeated].contains(i)),
            "{db:?}"
        );
        assert_eq!(heard.iter().collect::<BTreeSet<_>>().len() as u64, size);
        assert!(
            rig.arr.lock().unwrap().puts.values().all(|&n| n == 1),
            "{db:?}"
        );
        let status = within_a_poll(
            || run_ok(&["audit", "export", "status", "--data-dir", g.data_str()]),
            |s| s.matches("behind by 0").count() == 4,
        );
        for d in ["siem", "arr", "archive", "fhir-archive"] {
            assert!(status.contains(&format!("{d}  (")), "{db:?}: {status}");
        }
        assert_eq!(status.matches("behind by 0").count(), 4, "{db:?}: {status}");
        // An operator sends the whole log to the FHIR server again: each event replaces itself.
        let out = run_ok(&[
            "audit",
            "export",
            "reset",
            "--data-dir",
            g.data_str(),
            "--destination",
            "arr",
            "--to",
            "0",
        ]);
        assert!(out.contains("→ 0"), "{out}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !rig.arr.lock().unwrap().puts.values().all(|&n| n >= 2) {
            assert!(Instant::now() < deadline, "{db:?}: not sent again");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            rig.fhir_indexes().len() as u64,
            tree_size(&g),
            "{db:?}: the same events, once each"
        );
        g.wait_audit(|r| {
            r["action"] == "audit_export_reset"
                && r["actor"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(TEST_OPERATOR))
        });
        let bad = run(&[
            "audit",
            "export",
            "reset",
            "--data-dir",
            g.data_str(),
            "--destination",
            "nope",
            "--to",
            "0",
        ]);
        assert!(!bad.status.success());
        syslog.stop();
        fhir.stop();
    }
}

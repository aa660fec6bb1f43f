//! How fast the export drains the log: a log of N records (default 100,000) filled first, then
//! one destination at a time exported from the beginning — a JSON lines file, a FHIR NDJSON
//! file, and ATNA over TLS syslog to a receiver in this process — timed until its cursor
//! reaches the end. Also the cost of rendering one record in each form, on one core. Prints
//! figures; asserts nothing about speed.
//!
//! `cargo bench -p sekisho-export --bench export` (SQLite; PostgreSQL too when
//! `SEKISHO_TEST_PG_URL` or the default local server answers). `SEKISHO_BENCH_RECORDS` sets N.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sekisho_audit::{
    AuditConfig, AuditLog, AuditMetrics, AuditRecord, CheckpointKey, Decision, Event,
};
use sekisho_export::{
    Destination, ExportMetrics, ExportPump, Format, Identity, PumpConfig, Sink, Start, SyslogSink,
    SyslogTarget, atna, fhir, source,
};
use sekisho_store::testdb::TestDb;
use tokio::io::AsyncReadExt;

fn record(i: usize) -> AuditRecord {
    AuditRecord {
        request_id: format!("{i:032x}"),
        event: if i.is_multiple_of(2) {
            Event::Request
        } else {
            Event::Outcome
        },
        peer: Some("192.0.2.10:51234".into()),
        terminal: Some(format!("t-{:04}", i % 500)),
        facility: Some(format!("f-{:03}", i % 200)),
        user: Some(format!("u{:05}", i % 3000)),
        qualification: Some("physician".into()),
        patient: Some(format!("P-{:07}", i % 100_000)),
        method: Some("GET".into()),
        route: Some("patient-records".into()),
        path: Some(format!("/api/patients/P-{:07}/records", i % 100_000)),
        action: Some("view".into()),
        decision: if i.is_multiple_of(10) {
            Decision::Deny
        } else {
            Decision::Permit
        },
        reason: if i.is_multiple_of(10) {
            "no_consent"
        } else {
            "ok"
        }
        .into(),
        upstream_status: (i % 2 == 1).then_some(200),
        ..Default::default()
    }
}

/// A TLS syslog receiver that reads and counts octet-counted frames.
async fn receiver() -> (u16, String, Arc<std::sync::atomic::AtomicU64>) {
    use rcgen::{CertificateParams, KeyPair};
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, c) = (acceptor.clone(), c.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 65536];
                while let Ok(n) = tls.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let mut at = 0;
                    while let Some(sp) = buf[at..].iter().position(|&b| b == b' ') {
                        let len: usize = std::str::from_utf8(&buf[at..at + sp])
                            .unwrap()
                            .parse()
                            .unwrap();
                        if buf.len() < at + sp + 1 + len {
                            break;
                        }
                        at += sp + 1 + len;
                        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    buf.drain(..at);
                }
            });
        }
    });
    (port, cert.pem(), count)
}

async fn drain(store: &sekisho_store::Store, log: &AuditLog, d: Destination, n: u64) -> Duration {
    let name = d.name.clone();
    let t = Instant::now();
    let pump = ExportPump::start(
        store.clone(),
        Identity::new("bench", "gw1", "sekisho.bench/audit", None),
        log.checkpoints(),
        vec![d],
        PumpConfig {
            poll: Duration::from_millis(20),
            confirm_after: Duration::from_millis(200),
            ..PumpConfig::default()
        },
        ExportMetrics::default(),
    );
    loop {
        let c = sekisho_store::export_cursors::list(store).await.unwrap();
        if c.iter().any(|c| c.destination == name && c.next_idx >= n) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t.elapsed();
    pump.stop(Duration::from_secs(5)).await;
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("SEKISHO_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(100_000);

    // Rendering, one core.
    let id = Identity::new(
        "bench",
        "gw1",
        "sekisho.bench/audit",
        Some("1.2.392.100".into()),
    );
    let recs: Vec<AuditRecord> = (0..10_000).map(record).collect();
    for (form, f) in [
        (
            "atna",
            &(|r: &AuditRecord, _i| atna::message(r, &id).len())
                as &dyn Fn(&AuditRecord, u64) -> usize,
        ),
        ("fhir", &|r: &AuditRecord, i| {
            fhir::audit_event(r, i, &id).to_string().len()
        }),
    ] {
        let t = Instant::now();
        let bytes: usize = recs.iter().enumerate().map(|(i, r)| f(r, i as u64)).sum();
        let per = t.elapsed() / recs.len() as u32;
        println!(
            "render {form}: {:.1} µs per record, {} bytes on average",
            per.as_secs_f64() * 1e6,
            bytes / recs.len()
        );
    }

    for db in TestDb::both().await {
        let kind = format!("{:?}", db.store.kind());
        let key = CheckpointKey::generate("sekisho.bench/audit").unwrap();
        let log = AuditLog::open(
            db.store.clone(),
            key,
            AuditConfig {
                origin: "sekisho.bench/audit".into(),
                ..Default::default()
            },
            AuditMetrics::new(),
        )
        .await
        .unwrap();
        let t = Instant::now();
        let mut pending = Vec::with_capacity(4096);
        for i in 0..n {
            pending.push(log.submit(record(i)));
            if pending.len() == 4096 {
                for p in pending.drain(..) {
                    p.await.unwrap();
                }
            }
        }
        for p in pending.drain(..) {
            p.await.unwrap();
        }
        println!(
            "{kind}: {n} records filled in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        assert_eq!(source::size(&db.store).await.unwrap(), n as u64);
        let dir = tempfile::tempdir().unwrap();
        let (port, ca, heard) = receiver().await;
        let dests = vec![
            (
                "jsonl file",
                Destination {
                    name: "jsonl".into(),
                    format: Format::Jsonl,
                    sink: Sink::file(dir.path().join("a.jsonl"), Format::Jsonl),
                    start: Start::Beginning,
                },
            ),
            (
                "fhir ndjson file",
                Destination {
                    name: "fhir".into(),
                    format: Format::Fhir,
                    sink: Sink::file(dir.path().join("a.ndjson"), Format::Fhir),
                    start: Start::Beginning,
                },
            ),
            (
                "atna tls syslog",
                Destination {
                    name: "atna".into(),
                    format: Format::Atna,
                    sink: Sink::syslog(
                        SyslogSink::new(
                            "gw1",
                            SyslogTarget {
                                address: &format!("localhost:{port}"),
                                ca_pem: ca.as_bytes(),
                                client: None,
                            },
                            Duration::from_secs(10),
                            Duration::from_millis(200),
                        )
                        .unwrap(),
                    ),
                    start: Start::Beginning,
                },
            ),
        ];
        for (what, d) in dests {
            let took = drain(&db.store, &log, d, n as u64).await;
            println!(
                "{kind}: {what}: {n} records in {:.2} s = {:.0} records/s",
                took.as_secs_f64(),
                n as f64 / took.as_secs_f64()
            );
        }
        println!(
            "{kind}: syslog receiver read {} messages",
            heard.load(std::sync::atomic::Ordering::Relaxed)
        );
        log.shutdown().await;
    }
}

//! The pump on real stores (SQLite and PostgreSQL) with the writer appending: a JSON lines
//! file gets every record once, in order, with hashes that check; two replicas never both
//! export; a stop and a start, or a cursor update lost in a crash, repeat nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};
use sekisho_audit::{AuditConfig, AuditLog, AuditMetrics, AuditRecord, CheckpointKey, Event};
use sekisho_store::Store;
use sekisho_store::testdb::TestDb;

use crate::{Destination, ExportMetrics, ExportPump, Format, Identity, PumpConfig, Sink, Start};

async fn open_log(store: &Store, node: &str) -> AuditLog {
    let key = CheckpointKey::generate("sekisho.test/audit").unwrap();
    AuditLog::open(
        store.clone(),
        key,
        AuditConfig {
            node: node.into(),
            origin: "sekisho.test/audit".into(),
            ..Default::default()
        },
        AuditMetrics::new(),
    )
    .await
    .unwrap()
}

fn record(i: usize) -> AuditRecord {
    AuditRecord {
        request_id: format!("r{i}"),
        event: Event::Request,
        patient: Some(format!("P{}", i % 7)),
        method: Some("GET".into()),
        reason: "ok".into(),
        decision: sekisho_audit::Decision::Permit,
        ..Default::default()
    }
}

fn pump(store: &Store, log: &AuditLog, node: &str, file: &Path) -> ExportPump {
    ExportPump::start(
        store.clone(),
        Identity::new("net", node, "sekisho.test/audit", None),
        log.checkpoints(),
        vec![Destination {
            name: "archive".into(),
            format: Format::Jsonl,
            sink: Sink::file(file.to_path_buf(), Format::Jsonl),
            start: Start::Beginning,
        }],
        PumpConfig {
            poll: Duration::from_millis(50),
            lease: Duration::from_secs(3),
            batch: 7,
            confirm_after: Duration::ZERO,
        },
        ExportMetrics::default(),
    )
}

/// The file's lines' leaf indexes, each line's hash checked against its record's bytes.
fn indexes(file: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            // The record's exact bytes, as embedded: between `"record":` and the final `}`.
            let raw = &l[l.find(r#""record":"#).unwrap() + 9..l.len() - 1];
            let mut leaf = vec![0u8];
            leaf.extend_from_slice(raw.as_bytes());
            assert_eq!(
                v["leaf_hash"].as_str().unwrap(),
                hex::encode(digest(&SHA256, &leaf)),
                "{l}"
            );
            assert_eq!(v["log"], "sekisho.test/audit");
            v["idx"].as_u64().unwrap()
        })
        .collect()
}

async fn wait_for(file: &Path, n: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = indexes(file);
        if got.len() as u64 >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} of {n} lines", got.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_the_file_once_in_order_across_replicas_stops_and_crashes() {
    for db in TestDb::both().await {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let log = open_log(&db.store, "gw1").await;
        // Two replicas on one store and one (shared) file: only the lease holder writes.
        let p1 = pump(&db.store, &log, "gw1", &file);
        let p2 = pump(&db.store, &log, "gw2", &file);
        for i in 0..40 {
            log.append(record(i)).await.unwrap();
        }
        let got = wait_for(&file, 40).await;
        assert_eq!(got, (0..40).collect::<Vec<_>>(), "{:?}", db.store.kind());
        // The holder stops; the other takes over where it stopped.
        p1.stop(Duration::from_secs(5)).await;
        for i in 40..60 {
            log.append(record(i)).await.unwrap();
        }
        assert_eq!(wait_for(&file, 60).await, (0..60).collect::<Vec<_>>());
        p2.stop(Duration::from_secs(5)).await;

        // A crash took the cursor's last update with it: the file says where it is.
        sekisho_store::export_cursors::set(&db.store, "archive", 50)
            .await
            .unwrap();
        for i in 60..65 {
            log.append(record(i)).await.unwrap();
        }
        let p3 = pump(&db.store, &log, "gw3", &file);
        assert_eq!(wait_for(&file, 65).await, (0..65).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(indexes(&file).len(), 65, "nothing repeated");
        p3.stop(Duration::from_secs(5)).await;
        let cursors = sekisho_store::export_cursors::list(&db.store)
            .await
            .unwrap();
        assert_eq!(cursors[0].next_idx, 65);
        assert_eq!(
            cursors[0].holder, None,
            "a stopped replica gives its lease up"
        );
        log.shutdown().await;
    }
}

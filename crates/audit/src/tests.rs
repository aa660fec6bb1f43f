//! Audit log tests: each runs on SQLite and on PostgreSQL.
//!
//! Multi-threaded runtimes: `TestDb`'s drop closes the PostgreSQL pool from a thread of its
//! own while this runtime's thread waits for it, so another worker must keep driving the
//! pool's sockets.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sqlx::Row;

use super::merkle::leaf_hash;
use super::*;
use sekisho_store::testdb::TestDb;
use sekisho_store::{DbKind, Store};

pub(crate) const ORIGIN: &str = "sekisho.test/audit";

fn config(node: &str, max_batch: usize) -> AuditConfig {
    AuditConfig {
        max_batch,
        max_wait: Duration::from_millis(1),
        node: node.into(),
        origin: ORIGIN.into(),
        journal: None,
    }
}

pub(crate) fn record(n: u64) -> AuditRecord {
    AuditRecord {
        request_id: format!("req-{n}"),
        event: crate::Event::Request,
        peer: Some("192.0.2.10:50000".into()),
        terminal: Some("T0001".into()),
        facility: Some("F001".into()),
        user: Some("D000123456".into()),
        qualification: Some("Medical Doctor".into()),
        patient: Some(format!("P{:05}", n % 97)),
        method: Some("GET".into()),
        route: Some("/api/patients/{id}".into()),
        action: Some("view".into()),
        decision: if n.is_multiple_of(5) {
            crate::Decision::Deny
        } else {
            crate::Decision::Permit
        },
        reason: if n.is_multiple_of(5) {
            "no_consent".into()
        } else {
            "ok".into()
        },
        purpose_of_use: Some("TREAT".into()),
        ..Default::default()
    }
}

pub(crate) async fn open_log(
    store: &Store,
    key: &CheckpointKey,
    node: &str,
    max_batch: usize,
) -> (AuditLog, AuditMetrics) {
    let metrics = AuditMetrics::new();
    let log = AuditLog::open(
        store.clone(),
        key.clone(),
        config(node, max_batch),
        metrics.clone(),
    )
    .await
    .unwrap();
    (log, metrics)
}

pub(crate) fn key() -> CheckpointKey {
    CheckpointKey::generate(ORIGIN).unwrap()
}

pub(crate) async fn checkpoint_sizes(store: &Store) -> Vec<u64> {
    let sizes: Vec<i64> =
        sqlx::query_scalar("SELECT tree_size FROM audit_checkpoints ORDER BY tree_size")
            .fetch_all(store.pool())
            .await
            .unwrap();
    sizes.into_iter().map(|s| s as u64).collect()
}

/// The index range a problem names: `record 7: …` → (7, 7), `records 3-9: …` → (3, 9).
fn problem_span(p: &str) -> Option<(u64, u64)> {
    let (head, _) = p.split_once(':')?;
    if let Some(n) = head.strip_prefix("record ") {
        let n = n.parse().ok()?;
        return Some((n, n));
    }
    let (a, b) = head.strip_prefix("records ")?.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The problem that names exactly `span` and says `what`.
fn find<'a>(report: &'a VerifyReport, span: (u64, u64), what: &str) -> Option<&'a String> {
    report
        .problems
        .iter()
        .find(|p| problem_span(p) == Some(span) && p.contains(what))
}

/// The range between the two checkpoints around record `k`: (previous size, next size - 1).
fn batch_of(sizes: &[u64], k: u64) -> (u64, u64) {
    let prev = sizes.iter().copied().filter(|&s| s <= k).max().unwrap_or(0);
    let next = sizes.iter().copied().find(|&s| s > k).unwrap();
    (prev, next - 1)
}

/// Appends `n` records in waves of `wave` concurrent appends (so batches hold several records).
pub(crate) async fn fill(log: &AuditLog, n: u64, wave: u64) {
    let mut i = 0;
    while i < n {
        let mut tasks = Vec::new();
        for j in i..(i + wave).min(n) {
            let log = log.clone();
            tasks.push(tokio::spawn(
                async move { log.append(record(j)).await.unwrap() },
            ));
        }
        for t in tasks {
            t.await.unwrap();
        }
        i += wave;
    }
}

async fn verify_clean(store: &Store, vkey: &str, records: u64) {
    let report = verify(store, vkey).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.problems);
    assert_eq!(report.records, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_group_committed() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let key = key();
        let (log, metrics) = open_log(&db.store, &key, "gw1", 512).await;
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for n in (t..2000).step_by(64) {
                    got.push(log.append(record(n)).await.unwrap());
                }
                got
            }));
        }
        let mut indexes = Vec::new();
        for t in tasks {
            indexes.extend(t.await.unwrap());
        }
        indexes.sort_unstable();
        assert_eq!(indexes, (0..2000).collect::<Vec<u64>>(), "{kind:?}");

        let batches = checkpoint_sizes(&db.store).await;
        assert_eq!(*batches.last().unwrap(), 2000);
        assert!(
            batches.len() < 500,
            "{kind:?}: {} batches for 2000 records",
            batches.len()
        );
        assert_eq!(metrics.records.get(), 2000);
        assert_eq!(metrics.failures.get(), 0);

        // Every stored record is the canonical JSON of what was appended, with time and node.
        let row = sqlx::query("SELECT record, node, request_id FROM audit_records WHERE idx = 0")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
        let stored: AuditRecord = serde_json::from_str(&row.get::<String, _>(0)).unwrap();
        assert_eq!(stored.node, "gw1");
        assert_eq!(row.get::<String, _>(1), "gw1");
        assert_eq!(row.get::<String, _>(2), stored.request_id);
        assert!(
            stored.time.ends_with('Z') && stored.time.len() == 24,
            "{}",
            stored.time
        );

        log.shutdown().await;
        let report = verify(&db.store, &key.verifier_key()).await.unwrap();
        assert!(report.is_clean(), "{kind:?}: {:#?}", report.problems);
        assert_eq!(report.records, 2000);
        assert_eq!(report.checkpoints, batches.len() as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_log() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        // A second pool on the same database, as another gateway process would have.
        let other = Store::open(&db.url).await.unwrap();
        let key_a = key();
        let key_b = key();
        let (a, _) = open_log(&db.store, &key_a, "gw-a", 64).await;
        let (b, _) = open_log(&other, &key_b, "gw-b", 64).await;
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let log = if t.is_multiple_of(2) {
                a.clone()
            } else {
                b.clone()
            };
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for n in (t..1000).step_by(32) {
                    got.push(log.append(record(n)).await.unwrap());
                }
                got
            }));
        }
        let mut indexes = Vec::new();
        for t in tasks {
            indexes.extend(t.await.unwrap());
        }
        indexes.sort_unstable();
        assert_eq!(indexes, (0..1000).collect::<Vec<u64>>(), "{kind:?}");
        a.shutdown().await;
        b.shutdown().await;

        let nodes: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT node FROM audit_checkpoints ORDER BY node")
                .fetch_all(db.store.pool())
                .await
                .unwrap();
        assert_eq!(
            nodes,
            ["gw-a", "gw-b"],
            "{kind:?}: both replicas wrote batches"
        );

        // Both replicas' keys: clean. One key only: the other's checkpoints do not verify.
        let both = format!("{}\n{}", key_a.verifier_key(), key_b.verifier_key());
        verify_clean(&db.store, &both, 1000).await;
        let only_a = verify(&db.store, &key_a.verifier_key()).await.unwrap();
        assert!(
            only_a.problems.iter().any(|p| p.contains("bad signature")),
            "{kind:?}: {:#?}",
            only_a.problems
        );
        other.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_found() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let pool = db.store.pool();
        let key = key();
        let vkey = key.verifier_key();
        let (log, _) = open_log(&db.store, &key, "gw1", 8).await;
        fill(&log, 100, 20).await;
        log.shutdown().await;
        let sizes = checkpoint_sizes(&db.store).await;
        assert!(
            sizes.len() >= 13,
            "{kind:?}: batches of at most 8 records: {sizes:?}"
        );
        verify_clean(&db.store, &vkey, 100).await;

        let get = |k: i64| async move {
            let row = sqlx::query("SELECT record, leaf_hash FROM audit_records WHERE idx = $1")
                .bind(k)
                .fetch_one(pool)
                .await
                .unwrap();
            (row.get::<String, _>(0), row.get::<Vec<u8>, _>(1))
        };
        let set = |k: i64, rec: String, leaf: Vec<u8>| async move {
            sqlx::query("UPDATE audit_records SET record = $1, leaf_hash = $2 WHERE idx = $3")
                .bind(rec)
                .bind(leaf)
                .bind(k)
                .execute(pool)
                .await
                .unwrap();
        };

        // 1. A record's JSON changed, its leaf hash left: the record itself is named.
        let (orig, orig_leaf) = get(37).await;
        let forged = orig.replace("\"reason\":\"", "\"reason\":\"edited_");
        assert_ne!(forged, orig);
        set(37, forged.clone(), orig_leaf.clone()).await;
        let r = verify(&db.store, &vkey).await.unwrap();
        assert!(
            find(&r, (37, 37), "changed").is_some(),
            "{kind:?}: {:#?}",
            r.problems
        );
        assert!(
            find(&r, batch_of(&sizes, 37), "changed, inserted or removed").is_some(),
            "{kind:?}: {:#?}",
            r.problems
        );

        // 2. Changed and its leaf hash recomputed: only the checkpoint root shows it, and the
        //    problem names the records between the two checkpoints around it.
        set(37, forged.clone(), leaf_hash(forged.as_bytes()).to_vec()).await;
        let r = verify(&db.store, &vkey).await.unwrap();
        assert!(
            find(&r, (37, 37), "").is_none(),
            "{kind:?}: {:#?}",
            r.problems
        );
        assert!(
            find(&r, batch_of(&sizes, 37), "changed, inserted or removed").is_some(),
            "{kind:?}: {:#?}",
            r.problems
        );
        set(37, orig, orig_leaf).await;
        verify_clean(&db.store, &vkey, 100).await;

        // 3. A record removed.
        let row = sqlx::query("SELECT idx, leaf_hash, record, ts, request_id, event, decision, node FROM audit_records WHERE idx = 50")
            .fetch_one(pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_records WHERE idx = 50")
            .execute(pool)
            .await
            .unwrap();
        let r = verify(&db.store, &vkey).await.unwrap();
        assert!(
            find(&r, (50, 50), "removed").is_some(),
            "{kind:?}: {:#?}",
            r.problems
        );
        let restore = |row: sqlx::any::AnyRow| async move {
            sqlx::query("INSERT INTO audit_records (idx, leaf_hash, record, ts, request_id, event, decision, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(row.get::<i64, _>(0))
                .bind(row.get::<Vec<u8>, _>(1))
                .bind(row.get::<String, _>(2))
                .bind(row.get::<i64, _>(3))
                .bind(row.get::<String, _>(4))
                .bind(row.get::<String, _>(5))
                .bind(row.get::<String, _>(6))
                .bind(row.get::<String, _>(7))
                .execute(pool)
                .await
                .unwrap();
        };
        restore(row).await;
        verify_clean(&db.store, &vkey, 100).await;

        // The last record removed (and the head left alone).
        let row = sqlx::query("SELECT idx, leaf_hash, record, ts, request_id, event, decision, node FROM audit_records WHERE idx = 99")
            .fetch_one(pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_records WHERE idx = 99")
            .execute(pool)
            .await
            .unwrap();
        let r = verify(&db.store, &vkey).await.unwrap();
        assert!(
            find(&r, (99, 99), "removed").is_some(),
            "{kind:?}: {:#?}",
            r.problems
        );
        restore(row).await;
        verify_clean(&db.store, &vkey, 100).await;

        // 4. A record inserted at the end, with a correct leaf hash: not covered by a checkpoint.
        let extra = String::from_utf8(record(1000).canonical_json()).unwrap();
        let insert = |k: i64, rec: String| async move {
            sqlx::query("INSERT INTO audit_records (idx, leaf_hash, record, ts, request_id, event, decision, node) VALUES ($1, $2, $3, 0, 'x', 'request', 'permit', 'gw1')")
                .bind(k)
                .bind(leaf_hash(rec.as_bytes()).to_vec())
                .bind(rec)
                .execute(pool)
                .await
                .unwrap();
        };
        insert(100, extra.clone()).await;
        let r = verify(&db.store, &vkey).await.unwrap();
        assert!(
            find(&r, (100, 100), "unsigned tail").is_some(),
            "{kind:?}: {:#?}",
            r.problems
        );
        sqlx::query("DELETE FROM audit_records WHERE idx = 100")
            .execute(pool)
            .await
            .unwrap();
        verify_clean(&db.store, &vkey, 100).await;

        //    Inserted in the middle, later records renumbered: the root of the batch shows it.
        sqlx::query("UPDATE audit_records SET idx = -idx - 1 WHERE idx >= 60")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_records SET idx = -idx WHERE idx < 0")
            .execute(pool)
            .await
            .unwrap();
        insert(60, extra).await;
        let r = verify(&db.store, &vkey).await.unwrap();
        assert!(
            find(&r, batch_of(&sizes, 60), "changed, inserted or removed").is_some(),
            "{kind:?}: {:#?}",
            r.problems
        );
        assert!(
            find(&r, (100, 100), "unsigned tail").is_some(),
            "{kind:?}: {:#?}",
            r.problems
        );
        assert!(
            r.problems
                .iter()
                .all(|p| problem_span(p).is_none_or(|(_, b)| b >= 60)),
            "{kind:?}: {:#?}",
            r.problems
        );
        sqlx::query("DELETE FROM audit_records WHERE idx = 60")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_records SET idx = -idx + 1 WHERE idx > 60")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_records SET idx = -idx WHERE idx < 0")
            .execute(pool)
            .await
            .unwrap();
        verify_clean(&db.store, &vkey, 100).await;

        // 5. A checkpoint's signature corrupted.
        let n = sizes[sizes.len() / 2];
        let note: String =
            sqlx::query_scalar("SELECT note FROM audit_checkpoints WHERE tree_size = $1")
                .bind(n as i64)
                .fetch_one(pool)
                .await
                .unwrap();
        let sig_line = note.lines().last().unwrap();
        let (prefix, b64) = sig_line.rsplit_once(' ').unwrap();
        let mut sig = B64.decode(b64).unwrap();
        sig[20] ^= 0x01;
        let bad = note.replace(sig_line, &format!("{prefix} {}", B64.encode(&sig)));
        let set_note = |note: String| async move {
            sqlx::query("UPDATE audit_checkpoints SET note = $1 WHERE tree_size = $2")
                .bind(note)
                .bind(n as i64)
                .execute(pool)
                .await
                .unwrap();
        };
        set_note(bad).await;
        let r = verify(&db.store, &vkey).await.unwrap();
        let prev = sizes.iter().copied().filter(|&s| s < n).max().unwrap_or(0);
        assert!(
            find(&r, (prev, n - 1), "bad signature").is_some(),
            "{kind:?}: {:#?}",
            r.problems
        );
        assert_eq!(r.problems.len(), 1, "{kind:?}: {:#?}", r.problems);
        set_note(note).await;
        verify_clean(&db.store, &vkey, 100).await;

        // 6. The last checkpoint removed: the last batch is an unsigned tail.
        let last = *sizes.last().unwrap();
        sqlx::query("DELETE FROM audit_checkpoints WHERE tree_size = $1")
            .bind(last as i64)
            .execute(pool)
            .await
            .unwrap();
        let r = verify(&db.store, &vkey).await.unwrap();
        let prev = sizes[sizes.len() - 2];
        assert!(
            find(&r, (prev, last - 1), "unsigned tail").is_some(),
            "{kind:?}: {:#?}",
            r.problems
        );

        // A wrong verifier key: every checkpoint fails.
        let r = verify(&db.store, &self::key().verifier_key())
            .await
            .unwrap();
        assert!(
            r.problems
                .iter()
                .filter(|p| p.contains("bad signature"))
                .count()
                >= sizes.len() - 1
        );
    }
}

/// A trigger that makes the store refuse every audit record (it answers, but takes none).
async fn refuse_inserts(store: &Store) {
    match store.kind() {
        DbKind::Sqlite => sqlx::raw_sql(
            "CREATE TRIGGER audit_disabled BEFORE INSERT ON audit_records \
             BEGIN SELECT RAISE(ABORT, 'audit disabled'); END;",
        ),
        DbKind::Postgres => sqlx::raw_sql(
            "CREATE FUNCTION audit_disabled() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'audit disabled'; END $$; \
             CREATE TRIGGER audit_disabled BEFORE INSERT ON audit_records \
             FOR EACH ROW EXECUTE FUNCTION audit_disabled();",
        ),
    }
    .execute(store.pool())
    .await
    .unwrap();
}

/// Undoes [`refuse_inserts`].
async fn take_inserts(store: &Store) {
    match store.kind() {
        DbKind::Sqlite => sqlx::raw_sql("DROP TRIGGER audit_disabled"),
        DbKind::Postgres => sqlx::raw_sql("DROP TRIGGER audit_disabled ON audit_records"),
    }
    .execute(store.pool())
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_fails_its_appends_and_the_writer_goes_on() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let key = key();
        let (log, metrics) = open_log(&db.store, &key, "gw1", 512).await;
        fill(&log, 10, 5).await;
        refuse_inserts(&db.store).await;
        let err = log.append(record(10)).await.unwrap_err();
        assert!(
            matches!(&err, AuditError::Commit(m) if m.contains("audit disabled")),
            "{kind:?}: {err:?}"
        );
        // Several waiting appends in one failing batch all get the error.
        let mut tasks = Vec::new();
        for n in 11..20 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move { log.append(record(n)).await }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_err(), "{kind:?}");
        }
        log.append_nowait(record(20));
        assert!(log.append(record(21)).await.is_err());
        assert!(
            metrics.failures.get() >= 12,
            "{kind:?}: {}",
            metrics.failures.get()
        );
        assert_eq!(metrics.records.get(), 10);

        take_inserts(&db.store).await;
        assert_eq!(
            log.append(record(22)).await.unwrap(),
            10,
            "{kind:?}: the head did not move"
        );
        fill(&log, 5, 5).await;
        log.shutdown().await;
        verify_clean(&db.store, &key.verifier_key(), 16).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_and_later_appends_fail() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let key = key();
        let (log, metrics) = open_log(&db.store, &key, "gw1", 512).await;
        // An after-the-fact record, as the gateway writes for request outcomes.
        assert_eq!(log.append(record(0)).await.unwrap(), 0);
        for n in 1..=50 {
            log.append_nowait(AuditRecord {
                event: crate::Event::Outcome,
                upstream_status: Some(200),
                ..record(n)
            });
        }
        log.shutdown().await;
        assert_eq!(metrics.records.get(), 51, "{kind:?}: the queue was flushed");
        assert_eq!(log.append(record(99)).await, Err(AuditError::Closed));
        log.append_nowait(record(100));
        assert_eq!(metrics.failures.get(), 2);
        log.shutdown().await; // twice is fine
        verify_clean(&db.store, &key.verifier_key(), 51).await;

        // A new writer on the same database continues the tree.
        let (log, _) = open_log(&db.store, &key, "gw1", 512).await;
        assert_eq!(log.append(record(51)).await.unwrap(), 51);
        drop(log); // dropping every handle stops the writer too
        tokio::time::sleep(Duration::from_millis(50)).await;
        verify_clean(&db.store, &key.verifier_key(), 52).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_signed_notes_over_the_tree() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let dir = tempfile::tempdir().unwrap();
        let key = CheckpointKey::load_or_create(dir.path(), ORIGIN).unwrap();
        let (log, _) = open_log(&db.store, &key, "gw1", 512).await;
        assert_eq!(log.append(record(0)).await.unwrap(), 0);
        log.shutdown().await;
        let note: String =
            sqlx::query_scalar("SELECT note FROM audit_checkpoints WHERE tree_size = 1")
                .fetch_one(db.store.pool())
                .await
                .unwrap();
        let rec: String = sqlx::query_scalar("SELECT record FROM audit_records WHERE idx = 0")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
        // A one-leaf tree's root is its leaf hash.
        let root = B64.encode(leaf_hash(rec.as_bytes()));
        let lines: Vec<&str> = note.split('\n').collect();
        assert_eq!(
            lines[..4],
            [ORIGIN, "1", root.as_str(), ""],
            "{kind:?}: {note:?}"
        );
        assert!(lines[4].starts_with(&format!("\u{2014} {ORIGIN} ")));
        assert_eq!(lines[5], "");
        let vkey = std::fs::read_to_string(dir.path().join(checkpoint::PUB_FILE)).unwrap();
        assert_eq!(
            Verifier::parse(&vkey).unwrap().open(&note).unwrap(),
            format!("{ORIGIN}\n1\n{root}\n")
        );
        assert!(
            Verifier::parse(&self::key().verifier_key())
                .unwrap()
                .open(&note)
                .is_err()
        );
        verify_clean(&db.store, &vkey, 1).await;
    }
}

#[test]
fn metrics_have_their_names() {
    let mut reg = prometheus_client::registry::Registry::default();
    let m = AuditMetrics::register(&mut reg);
    m.records.inc();
    m.batch_size.observe(3.0);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
    for name in [
        "sekisho_audit_batch_size_bucket",
        "sekisho_audit_commit_seconds_count",
        "sekisho_audit_failures_total",
        "sekisho_audit_records_total 1",
    ] {
        assert!(out.contains(name), "{name} missing from\n{out}");
    }
}

/// Every query column holds what its record says, on both drivers' insert paths (SQLite's
/// statements of 64 rows, PostgreSQL's arrays, split by bytes: 16 KiB under test): 150 records,
/// several statements a batch, with absent optional columns among them, and leaf indexes in
/// order.
#[tokio::test]
async fn query_columns_are_their_records_fields() {
    for db in TestDb::both().await {
        let store = &db.store;
        let (log, _) = open_log(store, &key(), "gw1", 150).await;
        let records: Vec<AuditRecord> = (0..150u64)
            .map(|n| {
                let mut r = record(n);
                r.event = crate::Event::ALL[n as usize % crate::Event::ALL.len()];
                if n % 3 == 0 {
                    r.user = None;
                    r.facility = None;
                }
                if n % 4 == 0 {
                    r.break_glass_id = Some(format!("bg-{n}"));
                    r.route = None;
                }
                r
            })
            .collect();
        let appends: Vec<_> = records.iter().cloned().map(|r| log.submit(r)).collect();
        for a in appends {
            a.await.unwrap();
        }
        log.shutdown().await;
        type Cols = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows = sqlx::query(
            "SELECT idx, record, ts, request_id, event, decision, node, terminal, user_id, \
             patient, break_glass_id, facility, reason, route, leaf_hash FROM audit_records \
             ORDER BY idx",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(rows.len(), 150, "{:?}", store.kind());
        for (i, row) in rows.iter().enumerate() {
            let kind = store.kind();
            assert_eq!(row.get::<i64, _>(0), i as i64, "{kind:?}");
            let text: String = row.get(1);
            let want: AuditRecord = serde_json::from_str(&text).unwrap();
            let at = time::OffsetDateTime::parse(
                &want.time,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            assert_eq!(
                row.get::<i64, _>(2),
                (at.unix_timestamp_nanos() / 1_000_000) as i64,
                "{kind:?} record {i}"
            );
            let words: (String, String, String, String) =
                (row.get(3), row.get(4), row.get(5), row.get(6));
            assert_eq!(
                words,
                (
                    want.request_id.clone(),
                    want.event.as_str().to_string(),
                    want.decision.as_str().to_string(),
                    want.node.clone()
                ),
                "{kind:?} record {i}"
            );
            let people: Cols = (row.get(7), row.get(8), row.get(9), row.get(10));
            assert_eq!(
                people,
                (
                    want.terminal.clone(),
                    want.user.clone(),
                    want.patient.clone(),
                    want.break_glass_id.clone()
                ),
                "{kind:?} record {i}"
            );
            let rest: (Option<String>, Option<String>, Option<String>) =
                (row.get(11), row.get(12), row.get(13));
            assert_eq!(
                rest,
                (
                    want.facility.clone(),
                    Some(want.reason.clone()),
                    want.route.clone()
                ),
                "{kind:?} record {i}"
            );
            assert_eq!(
                row.get::<Vec<u8>, _>(14),
                leaf_hash(text.as_bytes()).to_vec(),
                "{kind:?} record {i}"
            );
        }
        // The records as submitted, in some order: each one's bytes are in the log once.
        let mut ids: Vec<String> = rows.iter().map(|r| r.get::<String, _>(3)).collect();
        ids.sort();
        let mut want: Vec<String> = records.iter().map(|r| r.request_id.clone()).collect();
        want.sort();
        assert_eq!(ids, want);
    }
}

/// Records written before the search columns existed get them from the record itself, a range
/// at a time, down to the first.
#[tokio::test]
async fn search_columns_are_filled_for_older_records() {
    for db in TestDb::both().await {
        let store = &db.store;
        let (log, _) = open_log(store, &key(), "gw1", 64).await;
        fill(&log, 25, 5).await;
        log.shutdown().await;
        sqlx::query("UPDATE audit_records SET facility = NULL, reason = NULL, route = NULL")
            .execute(store.pool())
            .await
            .unwrap();
        let mut below = Some(25);
        let mut ranges = 0;
        while let Some(b) = below {
            below = crate::search::backfill(store, b, 10).await.unwrap();
            ranges += 1;
        }
        assert_eq!(ranges, 3, "25 records, 10 a range");
        type Row = (i64, String, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT idx, record, facility, reason, route FROM audit_records ORDER BY idx",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(rows.len(), 25);
        for (idx, text, facility, reason, route) in rows {
            let want: AuditRecord = serde_json::from_str(&text).unwrap();
            assert_eq!(facility, want.facility, "record {idx}");
            assert_eq!(
                reason.as_deref(),
                Some(want.reason.as_str()),
                "record {idx}"
            );
            assert_eq!(route, want.route, "record {idx}");
        }
    }
}

/// Search pages run newest first by (time, leaf index) — not by leaf index, which another
/// replica's clock can put out of time order — and a page's cursor resumes exactly below it:
/// walking every page gives each matching record once, ties within a millisecond included.
#[tokio::test]
async fn search_pages_by_time_without_gaps_or_repeats() {
    use crate::search::{Cursor, Filter, search};
    for db in TestDb::both().await {
        let store = &db.store;
        let (log, _) = open_log(store, &key(), "gw1", 64).await;
        fill(&log, 40, 8).await;
        log.shutdown().await;
        // Times out of leaf order, with ties: idx 0..40 spread over 0..5 ms, reversed in waves.
        // The search columns are set from the leaf index, so what each search finds is known.
        sqlx::query(
            "UPDATE audit_records SET ts = 1000 + ((idx * 7) % 5),
                 facility = CASE WHEN idx % 3 = 0 THEN 'F002' ELSE 'F001' END,
                 decision = CASE WHEN idx % 5 = 0 THEN 'deny' ELSE 'permit' END,
                 reason = CASE WHEN idx % 5 = 0 THEN 'no_consent' ELSE 'ok' END",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let expect = |keep: &dyn Fn(i64, i64) -> bool| {
            let mut all: Vec<(i64, i64)> = (0..40)
                .map(|i| (1000 + (i * 7) % 5, i))
                .filter(|&(ts, i)| keep(ts, i))
                .collect();
            all.sort_by(|a, b| b.cmp(a));
            all
        };
        let walk = |filter: Filter| async move {
            let mut seen = Vec::new();
            let mut before = None;
            loop {
                let page = search(store, &filter, before, 4, None).await.unwrap();
                assert!(page.rows.len() <= 4);
                seen.extend(page.rows.iter().map(|f| (f.ts, f.idx)));
                match page.older {
                    // The link's text form is what comes back.
                    Some(c) => before = Some(c.to_string().parse::<Cursor>().unwrap()),
                    None => break,
                }
            }
            seen
        };
        assert_eq!(walk(Filter::default()).await, expect(&|_, _| true));
        let facility = Filter {
            facility: Some("F001".into()),
            from_ms: Some(1001),
            to_ms: Some(1004),
            ..Filter::default()
        };
        assert_eq!(
            walk(facility).await,
            expect(&|ts, i| i % 3 != 0 && (1001..1004).contains(&ts))
        );
        let refusals = Filter {
            decision: Some("deny".into()),
            reason: Some("no_consent".into()),
            ..Filter::default()
        };
        assert_eq!(walk(refusals).await, expect(&|_, i| i % 5 == 0));
    }
    assert!("12".parse::<Cursor>().is_err());
    assert!("12.x".parse::<Cursor>().is_err());
    assert_eq!("-3.7".parse::<Cursor>().unwrap(), Cursor { ts: -3, idx: 7 });
}

/// The dashboard's refusals by reason since a time: each reason's refusals at or after it,
/// most frequent first, permitted records and older refusals not counted.
#[tokio::test]
async fn refusals_are_counted_by_reason_since_a_time() {
    for db in TestDb::both().await {
        let store = &db.store;
        let (log, _) = open_log(store, &key(), "gw1", 64).await;
        fill(&log, 60, 10).await;
        log.shutdown().await;
        // idx % 4 == 0: permitted; otherwise refused for reason r{idx % 3}; ts = idx.
        sqlx::query(
            "UPDATE audit_records SET ts = idx,
                 decision = CASE WHEN idx % 4 = 0 THEN 'permit' ELSE 'deny' END,
                 reason = CASE WHEN idx % 4 = 0 THEN 'ok' ELSE 'r' || CAST(idx % 3 AS TEXT) END",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let mut want: Vec<(String, i64)> = Vec::new();
        for idx in 20..60i64 {
            if idx % 4 != 0 {
                let r = format!("r{}", idx % 3);
                match want.iter_mut().find(|(x, _)| *x == r) {
                    Some((_, n)) => *n += 1,
                    None => want.push((r, 1)),
                }
            }
        }
        want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let got = crate::search::refusals_by_reason(store, 20).await.unwrap();
        assert_eq!(got, want, "{:?}", store.kind());
        assert!(
            crate::search::refusals_by_reason(store, 1_000)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

/// The log as the gateway opens it: through the node's journal in `dir`.
async fn open_journaled(
    store: &Store,
    key: &CheckpointKey,
    dir: &std::path::Path,
) -> (AuditLog, AuditMetrics) {
    let metrics = AuditMetrics::new();
    let cfg = AuditConfig {
        journal: Some(journal::dir_for(dir, "gw1")),
        ..config("gw1", 512)
    };
    let log = AuditLog::open(store.clone(), key.clone(), cfg, metrics.clone())
        .await
        .unwrap();
    (log, metrics)
}

async fn count_records(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_records")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_log_fills_the_store_behind_it_and_a_crash_leaves_nothing_out() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let tmp = tempfile::tempdir().unwrap();
        let key = key();
        let (log, metrics) = open_journaled(&db.store, &key, tmp.path()).await;
        fill(&log, 500, 50).await;
        assert!(log.caught_up(Duration::from_secs(5)).await, "{kind:?}");
        assert_eq!(count_records(&db.store).await, 500, "{kind:?}");
        assert_eq!(log.index_lag(), 0);
        assert_eq!(metrics.records.get(), 500);
        assert_eq!(metrics.indexed.get(), 500);
        log.shutdown().await;

        // What a gateway killed between the journal's fdatasync and the indexer's commit
        // leaves: three acknowledged frames past the store's mark, and a write cut short.
        let dir = journal::dir_for(tmp.path(), "gw1");
        let (mut j, replay) = journal::Journal::open(&dir, 500).unwrap();
        assert!(replay.frames.is_empty(), "{kind:?}: all 500 were indexed");
        let left: Vec<String> = (500..503)
            .map(|n| {
                crate::record::Prepared::new(record(n), &"gw1".into())
                    .json
                    .to_string()
            })
            .collect();
        assert_eq!(j.append(left.iter().map(|s| s.as_bytes())).unwrap(), 500);
        drop(j);
        let seg = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        // Where the frames end: the room's zeros follow (a record ends in `}`).
        let end = std::fs::read(&seg)
            .unwrap()
            .iter()
            .rposition(|&b| b != 0)
            .unwrap()
            + 1;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[200, 0, 0, 0, 1, 2], end as u64).unwrap();
        drop(f);

        let (log, _) = open_journaled(&db.store, &key, tmp.path()).await;
        // Indexed before open returns, in the journal's order, with the bytes it holds.
        assert_eq!(count_records(&db.store).await, 503, "{kind:?}");
        let stored: Vec<String> =
            sqlx::query_scalar("SELECT record FROM audit_records WHERE idx >= 500 ORDER BY idx")
                .fetch_all(db.store.pool())
                .await
                .unwrap();
        assert_eq!(stored, left, "{kind:?}");
        // Appending goes on after them, in the journal (sequence) and in the tree.
        assert_eq!(log.append(record(503)).await.unwrap(), 503);
        assert!(log.caught_up(Duration::from_secs(5)).await);
        log.shutdown().await;
        verify_clean(&db.store, &key.verifier_key(), 504).await;
        let mark: i64 =
            sqlx::query_scalar("SELECT next_seq FROM audit_journal_marks WHERE node = 'gw1'")
                .fetch_one(db.store.pool())
                .await
                .unwrap();
        assert_eq!(mark, 504, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_stops_the_journal_and_loses_nothing_it_acknowledged() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let pool = db.store.pool();
        let tmp = tempfile::tempdir().unwrap();
        let key = key();
        let (log, metrics) = open_journaled(&db.store, &key, tmp.path()).await;
        fill(&log, 10, 5).await;
        assert!(log.caught_up(Duration::from_secs(5)).await);
        refuse_inserts(&db.store).await;
        // Durable in the journal, so acknowledged; the store refuses it behind the journal.
        assert_eq!(log.append(record(10)).await.unwrap(), 10, "{kind:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !log.writes_failing() {
            assert!(
                std::time::Instant::now() < deadline,
                "{kind:?}: the indexer's failure was not seen"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // From then on nothing more is acknowledged.
        let err = log.append(record(11)).await.unwrap_err();
        assert!(
            matches!(&err, AuditError::Commit(m) if m.contains("does not take records")),
            "{kind:?}: {err:?}"
        );
        assert_eq!(log.index_lag(), 1);
        assert!(!log.caught_up(Duration::from_millis(300)).await);
        assert_eq!(count_records(&db.store).await, 10);

        take_inserts(&db.store).await;
        // The indexer's retry puts the acknowledged record in, and the journal takes records
        // again.
        assert!(log.caught_up(Duration::from_secs(5)).await, "{kind:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while log.append(record(12)).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "{kind:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        log.shutdown().await;
        assert_eq!(metrics.failures.get(), 1, "{kind:?}");
        verify_clean(&db.store, &key.verifier_key(), 12).await;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT request_id FROM audit_records ORDER BY idx")
                .fetch_all(pool)
                .await
                .unwrap();
        assert_eq!(
            ids[10..],
            ["req-10".to_string(), "req-12".into()],
            "{kind:?}"
        );
    }
}

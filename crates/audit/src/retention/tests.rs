//! Retention on SQLite and PostgreSQL: records appended with times in the past, of mixed kinds,
//! pruned with per-kind retention; then what is gone, what stays, and what `verify` and the
//! search make of it.

use std::collections::HashMap;

use sqlx::Row;

use super::*;
use crate::search::{Filter, latest_checkpoint, search};
use crate::tests::{key, open_log};
use crate::{AuditRecord, Decision, Event, verify};
use sekisho_store::testdb::TestDb;

/// 2031-04-01 00:00 UTC: "now" for every run here.
const NOW_MS: i64 = 1_932_681_600_000;
const OLD: u64 = 120;
const ALL: u64 = 180;

/// Record `i`: kinds in turn (request, outcome, break_glass); the first `OLD` from 2025 (past
/// five years at `NOW_MS`), the rest from March 2031.
fn rec(i: u64) -> AuditRecord {
    let event = [Event::Request, Event::Outcome, Event::BreakGlass][(i % 3) as usize];
    let time = if i < OLD {
        format!("2025-01-01T00:{:02}:{:02}.000Z", i / 60, i % 60)
    } else {
        format!("2031-03-01T00:{:02}:{:02}.000Z", i / 60, i % 60)
    };
    AuditRecord {
        time,
        request_id: format!("req-{i}"),
        event,
        terminal: Some("T0001".into()),
        facility: Some("F001".into()),
        user: Some("D000123456".into()),
        patient: Some(format!("PX-SECRET-{i:04}")),
        route: Some("/api/patients/{id}".into()),
        break_glass_id: (event == Event::BreakGlass).then(|| format!("bg-{i}")),
        decision: Decision::Permit,
        reason: "ok".into(),
        ..Default::default()
    }
}

/// Whether record `i` is past retention with `retention()` at `NOW_MS`.
fn expired(i: u64) -> bool {
    i < OLD && i % 3 != 2
}

fn retention() -> Retention {
    Retention {
        default_days: DEFAULT_DAYS,
        days: HashMap::from([(Event::BreakGlass, 3653)]),
    }
}

fn run(r: &Retention, keep: Option<u64>, batch: usize) -> PruneRun<'_> {
    PruneRun {
        retention: r,
        now_ms: NOW_MS,
        keep_from_idx: keep,
        actor: "tester (os:test)".into(),
        batch,
    }
}

async fn fill(log: &crate::AuditLog) {
    // A few at a time, in order: several batches and checkpoints, indexes = i.
    for i in 0..ALL {
        log.append(rec(i)).await.unwrap();
    }
}

struct Stored {
    record: String,
    request_id: String,
    personal: Vec<Option<String>>,
    reason: Option<String>,
    leaf: Vec<u8>,
}

async fn rows(store: &Store) -> Vec<Stored> {
    sqlx::query(
        "SELECT record, request_id, terminal, user_id, patient, break_glass_id, facility, route, reason, leaf_hash
         FROM audit_records ORDER BY idx",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| Stored {
        record: r.get(0),
        request_id: r.get(1),
        personal: (2..8).map(|c| r.get::<Option<String>, _>(c)).collect(),
        reason: r.get(8),
        leaf: r.get(9),
    })
    .collect()
}

async fn pruned_ranges(store: &Store) -> Vec<(i64, i64, i64, String)> {
    sqlx::query("SELECT first_idx, last_idx, records, events FROM audit_pruned ORDER BY first_idx")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_leaves_and_verify_names_the_ranges() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let key = key();
        let vkey = key.verifier_key();
        let (log, _) = open_log(&db.store, &key, "gw1", 16).await;
        fill(&log).await;
        let before = rows(&db.store).await;
        let r = retention();

        // A dry run counts and changes nothing.
        let plan = plan(&db.store, &run(&r, None, 7)).await.unwrap();
        let want = (0..ALL).filter(|i| expired(*i)).count() as u64;
        assert_eq!(plan.records, want, "{kind:?}");
        assert_eq!(rows(&db.store).await.len(), ALL as usize);

        // Small batches: many transactions, one run.
        let done = prune(&db.store, &log, &run(&r, None, 7)).await.unwrap();
        assert_eq!(done.records, want, "{kind:?}");
        let by_kind = |e: Event| done.kinds.iter().find(|k| k.event == e).unwrap().clone();
        assert_eq!(by_kind(Event::Request).records, 40);
        assert_eq!(by_kind(Event::Outcome).records, 40);
        assert_eq!(by_kind(Event::BreakGlass).records, 0);
        assert_eq!(by_kind(Event::Request).first_idx, Some(0));
        assert_eq!(by_kind(Event::Outcome).last_idx, Some(118));
        assert_eq!(done.span, Some((0, 118)));

        let after = rows(&db.store).await;
        for i in 0..ALL as usize {
            let (b, a) = (&before[i], &after[i]);
            assert_eq!(a.leaf, b.leaf, "{kind:?}: record {i}'s leaf is kept");
            if expired(i as u64) {
                assert_eq!(a.record, "", "{kind:?}: record {i}");
                assert_eq!(a.request_id, "");
                assert!(
                    a.personal.iter().all(Option::is_none),
                    "{kind:?}: {i}: {:?}",
                    a.personal
                );
                assert_eq!(a.reason.as_deref(), Some(""));
            } else {
                assert_eq!(a.record, b.record, "{kind:?}: record {i} is whole");
                assert_eq!(a.personal, b.personal);
                assert_eq!(a.request_id, b.request_id);
            }
        }
        // The prune's own records: started before, done after, naming the run.
        for (i, reason) in [(ALL, STARTED), (ALL + 1, DONE)] {
            let r: AuditRecord = serde_json::from_str(&after[i as usize].record).unwrap();
            assert_eq!((r.event, r.reason.as_str()), (Event::Operation, reason));
            assert_eq!(r.actor.as_deref(), Some("tester (os:test)"));
            assert_eq!(
                run_of(r.detail.as_deref().unwrap()),
                Some(done.run.as_str())
            );
        }
        assert_eq!(
            pruned_ranges(&db.store).await,
            [(0, 118, 80, "outcome,request".to_string())],
            "{kind:?}"
        );

        let report = verify(&db.store, &vkey).await.unwrap();
        assert!(report.is_clean(), "{kind:?}: {:#?}", report.problems);
        assert_eq!(report.records, ALL + 2);
        assert_eq!(report.pruned_records, 80);
        assert_eq!(report.pruned.len(), 1);
        assert_eq!(
            (
                report.pruned[0].first_idx,
                report.pruned[0].last_idx,
                report.pruned[0].run.clone()
            ),
            (0, 118, done.run.clone())
        );

        // Search over the pruned log: kept columns only, marked; a patient's search finds
        // only whole records.
        let cp = latest_checkpoint(&db.store, &[crate::Verifier::parse(&vkey).unwrap()])
            .await
            .unwrap();
        let page = search(&db.store, &Filter::default(), None, 1000, cp.as_ref())
            .await
            .unwrap();
        assert_eq!(page.rows.len() as u64, ALL + 2);
        for f in &page.rows {
            assert_eq!(f.pruned, expired(f.idx as u64), "{kind:?}: {}", f.idx);
            if f.pruned {
                assert!(f.record.patient.is_none() && f.record.request_id.is_empty());
                assert!(
                    f.record.time.starts_with("2025-01-01T00:"),
                    "{}",
                    f.record.time
                );
                assert!(f.in_signed_checkpoint);
            } else {
                assert!(f.leaf_matches);
            }
        }
        let requests = Filter {
            event: Some("request".into()),
            ..Default::default()
        };
        let page = search(&db.store, &requests, None, 1000, cp.as_ref())
            .await
            .unwrap();
        assert_eq!(page.rows.len(), 60);
        assert_eq!(page.rows.iter().filter(|f| f.pruned).count(), 40);
        for (p, n) in [
            ("PX-SECRET-0003", 0),
            ("PX-SECRET-0005", 1),
            ("PX-SECRET-0150", 1),
        ] {
            let f = Filter {
                patient: Some(p.into()),
                ..Default::default()
            };
            let page = search(&db.store, &f, None, 10, cp.as_ref()).await.unwrap();
            assert_eq!(page.rows.len(), n, "{kind:?}: {p}");
        }

        // Again: nothing left, nothing recorded, the ranges as they were.
        let again = prune(&db.store, &log, &run(&r, None, 7)).await.unwrap();
        assert_eq!((again.records, again.run.as_str()), (0, ""));
        assert_eq!(rows(&db.store).await.len() as u64, ALL + 2);
        assert_eq!(pruned_ranges(&db.store).await.len(), 1);

        // Tampering still shows. A body emptied outside the ranges:
        let pool = db.store.pool();
        let whole: String = sqlx::query_scalar("SELECT record FROM audit_records WHERE idx = 150")
            .fetch_one(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_records SET record = '' WHERE idx = 150")
            .execute(pool)
            .await
            .unwrap();
        let report = verify(&db.store, &vkey).await.unwrap();
        assert_eq!(
            report.problems,
            ["record 150: body missing and not recorded as pruned"],
            "{kind:?}"
        );
        sqlx::query("UPDATE audit_records SET record = $1 WHERE idx = 150")
            .bind(&whole)
            .execute(pool)
            .await
            .unwrap();
        // A pruned record's leaf changed: its checkpoint's root no longer matches.
        sqlx::query("UPDATE audit_records SET leaf_hash = $1 WHERE idx = 4")
            .bind(vec![7u8; 32])
            .execute(pool)
            .await
            .unwrap();
        let report = verify(&db.store, &vkey).await.unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("differs from the signed checkpoint")),
            "{kind:?}: {:#?}",
            report.problems
        );
        sqlx::query("UPDATE audit_records SET leaf_hash = $1 WHERE idx = 4")
            .bind(&before[4].leaf)
            .execute(pool)
            .await
            .unwrap();
        let report = verify(&db.store, &vkey).await.unwrap();
        assert!(report.is_clean(), "{kind:?}: {:#?}", report.problems);
        // A run's range stretched beyond what its closing record says, to cover an emptied body.
        sqlx::query("UPDATE audit_records SET record = '' WHERE idx = 151")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_pruned SET last_idx = 151")
            .execute(pool)
            .await
            .unwrap();
        let report = verify(&db.store, &vkey).await.unwrap();
        assert_eq!(
            report.problems,
            [format!(
                "records 0-151: recorded as pruned by run {}, but its audit_pruned record says it emptied idx 0-118",
                done.run
            )],
            "{kind:?}"
        );
        sqlx::query("UPDATE audit_pruned SET last_idx = 118")
            .execute(pool)
            .await
            .unwrap();
        // Bodies emptied behind a range the log does not name (no audit_prune_started record).
        sqlx::query("UPDATE audit_records SET record = '' WHERE idx = 151")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO audit_pruned (run, first_idx, last_idx, records, events, newest_ts, pruned_at, pruned_by)
             VALUES ('forged', 151, 151, 1, 'request', 0, 0, 'x')",
        )
        .execute(pool)
        .await
        .unwrap();
        let report = verify(&db.store, &vkey).await.unwrap();
        assert_eq!(
            report.problems,
            [
                "record 151: recorded as pruned by run forged, but no audit_prune_started record in the log names that run"
            ],
            "{kind:?}"
        );
        log.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_from_idx_holds_records_back_and_a_later_run_resumes() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let key = key();
        let (log, _) = open_log(&db.store, &key, "gw1", 16).await;
        fill(&log).await;
        let r = retention();
        let first = prune(&db.store, &log, &run(&r, Some(50), 5)).await.unwrap();
        let want = (0..50).filter(|i| expired(*i)).count() as u64;
        assert_eq!(first.records, want, "{kind:?}");
        let rows_now = rows(&db.store).await;
        for i in 0..ALL {
            assert_eq!(
                rows_now[i as usize].record.is_empty(),
                expired(i) && i < 50,
                "{kind:?}: {i}"
            );
        }
        assert_eq!(
            pruned_ranges(&db.store).await,
            [(0, 49, want as i64, "outcome,request".into())]
        );

        // Another run holds the lease: refused. A lease whose holder died (expired): taken over.
        sqlx::query("UPDATE audit_prune_lease SET holder = 'run x by gw2', expires_at = $1")
            .bind(sekisho_store::now() + 60)
            .execute(db.store.pool())
            .await
            .unwrap();
        let e = prune(&db.store, &log, &run(&r, None, 5)).await.unwrap_err();
        assert!(e.is::<Busy>(), "{kind:?}: {e:#}");
        assert!(e.to_string().contains("run x by gw2"), "{e}");
        sqlx::query("UPDATE audit_prune_lease SET expires_at = $1")
            .bind(sekisho_store::now() - 1)
            .execute(db.store.pool())
            .await
            .unwrap();

        let second = prune(&db.store, &log, &run(&r, None, 5)).await.unwrap();
        assert_eq!(second.records, 80 - want, "{kind:?}");
        // 50 is a break-glass record, kept.
        assert_eq!(second.span, Some((51, 118)));
        let lease: Option<String> =
            sqlx::query_scalar("SELECT holder FROM audit_prune_lease WHERE id = 1")
                .fetch_one(db.store.pool())
                .await
                .unwrap();
        assert_eq!(lease, None, "released");
        let ranges = pruned_ranges(&db.store).await;
        assert_eq!(ranges.len(), 2, "{kind:?}: {ranges:?}");
        let report = verify(&db.store, &key.verifier_key()).await.unwrap();
        assert!(report.is_clean(), "{kind:?}: {:#?}", report.problems);
        assert_eq!(report.pruned_records, 80);
        assert_eq!(report.pruned.len(), 2);

        // Later the break-glass records' ten years are over too (and a longer "now").
        let later = PruneRun {
            now_ms: NOW_MS + 3653 * DAY_MS,
            ..run(&r, None, 5)
        };
        let third = prune(&db.store, &log, &later).await.unwrap();
        // Everything not the prunes' own records: the rest of the old ones and the 2031 ones.
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_records WHERE record <> ''")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
        assert_eq!(third.records, ALL - 80, "{kind:?}");
        // The two runs' records (2 each) and the third's own pair stay.
        assert_eq!(left, 6, "{kind:?}");
        let report = verify(&db.store, &key.verifier_key()).await.unwrap();
        assert!(report.is_clean(), "{kind:?}: {:#?}", report.problems);
        log.shutdown().await;
    }
}

/// SQLite: with secure_delete, a pruned patient id is gone from the database file's bytes,
/// not left in free space. The WAL is checkpointed first (TRUNCATE): its older frames hold the
/// pages as they were before the prune until the WAL is reused. Failed with secure_delete on the
/// pruning connection only: the writer's page rebuilds had left copies of rows in unused space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pruned_bodies_leave_the_file() {
    let db = TestDb::sqlite().await;
    let key = key();
    let (log, _) = open_log(&db.store, &key, "gw1", 16).await;
    fill(&log).await;
    let path = db.url.trim_start_matches("sqlite://").to_string();
    let file_has = |needle: &str| {
        let bytes = std::fs::read(&path).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    };
    let checkpoint = || async {
        let r = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
        assert_eq!(r.get::<i64, _>(0), 0, "the WAL checkpoint was not blocked");
    };
    checkpoint().await;
    assert!(
        file_has("PX-SECRET-0003"),
        "the test sees what is in the file"
    );
    let r = retention();
    prune(&db.store, &log, &run(&r, None, 7)).await.unwrap();
    log.shutdown().await;
    checkpoint().await;
    for i in (0..ALL).filter(|i| expired(*i)) {
        assert!(
            !file_has(&format!("PX-SECRET-{i:04}")),
            "patient of record {i}"
        );
        assert!(
            !file_has(&format!("\"req-{i}\"")),
            "request id of record {i}"
        );
    }
    assert!(file_has("PX-SECRET-0002"), "a break-glass record is kept");
    assert!(file_has("PX-SECRET-0150"), "a recent record is kept");
}

/// A run cut off between batches (the process stopped) leaves a consistent log: what it emptied
/// is recorded, `verify` passes on the started record alone, and the next run (once the dead
/// run's lease has expired) finishes the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_off_leaves_a_consistent_log_and_the_next_one_finishes() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let key = key();
        let (log, _) = open_log(&db.store, &key, "gw1", 16).await;
        fill(&log).await;
        let r = retention();
        let emptied = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM audit_records WHERE record = ''")
                .fetch_one(db.store.pool())
                .await
                .unwrap()
        };
        let cut = async {
            while emptied().await < 6 {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        };
        let small = run(&r, None, 3);
        tokio::select! {
            r = prune(&db.store, &log, &small) => panic!("{kind:?}: not cut off: {r:?}"),
            _ = cut => {}
        }
        // Give a dropped connection's rollback time to land.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let part = emptied().await;
        assert!((6..80).contains(&part), "{kind:?}: {part}");
        let ranges = pruned_ranges(&db.store).await;
        assert_eq!(ranges.len(), 1);
        assert_eq!(
            ranges[0].2, part,
            "{kind:?}: the range counts what was emptied"
        );
        let report = verify(&db.store, &key.verifier_key()).await.unwrap();
        assert!(report.is_clean(), "{kind:?}: {:#?}", report.problems);
        assert_eq!(report.pruned_records, part as u64);

        // The dead run's lease holds until it expires.
        let e = prune(&db.store, &log, &run(&r, None, 50))
            .await
            .unwrap_err();
        assert!(e.is::<Busy>(), "{kind:?}: {e:#}");
        sqlx::query("UPDATE audit_prune_lease SET expires_at = 0")
            .execute(db.store.pool())
            .await
            .unwrap();
        let rest = prune(&db.store, &log, &run(&r, None, 50)).await.unwrap();
        assert_eq!(rest.records as i64 + part, 80, "{kind:?}");
        let report = verify(&db.store, &key.verifier_key()).await.unwrap();
        assert!(report.is_clean(), "{kind:?}: {:#?}", report.problems);
        assert_eq!((report.pruned_records, report.pruned.len()), (80, 2));
        log.shutdown().await;
    }
}

//! Witness tests: the directory witness's files and refusals, the copier on SQLite and
//! PostgreSQL (as batches commit, through an outage, when another replica is ahead, and when
//! the log no longer has what a witness holds), and `verify_witnessed` catching a dropped batch
//! and a re-signed fork that `verify` alone passes. HTTPS: `https_tests.rs`.

use std::future::Future;
use std::time::{Duration, Instant};

use sekisho_store::Store;
use sekisho_store::testdb::TestDb;

use super::*;
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::forge;
use crate::merkle::leaf_hash;
use crate::tests::{ORIGIN, fill, key, open_log};
use crate::{AuditMetrics, CheckpointKey, Verifier, verify, verify_witnessed};

pub(super) fn signed(key: &CheckpointKey, origin: &str, size: u64, salt: &str) -> SignedCheckpoint {
    let root = leaf_hash(format!("{salt}{size}").as_bytes());
    SignedCheckpoint::parse(&key.sign_checkpoint(origin, size, &root)).unwrap()
}

pub(super) fn quick() -> PumpConfig {
    PumpConfig {
        interval: Duration::from_millis(10),
        poll: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
    }
}

pub(super) async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn newest_size(store: &Store) -> u64 {
    let n: Option<i64> = sqlx::query_scalar("SELECT MAX(tree_size) FROM audit_checkpoints")
        .fetch_one(store.pool())
        .await
        .unwrap();
    n.unwrap_or(0) as u64
}

fn history(dir: &std::path::Path) -> Vec<SignedCheckpoint> {
    DirWitness::new(dir)
        .notes()
        .unwrap()
        .map(|n| SignedCheckpoint::parse(&n.unwrap()).unwrap())
        .collect()
}

pub(super) fn gauge(m: &WitnessMetrics, name: &str) -> (i64, i64) {
    let l = vec![("witness", name.to_string())];
    (
        m.tree_size.get_or_create(&l).get(),
        m.diverged.get_or_create(&l).get(),
    )
}

pub(super) fn failures(m: &WitnessMetrics, name: &str) -> u64 {
    m.failures
        .get_or_create(&vec![("witness", name.to_string())])
        .get()
}

#[test]
fn a_witness_takes_newer_checkpoints_and_refuses_older_forks_and_other_logs() {
    let cp = |origin: &str, size: u64, r: u8| Checkpoint {
        origin: origin.into(),
        size,
        root: [r; 32],
    };
    assert_eq!(judge(None, &cp("a", 5, 1)), Ok(true));
    assert_eq!(judge(Some(&cp("a", 5, 1)), &cp("a", 6, 9)), Ok(true));
    assert_eq!(judge(Some(&cp("a", 5, 1)), &cp("a", 5, 1)), Ok(false));
    assert_eq!(
        judge(Some(&cp("a", 5, 1)), &cp("a", 4, 1)),
        Err(Refusal::Older {
            held: 5,
            offered: 4
        })
    );
    assert_eq!(
        judge(Some(&cp("a", 5, 1)), &cp("a", 5, 2)),
        Err(Refusal::Fork { size: 5 })
    );
    assert!(matches!(
        judge(Some(&cp("a", 5, 1)), &cp("b", 9, 1)),
        Err(Refusal::OtherLog { .. })
    ));
}

#[test]
fn a_directory_witness_keeps_every_checkpoint_and_the_newest_and_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key();
    let w = DirWitness::new(tmp.path());
    assert_eq!(w.latest().unwrap(), None);
    let c3 = signed(&k, ORIGIN, 3, "");
    let c5 = signed(&k, ORIGIN, 5, "");
    assert_eq!(w.submit(&c3).unwrap(), Outcome::Accepted);
    assert_eq!(w.submit(&c5).unwrap(), Outcome::Accepted);
    // The same one again: taken, nothing written twice.
    assert_eq!(w.submit(&c5).unwrap(), Outcome::Accepted);
    let refused = |o: Outcome| match o {
        Outcome::Refused { refusal, held } => (refusal, held.map(|h| h.size())),
        o => panic!("not refused: {o:?}"),
    };
    assert_eq!(
        refused(w.submit(&c3).unwrap()),
        (
            Refusal::Older {
                held: 5,
                offered: 3
            },
            Some(5)
        )
    );
    assert_eq!(
        refused(w.submit(&signed(&k, ORIGIN, 5, "forked")).unwrap()),
        (Refusal::Fork { size: 5 }, Some(5))
    );
    assert_eq!(
        refused(w.submit(&signed(&k, "other.example/audit", 9, "")).unwrap())
            .0
            .code(),
        "other-log"
    );
    // The files: every note taken, in order, each followed by an empty line; and the newest.
    let text = std::fs::read_to_string(tmp.path().join(HISTORY_FILE)).unwrap();
    assert_eq!(text, format!("{}\n{}\n", c3.note, c5.note));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join(LATEST_FILE)).unwrap(),
        c5.note
    );
    assert_eq!(history(tmp.path()), [c3.clone(), c5.clone()]);

    // A write cut short at the end (a crash before its sync) is dropped by the next one.
    let c8 = signed(&k, ORIGIN, 8, "");
    let torn = &c8.note[..c8.note.len() - 10];
    std::fs::write(tmp.path().join(HISTORY_FILE), format!("{text}{torn}")).unwrap();
    assert_eq!(history(tmp.path()).len(), 2, "a torn entry is not read");
    let c9 = signed(&k, ORIGIN, 9, "");
    assert_eq!(w.submit(&c9).unwrap(), Outcome::Accepted);
    assert_eq!(history(tmp.path()), [c3, c5, c9]);

    // A witness that wants the log's signature refuses other notes; a missing directory (the
    // storage not mounted) is an error, never created.
    let strict = DirWitness::new(tmp.path())
        .require_signature(vec![Verifier::parse(&k.verifier_key()).unwrap()]);
    assert!(
        strict
            .submit(&signed(&self::key(), ORIGIN, 20, ""))
            .is_err()
    );
    assert_eq!(
        strict.submit(&signed(&k, ORIGIN, 20, "")).unwrap(),
        Outcome::Accepted
    );
    let gone = DirWitness::new(tmp.path().join("not-mounted"));
    let err = gone.submit(&signed(&k, ORIGIN, 30, "")).unwrap_err();
    assert!(format!("{err:#}").contains("mounted"), "{err:#}");
    assert!(!tmp.path().join("not-mounted").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reach_a_directory_witness_as_batches_commit() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let tmp = tempfile::tempdir().unwrap();
        let k = key();
        let (log, _) = open_log(&db.store, &k, "gw1", 16).await;
        let metrics = AuditMetrics::new().witness;
        let pump = WitnessPump::start(
            db.store.clone(),
            log.checkpoints(),
            vec![Witness::dir("nas", DirWitness::new(tmp.path()))],
            quick(),
            metrics.clone(),
        );
        for round in 1..=3u64 {
            fill(&log, 40, 8).await;
            let want = newest_size(&db.store).await;
            assert_eq!(want, 40 * round, "{kind:?}");
            eventually("the witness holds the newest checkpoint", || async {
                DirWitness::new(tmp.path())
                    .latest()
                    .unwrap()
                    .is_some_and(|c| c.size() == want)
            })
            .await;
        }
        eventually("the gauge says so", || async {
            gauge(&metrics, "nas") == (120, 0)
        })
        .await;
        // Every note it took is one the log signed, in order.
        let seen = history(tmp.path());
        assert!(seen.len() >= 3, "{kind:?}: {seen:?}");
        for pair in seen.windows(2) {
            assert!(pair[0].size() < pair[1].size(), "{kind:?}");
        }
        for cp in &seen {
            let note: String =
                sqlx::query_scalar("SELECT note FROM audit_checkpoints WHERE tree_size = $1")
                    .bind(cp.size() as i64)
                    .fetch_one(db.store.pool())
                    .await
                    .unwrap();
            assert_eq!(note, cp.note, "{kind:?}");
        }
        log.shutdown().await;
        pump.stop(Duration::from_secs(2)).await;
        let r = verify_witnessed(
            &db.store,
            &k.verifier_key(),
            vec![
                Witness::dir("nas", DirWitness::new(tmp.path()))
                    .notes()
                    .await
                    .unwrap(),
            ],
        )
        .await
        .unwrap();
        assert!(r.is_clean(), "{kind:?}: {:#?}", r.problems);
        assert_eq!(r.witnessed.len(), 1, "{kind:?}");
        assert!(
            r.witnessed[0].contains("tree size 120"),
            "{:?}",
            r.witnessed
        );
    }
}

/// Records committed by another writer (a replica, a CLI command) reach the witness too, from
/// the store; and the copier's last act on stopping is to copy the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_of_other_writers_reach_the_witness_from_the_store() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let tmp = tempfile::tempdir().unwrap();
        let k = key();
        let (ours, _) = open_log(&db.store, &k, "gw1", 16).await;
        let (theirs, _) = open_log(&db.store, &k, "cli", 16).await;
        let pump = WitnessPump::start(
            db.store.clone(),
            ours.checkpoints(),
            vec![Witness::dir("nas", DirWitness::new(tmp.path()))],
            quick(),
            AuditMetrics::new().witness,
        );
        fill(&theirs, 10, 5).await;
        eventually(
            "the other writer's checkpoint reaches the witness",
            || async {
                DirWitness::new(tmp.path())
                    .latest()
                    .unwrap()
                    .is_some_and(|c| c.size() == 10)
            },
        )
        .await;
        theirs.append(crate::tests::record(99)).await.unwrap();
        ours.shutdown().await;
        theirs.shutdown().await;
        pump.stop(Duration::from_secs(2)).await;
        assert_eq!(
            DirWitness::new(tmp.path())
                .latest()
                .unwrap()
                .unwrap()
                .size(),
            11,
            "{kind:?}: the newest is copied on stopping"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_that_is_down_slows_nothing_and_gets_the_newest_when_back() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let tmp = tempfile::tempdir().unwrap();
        let mount = tmp.path().join("mnt");
        let k = key();
        let (log, metrics) = open_log(&db.store, &k, "gw1", 16).await;
        let pump = WitnessPump::start(
            db.store.clone(),
            log.checkpoints(),
            vec![Witness::dir("usb", DirWitness::new(&mount))],
            quick(),
            metrics.witness.clone(),
        );
        fill(&log, 50, 10).await;
        assert_eq!(
            metrics.failures.get(),
            0,
            "{kind:?}: every append succeeded"
        );
        eventually("the failure is counted", || async {
            failures(&metrics.witness, "usb") > 0
        })
        .await;
        assert!(!mount.exists(), "{kind:?}: never created by the gateway");
        std::fs::create_dir(&mount).unwrap();
        eventually("the witness gets the newest once it is back", || async {
            DirWitness::new(&mount)
                .latest()
                .ok()
                .flatten()
                .is_some_and(|c| c.size() == 50)
        })
        .await;
        // What it missed is superseded: it took the newest, not every one.
        assert!(history(&mount).len() <= 2, "{kind:?}");
        log.shutdown().await;
        pump.stop(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_with_a_witness_catches_a_dropped_newest_batch() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let tmp = tempfile::tempdir().unwrap();
        let w = DirWitness::new(tmp.path());
        let k = key();
        let vkey = k.verifier_key();
        let (log, _) = open_log(&db.store, &k, "gw1", 8).await;
        fill(&log, 40, 8).await;
        let newest = newest_size(&db.store).await;
        let note: String =
            sqlx::query_scalar("SELECT note FROM audit_checkpoints WHERE tree_size = $1")
                .bind(newest as i64)
                .fetch_one(db.store.pool())
                .await
                .unwrap();
        w.submit(&SignedCheckpoint::parse(&note).unwrap()).unwrap();
        log.shutdown().await;
        let copy = || async { Witness::dir("nas", w.clone()).notes().await.unwrap() };
        let r = verify_witnessed(&db.store, &vkey, vec![copy().await])
            .await
            .unwrap();
        assert!(r.is_clean(), "{kind:?}: {:#?}", r.problems);

        let (was, now) = forge::drop_newest_batch(&db.store).await.unwrap();
        assert_eq!(was, 40);
        assert!(now < was);
        // The gap the checkpoints alone cannot show: verify passes.
        let plain = verify(&db.store, &vkey).await.unwrap();
        assert!(plain.is_clean(), "{kind:?}: {:#?}", plain.problems);
        assert_eq!(plain.records, now);
        // With the witness: truncated, with the witness and the sizes named.
        let r = verify_witnessed(&db.store, &vkey, vec![copy().await])
            .await
            .unwrap();
        assert_eq!(r.problems.len(), 1, "{kind:?}: {:#?}", r.problems);
        let p = &r.problems[0];
        assert!(
            p.starts_with("witness nas: TRUNCATED")
                && p.contains("tree size 40")
                && p.contains(&format!("the log has {now} records")),
            "{kind:?}: {p}"
        );

        // The log grows again past what the witness saw: now its root there differs.
        let (log, _) = open_log(&db.store, &k, "gw1", 64).await;
        fill(&log, 40, 40).await;
        log.shutdown().await;
        assert!(verify(&db.store, &vkey).await.unwrap().is_clean());
        let r = verify_witnessed(&db.store, &vkey, vec![copy().await])
            .await
            .unwrap();
        assert_eq!(r.problems.len(), 1, "{kind:?}: {:#?}", r.problems);
        assert!(
            r.problems[0].starts_with("witness nas: FORKED")
                && r.problems[0].contains("tree size 40"),
            "{kind:?}: {:#?}",
            r.problems
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_with_a_witness_catches_a_fork_signed_with_the_real_key() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let tmp = tempfile::tempdir().unwrap();
        let k = key();
        let vkey = k.verifier_key();
        let (log, _) = open_log(&db.store, &k, "gw1", 8).await;
        let pump = WitnessPump::start(
            db.store.clone(),
            log.checkpoints(),
            vec![Witness::dir("nas", DirWitness::new(tmp.path()))],
            quick(),
            AuditMetrics::new().witness,
        );
        fill(&log, 60, 6).await;
        log.shutdown().await;
        pump.stop(Duration::from_secs(2)).await;
        let seen = history(tmp.path());
        assert_eq!(seen.last().unwrap().size(), 60, "{kind:?}");
        let copy = || async {
            Witness::dir("nas", DirWitness::new(tmp.path()))
                .notes()
                .await
                .unwrap()
        };

        // Record 5 changed, the tree rebuilt, every checkpoint re-signed with the real key.
        forge::rewrite_record(&db.store, &k, ORIGIN, 5, |r| {
            r.replacen("\"reason\":\"", "\"reason\":\"forged_", 1)
        })
        .await
        .unwrap();
        let plain = verify(&db.store, &vkey).await.unwrap();
        assert!(
            plain.is_clean(),
            "{kind:?}: a re-signed fork passes verify: {:#?}",
            plain.problems
        );
        let r = verify_witnessed(&db.store, &vkey, vec![copy().await])
            .await
            .unwrap();
        assert!(
            r.problems[0].starts_with("witness nas: FORKED: the log's root at tree size")
                && r.problems[0].contains(&format!("tree size {} ", seen[0].size())),
            "{kind:?}: {:#?}",
            r.problems
        );
        // Every later checkpoint it holds differs too; said once, with the count.
        if seen.len() > 1 {
            assert!(
                r.problems
                    .iter()
                    .any(|p| p.contains(&format!("and {} later checkpoint(s)", seen.len() - 1))),
                "{kind:?}: {:#?}",
                r.problems
            );
        }
        // A witness copy that was altered (not signed by the log's key) is told apart.
        let other = self::key();
        let fake = other.sign_checkpoint(ORIGIN, 70, &[7; 32]);
        let r = verify_witnessed(
            &db.store,
            &vkey,
            vec![WitnessCopy {
                name: "forged".into(),
                notes: Box::new(std::iter::once(Ok(fake))),
            }],
        )
        .await
        .unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.starts_with("witness forged:")
                    && p.contains("not signed by the log's key")),
            "{kind:?}: {:#?}",
            r.problems
        );
        let r = verify_witnessed(
            &db.store,
            &vkey,
            vec![WitnessCopy {
                name: "empty".into(),
                notes: Box::new(std::iter::empty()),
            }],
        )
        .await
        .unwrap();
        assert!(
            r.problems[0].contains("holds no checkpoint"),
            "{:#?}",
            r.problems
        );
    }
}

/// A running gateway whose newest batch is dropped behind its back: the copier sees that the
/// log no longer has the witness's checkpoint, raises the alarm, and never overwrites the
/// witness's copy with the log's later (forked) checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copier_stops_at_a_log_that_no_longer_has_the_witnesses_checkpoint() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let tmp = tempfile::tempdir().unwrap();
        let k = key();
        let (log, _) = open_log(&db.store, &k, "gw1", 8).await;
        let metrics = AuditMetrics::new().witness;
        let pump = WitnessPump::start(
            db.store.clone(),
            log.checkpoints(),
            vec![Witness::dir("nas", DirWitness::new(tmp.path()))],
            quick(),
            metrics.clone(),
        );
        fill(&log, 24, 8).await;
        eventually("copied", || async {
            DirWitness::new(tmp.path())
                .latest()
                .unwrap()
                .is_some_and(|c| c.size() == 24)
        })
        .await;
        forge::drop_newest_batch(&db.store).await.unwrap();
        fill(&log, 40, 8).await;
        eventually("the alarm is raised", || async {
            gauge(&metrics, "nas").1 == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            DirWitness::new(tmp.path())
                .latest()
                .unwrap()
                .unwrap()
                .size(),
            24,
            "{kind:?}: the evidence is kept"
        );
        log.shutdown().await;
        pump.stop(Duration::from_secs(2)).await;
    }
}

/// A witness another replica copied a newer checkpoint to: it refuses this gateway's older
/// one, which is counted, but the log has the witness's checkpoint, so no alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_ahead_of_this_gateway_refuses_it_which_is_counted_without_an_alarm() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let tmp = tempfile::tempdir().unwrap();
        let k = key();
        let (ours, _) = open_log(&db.store, &k, "gw-a", 8).await;
        let (theirs, _) = open_log(&db.store, &k, "gw-b", 8).await;
        let metrics = AuditMetrics::new().witness;
        let pump = WitnessPump::start(
            db.store.clone(),
            ours.checkpoints(),
            vec![Witness::dir("nas", DirWitness::new(tmp.path()))],
            PumpConfig {
                interval: Duration::from_secs(2),
                poll: Duration::from_secs(3600),
                timeout: Duration::from_secs(2),
            },
            metrics.clone(),
        );
        fill(&ours, 8, 8).await;
        eventually("the first copy", || async {
            DirWitness::new(tmp.path()).latest().unwrap().is_some()
        })
        .await;
        // Within the copier's interval: our next batch, then the other replica's, which its
        // own copier hands the witness first.
        ours.append(crate::tests::record(100)).await.unwrap();
        fill(&theirs, 8, 8).await;
        let note: String = sqlx::query_scalar(
            "SELECT note FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_one(db.store.pool())
        .await
        .unwrap();
        let ahead = SignedCheckpoint::parse(&note).unwrap();
        assert_eq!(ahead.size(), 17, "{kind:?}");
        assert_eq!(
            DirWitness::new(tmp.path()).submit(&ahead).unwrap(),
            Outcome::Accepted
        );
        let refused = vec![
            ("witness", "nas".to_string()),
            ("reason", "older".to_string()),
        ];
        eventually("the refusal is counted", || async {
            metrics.refused.get_or_create(&refused).get() == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            gauge(&metrics, "nas").1,
            0,
            "{kind:?}: the log has it: no alarm"
        );
        assert_eq!(
            DirWitness::new(tmp.path()).latest().unwrap(),
            Some(ahead),
            "{kind:?}"
        );
        ours.shutdown().await;
        theirs.shutdown().await;
        pump.stop(Duration::from_secs(2)).await;
    }
}

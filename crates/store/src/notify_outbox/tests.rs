use super::*;
use crate::testdb::TestDb;

async fn put(s: &Store, id: &str, at: i64, channels: &[&str]) -> Vec<String> {
    let mut tx = s.pool().begin().await.unwrap();
    let body = format!(r#"{{"id":"{id}"}}"#);
    let notice = NewNotice {
        id,
        kind: "break_glass_declared",
        created_at: at,
        body: &body,
    };
    let ids = enqueue(&mut tx, &notice, channels).await.unwrap();
    tx.commit().await.unwrap();
    ids
}

#[tokio::test]
async fn a_delivery_is_claimed_once_and_kept_when_delivered() {
    for db in TestDb::both().await {
        let s = &db.store;
        let t = 1_000_000;
        let ids = put(s, "n1", t, &["webhook:https://a/", "smtp"]).await;
        assert_eq!(ids.len(), 2);
        assert_eq!(
            backlog(s).await.unwrap(),
            Backlog {
                pending: 2,
                oldest_created_at: Some(t)
            }
        );
        assert_eq!(next_due(s).await.unwrap(), Some(t));

        let got = claim(s, "a", t, 60, 10).await.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|c| c.attempt == 1 && c.notice_id == "n1"));
        assert_eq!(got[0].body, r#"{"id":"n1"}"#);
        // Held: nobody else gets them, and they are due again when the lease ends.
        assert!(claim(s, "b", t + 30, 60, 10).await.unwrap().is_empty());
        assert_eq!(next_due(s).await.unwrap(), Some(t + 61));

        assert!(mark_delivered(s, &got[0], "a", t + 1).await.unwrap());
        assert!(
            mark_failed(s, &got[1], "a", t + 1, "connection refused", Some(t + 10))
                .await
                .unwrap()
        );
        assert_eq!(backlog(s).await.unwrap().pending, 1);
        assert_eq!(next_due(s).await.unwrap(), Some(t + 10));
        assert!(claim(s, "b", t + 9, 60, 10).await.unwrap().is_empty());

        let again = claim(s, "b", t + 10, 60, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].delivery_id, got[1].delivery_id);
        assert_eq!(again[0].attempt, 2);
        assert!(mark_delivered(s, &again[0], "b", t + 11).await.unwrap());
        assert!(claim(s, "c", t + 1000, 60, 10).await.unwrap().is_empty());
        assert_eq!(backlog(s).await.unwrap(), Backlog::default());
        assert_eq!(next_due(s).await.unwrap(), None);

        let rows = deliveries(s, "n1").await.unwrap();
        let smtp = rows.iter().find(|d| d.channel == "smtp").unwrap();
        assert_eq!(smtp.attempts, 2);
        assert_eq!(smtp.delivered_at, Some(t + 11));
        assert_eq!(smtp.last_error.as_deref(), Some("connection refused"));
        assert_eq!(smtp.claimed_by.as_deref(), Some("b"));
        let hook = rows.iter().find(|d| d.channel != "smtp").unwrap();
        assert_eq!((hook.attempts, hook.delivered_at), (1, Some(t + 1)));
    }
}

#[tokio::test]
async fn an_expired_lease_passes_to_another_sender_and_the_first_cannot_mark_it() {
    for db in TestDb::both().await {
        let s = &db.store;
        let t = 2_000_000;
        put(s, "n1", t, &["smtp"]).await;
        let dead = claim(s, "dead-replica", t, 30, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(claim(s, "live", t + 30, 30, 10).await.unwrap().is_empty());
        let live = claim(s, "live", t + 31, 30, 10).await.unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].attempt, 2);
        // The first sender comes back late: its claim is gone.
        assert!(
            !mark_delivered(s, &dead[0], "dead-replica", t + 32)
                .await
                .unwrap()
        );
        assert!(
            !mark_failed(s, &dead[0], "dead-replica", t + 32, "late", None)
                .await
                .unwrap()
        );
        assert!(mark_delivered(s, &live[0], "live", t + 33).await.unwrap());
        let d = &deliveries(s, "n1").await.unwrap()[0];
        assert_eq!(d.delivered_at, Some(t + 33));
        assert_eq!(d.gave_up_at, None);
    }
}

#[tokio::test]
async fn a_given_up_delivery_stays_with_its_error_and_is_pruned_later() {
    for db in TestDb::both().await {
        let s = &db.store;
        let t = 3_000_000;
        put(s, "old", t, &["smtp"]).await;
        put(s, "pending", t, &["smtp"]).await;
        let mut got = claim(s, "a", t, 60, 10).await.unwrap();
        got.sort_by(|a, b| a.notice_id.cmp(&b.notice_id));
        assert!(
            mark_failed(s, &got[0], "a", t + 1, "550 no such user", None)
                .await
                .unwrap()
        );
        assert!(
            mark_failed(s, &got[1], "a", t + 1, "timeout", Some(t + 100))
                .await
                .unwrap()
        );
        let d = &deliveries(s, "old").await.unwrap()[0];
        assert_eq!(d.gave_up_at, Some(t + 1));
        assert_eq!(d.last_error.as_deref(), Some("550 no such user"));
        assert!(claim(s, "a", t + 10_000, 60, 10).await.unwrap().len() == 1);
        assert_eq!(backlog(s).await.unwrap().pending, 1);
        // Only the finished notice goes.
        assert_eq!(prune(s, t + 1).await.unwrap(), 1);
        assert!(deliveries(s, "old").await.unwrap().is_empty());
        assert_eq!(deliveries(s, "pending").await.unwrap().len(), 1);
    }
}

/// Two replicas (two pools on one database) racing for the same rows: every row goes to
/// exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_senders_never_claim_one_row_twice() {
    for db in TestDb::both().await {
        let t = 4_000_000;
        for i in 0..40 {
            put(&db.store, &format!("n{i}"), t, &["a", "b"]).await;
        }
        let other = Store::open(&db.url).await.unwrap();
        let mut tasks = Vec::new();
        for (name, store) in [("r1", db.store.clone()), ("r2", other.clone())] {
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = claim(&store, name, t, 600, 7).await.unwrap();
                    if got.is_empty() {
                        break;
                    }
                    mine.extend(got.into_iter().map(|c| c.delivery_id));
                }
                mine
            }));
        }
        let mut all = Vec::new();
        let mut each = Vec::new();
        for task in tasks {
            let mine = task.await.unwrap();
            each.push(mine.len());
            all.extend(mine);
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!((n, all.len()), (80, 80), "claims per replica: {each:?}");
        other.close().await;
    }
}

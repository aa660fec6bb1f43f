//! The change log: which item of which topic changed, in the order the changes committed, for
//! gateways that keep facts in memory and must see a change within a poll (a withdrawal of
//! consent on every replica within a second). A change takes the next value of the change
//! counter as its sequence number, in the writer's transaction; the counter's row lock orders
//! writers, so a reader that has seen sequence N has seen every change up to N.
//!
//! Patient changes (patients, care teams, consent windows) are recorded by triggers
//! (migration 0009), so no writer can forget them; [`record`] is for topics written only here.

use anyhow::Result;
use sqlx::{Any, Row, Transaction};

use super::{Store, now};

/// Topics of the change log.
pub mod topic {
    /// A patient's consent, care team, consent windows or cards (item: the patient id).
    pub const PATIENT: &str = "patient";
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub topic: String,
    pub item: String,
}

/// Records that `item` of `topic` changed, in the caller's transaction, moving the change
/// counter past it.
pub async fn record(tx: &mut Transaction<'_, Any>, topic: &str, item: &str) -> Result<i64> {
    let seq: i64 =
        sqlx::query_scalar("UPDATE generation SET value = value + 1 WHERE id = 1 RETURNING value")
            .fetch_one(&mut **tx)
            .await?;
    sqlx::query("INSERT INTO changes (seq, topic, item, at) VALUES ($1, $2, $3, $4)")
        .bind(seq)
        .bind(topic)
        .bind(item)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    Ok(seq)
}

/// The changes after `seq` (up to `limit`), or `None` when some of them were pruned and the
/// reader must reload everything.
pub async fn since(store: &Store, seq: i64, limit: i64) -> Result<Option<Vec<Change>>> {
    let pruned: i64 = sqlx::query_scalar("SELECT pruned_through FROM changes_horizon WHERE id = 1")
        .fetch_one(store.pool())
        .await?;
    if seq < pruned {
        return Ok(None);
    }
    let rows =
        sqlx::query("SELECT seq, topic, item FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(seq)
            .bind(limit)
            .fetch_all(store.pool())
            .await?;
    rows.iter()
        .map(|r| {
            Ok(Change {
                seq: r.try_get("seq")?,
                topic: r.try_get("topic")?,
                item: r.try_get("item")?,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Drops changes older than `older_than` (Unix seconds); returns how many.
pub async fn prune(store: &Store, older_than: i64) -> Result<u64> {
    let mut tx = store.begin_write().await?;
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM changes WHERE at < $1")
        .bind(older_than)
        .fetch_one(&mut *tx)
        .await?;
    let Some(last) = last else {
        return Ok(0);
    };
    let n = sqlx::query("DELETE FROM changes WHERE seq <= $1")
        .bind(last)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(
        "UPDATE changes_horizon SET pruned_through = $1 WHERE id = 1 AND pruned_through < $1",
    )
    .bind(last)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb::TestDb;

    #[tokio::test]
    async fn changes_come_in_order_and_pruning_asks_for_a_reload() {
        for db in TestDb::both().await {
            let s = &db.store;
            let start = s.generation().await.unwrap();
            for p in ["P1", "P2", "P1"] {
                let mut tx = s.begin_write().await.unwrap();
                record(&mut tx, topic::PATIENT, p).await.unwrap();
                tx.commit().await.unwrap();
            }
            let got = since(s, start, 100).await.unwrap().unwrap();
            let items: Vec<_> = got.iter().map(|c| c.item.as_str()).collect();
            assert_eq!(items, ["P1", "P2", "P1"]);
            assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
            assert_eq!(s.generation().await.unwrap(), got[2].seq);
            assert_eq!(since(s, got[1].seq, 100).await.unwrap().unwrap().len(), 1);
            // Everything is older than "now + 10 s": pruned, and an older reader must reload.
            assert_eq!(prune(s, now() + 10).await.unwrap(), 3);
            assert_eq!(since(s, start, 100).await.unwrap(), None);
            assert_eq!(since(s, got[2].seq, 100).await.unwrap(), Some(vec![]));
        }
    }
}

//! The notification outbox: notices for security officers (a break-glass declaration, a
//! declaration left unreviewed, an anomaly) and their deliveries, one per channel.
//!
//! The notice is written in the same transaction as whatever it reports (or one of its own), so
//! it cannot be lost between the event and the send; the gateway's sender then delivers each row
//! with retries until it succeeds or is given up. Several replicas on one PostgreSQL share the
//! outbox: a sender takes a due row with a conditional UPDATE that sets a lease, so one replica
//! at a time holds it, and the lease of a replica that died mid-send runs out and the row is
//! due again. A delivery can therefore reach a receiver twice (a crash after the send, before
//! the row is marked), never at the same time; receivers deduplicate on the delivery id.
//!
//! Times are Unix seconds from the caller's clock (replicas keep their clocks in sync).

use anyhow::Result;
use sqlx::{Any, Row, Transaction};

use super::Store;

/// A notice to write: its id and `body` (the JSON receivers get) are made by the caller.
#[derive(Clone, Debug)]
pub struct NewNotice<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub created_at: i64,
    pub body: &'a str,
}

/// A delivery a sender has claimed, with what it needs to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub delivery_id: String,
    pub notice_id: String,
    pub kind: String,
    pub channel: String,
    /// When the notice was made: retries stop a bounded time after it.
    pub created_at: i64,
    /// This claim's number: 1 for the first attempt.
    pub attempt: i64,
    pub body: String,
}

/// A delivery as it stands, for operators and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub notice_id: String,
    pub channel: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub claimed_by: Option<String>,
    pub lease_until: Option<i64>,
    pub delivered_at: Option<i64>,
    pub gave_up_at: Option<i64>,
    pub last_error: Option<String>,
}

/// What is still to be delivered: the count and when the oldest of it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    pub pending: i64,
    pub oldest_created_at: Option<i64>,
}

/// A random id for a notice or a delivery (128 bits, hex).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("the system random source");
    hex::encode(b)
}

/// Writes `notice` and one delivery per channel, due at once, in the caller's transaction;
/// returns the delivery ids in the order of `channels`.
pub async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    notice: &NewNotice<'_>,
    channels: &[&str],
) -> Result<Vec<String>> {
    sqlx::query("INSERT INTO notify_notices (id, kind, created_at, body) VALUES ($1, $2, $3, $4)")
        .bind(notice.id)
        .bind(notice.kind)
        .bind(notice.created_at)
        .bind(notice.body)
        .execute(&mut **tx)
        .await?;
    let mut ids = Vec::with_capacity(channels.len());
    for channel in channels {
        let id = new_id();
        sqlx::query(
            "INSERT INTO notify_deliveries (id, notice_id, channel, created_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&id)
        .bind(notice.id)
        .bind(*channel)
        .bind(notice.created_at)
        .execute(&mut **tx)
        .await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Claims up to `limit` due deliveries for `claimant` until `now + lease_secs`. A row is due
/// when it is neither delivered nor given up, its next attempt has come, and nobody holds an
/// unexpired lease on it. Each row is taken by an UPDATE that re-checks those conditions, so of
/// two senders racing for a row one gets it: SQLite serialises writers, and PostgreSQL
/// re-evaluates the WHERE clause on the row the other transaction committed.
pub async fn claim(
    store: &Store,
    claimant: &str,
    now: i64,
    lease_secs: i64,
    limit: i64,
) -> Result<Vec<Claimed>> {
    let candidates: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM notify_deliveries
         WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= $1
           AND (lease_until IS NULL OR lease_until < $1)
         ORDER BY next_attempt_at, created_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    let mut claimed = Vec::with_capacity(candidates.len());
    for id in candidates {
        let row = sqlx::query(
            "UPDATE notify_deliveries
             SET claimed_by = $1, lease_until = $2, attempts = attempts + 1
             WHERE id = $3 AND delivered_at IS NULL AND gave_up_at IS NULL
               AND next_attempt_at <= $4 AND (lease_until IS NULL OR lease_until < $4)
             RETURNING attempts",
        )
        .bind(claimant)
        .bind(now + lease_secs)
        .bind(&id)
        .bind(now)
        .fetch_optional(store.pool())
        .await?;
        let Some(row) = row else {
            continue; // another sender took it first
        };
        let attempt: i64 = row.try_get("attempts")?;
        let n = sqlx::query(
            "SELECT d.notice_id, d.channel, n.kind, n.created_at, n.body
             FROM notify_deliveries d JOIN notify_notices n ON n.id = d.notice_id
             WHERE d.id = $1",
        )
        .bind(&id)
        .fetch_one(store.pool())
        .await?;
        claimed.push(Claimed {
            delivery_id: id,
            notice_id: n.try_get("notice_id")?,
            kind: n.try_get("kind")?,
            channel: n.try_get("channel")?,
            created_at: n.try_get("created_at")?,
            attempt,
            body: n.try_get("body")?,
        });
    }
    Ok(claimed)
}

/// Marks a claimed delivery delivered. False if the claim was no longer this sender's (its
/// lease ran out and another sender took the row).
pub async fn mark_delivered(store: &Store, c: &Claimed, claimant: &str, now: i64) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE notify_deliveries SET delivered_at = $1, lease_until = NULL
         WHERE id = $2 AND claimed_by = $3 AND attempts = $4 AND delivered_at IS NULL",
    )
    .bind(now)
    .bind(&c.delivery_id)
    .bind(claimant)
    .bind(c.attempt)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Records a failed attempt: due again at `retry_at`, or given up when `retry_at` is `None`.
/// False if the claim was no longer this sender's.
pub async fn mark_failed(
    store: &Store,
    c: &Claimed,
    claimant: &str,
    now: i64,
    error: &str,
    retry_at: Option<i64>,
) -> Result<bool> {
    let error: String = error.chars().take(1000).collect();
    let n = match retry_at {
        Some(at) => sqlx::query(
            "UPDATE notify_deliveries SET next_attempt_at = $1, lease_until = NULL, last_error = $2
                 WHERE id = $3 AND claimed_by = $4 AND attempts = $5 AND delivered_at IS NULL",
        )
        .bind(at)
        .bind(&error)
        .bind(&c.delivery_id)
        .bind(claimant)
        .bind(c.attempt)
        .execute(store.pool())
        .await?,
        None => {
            sqlx::query(
                "UPDATE notify_deliveries SET gave_up_at = $1, lease_until = NULL, last_error = $2
                 WHERE id = $3 AND claimed_by = $4 AND attempts = $5 AND delivered_at IS NULL",
            )
            .bind(now)
            .bind(&error)
            .bind(&c.delivery_id)
            .bind(claimant)
            .bind(c.attempt)
            .execute(store.pool())
            .await?
        }
    };
    Ok(n.rows_affected() == 1)
}

/// When the next pending delivery becomes due (its next attempt, or the end of the lease that
/// holds it), if any is pending.
pub async fn next_due(store: &Store) -> Result<Option<i64>> {
    let rows = sqlx::query(
        "SELECT next_attempt_at, lease_until FROM notify_deliveries
         WHERE delivered_at IS NULL AND gave_up_at IS NULL",
    )
    .fetch_all(store.pool())
    .await?;
    let mut next: Option<i64> = None;
    for r in rows {
        let at: i64 = r.try_get("next_attempt_at")?;
        let lease: Option<i64> = r.try_get("lease_until")?;
        // A held row is due again when its lease has run out (`lease_until < now`).
        let due = lease.map_or(at, |l| at.max(l + 1));
        next = Some(next.map_or(due, |n| n.min(due)));
    }
    Ok(next)
}

/// Deliveries neither delivered nor given up.
pub async fn backlog(store: &Store) -> Result<Backlog> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS pending, MIN(created_at) AS oldest FROM notify_deliveries
         WHERE delivered_at IS NULL AND gave_up_at IS NULL",
    )
    .fetch_one(store.pool())
    .await?;
    Ok(Backlog {
        pending: row.try_get("pending")?,
        oldest_created_at: row.try_get("oldest")?,
    })
}

/// The deliveries of one notice, in channel order.
pub async fn deliveries(store: &Store, notice_id: &str) -> Result<Vec<Delivery>> {
    let rows = sqlx::query(
        "SELECT id, notice_id, channel, attempts, next_attempt_at, claimed_by, lease_until,
                delivered_at, gave_up_at, last_error
         FROM notify_deliveries WHERE notice_id = $1 ORDER BY channel, id",
    )
    .bind(notice_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                id: r.try_get("id")?,
                notice_id: r.try_get("notice_id")?,
                channel: r.try_get("channel")?,
                attempts: r.try_get("attempts")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                claimed_by: r.try_get("claimed_by")?,
                lease_until: r.try_get("lease_until")?,
                delivered_at: r.try_get("delivered_at")?,
                gave_up_at: r.try_get("gave_up_at")?,
                last_error: r.try_get("last_error")?,
            })
        })
        .collect()
}

/// Drops notices made before `older_than` whose deliveries are all finished (delivered or given
/// up); returns how many notices.
pub async fn prune(store: &Store, older_than: i64) -> Result<u64> {
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "DELETE FROM notify_deliveries WHERE notice_id IN (
             SELECT id FROM notify_notices n WHERE n.created_at < $1 AND NOT EXISTS (
                 SELECT 1 FROM notify_deliveries d
                 WHERE d.notice_id = n.id AND d.delivered_at IS NULL AND d.gave_up_at IS NULL))",
    )
    .bind(older_than)
    .execute(&mut *tx)
    .await?;
    // Their deliveries are gone now; notices that still have some are the unfinished ones.
    let n = sqlx::query(
        "DELETE FROM notify_notices WHERE created_at < $1
         AND NOT EXISTS (SELECT 1 FROM notify_deliveries d WHERE d.notice_id = notify_notices.id)",
    )
    .bind(older_than)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests;

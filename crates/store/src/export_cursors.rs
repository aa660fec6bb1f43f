//! Audit export cursors (docs/audit.md, "Export"): each destination's place in the log, and
//! which replica exports to it now (a lease, so that a destination gets each record from one
//! replica, in order, and another takes over when that one dies).

use anyhow::Result;
use sqlx::Row;

use super::{Store, now};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub destination: String,
    /// The first record (leaf index) the destination has not been given.
    pub next_idx: u64,
    /// The replica exporting to it, while `lease_until` (Unix ms) is ahead.
    pub holder: Option<String>,
    pub lease_until_ms: i64,
    /// When a record last reached it (Unix seconds).
    pub delivered_at: Option<i64>,
    pub updated_at: i64,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Takes or renews `node`'s lease on `destination` for `lease_ms`, making the cursor at
/// `start` if the destination is new. `Some(next_idx)` when `node` holds the lease now;
/// `None` while another replica's lease runs.
pub async fn claim(
    store: &Store,
    destination: &str,
    node: &str,
    lease_ms: i64,
    start: u64,
) -> Result<Option<u64>> {
    let t = now_ms();
    sqlx::query(
        "INSERT INTO audit_export_cursors (destination, next_idx, holder, lease_until, updated_at) \
         VALUES ($1, $2, NULL, 0, $3) ON CONFLICT (destination) DO NOTHING",
    )
    .bind(destination)
    .bind(start as i64)
    .bind(now())
    .execute(store.pool())
    .await?;
    let taken = sqlx::query(
        "UPDATE audit_export_cursors SET holder = $1, lease_until = $2 \
         WHERE destination = $3 AND (holder = $1 OR holder IS NULL OR lease_until < $4)",
    )
    .bind(node)
    .bind(t + lease_ms)
    .bind(destination)
    .bind(t)
    .execute(store.pool())
    .await?
    .rows_affected();
    if taken == 0 {
        return Ok(None);
    }
    let next: i64 =
        sqlx::query_scalar("SELECT next_idx FROM audit_export_cursors WHERE destination = $1")
            .bind(destination)
            .fetch_one(store.pool())
            .await?;
    Ok(Some(next as u64))
}

/// Moves the cursor from `from` to `to` once the destination has the records in between, and
/// renews the lease. `false` when `node` no longer holds the lease or the cursor was moved by
/// someone else (an operator's `export reset`): the exporter then stops and claims again.
pub async fn advance(
    store: &Store,
    destination: &str,
    node: &str,
    from: u64,
    to: u64,
    lease_ms: i64,
) -> Result<bool> {
    let t = now_ms();
    let moved = sqlx::query(
        "UPDATE audit_export_cursors SET next_idx = $1, lease_until = $2, delivered_at = $3, updated_at = $3 \
         WHERE destination = $4 AND holder = $5 AND next_idx = $6 AND lease_until >= $7",
    )
    .bind(to as i64)
    .bind(t + lease_ms)
    .bind(now())
    .bind(destination)
    .bind(node)
    .bind(from as i64)
    .bind(t)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// Gives the lease up (a replica stopping), so another takes over at once.
pub async fn release(store: &Store, destination: &str, node: &str) -> Result<()> {
    sqlx::query(
        "UPDATE audit_export_cursors SET holder = NULL, lease_until = 0 WHERE destination = $1 AND holder = $2",
    )
    .bind(destination)
    .bind(node)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Puts a destination's cursor at `next_idx` (an operator re-sending, or skipping, records),
/// making it if new; whoever holds the lease finds out at its next `advance`. Returns the
/// cursor it had.
pub async fn set(store: &Store, destination: &str, next_idx: u64) -> Result<Option<u64>> {
    let mut tx = store.begin_write().await?;
    let old: Option<i64> =
        sqlx::query_scalar("SELECT next_idx FROM audit_export_cursors WHERE destination = $1")
            .bind(destination)
            .fetch_optional(&mut *tx)
            .await?;
    if old.is_some() {
        sqlx::query(
            "UPDATE audit_export_cursors SET next_idx = $1, updated_at = $2 WHERE destination = $3",
        )
        .bind(next_idx as i64)
        .bind(now())
        .bind(destination)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(
            "INSERT INTO audit_export_cursors (destination, next_idx, holder, lease_until, updated_at) VALUES ($1, $2, NULL, 0, $3)",
        )
        .bind(destination)
        .bind(next_idx as i64)
        .bind(now())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(old.map(|o| o as u64))
}

pub async fn list(store: &Store) -> Result<Vec<Cursor>> {
    let rows = sqlx::query(
        "SELECT destination, next_idx, holder, lease_until, delivered_at, updated_at \
         FROM audit_export_cursors ORDER BY destination",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Cursor {
                destination: r.try_get("destination")?,
                next_idx: r.try_get::<i64, _>("next_idx")? as u64,
                holder: r.try_get("holder")?,
                lease_until_ms: r.try_get("lease_until")?,
                delivered_at: r.try_get("delivered_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb::TestDb;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_replica_holds_a_destination_and_the_cursor_moves_only_forward_from_where_it_is() {
        for db in TestDb::both().await {
            let s = &db.store;
            assert_eq!(claim(s, "siem", "gw1", 60_000, 0).await.unwrap(), Some(0));
            // gw2 waits while gw1's lease runs; gw1 renews it.
            assert_eq!(claim(s, "siem", "gw2", 60_000, 0).await.unwrap(), None);
            assert_eq!(claim(s, "siem", "gw1", 60_000, 0).await.unwrap(), Some(0));
            assert!(advance(s, "siem", "gw1", 0, 10, 60_000).await.unwrap());
            // A stale `from` (a cursor moved meanwhile) or another holder moves nothing.
            assert!(!advance(s, "siem", "gw1", 0, 20, 60_000).await.unwrap());
            assert!(!advance(s, "siem", "gw2", 10, 20, 60_000).await.unwrap());
            // Released, the other replica takes over where it stopped.
            release(s, "siem", "gw1").await.unwrap();
            assert_eq!(claim(s, "siem", "gw2", 60_000, 0).await.unwrap(), Some(10));
            assert!(!advance(s, "siem", "gw1", 10, 20, 60_000).await.unwrap());
            // An expired lease is taken over too.
            assert_eq!(claim(s, "fhir", "gw1", -1, 5).await.unwrap(), Some(5));
            assert_eq!(claim(s, "fhir", "gw2", 60_000, 0).await.unwrap(), Some(5));
            assert!(!advance(s, "fhir", "gw1", 5, 6, 60_000).await.unwrap());
            // An operator's reset: the holder finds out at its next advance.
            assert_eq!(set(s, "siem", 3).await.unwrap(), Some(10));
            assert!(!advance(s, "siem", "gw2", 10, 11, 60_000).await.unwrap());
            assert_eq!(claim(s, "siem", "gw2", 60_000, 0).await.unwrap(), Some(3));
            let all = list(s).await.unwrap();
            assert_eq!(
                all.iter()
                    .map(|c| (c.destination.as_str(), c.next_idx, c.holder.as_deref()))
                    .collect::<Vec<_>>(),
                [("fhir", 5, Some("gw2")), ("siem", 3, Some("gw2"))]
            );
        }
    }
}

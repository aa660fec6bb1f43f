//! The log as the exporters read it: records in leaf order from a cursor. Only committed
//! records are visible, and every batch commits in leaf order under the head row's lock
//! (`sekisho_audit::writer`), so a read never sees record n+1 without record n: a cursor that
//! moves past what it read skips nothing.

use anyhow::{Context, Result};
use sekisho_audit::AuditRecord;
use sekisho_store::Store;
use sqlx::Row;

/// One record of the log.
#[derive(Clone, Debug)]
pub struct Entry {
    pub idx: u64,
    pub leaf_hash: [u8; 32],
    /// The stored canonical JSON (what was hashed); empty once retention pruned the body.
    pub json: String,
    /// The record, parsed; `None` once pruned.
    pub record: Option<AuditRecord>,
}

/// Up to `limit` records from `from` on, in leaf order. A record that does not parse is an
/// error, not skipped: what was written is exported or the export stops, loudly.
pub async fn read(store: &Store, from: u64, limit: usize) -> Result<Vec<Entry>> {
    let rows = sqlx::query(
        "SELECT idx, leaf_hash, record FROM audit_records WHERE idx >= $1 ORDER BY idx LIMIT $2",
    )
    .bind(from as i64)
    .bind(limit as i64)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let idx = r.try_get::<i64, _>("idx")? as u64;
            let hash: Vec<u8> = r.try_get("leaf_hash")?;
            let json: String = r.try_get("record")?;
            let record = if json.is_empty() {
                None
            } else {
                Some(
                    serde_json::from_str(&json)
                        .with_context(|| format!("audit record {idx} does not parse"))?,
                )
            };
            Ok(Entry {
                idx,
                leaf_hash: hash.try_into().map_err(|_| {
                    anyhow::anyhow!("audit record {idx}: leaf hash is not 32 bytes")
                })?,
                json,
                record,
            })
        })
        .collect()
}

/// How many records the log holds (the tree size at its head).
pub async fn size(store: &Store) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT tree_size FROM audit_head WHERE id = 1")
        .fetch_one(store.pool())
        .await?;
    Ok(n as u64)
}

//! What someone with write access to the database — and, for a fork, the checkpoint key — can
//! do to the log, for the tests that show `verify` and the witnesses catching it. Compiled only
//! for tests and with the `test-util` feature.

use anyhow::{Context, Result};
use sqlx::Row;

use super::checkpoint::CheckpointKey;
use super::merkle::{CompactRange, Hash, leaf_hash};
use sekisho_store::Store;

async fn checkpoint_sizes(store: &Store) -> Result<Vec<i64>> {
    sqlx::query_scalar("SELECT tree_size FROM audit_checkpoints ORDER BY tree_size")
        .fetch_all(store.pool())
        .await
        .context("cannot read the checkpoints")
}

async fn leaves(store: &Store, below: i64) -> Result<Vec<Hash>> {
    let rows = sqlx::query("SELECT leaf_hash FROM audit_records WHERE idx < $1 ORDER BY idx")
        .bind(below)
        .fetch_all(store.pool())
        .await?;
    rows.iter()
        .map(|r| {
            let v: Vec<u8> = r.try_get(0)?;
            v.try_into()
                .map_err(|_| anyhow::anyhow!("a leaf hash is not 32 bytes"))
        })
        .collect()
}

/// Deletes the newest batch — its records, its checkpoint — and moves the head back to the
/// batch before it, as if the batch had never been written: the gap the signed checkpoints
/// alone cannot show. Returns (the size the log had, the size it has now).
pub async fn drop_newest_batch(store: &Store) -> Result<(u64, u64)> {
    let sizes = checkpoint_sizes(store).await?;
    let newest = *sizes.last().context("the log has no checkpoint")?;
    let prev = sizes.len().checked_sub(2).map_or(0, |i| sizes[i]);
    let mut range = CompactRange::new();
    for leaf in leaves(store, prev).await? {
        range.append(leaf);
    }
    let mut tx = store.pool().begin().await?;
    sqlx::query("DELETE FROM audit_records WHERE idx >= $1")
        .bind(prev)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM audit_checkpoints WHERE tree_size = $1")
        .bind(newest)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE audit_head SET tree_size = $1, frontier = $2 WHERE id = 1")
        .bind(prev)
        .bind(range.frontier_bytes())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((newest as u64, prev as u64))
}

/// Changes record `idx` with `edit`, gives it the right leaf hash, and re-signs every
/// checkpoint from there on with `key` and writes the matching head: a rewritten log that
/// `verify` alone finds intact (a fork of what witnesses saw).
pub async fn rewrite_record(
    store: &Store,
    key: &CheckpointKey,
    origin: &str,
    idx: i64,
    edit: impl Fn(&str) -> String,
) -> Result<()> {
    let record: String = sqlx::query_scalar("SELECT record FROM audit_records WHERE idx = $1")
        .bind(idx)
        .fetch_one(store.pool())
        .await
        .context("no such record")?;
    let forged = edit(&record);
    anyhow::ensure!(forged != record, "the edit changed nothing");
    sqlx::query("UPDATE audit_records SET record = $1, leaf_hash = $2 WHERE idx = $3")
        .bind(forged.clone())
        .bind(leaf_hash(forged.as_bytes()).to_vec())
        .bind(idx)
        .execute(store.pool())
        .await?;
    let sizes = checkpoint_sizes(store).await?;
    let end = sizes.last().copied().unwrap_or(0);
    let mut range = CompactRange::new();
    let mut next = sizes.iter().copied().peekable();
    for leaf in leaves(store, end).await? {
        range.append(leaf);
        while next.peek() == Some(&(range.size() as i64)) {
            let size = next.next().expect("peeked");
            if size > idx {
                let note = key.sign_checkpoint(origin, range.size(), &range.root());
                sqlx::query("UPDATE audit_checkpoints SET note = $1 WHERE tree_size = $2")
                    .bind(note)
                    .bind(size)
                    .execute(store.pool())
                    .await?;
            }
        }
    }
    sqlx::query("UPDATE audit_head SET tree_size = $1, frontier = $2 WHERE id = 1")
        .bind(range.size() as i64)
        .bind(range.frontier_bytes())
        .execute(store.pool())
        .await?;
    Ok(())
}

//! One-time enrollment codes (R-TERM-2). Only hashes are stored; a code is consumed in the same
//! transaction that registers the certificate it paid for.

use anyhow::Result;
use sqlx::{Any, Row, Transaction};

use super::{Store, now};

pub struct NewCode<'a> {
    pub code_hash: &'a str,
    pub pin_hash: &'a str,
    pub facility: &'a str,
    pub terminal: &'a str,
    pub expires_at: i64,
    pub attempts: i64,
}

pub async fn insert(store: &Store, c: &NewCode<'_>) -> Result<()> {
    let mut tx = store.begin_write().await?;
    crate::facilities::ensure_open(&mut tx, c.facility).await?;
    sqlx::query(
        "INSERT INTO enroll_codes (code_hash, pin_hash, facility, terminal, created_at, expires_at, attempts_left)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.code_hash)
    .bind(c.pin_hash)
    .bind(c.facility)
    .bind(c.terminal)
    .bind(now())
    .bind(c.expires_at)
    .bind(c.attempts)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug)]
pub struct CodeRow {
    pub pin_hash: String,
    pub facility: String,
    pub terminal: String,
    pub expires_at: i64,
    pub attempts_left: i64,
    pub used_at: Option<i64>,
}

/// Reads the code row with its write lock held (a no-op update first), so that two
/// enrollments racing on one code serialise and only one can consume it.
pub async fn lock(tx: &mut Transaction<'_, Any>, code_hash: &str) -> Result<Option<CodeRow>> {
    sqlx::query("UPDATE enroll_codes SET attempts_left = attempts_left WHERE code_hash = $1")
        .bind(code_hash)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query(
        "SELECT pin_hash, facility, terminal, expires_at, attempts_left, used_at
         FROM enroll_codes WHERE code_hash = $1",
    )
    .bind(code_hash)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(CodeRow {
            pin_hash: r.try_get("pin_hash")?,
            facility: r.try_get("facility")?,
            terminal: r.try_get("terminal")?,
            expires_at: r.try_get("expires_at")?,
            attempts_left: r.try_get("attempts_left")?,
            used_at: r.try_get("used_at")?,
        })
    })
    .transpose()
}

pub async fn record_failure(tx: &mut Transaction<'_, Any>, code_hash: &str) -> Result<()> {
    sqlx::query("UPDATE enroll_codes SET attempts_left = attempts_left - 1 WHERE code_hash = $1 AND attempts_left > 0")
        .bind(code_hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn consume(tx: &mut Transaction<'_, Any>, code_hash: &str) -> Result<()> {
    sqlx::query("UPDATE enroll_codes SET used_at = $1 WHERE code_hash = $2")
        .bind(now())
        .bind(code_hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

//! The CRL the issuing CA last signed. It lives in the store so that every replica serves the
//! same one, and its number only grows.

use anyhow::Result;
use sqlx::{Any, Row, Transaction};

use super::{Store, bump_generation};

#[derive(Clone, Debug)]
pub struct StoredCrl {
    pub number: i64,
    pub der: Vec<u8>,
    pub next_update: i64,
}

pub async fn current(store: &Store) -> Result<Option<StoredCrl>> {
    let row = sqlx::query("SELECT crl_number, der, next_update FROM crl_state WHERE id = 1")
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| {
        Ok(StoredCrl {
            number: r.try_get("crl_number")?,
            der: r.try_get("der")?,
            next_update: r.try_get("next_update")?,
        })
    })
    .transpose()
}

/// The number the next CRL gets; also takes the row's write lock first so that two writers
/// re-signing at once serialise (SQLite's write lock, PostgreSQL's row lock).
pub async fn lock_next_number(tx: &mut Transaction<'_, Any>) -> Result<i64> {
    sqlx::query("UPDATE crl_state SET crl_number = crl_number WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    let n: Option<i64> = sqlx::query_scalar("SELECT crl_number FROM crl_state WHERE id = 1")
        .fetch_optional(&mut **tx)
        .await?;
    Ok(n.map_or(1, |n| n + 1))
}

pub async fn save(tx: &mut Transaction<'_, Any>, crl: &StoredCrl) -> Result<()> {
    sqlx::query(
        "INSERT INTO crl_state (id, crl_number, der, next_update) VALUES (1, $1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET crl_number = $1, der = $2, next_update = $3",
    )
    .bind(crl.number)
    .bind(&crl.der)
    .bind(crl.next_update)
    .execute(&mut **tx)
    .await?;
    bump_generation(tx).await
}

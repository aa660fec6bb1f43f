//! Credentials for the management listener's API (issue 13, R-OPS-4). A token is 256 random
//! bits; the store keeps its SHA-256 only, so a copy of the database gives no way in.

use anyhow::{Result, bail};
use sqlx::Row;

use super::{Store, now};

#[derive(Clone, Debug)]
pub struct TokenRow {
    pub name: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Records a new token by its hash (lowercase hex SHA-256). Names are unique for good: a
/// revoked name is not reused, so the audit log's "token:NAME" always means one token.
pub async fn add(
    store: &Store,
    name: &str,
    token_hash: &str,
    scopes: &[String],
    created_by: &str,
) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO operator_tokens (name, token_hash, scopes, created_by, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(name)
    .bind(token_hash)
    .bind(scopes.join(" "))
    .bind(created_by)
    .bind(now())
    .execute(store.pool())
    .await;
    match r {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            bail!("a token named {name} exists already (names are not reused)")
        }
        Err(e) => Err(e.into()),
    }
}

/// The name and scopes of the live token with this hash, noting its use.
pub async fn check(store: &Store, token_hash: &str) -> Result<Option<(String, Vec<String>)>> {
    let found: Option<(String, String)> = sqlx::query_as(
        "SELECT name, scopes FROM operator_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(store.pool())
    .await?;
    let found = found.map(|(n, s)| (n, s.split_whitespace().map(str::to_string).collect()));
    if let Some((n, _)) = &found {
        sqlx::query("UPDATE operator_tokens SET last_used_at = $1 WHERE name = $2")
            .bind(now())
            .bind(n)
            .execute(store.pool())
            .await?;
    }
    Ok(found)
}

pub async fn list(store: &Store) -> Result<Vec<TokenRow>> {
    let rows = sqlx::query(
        "SELECT name, scopes, created_by, created_at, last_used_at, revoked_at FROM operator_tokens ORDER BY name",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenRow {
                name: r.try_get("name")?,
                scopes: r
                    .try_get::<String, _>("scopes")?
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
                created_by: r.try_get("created_by")?,
                created_at: r.try_get("created_at")?,
                last_used_at: r.try_get("last_used_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .collect()
}

/// False when there is no live token of that name.
pub async fn revoke(store: &Store, name: &str) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE operator_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
    )
    .bind(now())
    .bind(name)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

//! Failure counters per account and per terminal (R-ACCT-5). Kept apart so that one terminal's
//! failures never lock physicians out, and one account's never block a terminal.

use anyhow::Result;
use sqlx::Row;

use super::{Store, now};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Account,
    Terminal,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Terminal => "terminal",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Counter {
    pub failures: i64,
    pub last_failure_at: i64,
    pub locked_at: Option<i64>,
}

pub async fn get(store: &Store, scope: Scope, subject: &str) -> Result<Counter> {
    let row = sqlx::query("SELECT failures, last_failure_at, locked_at FROM lockouts WHERE scope = $1 AND subject = $2")
        .bind(scope.as_str())
        .bind(subject)
        .fetch_optional(store.pool())
        .await?;
    Ok(match row {
        Some(r) => Counter {
            failures: r.try_get("failures")?,
            last_failure_at: r.try_get("last_failure_at")?,
            locked_at: r.try_get("locked_at")?,
        },
        None => Counter::default(),
    })
}

/// Counts a failure; locks the subject when `lock_at` failures are reached. Returns the new
/// counter. One statement, so concurrent failures on several replicas all count.
pub async fn record_failure(
    store: &Store,
    scope: Scope,
    subject: &str,
    lock_at: i64,
) -> Result<Counter> {
    let t = now();
    sqlx::query(
        "INSERT INTO lockouts (scope, subject, failures, last_failure_at, locked_at)
         VALUES ($1, $2, 1, $3, CASE WHEN $4 <= 1 THEN $3 ELSE NULL END)
         ON CONFLICT (scope, subject) DO UPDATE SET
           failures = lockouts.failures + 1,
           last_failure_at = $3,
           locked_at = CASE WHEN lockouts.locked_at IS NOT NULL THEN lockouts.locked_at
                            WHEN lockouts.failures + 1 >= $4 THEN $3 ELSE NULL END",
    )
    .bind(scope.as_str())
    .bind(subject)
    .bind(t)
    .bind(lock_at)
    .execute(store.pool())
    .await?;
    get(store, scope, subject).await
}

/// A success clears the failure count (not a lock: only the secretariat lifts that).
pub async fn clear_failures(store: &Store, scope: Scope, subject: &str) -> Result<()> {
    sqlx::query(
        "UPDATE lockouts SET failures = 0 WHERE scope = $1 AND subject = $2 AND locked_at IS NULL",
    )
    .bind(scope.as_str())
    .bind(subject)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Lifts a lock; true if there was one.
pub async fn unlock(store: &Store, scope: Scope, subject: &str) -> Result<bool> {
    let n = sqlx::query(
        "DELETE FROM lockouts WHERE scope = $1 AND subject = $2 AND locked_at IS NOT NULL",
    )
    .bind(scope.as_str())
    .bind(subject)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Subjects of `scope` that are locked now, with when they were locked (the console's
/// dashboard).
pub async fn locked(store: &Store, scope: Scope) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT subject, locked_at FROM lockouts WHERE scope = $1 AND locked_at IS NOT NULL ORDER BY locked_at DESC",
    )
    .bind(scope.as_str())
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("subject")?, r.try_get("locked_at")?)))
        .collect()
}

//! Sekisho's store: what the gateway, its replicas and the `sekisho` CLI share.
//!
//! One `sqlx` Any pool over SQLite (the embedded default, one file in WAL mode) or PostgreSQL
//! (several gateway replicas share it). Queries are written once with `$n` placeholders, which
//! both drivers accept; only the DDL differs per dialect, and the migrations are part of the
//! binary. Timestamps are Unix seconds (`i64`) because the Any driver carries no date types.
//! One writer goes around `Any`: the audit log's inserts, on a connection of the driver itself
//! ([`direct`]), because `Any` copies every bound value twice.
//!
//! One module per table family: `terminals` (the registry, R-TERM-*), `enrollment` (access
//! codes), `crl`, `users`, `sessions` and `lockouts` (sign-in, R-ACCT-*), `patients` and
//! `consent` (R-PAT-*), `tunnel_peers`, `notify_outbox` (notices for security officers,
//! delivered by the gateway with retries). Every change that gateways must notice bumps one change
//! counter ([`Store::generation`]) in the same transaction, so replicas poll one number.
//! The audit tables are written by `sekisho-audit`.
//!
//! [`durable`] writes files whole or not at all (keys, checkpoints, cached CRLs).

pub mod anomaly;
pub mod break_glass;
pub mod changes;
pub mod consent;
pub mod crl;
pub mod direct;
pub mod durable;
pub mod enrollment;
pub mod export_cursors;
pub mod facilities;
pub mod lockouts;
mod migrations;
pub mod notices;
pub mod notify_outbox;
pub mod operator_tokens;
pub mod patients;
pub mod sessions;
pub mod terminals;
#[cfg(any(test, feature = "test-util"))]
pub mod testdb;
pub mod tunnel_peers;
pub mod users;

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    kind: DbKind,
    /// For connections of the driver itself, outside the pool ([`direct`]).
    direct: direct::DirectOptions,
}

impl Store {
    /// Opens the database at `url` (`sqlite://path` or `postgres://…`) and applies the embedded
    /// migrations. Safe to call from several processes at once (CLI and gateway, or replicas).
    pub async fn open(url: &str) -> Result<Store> {
        install_default_drivers();
        let kind = if url.starts_with("sqlite:") {
            DbKind::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            DbKind::Postgres
        } else {
            anyhow::bail!(
                "unsupported database URL (use sqlite:// or postgres://): {}",
                redact_url(url)
            );
        };
        let url = match kind {
            // Create the file on first use.
            DbKind::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        };
        let mut opts = AnyPoolOptions::new()
            .max_connections(if kind == DbKind::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(5));
        if kind == DbKind::Sqlite {
            opts = opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(direct::SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            });
        }
        let pool = opts
            .connect(&url)
            .await
            .with_context(|| format!("cannot open the database {}", redact_url(&url)))?;
        let direct = direct::DirectOptions::parse(&url, kind)
            .with_context(|| format!("cannot read the database URL {}", redact_url(&url)))?;
        let store = Store { pool, kind, direct };
        migrations::run(&store).await?;
        Ok(store)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that writes. On SQLite it takes the write lock at its start (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads and then writes fails at once ("database
    /// is locked") when another connection committed in between, where one that asks for the
    /// lock first waits for it (`busy_timeout`). On PostgreSQL an ordinary transaction.
    pub async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.kind {
            DbKind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            DbKind::Postgres => self.pool.begin().await,
        }
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// A connection of the database's own driver, outside the pool (`direct.rs`: the audit
    /// log's inserts). The caller closes it.
    pub async fn connect_direct(&self) -> sqlx::Result<direct::DirectConnection> {
        direct::DirectConnection::open(&self.direct).await
    }

    /// The change counter gateways poll to pick up registry and CRL changes.
    pub async fn generation(&self) -> Result<i64> {
        let v: i64 = sqlx::query_scalar("SELECT value FROM generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(v)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Bumps the change counter inside the caller's transaction, so the change and its signal
/// commit together.
pub(crate) async fn bump_generation(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Hides a password in a database URL before it reaches a message or a log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///x.db"), "sqlite:///x.db");
    }
}

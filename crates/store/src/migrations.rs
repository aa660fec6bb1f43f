//! Embedded migrations, applied in order, each once, each in its own transaction. The
//! `schema_migrations` insert comes first in the transaction so that two processes migrating at
//! once serialise on it (SQLite's write lock, PostgreSQL's unique index) instead of both applying.

use anyhow::{Context, Result};

use super::{DbKind, Store};

/// A migration's SQL per dialect; where the dialects agree both name the same file.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "registry",
        sqlite: include_str!("migrations/0001_registry.sqlite.sql"),
        postgres: include_str!("migrations/0001_registry.postgres.sql"),
    },
    Migration {
        version: 2,
        name: "audit",
        sqlite: include_str!("migrations/0002_audit.sqlite.sql"),
        postgres: include_str!("migrations/0002_audit.postgres.sql"),
    },
    Migration {
        version: 3,
        name: "signin",
        sqlite: include_str!("migrations/0003_signin.sql"),
        postgres: include_str!("migrations/0003_signin.sql"),
    },
    Migration {
        version: 4,
        name: "passwords",
        sqlite: include_str!("migrations/0004_passwords.sql"),
        postgres: include_str!("migrations/0004_passwords.sql"),
    },
    Migration {
        version: 5,
        name: "patients",
        sqlite: include_str!("migrations/0005_patients.sql"),
        postgres: include_str!("migrations/0005_patients.sql"),
    },
    Migration {
        version: 6,
        name: "consent_windows",
        sqlite: include_str!("migrations/0006_consent_windows.sql"),
        postgres: include_str!("migrations/0006_consent_windows.sql"),
    },
    Migration {
        version: 7,
        name: "tunnel_peers",
        sqlite: include_str!("migrations/0007_tunnel_peers.sql"),
        postgres: include_str!("migrations/0007_tunnel_peers.sql"),
    },
    Migration {
        version: 9,
        name: "changes",
        sqlite: include_str!("migrations/0009_changes.sqlite.sql"),
        postgres: include_str!("migrations/0009_changes.postgres.sql"),
    },
    Migration {
        version: 10,
        name: "notify_outbox",
        sqlite: include_str!("migrations/0010_notify_outbox.sql"),
        postgres: include_str!("migrations/0010_notify_outbox.sql"),
    },
    Migration {
        version: 11,
        name: "break_glass",
        sqlite: include_str!("migrations/0011_break_glass.sqlite.sql"),
        postgres: include_str!("migrations/0011_break_glass.postgres.sql"),
    },
    Migration {
        version: 12,
        name: "audit_partial_indexes",
        sqlite: include_str!("migrations/0012_audit_partial_indexes.sql"),
        postgres: include_str!("migrations/0012_audit_partial_indexes.sql"),
    },
    Migration {
        version: 13,
        name: "consent_windows_by_patient",
        sqlite: include_str!("migrations/0013_consent_windows_by_patient.sql"),
        postgres: include_str!("migrations/0013_consent_windows_by_patient.sql"),
    },
    Migration {
        version: 14,
        name: "audit_search",
        sqlite: include_str!("migrations/0014_audit_search.sqlite.sql"),
        postgres: include_str!("migrations/0014_audit_search.postgres.sql"),
    },
    Migration {
        version: 15,
        name: "anomaly_findings",
        sqlite: include_str!("migrations/0015_anomaly_findings.sql"),
        postgres: include_str!("migrations/0015_anomaly_findings.sql"),
    },
    Migration {
        version: 16,
        name: "audit_reports",
        sqlite: include_str!("migrations/0016_audit_reports.sql"),
        postgres: include_str!("migrations/0016_audit_reports.sql"),
    },
    Migration {
        version: 17,
        name: "audit_search_indexes",
        sqlite: include_str!("migrations/0017_audit_search_indexes.sql"),
        postgres: include_str!("migrations/0017_audit_search_indexes.sql"),
    },
    Migration {
        version: 18,
        name: "audit_search_by_time",
        sqlite: include_str!("migrations/0018_audit_search_by_time.sql"),
        postgres: include_str!("migrations/0018_audit_search_by_time.sql"),
    },
    Migration {
        version: 19,
        name: "facilities",
        sqlite: include_str!("migrations/0019_facilities.sql"),
        postgres: include_str!("migrations/0019_facilities.sql"),
    },
    Migration {
        version: 20,
        name: "notices",
        sqlite: include_str!("migrations/0020_notices.sql"),
        postgres: include_str!("migrations/0020_notices.sql"),
    },
    Migration {
        version: 21,
        name: "operator_tokens",
        sqlite: include_str!("migrations/0021_operator_tokens.sql"),
        postgres: include_str!("migrations/0021_operator_tokens.sql"),
    },
    Migration {
        version: 22,
        name: "audit_export",
        sqlite: include_str!("migrations/0022_audit_export.sql"),
        postgres: include_str!("migrations/0022_audit_export.sql"),
    },
    Migration {
        version: 23,
        name: "audit_retention",
        sqlite: include_str!("migrations/0023_audit_retention.sql"),
        postgres: include_str!("migrations/0023_audit_retention.sql"),
    },
    Migration {
        version: 24,
        name: "retired_crls",
        sqlite: include_str!("migrations/0024_retired_crls.sqlite.sql"),
        postgres: include_str!("migrations/0024_retired_crls.postgres.sql"),
    },
    Migration {
        version: 26,
        name: "session_liveness",
        sqlite: include_str!("migrations/0026_session_liveness.sql"),
        postgres: include_str!("migrations/0026_session_liveness.sql"),
    },
    Migration {
        version: 27,
        name: "audit_journal",
        sqlite: include_str!("migrations/0027_audit_journal.sql"),
        postgres: include_str!("migrations/0027_audit_journal.sql"),
    },
];

/// The versions this build applies, in order (what an upgraded database must list).
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn versions() -> impl Iterator<Item = (i64, &'static str)> {
    MIGRATIONS.iter().map(|m| (m.version, m.name))
}

pub(super) async fn run(store: &Store) -> Result<()> {
    let pool = store.pool();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await
    .context("cannot create schema_migrations")?;
    for m in MIGRATIONS {
        let mut tx = pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(super::now())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            continue;
        }
        let sql = match store.kind() {
            DbKind::Sqlite => m.sqlite,
            DbKind::Postgres => m.postgres,
        };
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("migration {} ({}) failed", m.version, m.name))?;
        tx.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use crate::DbKind;
    use crate::testdb::TestDb;

    /// The partial indexes (migrations 12, 13 and 26) serve the searches they were made for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn searches_use_the_partial_indexes() {
        for db in TestDb::both().await {
            let s = &db.store;
            let searches = [
                ("patient = 'P1' ORDER BY ts", "audit_records_patient"),
                ("user_id = 'u1' ORDER BY ts", "audit_records_user_id"),
                ("break_glass_id = 'bg-1'", "audit_records_break_glass_id"),
            ];
            let searches = searches.map(|(f, i)| (format!("audit_records WHERE {f}"), i));
            let windows = (
                "consent_windows WHERE expires_at > 1 AND closed_at IS NULL AND patient_id = 'P1'"
                    .to_string(),
                "consent_windows_patient_open",
            );
            // Migration 26: the sweep for lapsed sessions reads open sessions only.
            let open_sessions = (
                "sessions WHERE ended_at IS NULL AND absolute_expires_at > 1".to_string(),
                "sessions_open_expiry",
            );
            for (filter, index) in searches.into_iter().chain([windows, open_sessions]) {
                let plan: Vec<String> = match s.kind() {
                    DbKind::Sqlite => {
                        // EXPLAIN reads no table, so it does not make a pooled connection
                        // notice that the migrations changed the schema after it last looked:
                        // a read first brings the connection's schema up to date.
                        let mut conn = s.pool().acquire().await.unwrap();
                        sqlx::query("SELECT COUNT(*) FROM sqlite_master")
                            .fetch_one(&mut *conn)
                            .await
                            .unwrap();
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "EXPLAIN QUERY PLAN SELECT * FROM {filter}"
                        )))
                        .fetch_all(&mut *conn)
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| r.try_get::<String, _>(3).unwrap())
                        .collect()
                    }
                    DbKind::Postgres => {
                        // An empty table is scanned whatever the indexes; ask what an index
                        // could do.
                        let mut tx = s.pool().begin().await.unwrap();
                        sqlx::query("SET LOCAL enable_seqscan = off")
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "EXPLAIN SELECT * FROM {filter}"
                        )))
                        .fetch_all(&mut *tx)
                        .await
                        .unwrap();
                        rows.iter()
                            .map(|r| r.try_get::<String, _>(0).unwrap())
                            .collect()
                    }
                };
                assert!(
                    plan.iter().any(|l| l.contains(index)),
                    "{:?}: {filter}: {plan:?}",
                    s.kind()
                );
            }
        }
    }
}

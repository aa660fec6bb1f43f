//! Findings of the anomaly rules (R-LOG-3): written once per rule, person and period however
//! many replicas find them (the `dedupe` key is unique), listed for the console, and closed by
//! an officer.

use anyhow::Result;
use sqlx::{Any, Row, Transaction};

use super::{Store, now};

pub mod status {
    pub const OPEN: &str = "open";
    pub const DISMISSED: &str = "dismissed";
    pub const ACTED: &str = "acted";
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub id: String,
    pub rule: String,
    pub user_id: String,
    pub facility: Option<String>,
    pub dedupe: String,
    pub count: i64,
    pub detail: String,
    pub created_at: i64,
    pub status: String,
    pub closed_by: Option<String>,
    pub closed_at: Option<i64>,
    pub note: Option<String>,
}

const COLUMNS: &str = "id, rule, user_id, facility, dedupe, count, detail, created_at, status, closed_by, closed_at, note";

fn row(r: &sqlx::any::AnyRow) -> Result<Finding> {
    Ok(Finding {
        id: r.try_get("id")?,
        rule: r.try_get("rule")?,
        user_id: r.try_get("user_id")?,
        facility: r.try_get("facility")?,
        dedupe: r.try_get("dedupe")?,
        count: r.try_get("count")?,
        detail: r.try_get("detail")?,
        created_at: r.try_get("created_at")?,
        status: r.try_get("status")?,
        closed_by: r.try_get("closed_by")?,
        closed_at: r.try_get("closed_at")?,
        note: r.try_get("note")?,
    })
}

/// Records a finding in the caller's transaction (so its notice commits with it). `false` when
/// this rule, person and period is already recorded (by this or another replica).
pub async fn insert(tx: &mut Transaction<'_, Any>, f: &Finding) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO anomaly_findings (id, rule, user_id, facility, dedupe, count, detail, created_at, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open') ON CONFLICT (dedupe) DO NOTHING",
    )
    .bind(&f.id)
    .bind(&f.rule)
    .bind(&f.user_id)
    .bind(&f.facility)
    .bind(&f.dedupe)
    .bind(f.count)
    .bind(&f.detail)
    .bind(f.created_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Open findings, newest first.
pub async fn open(store: &Store) -> Result<Vec<Finding>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM anomaly_findings WHERE status = 'open' ORDER BY created_at DESC, id"
    )))
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(row).collect()
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Finding>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM anomaly_findings WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    r.as_ref().map(row).transpose()
}

/// Closes an open finding; `false` when it is not open (closed meanwhile).
pub async fn close(store: &Store, id: &str, to: &str, by: &str, note: &str) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE anomaly_findings SET status = $1, closed_by = $2, closed_at = $3, note = $4
         WHERE id = $5 AND status = 'open'",
    )
    .bind(to)
    .bind(by)
    .bind(now())
    .bind(note)
    .bind(id)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb::TestDb;

    fn finding(id: &str, dedupe: &str) -> Finding {
        Finding {
            id: id.into(),
            rule: "distinct_patients_per_hour".into(),
            user_id: "nurse0000001".into(),
            facility: Some("f1".into()),
            dedupe: dedupe.into(),
            count: 42,
            detail: "42 patients in an hour".into(),
            created_at: now(),
            status: status::OPEN.into(),
            closed_by: None,
            closed_at: None,
            note: None,
        }
    }

    #[tokio::test]
    async fn a_finding_is_recorded_once_and_closed_once() {
        for db in TestDb::both().await {
            let store = &db.store;
            let mut tx = store.begin_write().await.unwrap();
            assert!(insert(&mut tx, &finding("af-1", "k1")).await.unwrap());
            // Another replica finds the same rule, person and period.
            assert!(!insert(&mut tx, &finding("af-2", "k1")).await.unwrap());
            tx.commit().await.unwrap();
            let open_now = open(store).await.unwrap();
            assert_eq!(open_now.len(), 1);
            assert_eq!(open_now[0].id, "af-1");
            assert!(
                close(store, "af-1", status::ACTED, "officer1", "suspended")
                    .await
                    .unwrap()
            );
            assert!(
                !close(store, "af-1", status::DISMISSED, "officer2", "")
                    .await
                    .unwrap()
            );
            let f = get(store, "af-1").await.unwrap().unwrap();
            assert_eq!(
                (f.status.as_str(), f.closed_by.as_deref()),
                ("acted", Some("officer1"))
            );
            assert!(open(store).await.unwrap().is_empty());
        }
    }
}

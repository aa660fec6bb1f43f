//! Notices to the network's users and maintenance windows (issue 13, R-OPS-1): what the
//! secretariat announces, and when the gateway answers 503 for maintenance. Every change
//! bumps the change counter, so each replica's board is current within a poll.

use anyhow::{Result, bail};
use sqlx::Row;

use super::{Store, bump_generation, now};

pub mod kind {
    pub const NOTICE: &str = "notice";
    pub const MAINTENANCE: &str = "maintenance";
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeRow {
    pub id: String,
    pub kind: String,
    pub text_ja: String,
    pub text_en: String,
    /// Unix seconds: a notice is shown from here; a planned window starts here.
    pub starts_at: i64,
    /// A notice is shown until here; a window's expected end.
    pub ends_at: i64,
    /// Facility ids; empty for every facility.
    pub audience: Vec<String>,
    pub exempt_terminals: Vec<String>,
    pub exempt_users: Vec<String>,
    /// A window started at once (emergency) or before its planned start.
    pub started_at: Option<i64>,
    /// A window ended, or a notice removed.
    pub ended_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

impl NoticeRow {
    pub fn is_maintenance(&self) -> bool {
        self.kind == kind::MAINTENANCE
    }

    /// When a window runs (or ran) from.
    pub fn window_start(&self) -> i64 {
        self.started_at.unwrap_or(self.starts_at)
    }

    /// A maintenance window in force at `t`.
    pub fn in_force(&self, t: i64) -> bool {
        self.is_maintenance()
            && self.ended_at.is_none()
            && self.window_start() <= t
            && t < self.ends_at
    }

    /// Shown to users at `t`: a notice in its time, a window from when it is scheduled until
    /// it ends.
    pub fn shown(&self, t: i64) -> bool {
        self.ended_at.is_none()
            && t < self.ends_at
            && (self.is_maintenance() || self.starts_at <= t)
    }

    /// For the terminals of `facility`.
    pub fn for_facility(&self, facility: &str) -> bool {
        self.audience.is_empty() || self.audience.iter().any(|f| f == facility)
    }

    /// Named for the maintenance: goes through while the window runs.
    pub fn exempts(&self, terminal: &str, user: Option<&str>) -> bool {
        self.exempt_terminals.iter().any(|t| t == terminal)
            || user.is_some_and(|u| self.exempt_users.iter().any(|x| x == u))
    }
}

pub struct NewNotice<'a> {
    pub kind: &'a str,
    pub text_ja: &'a str,
    pub text_en: &'a str,
    pub starts_at: i64,
    pub ends_at: i64,
    pub audience: &'a [String],
    pub exempt_terminals: &'a [String],
    pub exempt_users: &'a [String],
    /// Start a window now (an emergency).
    pub start_now: bool,
    pub created_by: &'a str,
}

/// Adds a notice or a window; returns its id (`N` and 8 hex digits).
pub async fn add(store: &Store, n: &NewNotice<'_>) -> Result<String> {
    if n.kind != kind::NOTICE && n.kind != kind::MAINTENANCE {
        bail!("unknown notice kind {:?}", n.kind);
    }
    if n.ends_at <= n.starts_at {
        bail!("the end must come after the start");
    }
    if n.ends_at <= now() {
        bail!("the end is in the past");
    }
    let mut raw = [0u8; 4];
    getrandom(&mut raw);
    let id = format!("N{}", hex::encode(raw));
    let t = now();
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO notices (id, kind, text_ja, text_en, starts_at, ends_at, audience,
             exempt_terminals, exempt_users, started_at, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&id)
    .bind(n.kind)
    .bind(n.text_ja)
    .bind(n.text_en)
    .bind(n.starts_at)
    .bind(n.ends_at)
    .bind(n.audience.join(" "))
    .bind(n.exempt_terminals.join(" "))
    .bind(n.exempt_users.join(" "))
    .bind(n.start_now.then_some(t))
    .bind(n.created_by)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(id)
}

fn getrandom(buf: &mut [u8]) {
    aws_lc_rs::rand::fill(buf).expect("system randomness");
}

const COLUMNS: &str = "id, kind, text_ja, text_en, starts_at, ends_at, audience, exempt_terminals, \
     exempt_users, started_at, ended_at, created_by, created_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<NoticeRow> {
    let ids = |c: &str| -> Result<Vec<String>> {
        Ok(r.try_get::<String, _>(c)?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    };
    Ok(NoticeRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        text_ja: r.try_get("text_ja")?,
        text_en: r.try_get("text_en")?,
        starts_at: r.try_get("starts_at")?,
        ends_at: r.try_get("ends_at")?,
        audience: ids("audience")?,
        exempt_terminals: ids("exempt_terminals")?,
        exempt_users: ids("exempt_users")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Notices and windows not ended or removed whose end is still ahead: what gateways hold.
pub async fn current(store: &Store) -> Result<Vec<NoticeRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notices WHERE ended_at IS NULL AND ends_at > $1 ORDER BY starts_at, id"
    )))
    .bind(now())
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every notice and window made since `since` (Unix seconds), newest first.
pub async fn since(store: &Store, since: i64) -> Result<Vec<NoticeRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notices WHERE created_at >= $1 ORDER BY created_at DESC, id"
    )))
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(store: &Store, id: &str) -> Result<Option<NoticeRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notices WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Removes a notice or ends a window now. False when it is unknown, of the other kind, or
/// ended already.
pub async fn end(store: &Store, id: &str, kind: &str) -> Result<bool> {
    let mut tx = store.begin_write().await?;
    let n = sqlx::query(
        "UPDATE notices SET ended_at = $1 WHERE id = $2 AND kind = $3 AND ended_at IS NULL",
    )
    .bind(now())
    .bind(id)
    .bind(kind)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 1 {
        bump_generation(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

/// Starts a scheduled window now. False when it is unknown, ended, or past its end.
pub async fn start(store: &Store, id: &str) -> Result<bool> {
    let t = now();
    let mut tx = store.begin_write().await?;
    let n = sqlx::query(
        "UPDATE notices SET started_at = $1
         WHERE id = $2 AND kind = 'maintenance' AND ended_at IS NULL AND ends_at > $1",
    )
    .bind(t)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 1 {
        bump_generation(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, starts: i64, ends: i64) -> NoticeRow {
        NoticeRow {
            id: "N1".into(),
            kind: kind.into(),
            text_ja: "停止".into(),
            text_en: "down".into(),
            starts_at: starts,
            ends_at: ends,
            audience: vec![],
            exempt_terminals: vec!["t9".into()],
            exempt_users: vec!["ops1".into()],
            started_at: None,
            ended_at: None,
            created_by: "x".into(),
            created_at: 0,
        }
    }

    #[test]
    fn a_window_runs_from_its_start_until_its_end_unless_ended() {
        let mut w = row(kind::MAINTENANCE, 100, 200);
        assert!(!w.in_force(99) && w.in_force(100) && w.in_force(199) && !w.in_force(200));
        assert!(w.shown(50), "announced before it starts");
        w.started_at = Some(80);
        assert!(w.in_force(80), "started early");
        w.ended_at = Some(150);
        assert!(!w.in_force(120) && !w.shown(120));
        let n = row(kind::NOTICE, 100, 200);
        assert!(!n.in_force(150), "a notice never stops requests");
        assert!(!n.shown(50) && n.shown(100));
    }

    #[test]
    fn audience_and_exemptions() {
        let mut w = row(kind::MAINTENANCE, 0, 10);
        assert!(w.for_facility("f1"));
        w.audience = vec!["f2".into()];
        assert!(!w.for_facility("f1") && w.for_facility("f2"));
        assert!(w.exempts("t9", None) && w.exempts("t1", Some("ops1")));
        assert!(!w.exempts("t1", Some("ops2")) && !w.exempts("t1", None));
    }
}

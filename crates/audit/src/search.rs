//! Searching the audit log (the officers' console, R-LOG-1): by time range, person, terminal,
//! facility, patient, route, event, decision, reason, break-glass id and request id, newest
//! first by time, a page at a time (keyset paging on (time, leaf index), so page 1,000 costs
//! what page 1 does). Time, not the leaf index, orders the pages because every search index
//! ends in `ts`: a facility's records on one day two weeks back are one index range, where
//! walking a `(facility, idx)` index newest first read every record of the facility since
//! that day (351 ms at 10 million records; `cargo bench -p sekisho-audit --bench search`). Each record found says whether it is what the tree holds: its stored leaf hash is
//! the hash of its bytes, and it lies inside the latest signed checkpoint, whose signature is
//! checked against the configured verifier keys.
//!
//! The search columns beside `record` are copies made by the writer; what is shown is parsed
//! from `record`, the hashed bytes. A record whose body retention pruned (`retention.rs`) is
//! found only by what it keeps (time, event, decision, node) and comes back marked `pruned`,
//! with just those fields.

use anyhow::{Context, Result};
use sqlx::{AssertSqlSafe, Row};

use crate::checkpoint::{Verifier, parse_checkpoint};
use crate::merkle::leaf_hash;
use crate::record::AuditRecord;
use sekisho_store::Store;

/// What to look for; `None` fields are not constrained. Times are Unix milliseconds, `to`
/// exclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub user: Option<String>,
    pub terminal: Option<String>,
    pub facility: Option<String>,
    pub patient: Option<String>,
    pub route: Option<String>,
    pub event: Option<String>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub break_glass_id: Option<String>,
    pub request_id: Option<String>,
}

impl Filter {
    /// (column, value) for every exact-match constraint.
    fn equalities(&self) -> Vec<(&'static str, &str)> {
        [
            ("user_id", &self.user),
            ("terminal", &self.terminal),
            ("facility", &self.facility),
            ("patient", &self.patient),
            ("route", &self.route),
            ("event", &self.event),
            ("decision", &self.decision),
            ("reason", &self.reason),
            ("break_glass_id", &self.break_glass_id),
            ("request_id", &self.request_id),
        ]
        .into_iter()
        .filter_map(|(c, v)| v.as_deref().map(|v| (c, v)))
        .collect()
    }
}

/// Where a page ends: the time and leaf index of its last record. The next page is what lies
/// below it in (time, leaf index) order. Written as `TS.IDX` in a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub idx: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.ts, self.idx)
    }
}

impl std::str::FromStr for Cursor {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (ts, idx) = s.split_once('.').context("a page cursor is TIME.INDEX")?;
        Ok(Cursor {
            ts: ts.parse().context("a page cursor's time is a number")?,
            idx: idx.parse().context("a page cursor's index is a number")?,
        })
    }
}

/// One record found.
#[derive(Clone, Debug)]
pub struct Found {
    pub idx: i64,
    /// The record's time as stored in the search column (Unix milliseconds).
    pub ts: i64,
    pub record: AuditRecord,
    /// The stored leaf hash is the hash of the stored bytes.
    pub leaf_matches: bool,
    /// Inside the latest checkpoint, and that checkpoint's signature verified.
    pub in_signed_checkpoint: bool,
    /// The body was pruned after its retention: `record` holds only the kept columns, and
    /// `leaf_matches` is false (there are no bytes to hash; `audit verify` checks the leaf).
    pub pruned: bool,
}

/// One page, newest first; `older` is the cursor of the next page when there is one.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub rows: Vec<Found>,
    pub older: Option<Cursor>,
}

/// The newest checkpoint, and whether one of `verifiers` signed it.
#[derive(Clone, Debug)]
pub struct LatestCheckpoint {
    pub tree_size: i64,
    pub node: String,
    /// Unix seconds.
    pub created_at: i64,
    pub signature_valid: bool,
}

/// The newest signed checkpoint; `None` for an empty log.
pub async fn latest_checkpoint(
    store: &Store,
    verifiers: &[Verifier],
) -> Result<Option<LatestCheckpoint>> {
    let row = sqlx::query(
        "SELECT tree_size, note, node, created_at FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1",
    )
    .fetch_optional(store.pool())
    .await
    .context("cannot read the latest checkpoint")?;
    let Some(row) = row else { return Ok(None) };
    let tree_size: i64 = row.try_get(0)?;
    let note: String = row.try_get(1)?;
    let signature_valid = verifiers.iter().any(|v| {
        v.open(&note)
            .and_then(parse_checkpoint)
            .is_ok_and(|c| c.size == tree_size as u64)
    });
    Ok(Some(LatestCheckpoint {
        tree_size,
        node: row.try_get(2)?,
        created_at: row.try_get(3)?,
        signature_valid,
    }))
}

/// Records matching `filter` below `before` (all when `None`), newest first, at most `limit`.
pub async fn search(
    store: &Store,
    filter: &Filter,
    before: Option<Cursor>,
    limit: i64,
    checkpoint: Option<&LatestCheckpoint>,
) -> Result<Page> {
    let mut sql = String::from(
        "SELECT idx, ts, leaf_hash, record, event, decision, node FROM audit_records WHERE 1 = 1",
    );
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let eq = filter.equalities();
    for (column, _) in &eq {
        sql.push_str(&format!(" AND {column} = {}", next()));
    }
    if filter.from_ms.is_some() {
        sql.push_str(&format!(" AND ts >= {}", next()));
    }
    if filter.to_ms.is_some() {
        sql.push_str(&format!(" AND ts < {}", next()));
    }
    if before.is_some() {
        // `ts <= t` alone bounds the index range; the rest breaks ties within a millisecond.
        let (t, i) = (next(), next());
        sql.push_str(&format!(" AND ts <= {t} AND (ts < {t} OR idx < {i})"));
    }
    sql.push_str(&format!(" ORDER BY ts DESC, idx DESC LIMIT {}", next()));
    // Only column names from the fixed list above and numbered parameters are in the text.
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for (_, v) in &eq {
        q = q.bind(v.to_string());
    }
    if let Some(t) = filter.from_ms {
        q = q.bind(t);
    }
    if let Some(t) = filter.to_ms {
        q = q.bind(t);
    }
    if let Some(c) = before {
        q = q.bind(c.ts).bind(c.idx);
    }
    // One more than asked: whether there is an older page.
    q = q.bind(limit + 1);
    let rows = q
        .fetch_all(store.pool())
        .await
        .context("cannot search the audit log")?;
    let signed_size = checkpoint
        .filter(|c| c.signature_valid)
        .map_or(0, |c| c.tree_size);
    let mut page = Page::default();
    for row in rows.iter().take(limit as usize) {
        let idx: i64 = row.try_get(0)?;
        let ts: i64 = row.try_get(1)?;
        let stored: Vec<u8> = row.try_get(2)?;
        let text: String = row.try_get(3)?;
        if text.is_empty() {
            page.rows.push(Found {
                idx,
                ts,
                record: kept(ts, row.try_get(4)?, row.try_get(5)?, row.try_get(6)?),
                leaf_matches: false,
                in_signed_checkpoint: idx < signed_size,
                pruned: true,
            });
            continue;
        }
        let record: AuditRecord = serde_json::from_str(&text)
            .with_context(|| format!("audit record {idx} is not readable"))?;
        page.rows.push(Found {
            idx,
            ts,
            record,
            leaf_matches: stored.as_slice() == leaf_hash(text.as_bytes()).as_slice(),
            in_signed_checkpoint: idx < signed_size,
            pruned: false,
        });
    }
    if rows.len() as i64 > limit {
        page.older = page.rows.last().map(|f| Cursor {
            ts: f.ts,
            idx: f.idx,
        });
    }
    Ok(page)
}

/// What a pruned record still says: its time, event, decision and node (from the columns).
fn kept(ts: i64, event: String, decision: String, node: String) -> AuditRecord {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts) * 1_000_000)
        .map(crate::record::format_time)
        .unwrap_or_default();
    AuditRecord {
        time,
        event: serde_json::from_value(serde_json::Value::String(event)).unwrap_or_default(),
        decision: serde_json::from_value(serde_json::Value::String(decision)).unwrap_or_default(),
        node,
        reason: "pruned".into(),
        ..Default::default()
    }
}

/// Fills the search columns (`facility`, `reason`, `route`) of records written before they
/// existed (migration 14) or by a gateway of an older version, in the index range
/// `[below - batch, below)`, from the hashed record itself. Returns where the next range ends,
/// `None` once the start of the log is reached. Every record has a reason, so a NULL one marks
/// a record not filled yet; a range already filled costs one index range scan.
pub async fn backfill(store: &Store, below: i64, batch: i64) -> Result<Option<i64>> {
    if below <= 0 {
        return Ok(None);
    }
    let lo = (below - batch.max(1)).max(0);
    let sql = match store.kind() {
        sekisho_store::DbKind::Sqlite => {
            "UPDATE audit_records SET facility = json_extract(record, '$.facility'),
                 reason = json_extract(record, '$.reason'), route = json_extract(record, '$.route')
             WHERE idx >= $1 AND idx < $2 AND reason IS NULL"
        }
        sekisho_store::DbKind::Postgres => {
            "UPDATE audit_records SET facility = record::jsonb ->> 'facility',
                 reason = record::jsonb ->> 'reason', route = record::jsonb ->> 'route'
             WHERE idx >= $1 AND idx < $2 AND reason IS NULL"
        }
    };
    sqlx::query(sql)
        .bind(lo)
        .bind(below)
        .execute(store.pool())
        .await
        .context("cannot fill the audit log's search columns")?;
    Ok((lo > 0).then_some(lo))
}

/// Refusals by reason since `since_ms`, the most frequent first (the console's dashboard).
/// The refusals index `(reason, ts, idx) WHERE decision = 'deny'` (migration 18) answers it
/// without reading records: a loose index scan walks the distinct reasons (one index seek
/// each), and each reason's count is one index range from `since_ms`. Reading the day's
/// records through the time index instead took 244 ms on SQLite at 10 million records, and
/// reading every refusal of the log through the index took 7.3 s.
pub async fn refusals_by_reason(store: &Store, since_ms: i64) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "WITH RECURSIVE reasons(reason) AS (
             SELECT MIN(reason) FROM audit_records WHERE decision = 'deny'
             UNION ALL
             SELECT (SELECT MIN(a.reason) FROM audit_records a
                     WHERE a.decision = 'deny' AND a.reason > reasons.reason)
             FROM reasons WHERE reasons.reason IS NOT NULL
         )
         SELECT reason, n FROM (
             SELECT r.reason AS reason,
                    (SELECT COUNT(*) FROM audit_records a
                     WHERE a.decision = 'deny' AND a.reason = r.reason AND a.ts >= $1) AS n
             FROM reasons r WHERE r.reason IS NOT NULL
         ) counted
         WHERE n > 0 ORDER BY n DESC, reason LIMIT 30",
    )
    .bind(since_ms)
    .fetch_all(store.pool())
    .await
    .context("cannot count the refusals")?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<Option<String>, _>(0)?.unwrap_or_default(),
                r.try_get::<i64, _>(1)?,
            ))
        })
        .collect()
}

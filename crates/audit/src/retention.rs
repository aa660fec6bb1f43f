//! Retention (R-OPS-5: patient information is kept five years, then may be deleted). Records of
//! a kind older than its retention lose their body (`record`, the hashed bytes) and the personal
//! search copies beside it; the leaf index, the stored leaf hash, the time, the kind, the
//! decision and the node stay. The tree is built from leaf hashes, so every checkpoint still
//! verifies: `verify` takes the stored leaf hash of an emptied record, provided its index lies
//! in a range recorded in `audit_pruned` by a run that the log itself names.
//!
//! A run: the plan (what is eligible), the lease (one prune at a time, across replicas and the
//! CLI), an `audit_prune_started` operation record (nothing is pruned without it), then bounded
//! batches, each one transaction that empties its rows and grows the run's `audit_pruned` row
//! and the per-kind marks — an interrupted run leaves a consistent log and the next run goes on
//! from there — then an `audit_pruned` operation record with what was done.
//!
//! The batches walk the time index from each kind's mark (everything older is pruned), so a
//! daily run reads about a day of records, not five years of emptied ones.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use anyhow::{Context, Result, bail};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, Row};

use crate::record::format_time;
use crate::{AuditLog, AuditRecord, Decision, Event};
use sekisho_store::{DbKind, Store};

/// Five years, counting the leap days they can hold.
pub const DEFAULT_DAYS: u32 = 1827;
/// Records per batch transaction. On SQLite a batch holds the write lock and the audit writer's
/// next batch waits behind it: pruning 50,000 records in batches of 1,000 (debug build, the
/// shared 2-core machine), an append waited at worst 81 ms; batches of 5,000 took 155 ms each.
pub const BATCH: usize = 1_000;
const DAY_MS: i64 = 86_400_000;
/// The least pause between batches.
const PAUSE_MIN: std::time::Duration = std::time::Duration::from_millis(10);
/// How long a run's lease lasts without a batch renewing it (a run that died lets it go).
const LEASE_SECS: i64 = 300;
/// The prune's own records: never pruned, they are what makes the emptied bodies acceptable.
const STARTED: &str = "audit_prune_started";
const DONE: &str = "audit_pruned";

/// How long each kind of record is kept, in days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    pub default_days: u32,
    pub days: HashMap<Event, u32>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            default_days: DEFAULT_DAYS,
            days: HashMap::new(),
        }
    }
}

impl Retention {
    pub fn days(&self, e: Event) -> u32 {
        self.days.get(&e).copied().unwrap_or(self.default_days)
    }

    /// Kinds sharing a cutoff (Unix ms: their records before it may go), one walk each.
    fn groups(&self, now_ms: i64) -> Vec<(i64, Vec<Event>)> {
        let mut by: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for e in Event::ALL {
            let cutoff = now_ms.saturating_sub(i64::from(self.days(e)) * DAY_MS);
            by.entry(cutoff).or_default().push(e);
        }
        by.into_iter().collect()
    }
}

/// One kind's part of a run (or of a plan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindCount {
    pub event: Event,
    /// Records before this time (Unix ms) are past retention.
    pub before_ms: i64,
    pub records: u64,
    pub first_idx: Option<u64>,
    pub last_idx: Option<u64>,
}

impl KindCount {
    fn add(&mut self, idx: u64) {
        self.records += 1;
        self.first_idx = Some(self.first_idx.map_or(idx, |f| f.min(idx)));
        self.last_idx = Some(self.last_idx.map_or(idx, |l| l.max(idx)));
    }
}

/// What a run pruned (or a plan would).
#[derive(Clone, Debug, Default)]
pub struct Pruned {
    /// The run's id, in `audit_pruned` and in its operation records; empty for a plan or a run
    /// that found nothing.
    pub run: String,
    /// Every kind, in `Event::ALL` order, with its cutoff.
    pub kinds: Vec<KindCount>,
    pub records: u64,
    /// The lowest and highest index emptied.
    pub span: Option<(u64, u64)>,
}

impl Pruned {
    /// `request 120 (idx 0-4123), outcome 118 (idx 1-4124)`: the kinds with records.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .kinds
            .iter()
            .filter(|k| k.records > 0)
            .map(|k| match (k.first_idx, k.last_idx) {
                (Some(a), Some(b)) => format!("{} {} (idx {a}-{b})", k.event.as_str(), k.records),
                _ => format!("{} {}", k.event.as_str(), k.records),
            })
            .collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct PruneRun<'a> {
    pub retention: &'a Retention,
    /// "Now" (Unix ms): the cutoffs are now minus each kind's retention.
    pub now_ms: i64,
    /// Records at or after this index are never pruned (the audit export passes the lowest
    /// export cursor: nothing goes before it has been exported).
    pub keep_from_idx: Option<u64>,
    /// Who prunes, on record: `NAME (os:ACCOUNT)` at the command line, the node for the
    /// gateway's scheduled run.
    pub actor: String,
    /// Records per batch transaction ([`BATCH`]).
    pub batch: usize,
}

/// Another run holds the lease.
#[derive(Debug, thiserror::Error)]
#[error("another prune is running ({holder}); try again when it has finished")]
pub struct Busy {
    pub holder: String,
}

fn empty_counts(groups: &[(i64, Vec<Event>)]) -> Vec<KindCount> {
    let cutoff: HashMap<Event, i64> = groups
        .iter()
        .flat_map(|(c, es)| es.iter().map(move |e| (*e, *c)))
        .collect();
    Event::ALL
        .iter()
        .map(|e| KindCount {
            event: *e,
            before_ms: cutoff[e],
            records: 0,
            first_idx: None,
            last_idx: None,
        })
        .collect()
}

fn kinds_sql(kinds: &[Event]) -> String {
    // Names from the fixed enum only.
    kinds
        .iter()
        .map(|e| format!("'{}'", e.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The records a group may lose: its kinds, in `[from, before)`, not yet emptied, and not the
/// prune's own records.
fn eligible_sql(kinds: &[Event]) -> String {
    format!(
        "ts >= $1 AND ts < $2 AND event IN ({}) AND record <> '' \
         AND NOT (event = 'operation' AND COALESCE(reason, '') IN ('{STARTED}', '{DONE}'))",
        kinds_sql(kinds)
    )
}

async fn marks(conn: &mut AnyConnection) -> Result<HashMap<String, i64>> {
    let rows = sqlx::query("SELECT event, pruned_below_ts FROM audit_retention_marks")
        .fetch_all(&mut *conn)
        .await
        .context("cannot read the retention marks")?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

fn group_mark(marks: &HashMap<String, i64>, kinds: &[Event]) -> i64 {
    kinds
        .iter()
        .map(|e| marks.get(e.as_str()).copied().unwrap_or(i64::MIN))
        .min()
        .unwrap_or(i64::MIN)
}

/// What a run would prune now (a dry run): nothing is written.
pub async fn plan(store: &Store, run: &PruneRun<'_>) -> Result<Pruned> {
    let mut conn = store.pool().acquire().await?;
    let marks = marks(&mut conn).await?;
    let groups = run.retention.groups(run.now_ms);
    let mut kinds = empty_counts(&groups);
    let keep = run.keep_from_idx.map_or(i64::MAX, |k| k as i64);
    for (cutoff, es) in &groups {
        let from = group_mark(&marks, es);
        if from >= *cutoff {
            continue;
        }
        let sql = format!(
            "SELECT event, COUNT(*), MIN(idx), MAX(idx) FROM audit_records WHERE {} AND idx < $3 GROUP BY event",
            eligible_sql(es)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(from)
            .bind(*cutoff)
            .bind(keep)
            .fetch_all(&mut *conn)
            .await
            .context("cannot count the records past retention")?;
        for r in rows {
            let event: String = r.try_get(0)?;
            let Some(k) = kinds.iter_mut().find(|k| k.event.as_str() == event) else {
                continue;
            };
            k.records = r.try_get::<i64, _>(1)? as u64;
            k.first_idx = Some(r.try_get::<i64, _>(2)? as u64);
            k.last_idx = Some(r.try_get::<i64, _>(3)? as u64);
        }
    }
    let records = kinds.iter().map(|k| k.records).sum();
    let span = kinds
        .iter()
        .filter_map(|k| k.first_idx.zip(k.last_idx))
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    Ok(Pruned {
        run: String::new(),
        kinds,
        records,
        span,
    })
}

fn new_run_id() -> String {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("the system's random source");
    hex::encode(b)
}

fn operation(actor: &str, reason: &str, detail: String) -> AuditRecord {
    AuditRecord {
        request_id: format!("prune-{}", new_run_id()),
        event: Event::Operation,
        action: Some("audit_prune".into()),
        actor: Some(actor.to_string()),
        decision: Decision::Permit,
        reason: reason.into(),
        detail: Some(detail),
        ..Default::default()
    }
}

/// `run=ID` as the prune's records carry it (what `verify` looks for).
pub(crate) fn run_of(detail: &str) -> Option<&str> {
    detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix("run="))
        .map(|r| r.trim_end_matches([';', ',']))
}

/// Whether `json` is an `audit_prune_started` record, and the run it names.
pub(crate) fn started_run(json: &str) -> Option<String> {
    if !json.contains(STARTED) {
        return None;
    }
    let rec: AuditRecord = serde_json::from_str(json).ok()?;
    if rec.event != Event::Operation || rec.reason != STARTED {
        return None;
    }
    run_of(rec.detail.as_deref()?).map(str::to_string)
}

/// Whether `json` is an `audit_pruned` (closing) record: the run it names and the index span it
/// says the run emptied.
pub(crate) fn done_span(json: &str) -> Option<(String, (u64, u64))> {
    if !json.contains(DONE) {
        return None;
    }
    let rec: AuditRecord = serde_json::from_str(json).ok()?;
    if rec.event != Event::Operation || rec.reason != DONE {
        return None;
    }
    let detail = rec.detail.as_deref()?;
    let (_, span) = detail.rsplit_once("; span idx ")?;
    let (a, b) = span.split_once('-')?;
    Some((
        run_of(detail)?.to_string(),
        (a.parse().ok()?, b.parse().ok()?),
    ))
}

/// Prunes what is past retention. Nothing eligible: nothing is recorded or changed (the
/// returned run id is empty). Another run in progress: `Err` holding [`Busy`].
pub async fn prune(store: &Store, log: &AuditLog, run: &PruneRun<'_>) -> Result<Pruned> {
    let planned = plan(store, run).await?;
    if planned.records == 0 {
        return Ok(planned);
    }
    let id = new_run_id();
    // A connection of its own, detached from the pool: it holds the lease. On SQLite every
    // connection of the store deletes securely (`secure_delete`, set by the store); set here
    // too so that a store opened otherwise still zeroes what the prune empties.
    let mut conn = store
        .pool()
        .acquire()
        .await
        .context("cannot connect to the store")?
        .detach();
    if store.kind() == DbKind::Sqlite {
        conn.execute("PRAGMA secure_delete = ON").await?;
    }
    let holder = format!("run {id} by {}", run.actor);
    let now = sekisho_store::now();
    let took = sqlx::query(
        "UPDATE audit_prune_lease SET holder = $1, expires_at = $2, seq = seq + 1
         WHERE id = 1 AND (holder IS NULL OR expires_at < $3)",
    )
    .bind(&holder)
    .bind(now + LEASE_SECS)
    .bind(now)
    .execute(&mut conn)
    .await
    .context("cannot take the prune lease")?
    .rows_affected();
    if took == 0 {
        let holder: Option<String> =
            sqlx::query_scalar("SELECT holder FROM audit_prune_lease WHERE id = 1")
                .fetch_one(&mut conn)
                .await?;
        conn.close().await.ok();
        return Err(Busy {
            holder: holder.unwrap_or_default(),
        }
        .into());
    }
    let result = run_batches(log, run, &mut conn, &id, &holder, &planned).await;
    // Whatever happened, the lease goes (it would expire anyway).
    let _ = sqlx::query("UPDATE audit_prune_lease SET holder = NULL WHERE id = 1 AND holder = $1")
        .bind(&holder)
        .execute(&mut conn)
        .await;
    if store.kind() == DbKind::Sqlite {
        // Copy the zeroed pages into the database file now; PASSIVE never waits for (or holds
        // up) the gateways' readers and writer. The WAL's older frames go as it is reused.
        let _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await;
    }
    conn.close().await.ok();
    let done = result?;
    let detail = format!(
        "run={id} pruned {} records: {}{}",
        done.records,
        done.summary(),
        done.span
            .map(|(a, b)| format!("; span idx {a}-{b}"))
            .unwrap_or_default()
    );
    log.append(operation(&run.actor, DONE, detail))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{} records were pruned (run {id}; audit_prune_started is on record), but the closing record could not be written: {e}",
                done.records
            )
        })?;
    Ok(done)
}

async fn run_batches(
    log: &AuditLog,
    run: &PruneRun<'_>,
    conn: &mut AnyConnection,
    id: &str,
    holder: &str,
    planned: &Pruned,
) -> Result<Pruned> {
    // On record before anything changes; no record, no prune.
    let mut detail = format!("run={id} retention:");
    for k in planned.kinds.iter().filter(|k| k.records > 0) {
        let before =
            time::OffsetDateTime::from_unix_timestamp_nanos(k.before_ms as i128 * 1_000_000)
                .map(format_time)
                .unwrap_or_default();
        write!(
            detail,
            " {} before {before} ({} days)",
            k.event.as_str(),
            run.retention.days(k.event)
        )
        .ok();
    }
    if let Some(keep) = run.keep_from_idx {
        write!(detail, "; kept from idx {keep}").ok();
    }
    write!(detail, "; {} records eligible", planned.records).ok();
    log.append(operation(&run.actor, STARTED, detail))
        .await
        .map_err(|e| anyhow::anyhow!("nothing was pruned: the prune could not be recorded: {e}"))?;

    let groups = run.retention.groups(run.now_ms);
    let mut done = Pruned {
        run: id.to_string(),
        kinds: empty_counts(&groups),
        records: 0,
        span: None,
    };
    let mut events: BTreeSet<&'static str> = BTreeSet::new();
    let mut newest_ts = i64::MIN;
    let keep = run.keep_from_idx.map_or(i64::MAX, |k| k as i64);
    let marks = marks(conn).await?;
    for (cutoff, kinds) in &groups {
        let mut from = group_mark(&marks, kinds);
        while from < *cutoff {
            let started = std::time::Instant::now();
            let mut tx = conn.begin().await?;
            // The lease renewed first: the transaction's first statement is a write, so on
            // SQLite it waits for the write lock before reading (no stale snapshot to upgrade).
            let renewed = sqlx::query(
                "UPDATE audit_prune_lease SET expires_at = $1, seq = seq + 1 WHERE id = 1 AND holder = $2",
            )
            .bind(sekisho_store::now() + LEASE_SECS)
            .bind(holder)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if renewed == 0 {
                bail!(
                    "the prune lease was lost (a batch took longer than {LEASE_SECS} s); run it again"
                );
            }
            let sql = format!(
                "SELECT idx, ts, event FROM audit_records WHERE {} ORDER BY ts LIMIT $3",
                eligible_sql(kinds)
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(from)
                .bind(*cutoff)
                .bind(run.batch.max(1) as i64)
                .fetch_all(&mut *tx)
                .await
                .context("cannot read the records past retention")?;
            let full = rows.len() >= run.batch.max(1);
            let mut taken: Vec<(i64, String)> = Vec::with_capacity(rows.len());
            let mut next = if full { from } else { *cutoff };
            let mut blocked = false;
            for r in &rows {
                let (idx, ts, event): (i64, i64, String) =
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                if idx >= keep {
                    // Not exported yet: this time and everything after waits for next time.
                    next = ts;
                    blocked = true;
                    break;
                }
                newest_ts = newest_ts.max(ts);
                if full {
                    next = ts;
                }
                taken.push((idx, event));
            }
            if !taken.is_empty() {
                let list = taken
                    .iter()
                    .map(|(i, _)| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                let emptied = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE audit_records SET record = '', request_id = '', terminal = NULL,
                         user_id = NULL, patient = NULL, break_glass_id = NULL, facility = NULL,
                         route = NULL, reason = ''
                     WHERE idx IN ({list}) AND record <> ''"
                )))
                .execute(&mut *tx)
                .await
                .context("cannot empty the records past retention")?
                .rows_affected();
                if emptied != taken.len() as u64 {
                    bail!(
                        "the records changed while they were pruned ({emptied} of {} emptied); nothing of this batch was",
                        taken.len()
                    );
                }
                for (idx, event) in &taken {
                    let idx = *idx as u64;
                    if let Some(k) = done.kinds.iter_mut().find(|k| k.event.as_str() == event) {
                        k.add(idx);
                        events.insert(k.event.as_str());
                    }
                    done.records += 1;
                    done.span = Some(
                        done.span
                            .map_or((idx, idx), |(a, b)| (a.min(idx), b.max(idx))),
                    );
                }
                let (first, last) = done.span.expect("records were taken");
                sqlx::query(
                    "INSERT INTO audit_pruned (run, first_idx, last_idx, records, events, newest_ts, pruned_at, pruned_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (run) DO UPDATE SET first_idx = excluded.first_idx,
                         last_idx = excluded.last_idx, records = excluded.records,
                         events = excluded.events, newest_ts = excluded.newest_ts",
                )
                .bind(id)
                .bind(first as i64)
                .bind(last as i64)
                .bind(done.records as i64)
                .bind(events.iter().copied().collect::<Vec<_>>().join(","))
                .bind(newest_ts)
                .bind(sekisho_store::now())
                .bind(&run.actor)
                .execute(&mut *tx)
                .await
                .context("cannot record the pruned range")?;
            }
            for e in kinds {
                sqlx::query(
                    "INSERT INTO audit_retention_marks (event, pruned_below_ts) VALUES ($1, $2)
                     ON CONFLICT (event) DO UPDATE SET pruned_below_ts = CASE
                         WHEN excluded.pruned_below_ts > audit_retention_marks.pruned_below_ts
                         THEN excluded.pruned_below_ts ELSE audit_retention_marks.pruned_below_ts END",
                )
                .bind(e.as_str())
                .bind(next)
                .execute(&mut *tx)
                .await
                .context("cannot move the retention mark")?;
            }
            tx.commit().await.context("cannot commit a prune batch")?;
            if blocked || taken.is_empty() {
                break;
            }
            from = next;
            // As long again for the gateways: SQLite's busy handler polls, so a prune that
            // began its next batch at once could keep the audit writer waiting until its
            // timeout (and every request it holds would fail).
            tokio::time::sleep(started.elapsed().max(PAUSE_MIN)).await;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests;

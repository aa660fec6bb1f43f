//! The group-commit writer. Callers queue records; one task takes whatever is queued (up to
//! `max_batch`, waiting at most `max_wait` after the first record) and writes it in one
//! transaction: lock the head row, read the head, insert the records, sign the new root, write
//! the checkpoint and the new head, commit. One fsync (SQLite WAL with synchronous=FULL, a
//! PostgreSQL commit) covers the whole batch. While a batch commits, the next one queues up.
//!
//! The writer keeps one connection of its own rather than taking any from the pool: with
//! SQLite, a connection's page cache is dropped whenever another connection has written, so
//! batches that rotated over the pool re-read the tree's and the indexes' pages from the file
//! every time (in a profile under load, the SQLite threads spent more time reading pages back
//! than inserting). A connection that fails is dropped and the next batch opens a new one.
//!
//! When that new connection cannot be had within [`CONNECT_TIMEOUT`], the store is known to be
//! down: batches then fail at once (each caller answers 503 without waiting out a connection
//! attempt of its own) while a probe in the background reconnects, every [`PROBE_EVERY`]; the
//! first batch after it succeeds is written on the probe's connection.
//!
//! A store that answers but cannot write (a full disk: SQLite's "database or disk is full")
//! is not down; its failing commits are counted instead, and for [`FAILING_FOR`] after one the
//! writes count as failing ([`AuditLog::writes_failing`]): `/readyz` says so and safe reads
//! stop being forwarded ahead of their records. A successful commit ends it at once; with no
//! traffic it lapses, so the next request tries again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use sqlx::AnyConnection;
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{mpsc, oneshot, watch};

use super::checkpoint::{Checkpoint, CheckpointKey, SignedCheckpoint};
use super::merkle::{CompactRange, Hash, leaf_hash};
use super::record::{AuditRecord, Prepared};
use super::{AuditConfig, AuditError, AuditMetrics, QUEUE_CAPACITY};
use sekisho_store::{DbKind, Store};

/// A batch that takes longer than this (lock wait included) is abandoned and its callers get
/// an error; the transaction rolls back and the next batch re-reads the head.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection may take before the store counts as down. The pool's own acquire
/// timeout (5 s, retrying a refused connection) made every refusal wait 5–10 s with the store
/// gone; a silent partition hangs a connection attempt until it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between the background probe's connection attempts while the store is down.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long after a failed commit the writes count as failing (see the module's note).
const FAILING_FOR: Duration = Duration::from_secs(5);
/// Rows per INSERT statement (12 parameters each; well under SQLite's and PostgreSQL's limits).
const ROWS_PER_INSERT: usize = 64;

type Reply = oneshot::Sender<Result<u64, AuditError>>;

struct Pending {
    rec: Prepared,
    reply: Option<Reply>,
}

enum Msg {
    Record(Box<Pending>),
    Shutdown,
}

/// The handle the gateway appends through; cheap to clone. The writer stops when
/// [`AuditLog::shutdown`] is called or every handle is dropped, after writing what is queued.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    node: String,
    metrics: AuditMetrics,
    stopped: watch::Receiver<bool>,
    checkpoints: watch::Receiver<Option<Arc<SignedCheckpoint>>>,
    store_down: Arc<AtomicBool>,
    /// Milliseconds since the epoch of the last failed commit; 0 once one succeeds.
    failed_at_ms: Arc<AtomicU64>,
}

impl AuditLog {
    /// Checks the configuration and the store, then spawns the writer task.
    pub async fn open(
        store: Store,
        key: CheckpointKey,
        cfg: AuditConfig,
        metrics: AuditMetrics,
    ) -> Result<AuditLog> {
        if cfg.origin.is_empty() || cfg.origin.chars().any(|c| c.is_control()) {
            bail!("the audit checkpoint origin must be one non-empty line");
        }
        if cfg.node.is_empty() {
            bail!("the audit node name must not be empty");
        }
        let head: Option<i64> = sqlx::query_scalar("SELECT tree_size FROM audit_head WHERE id = 1")
            .fetch_optional(store.pool())
            .await
            .context("cannot read the audit head")?;
        if head.is_none() {
            bail!("the audit head row is missing");
        }
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (stopped_tx, stopped) = watch::channel(false);
        let (latest, checkpoints) = watch::channel(None);
        let store_down = Arc::new(AtomicBool::new(false));
        let failed_at_ms = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            latest,
            store,
            conn: None,
            probe: None,
            store_down: store_down.clone(),
            failed_at_ms: failed_at_ms.clone(),
            key,
            origin: cfg.origin,
            node: cfg.node.clone(),
            max_batch: cfg.max_batch.max(1),
            max_wait: cfg.max_wait,
            metrics: metrics.clone(),
        };
        tokio::spawn(writer.run(rx, stopped_tx));
        Ok(AuditLog {
            inner: Arc::new(Inner {
                tx,
                node: cfg.node,
                metrics,
                stopped,
                checkpoints,
                store_down,
                failed_at_ms,
            }),
        })
    }

    /// Whether the writer knows its store to be unreachable (it could not connect, and its
    /// background probe has not connected since): appends fail at once meanwhile.
    pub fn store_unreachable(&self) -> bool {
        self.inner.store_down.load(Ordering::Acquire)
    }

    /// Whether a commit failed in the last [`FAILING_FOR`] with none succeeding since: the
    /// store answers but does not take records (a full disk), or is down.
    pub fn writes_failing(&self) -> bool {
        let at = self.inner.failed_at_ms.load(Ordering::Acquire);
        at != 0 && unix_ms().saturating_sub(at) < FAILING_FOR.as_millis() as u64
    }

    /// The newest checkpoint this writer committed, set after each commit (the witnesses'
    /// copier watches it; setting it never waits).
    pub fn checkpoints(&self) -> watch::Receiver<Option<Arc<SignedCheckpoint>>> {
        self.inner.checkpoints.clone()
    }

    /// Returns once the record's batch is committed (durable), with its leaf index.
    /// Err => the caller refuses the request with 503.
    pub async fn append(&self, rec: AuditRecord) -> Result<u64, AuditError> {
        self.submit(rec).await
    }

    /// Queues the record now and returns what resolves once it is durable (as [`append`]),
    /// so the caller can do other work while the batch commits.
    ///
    /// [`append`]: AuditLog::append
    pub fn submit(
        &self,
        rec: AuditRecord,
    ) -> impl Future<Output = Result<u64, AuditError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let queued = self.enqueue(rec, Some(reply));
        async move {
            queued?;
            // The writer answers every record it takes; if it is gone, the sender is dropped.
            answer.await.unwrap_or(Err(AuditError::Closed))
        }
    }

    /// For after-the-fact records (request outcomes): queued in the same batches, not awaited;
    /// failures are logged and counted.
    pub fn append_nowait(&self, rec: AuditRecord) {
        if let Err(e) = self.enqueue(rec, None) {
            tracing::error!(error = %e, "audit record dropped");
        }
    }

    fn enqueue(&self, rec: AuditRecord, reply: Option<Reply>) -> Result<(), AuditError> {
        let rec = Prepared::new(rec, &self.inner.node);
        match self
            .inner
            .tx
            .try_send(Msg::Record(Box::new(Pending { rec, reply })))
        {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.inner.metrics.failures.inc();
                Err(AuditError::QueueFull)
            }
            Err(TrySendError::Closed(_)) => {
                self.inner.metrics.failures.inc();
                Err(AuditError::Closed)
            }
        }
    }

    /// Writes what is queued and stops the writer; later appends fail with `Closed`.
    pub async fn shutdown(&self) {
        let _ = self.inner.tx.send(Msg::Shutdown).await;
        let mut stopped = self.inner.stopped.clone();
        // Err: the writer is gone already (its sender dropped).
        let _ = stopped.wait_for(|s| *s).await;
    }
}

struct Writer {
    /// The newest committed checkpoint, for the witnesses.
    latest: watch::Sender<Option<Arc<SignedCheckpoint>>>,
    store: Store,
    /// The writer's own connection (see the module's note); None until the first batch and
    /// after a failure.
    conn: Option<AnyConnection>,
    /// While the store is down: the background task that reconnects (see the module's note).
    probe: Option<tokio::task::JoinHandle<AnyConnection>>,
    store_down: Arc<AtomicBool>,
    failed_at_ms: Arc<AtomicU64>,
    key: CheckpointKey,
    origin: String,
    node: String,
    max_batch: usize,
    max_wait: Duration,
    metrics: AuditMetrics,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>, stopped: watch::Sender<bool>) {
        while let Some(first) = rx.recv().await {
            let mut batch = Vec::new();
            match first {
                Msg::Record(p) => batch.push(*p),
                Msg::Shutdown => {
                    // No new records; what is queued is still written.
                    rx.close();
                    continue;
                }
            }
            let deadline = tokio::time::Instant::now() + self.max_wait;
            while batch.len() < self.max_batch {
                let msg = match rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Disconnected) => break,
                    // Nothing more queued: with no wait configured, what is here is the batch.
                    Err(TryRecvError::Empty) if self.max_wait.is_zero() => break,
                    Err(TryRecvError::Empty) => {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(m)) => m,
                            Ok(None) | Err(_) => break,
                        }
                    }
                };
                match msg {
                    Msg::Record(p) => batch.push(*p),
                    Msg::Shutdown => rx.close(),
                }
            }
            self.commit(batch).await;
        }
        if let Some(p) = self.probe.take() {
            p.abort();
        }
        let _ = stopped.send(true);
    }

    async fn commit(&mut self, batch: Vec<Pending>) {
        let n = batch.len();
        self.metrics.batch_size.observe(n as f64);
        // The records move into the statement's arguments; only the replies stay.
        let (recs, replies): (Vec<Prepared>, Vec<Option<Reply>>) =
            batch.into_iter().map(|p| (p.rec, p.reply)).unzip();
        let started = Instant::now();
        let result = match tokio::time::timeout(COMMIT_TIMEOUT, self.write_batch(recs)).await {
            Ok(r) => r.map_err(|e| format!("{e:#}")),
            Err(_) => {
                // A store silent this long (a partition) would make the next batch wait out a
                // connection attempt too: reconnect in the background instead.
                self.start_probe();
                Err(format!("timed out after {} s", COMMIT_TIMEOUT.as_secs()))
            }
        };
        if result.is_err() {
            // Whatever state it was left in (a timed-out transaction, a broken socket), the
            // next batch starts on a new connection.
            if let Some(conn) = self.conn.take() {
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
            }
        }
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.failed_at_ms.store(
            if result.is_ok() { 0 } else { unix_ms().max(1) },
            Ordering::Release,
        );
        match result {
            Ok(first) => {
                self.metrics.records.inc_by(n as u64);
                for (i, reply) in replies.into_iter().enumerate() {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(first + i as u64));
                    }
                }
            }
            Err(msg) => {
                self.metrics.failures.inc_by(n as u64);
                tracing::error!(records = n, error = %msg, "audit batch not committed");
                let err = AuditError::Commit(msg);
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// One batch, one transaction. Returns the leaf index of the batch's first record.
    async fn write_batch(&mut self, batch: Vec<Prepared>) -> Result<u64> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let c = self.connect().await?;
                self.conn.insert(c)
            }
        };
        let mut tx = conn
            .begin()
            .await
            .context("cannot begin the audit transaction")?;
        // The head row's lock first, and the head read in the same statement: it serialises
        // writers (other replicas included) before anything is read, in one round trip.
        let row = sqlx::query(
            "UPDATE audit_head SET lock_seq = lock_seq + 1 WHERE id = 1 RETURNING tree_size, frontier",
        )
        .fetch_optional(&mut *tx)
        .await
        .context("cannot lock the audit head")?
        .ok_or_else(|| anyhow!("the audit head row is missing"))?;
        let size: i64 = row.try_get(0)?;
        let frontier: Vec<u8> = row.try_get(1)?;
        let first =
            u64::try_from(size).map_err(|_| anyhow!("the audit head has tree size {size}"))?;
        let mut range = CompactRange::from_parts(first, &frontier)
            .map_err(|e| anyhow!("the audit head is damaged: {e}"))?;

        let leaves: Vec<Hash> = batch.iter().map(|r| leaf_hash(r.json.as_bytes())).collect();
        let mut rows = batch.into_iter().enumerate().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<(usize, Prepared)> = rows.by_ref().take(ROWS_PER_INSERT).collect();
            let mut q = sqlx::query(AssertSqlSafe(insert_sql(chunk.len(), self.store.kind())));
            for (i, r) in chunk {
                q = q
                    .bind((first + i as u64) as i64)
                    .bind(leaves[i].to_vec())
                    .bind(r.json)
                    .bind(r.ts_ms)
                    .bind(r.request_id)
                    .bind(r.event.as_str())
                    .bind(r.decision.as_str())
                    .bind(r.node)
                    .bind(r.terminal)
                    .bind(r.user)
                    .bind(r.patient)
                    .bind(r.break_glass_id)
                    .bind(r.facility)
                    .bind(r.reason)
                    .bind(r.route);
            }
            q.execute(&mut *tx)
                .await
                .context("cannot insert the audit records")?;
        }
        for leaf in leaves {
            range.append(leaf);
        }
        let new_size = range.size();
        let root = range.root();
        let note = self.key.sign_checkpoint(&self.origin, new_size, &root);
        let now = sekisho_store::now();
        sqlx::query("INSERT INTO audit_checkpoints (tree_size, note, node, created_at) VALUES ($1, $2, $3, $4)")
            .bind(new_size as i64)
            .bind(note.clone())
            .bind(self.node.clone())
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("cannot insert the checkpoint")?;
        sqlx::query(
            "UPDATE audit_head SET tree_size = $1, frontier = $2, updated_at = $3 WHERE id = 1",
        )
        .bind(new_size as i64)
        .bind(range.frontier_bytes())
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("cannot update the audit head")?;
        tx.commit().await.context("cannot commit the audit batch")?;
        self.latest.send_replace(Some(Arc::new(SignedCheckpoint {
            checkpoint: Checkpoint {
                origin: self.origin.clone(),
                size: new_size,
                root,
            },
            note,
        })));
        Ok(first)
    }
}

impl Writer {
    /// A new connection for the writer; while the store is known to be down, an error at once
    /// unless the probe has connected.
    async fn connect(&mut self) -> Result<AnyConnection> {
        if let Some(probe) = &self.probe {
            if !probe.is_finished() {
                bail!("the audit store is unreachable (refused at once until it answers again)");
            }
            let probe = self.probe.take().expect("checked above");
            return probe.await.context("the audit store probe stopped");
        }
        let e = match tokio::time::timeout(CONNECT_TIMEOUT, self.store.pool().acquire()).await {
            Ok(Ok(c)) => return Ok(c.detach()),
            Ok(Err(e)) => anyhow::Error::from(e),
            Err(_) => anyhow!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
        };
        tracing::error!(error = %e, "the audit store is unreachable; refusing at once until it answers again");
        self.start_probe();
        Err(e.context("cannot connect to the audit store"))
    }

    fn start_probe(&mut self) {
        if self.probe.is_none() {
            self.store_down.store(true, Ordering::Release);
            self.probe = Some(tokio::spawn(probe(
                self.store.clone(),
                self.store_down.clone(),
            )));
        }
    }
}

/// Reconnects to a store that is down; returns the first connection that answers.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn probe(store: Store, down: Arc<AtomicBool>) -> AnyConnection {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let attempt = async {
            let mut c = store.pool().acquire().await?.detach();
            c.ping().await?;
            Ok::<_, sqlx::Error>(c)
        };
        if let Ok(Ok(c)) = tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            tracing::info!("the audit store answers again");
            down.store(false, Ordering::Release);
            return c;
        }
    }
}

/// The multi-row insert. SQLite gets anonymous `?` parameters: with numbered ones, binding
/// looks each name up in a linear list (sqlite3_bind_parameter_name), which made a 64-row batch
/// quadratic and was the largest single cost of the gateway's request path under load.
pub fn insert_sql(rows: usize, kind: DbKind) -> String {
    const COLS: usize = 15;
    let mut sql = String::from(
        "INSERT INTO audit_records (idx, leaf_hash, record, ts, request_id, event, decision, node, \
         terminal, user_id, patient, break_glass_id, facility, reason, route) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..COLS {
            if c > 0 {
                sql.push_str(", ");
            }
            match kind {
                DbKind::Sqlite => sql.push('?'),
                DbKind::Postgres => sql.push_str(&format!("${}", r * COLS + c + 1)),
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    #[test]
    fn insert_sql_numbers_every_parameter() {
        let sql = super::insert_sql(2, sekisho_store::DbKind::Postgres);
        assert!(sql.ends_with("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15), ($16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)"), "{sql}");
        let sql = super::insert_sql(2, sekisho_store::DbKind::Sqlite);
        assert!(
            sql.ends_with(
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            "{sql}"
        );
    }
}

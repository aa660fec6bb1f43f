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
//! than inserting). A connection that fails is dropped and the next batch opens a new one. It
//! is a connection of the database's own driver, not sqlx's `Any` (`Store::connect_direct`):
//! through `Any` each of a record's fifteen bound values was copied twice, four allocations a
//! text, about 40 % of the gateway's allocations under load.
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
//!
//! With a journal (`AuditConfig::journal`, what `sekisho serve` uses), the durability point
//! moves in front of the SQL log: one thread of its own writes each batch to the node's journal
//! (`journal.rs`: one `pwrite` + `fdatasync`) and answers its callers; the SQL transaction
//! above runs on a second thread of its own, the indexer, on whatever the journal has made
//! durable since its last commit (many journal batches in one transaction), and records the
//! journal's sequence number it reached in the same transaction. While the indexer cannot write (the
//! store down or refusing), the journal takes no new records: a node does not serve on its
//! journal alone, so the officers' log never falls behind by more than what was in flight.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{mpsc, oneshot, watch};

use super::checkpoint::{Checkpoint, CheckpointKey, SignedCheckpoint};
use super::journal::Journal;
use super::merkle::{CompactRange, Hash, leaf_hash};
use super::record::{AuditRecord, Decision, Event, Prepared};
use super::{AuditConfig, AuditError, AuditMetrics, QUEUE_CAPACITY};
use sekisho_store::direct::{DirectConnection, SharedText};
use sekisho_store::{DbKind, Store, with_direct};

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
/// Rows per INSERT statement on SQLite (15 parameters each; well under its limit).
const ROWS_PER_INSERT: usize = 64;
/// Record bytes per INSERT statement on PostgreSQL, after which the next record starts another
/// (4,096 records of a request's size are about 2 MB: one statement). The unit tests use 16 KiB,
/// so their larger batches take several statements and small ones one.
const PG_STATEMENT_BYTES: usize = if cfg!(test) {
    16 * 1024
} else {
    64 * 1024 * 1024
};
/// Most records the indexer puts in one transaction.
const INDEX_BATCH: usize = 4096;
/// How long the indexer gathers journal batches after the first before it writes them, so that
/// a transaction's fixed costs (the head, the checkpoint, the commit) are shared by many
/// records; nothing waits for the indexer but the console's reads. In `sekisho-bench` 50 ms
/// did no better than 5 (docs/audit.md): past this, a record's cost is its row and index pages.
const INDEX_GATHER: Duration = Duration::from_millis(5);
/// Most records journaled and not yet indexed: beyond that a batch waits for the indexer
/// (back-pressure: the store is slower than the disk), and is refused if it is still too far
/// behind after [`RETRY_WAIT`]. It bounds how late records reach the store (at the indexer's
/// tens of thousands of records a second, well under a second) and what a node's lost disk
/// could cost.
pub const MAX_INDEX_LAG: u64 = 20_000;
/// An indexer attempt in progress this long means the store is not answering (a silent
/// partition waits out [`COMMIT_TIMEOUT`]): the journal refuses meanwhile, so a node serves at
/// most this long on its journal alone.
const INDEX_STALL: Duration = Duration::from_secs(1);
/// How long a batch waits for a failing indexer's next attempt before it is refused.
const RETRY_WAIT: Duration = Duration::from_secs(2);
/// The journal's group commit: when a batch already holds [`GROUP_SIBLINGS`] records (requests
/// are arriving together), its write waits this long for the ones arriving meanwhile, as
/// PostgreSQL's `commit_delay` with `commit_siblings`. Each `fdatasync` costs the gateway about
/// 40 µs of CPU whatever the batch's size, and on 2 cores that CPU is what limits throughput:
/// in `sekisho-bench` 250 µs took batches from 5-7 records to 12-16, CPU per request down by
/// 15 % and throughput and p99 up (docs/audit.md). A request alone never waits.
const GROUP_DELAY: Duration = Duration::from_micros(200);
/// See [`GROUP_DELAY`].
const GROUP_SIBLINGS: usize = 2;
/// How long a stopping gateway waits for the indexer; what is left is indexed at the next start.
const SHUTDOWN_INDEX_WAIT: Duration = Duration::from_secs(5);

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
    /// The node's name, shared by the query columns of all its records.
    node: SharedText,
    metrics: AuditMetrics,
    stopped: watch::Receiver<bool>,
    checkpoints: watch::Receiver<Option<Arc<SignedCheckpoint>>>,
    store_down: Arc<AtomicBool>,
    /// Milliseconds since the epoch of the last failed commit; 0 once one succeeds.
    failed_at_ms: Arc<AtomicU64>,
    /// With a journal: where the indexer is.
    journal: Option<Arc<JournalState>>,
}

/// What the journal thread and the indexer share.
struct JournalState {
    /// The sequence number the next journaled record gets (everything below is durable).
    journaled: AtomicU64,
    /// Everything below this sequence number is in the store.
    indexed: watch::Sender<u64>,
    /// Records journaled and not yet indexed.
    lag: AtomicU64,
    /// The indexer's last attempt failed and none has succeeded since.
    index_failing: AtomicBool,
    /// Wakes a failing indexer to try again now (a batch is waiting to be journaled).
    retry: tokio::sync::Notify,
    /// Attempts the indexer has finished, so the journal thread can wait for the next one.
    attempts: watch::Sender<u64>,
    /// When the indexer's attempt in progress began (ms since the epoch); 0 between attempts.
    busy_since_ms: AtomicU64,
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
        let full_insert = insert_sql(ROWS_PER_INSERT, DbKind::Sqlite).into();
        let mut writer = Writer {
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
            full_insert,
            words: Words::new(),
        };
        let journal = match cfg.journal {
            None => {
                tokio::spawn(writer.run(rx, stopped_tx));
                None
            }
            Some(dir) => {
                let (journal, state) = writer.replay(dir).await?;
                let (to_index, from_journal) = mpsc::unbounded_channel();
                let runtime = tokio::runtime::Handle::current();
                // Its own thread too, not a task: a task woken after each of a transaction's
                // statements waited behind every request's task on tokio's busy workers, and
                // at 128 connections the indexer fell behind by MAX_INDEX_LAG (docs/audit.md).
                let indexer = Indexer::start(&runtime, {
                    let (journal, state) = (journal.clone(), state.clone());
                    writer.index(from_journal, journal, state)
                })?;
                let journaler = Journaler {
                    journal,
                    state: state.clone(),
                    to_index,
                    store_down: store_down.clone(),
                    failed_at_ms: failed_at_ms.clone(),
                    max_batch: cfg.max_batch.max(1),
                    max_wait: cfg.max_wait,
                    metrics: metrics.clone(),
                };
                // Its own thread, not a task: each batch's write and fdatasync block it where
                // they are, instead of being handed to the blocking pool and back (two thread
                // wake-ups a batch; docs/audit.md). The waits on the indexer stay async, on
                // this runtime.
                std::thread::Builder::new()
                    .name("sekisho-journal".into())
                    .spawn(move || runtime.block_on(journaler.run(rx, stopped_tx, indexer)))
                    .context("cannot start the audit journal's thread")?;
                Some(state)
            }
        };
        Ok(AuditLog {
            inner: Arc::new(Inner {
                tx,
                node: SharedText::from(cfg.node.as_str()),
                metrics,
                stopped,
                checkpoints,
                store_down,
                failed_at_ms,
                journal,
            }),
        })
    }

    /// Waits (at most `within`) until every record made durable before the call is in the
    /// store's tables, so a search made now finds them. True at once without a journal.
    pub async fn caught_up(&self, within: Duration) -> bool {
        let Some(j) = &self.inner.journal else {
            return true;
        };
        let target = j.journaled.load(Ordering::Acquire);
        let mut indexed = j.indexed.subscribe();
        tokio::time::timeout(within, indexed.wait_for(|&i| i >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Records made durable and not yet in the store's tables (0 without a journal).
    pub fn index_lag(&self) -> u64 {
        self.inner
            .journal
            .as_ref()
            .map_or(0, |j| j.lag.load(Ordering::Acquire))
    }

    /// Whether the writer knows its store to be unreachable (it could not connect, and its
    /// background probe has not connected since): appends fail at once meanwhile.
    pub fn store_unreachable(&self) -> bool {
        self.inner.store_down.load(Ordering::Acquire)
    }

    /// Whether a commit failed in the last [`FAILING_FOR`] with none succeeding since: the
    /// store answers but does not take records (a full disk), or is down. With a journal, also
    /// while the journal refuses because the indexer fails or is stalled.
    pub fn writes_failing(&self) -> bool {
        let at = self.inner.failed_at_ms.load(Ordering::Acquire);
        let failed = at != 0 && unix_ms().saturating_sub(at) < FAILING_FOR.as_millis() as u64;
        failed
            || self.inner.journal.as_ref().is_some_and(|j| {
                j.index_failing.load(Ordering::Acquire) || j.stalled_for_ms().is_some()
            })
    }

    /// With a journal: the indexer's attempt has gone unanswered past the stall limit (a silent
    /// store).
    pub fn store_stalled(&self) -> bool {
        self.inner
            .journal
            .as_ref()
            .is_some_and(|j| j.stalled_for_ms().is_some())
    }

    /// The newest checkpoint this writer committed, set after each commit (the witnesses'
    /// copier watches it; setting it never waits).
    pub fn checkpoints(&self) -> watch::Receiver<Option<Arc<SignedCheckpoint>>> {
        self.inner.checkpoints.clone()
    }

    /// Returns once the record's batch is durable: with its leaf index when the log is written
    /// directly, with its journal sequence number when a journal is the durability point.
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
        mut rec: AuditRecord,
    ) -> impl Future<Output = Result<u64, AuditError>> + Send + 'static {
        self.submit_stamping(&mut rec)
    }

    /// As [`submit`], for a record the caller goes on using (a request's decision record,
    /// which its outcome record repeats): its time and node are filled in place if empty, and
    /// only what the log keeps is copied, not the whole record.
    ///
    /// [`submit`]: AuditLog::submit
    pub fn submit_stamping(
        &self,
        rec: &mut AuditRecord,
    ) -> impl Future<Output = Result<u64, AuditError>> + Send + 'static + use<> {
        let (reply, answer) = oneshot::channel();
        let queued = self.enqueue(Prepared::stamp(rec, &self.inner.node), Some(reply));
        async move {
            queued?;
            // The writer answers every record it takes; if it is gone, the sender is dropped.
            answer.await.unwrap_or(Err(AuditError::Closed))
        }
    }

    /// For after-the-fact records (request outcomes): queued in the same batches, not awaited;
    /// failures are logged and counted.
    pub fn append_nowait(&self, rec: AuditRecord) {
        if let Err(e) = self.enqueue(Prepared::new(rec, &self.inner.node), None) {
            tracing::error!(error = %e, "audit record dropped");
        }
    }

    fn enqueue(&self, rec: Prepared, reply: Option<Reply>) -> Result<(), AuditError> {
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
    /// The driver's own, not `Any`'s: `Any` copied each bound value twice (`Store::connect_direct`).
    conn: Option<DirectConnection>,
    /// While the store is down: the background task that reconnects (see the module's note).
    probe: Option<tokio::task::JoinHandle<DirectConnection>>,
    store_down: Arc<AtomicBool>,
    failed_at_ms: Arc<AtomicU64>,
    key: CheckpointKey,
    origin: String,
    node: String,
    max_batch: usize,
    max_wait: Duration,
    metrics: AuditMetrics,
    /// SQLite's insert of [`ROWS_PER_INSERT`] rows, made once: most of a batch's statements.
    full_insert: Arc<str>,
    /// The event and decision columns' words, made once.
    words: Words,
}

/// A batch's rows for [`InsertRows`].
struct Rows<'a> {
    batch: &'a [&'a Prepared],
    leaves: &'a [Hash],
    /// The first record's leaf index.
    first: u64,
    /// The insert of [`ROWS_PER_INSERT`] rows (SQLite).
    full_insert: &'a Arc<str>,
    words: &'a Words,
}

/// How each driver inserts a batch's rows into `audit_records`.
trait InsertRows {
    fn insert_rows(&mut self, rows: Rows<'_>) -> impl Future<Output = sqlx::Result<()>> + Send;
}

/// SQLite: statements of [`ROWS_PER_INSERT`] rows (see [`insert_sql`]).
impl InsertRows for sqlx::SqliteConnection {
    async fn insert_rows(&mut self, rows: Rows<'_>) -> sqlx::Result<()> {
        for (c, chunk) in rows.batch.chunks(ROWS_PER_INSERT).enumerate() {
            let sql: Arc<str> = match chunk.len() {
                ROWS_PER_INSERT => rows.full_insert.clone(),
                n => insert_sql(n, DbKind::Sqlite).into(),
            };
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (k, r) in chunk.iter().enumerate() {
                let i = c * ROWS_PER_INSERT + k;
                q = q
                    .bind((rows.first + i as u64) as i64)
                    .bind(rows.leaves[i].to_vec())
                    .bind(&r.json)
                    .bind(r.ts_ms)
                    .bind(&r.request_id)
                    .bind(rows.words.of(r.event.as_str()))
                    .bind(rows.words.of(r.decision.as_str()))
                    .bind(&r.node)
                    .bind(&r.terminal)
                    .bind(&r.user)
                    .bind(&r.patient)
                    .bind(&r.break_glass_id)
                    .bind(&r.facility)
                    .bind(&r.reason)
                    .bind(&r.route);
            }
            q.execute(&mut *self).await?;
        }
        Ok(())
    }
}

/// PostgreSQL: one statement of fifteen arrays, whatever the batch's size: one round trip and
/// one prepared plan, where statements of 64 rows were 64 round trips for 4,096 records, each
/// waiting for the last (`docs/audit.md`).
impl InsertRows for sqlx::PgConnection {
    async fn insert_rows(&mut self, rows: Rows<'_>) -> sqlx::Result<()> {
        // A statement's records are capped by their bytes too: a record may be up to a MiB
        // (the journal's frame limit), and PostgreSQL takes no message over 1 GB.
        let mut from = 0;
        while from < rows.batch.len() {
            let mut to = from;
            let mut bytes = 0;
            while to < rows.batch.len() && (to == from || bytes < PG_STATEMENT_BYTES) {
                bytes += rows.batch[to].json.len();
                to += 1;
            }
            let b = &rows.batch[from..to];
            let first = rows.first + from as u64;
            let text = |f: fn(&Prepared) -> &str| b.iter().map(|r| f(r)).collect::<Vec<&str>>();
            let opt = |f: fn(&Prepared) -> Option<&str>| {
                b.iter().map(|r| f(r)).collect::<Vec<Option<&str>>>()
            };
            sqlx::query(
                "INSERT INTO audit_records (idx, leaf_hash, record, ts, request_id, event, \
                 decision, node, terminal, user_id, patient, break_glass_id, facility, reason, \
                 route) SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::text[], \
                 $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
                 $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[])",
            )
            .bind(
                (0..b.len() as u64)
                    .map(|i| (first + i) as i64)
                    .collect::<Vec<i64>>(),
            )
            .bind(
                rows.leaves[from..to]
                    .iter()
                    .map(|h| &h[..])
                    .collect::<Vec<&[u8]>>(),
            )
            .bind(text(|r| &r.json))
            .bind(b.iter().map(|r| r.ts_ms).collect::<Vec<i64>>())
            .bind(text(|r| &r.request_id))
            .bind(text(|r| r.event.as_str()))
            .bind(text(|r| r.decision.as_str()))
            .bind(text(|r| &r.node))
            .bind(opt(|r| r.terminal.as_deref()))
            .bind(opt(|r| r.user.as_deref()))
            .bind(opt(|r| r.patient.as_deref()))
            .bind(opt(|r| r.break_glass_id.as_deref()))
            .bind(opt(|r| r.facility.as_deref()))
            .bind(text(|r| &r.reason))
            .bind(opt(|r| r.route.as_deref()))
            .execute(&mut *self)
            .await?;
            from = to;
        }
        Ok(())
    }
}

/// The words of the event and decision columns, each made once: a `&'static str` bound to an
/// SQLite statement is copied into a new `Arc<String>`, two allocations a column a record.
struct Words(Vec<SharedText>);

impl Words {
    fn new() -> Words {
        let all = Event::ALL.iter().map(|e| e.as_str());
        let all = all.chain([Decision::Permit, Decision::Deny].map(Decision::as_str));
        Words(all.map(SharedText::from).collect())
    }

    fn of(&self, word: &'static str) -> SharedText {
        match self.0.iter().find(|w| w.as_str() == word) {
            Some(w) => w.clone(),
            None => SharedText::from(word),
        }
    }
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>, stopped: watch::Sender<bool>) {
        while let Some(batch) = gather(&mut rx, self.max_batch, self.max_wait).await {
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
        let refs: Vec<&Prepared> = recs.iter().collect();
        let result = match tokio::time::timeout(COMMIT_TIMEOUT, self.write_batch(&refs, None)).await
        {
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
                answer(replies, Ok(first));
            }
            Err(msg) => {
                self.metrics.failures.inc_by(n as u64);
                tracing::error!(records = n, error = %msg, "audit batch not committed");
                answer(replies, Err(AuditError::Commit(msg)));
            }
        }
    }

    /// One batch, one transaction. Returns the leaf index of the batch's first record. With
    /// `journal_next`, the journal's mark moves to it in the same transaction.
    async fn write_batch(&mut self, batch: &[&Prepared], journal_next: Option<u64>) -> Result<u64> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let c = self.connect().await?;
                self.conn.insert(c)
            }
        };
        let (first, new_size, root, note) = with_direct!(conn, |db| {
            let mut tx = db
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
            let rows = Rows {
                batch,
                leaves: &leaves,
                first,
                full_insert: &self.full_insert,
                words: &self.words,
            };
            tx.insert_rows(rows)
                .await
                .context("cannot insert the audit records")?;
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
            if let Some(next) = journal_next {
                sqlx::query(
                    "INSERT INTO audit_journal_marks (node, next_seq, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (node) DO UPDATE SET next_seq = excluded.next_seq, updated_at = excluded.updated_at",
                )
                .bind(self.node.as_str())
                .bind(next as i64)
                .bind(now)
                .execute(&mut *tx)
                .await
                .context("cannot move the audit journal's mark")?;
            }
            tx.commit().await.context("cannot commit the audit batch")?;
            (first, new_size, root, note)
        });
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
    async fn connect(&mut self) -> Result<DirectConnection> {
        if let Some(probe) = &self.probe {
            if !probe.is_finished() {
                bail!("the audit store is unreachable (refused at once until it answers again)");
            }
            let probe = self.probe.take().expect("checked above");
            return probe.await.context("the audit store probe stopped");
        }
        let e = match tokio::time::timeout(CONNECT_TIMEOUT, self.store.connect_direct()).await {
            Ok(Ok(c)) => return Ok(c),
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

/// The next batch: the first record queued, then whatever else is (up to `max_batch`, waiting
/// at most `max_wait` for more). None once the queue is closed and empty.
async fn gather(
    rx: &mut mpsc::Receiver<Msg>,
    max_batch: usize,
    max_wait: Duration,
) -> Option<Vec<Pending>> {
    loop {
        let mut batch = Vec::new();
        match rx.recv().await? {
            Msg::Record(p) => batch.push(*p),
            Msg::Shutdown => {
                // No new records; what is queued is still written.
                rx.close();
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            top_up(rx, &mut batch, max_batch);
            // With no wait configured, what is queued now is the batch.
            if batch.len() >= max_batch || max_wait.is_zero() {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(msg)) => take(rx, &mut batch, msg),
                Ok(None) | Err(_) => break,
            }
        }
        return Some(batch);
    }
}

/// A queued message into the batch; a shutdown closes the queue (what is queued is still
/// taken).
fn take(rx: &mut mpsc::Receiver<Msg>, batch: &mut Vec<Pending>, msg: Msg) {
    match msg {
        Msg::Record(p) => batch.push(*p),
        Msg::Shutdown => rx.close(),
    }
}

/// Adds what is queued now to `batch`, up to `max_batch`, without waiting.
fn top_up(rx: &mut mpsc::Receiver<Msg>, batch: &mut Vec<Pending>, max_batch: usize) {
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(msg) => take(rx, batch, msg),
            Err(_) => break,
        }
    }
}

impl JournalState {
    /// How long the indexer's attempt in progress has run, when that is past [`INDEX_STALL`].
    fn stalled_for_ms(&self) -> Option<u64> {
        // Asked on every safe read (`writes_failing`): no clock read between attempts.
        let since = self.busy_since_ms.load(Ordering::Acquire);
        if since == 0 {
            return None;
        }
        let ms = unix_ms().saturating_sub(since);
        (ms >= INDEX_STALL.as_millis() as u64).then_some(ms)
    }
}

/// Records the journal made durable, for the indexer; `next` is the journal's sequence number
/// after them.
struct Journaled {
    recs: Vec<Prepared>,
    next: u64,
}

/// The journal's thread (see where it is started): makes batches durable in the journal and
/// answers their callers.
struct Journaler {
    journal: Arc<Mutex<Journal>>,
    state: Arc<JournalState>,
    to_index: mpsc::UnboundedSender<Journaled>,
    store_down: Arc<AtomicBool>,
    failed_at_ms: Arc<AtomicU64>,
    max_batch: usize,
    max_wait: Duration,
    metrics: AuditMetrics,
}

impl Journaler {
    async fn run(
        self,
        mut rx: mpsc::Receiver<Msg>,
        stopped: watch::Sender<bool>,
        mut indexer: Indexer,
    ) {
        while let Some(mut batch) = gather(&mut rx, self.max_batch, self.max_wait).await {
            // Under load, a short pause gathers more records into the batch (see GROUP_DELAY).
            // A plain sleep: this thread has nothing else to do, and tokio's timer would round
            // it up to a millisecond.
            if batch.len() >= GROUP_SIBLINGS && batch.len() < self.max_batch {
                std::thread::sleep(GROUP_DELAY);
                top_up(&mut rx, &mut batch, self.max_batch);
            }
            self.write(batch).await;
        }
        let Journaler {
            to_index,
            state,
            journal,
            ..
        } = self;
        drop(to_index);
        // The indexer writes what it has, then stops; a store that does not take it leaves it
        // in the journal for the next start.
        if !indexer.finished_within(SHUTDOWN_INDEX_WAIT).await {
            tracing::warn!(
                records = state.lag.load(Ordering::Acquire),
                "audit records not yet in the store stay in the journal; they are indexed at the next start"
            );
            // Stopped, it drops its handle on the journal.
            indexer.stop().await;
        }
        // The journal (and its lock) is closed before the log says it has stopped, so a
        // restart in the same process opens it.
        drop(journal);
        let _ = stopped.send(true);
    }

    async fn write(&self, batch: Vec<Pending>) {
        let n = batch.len();
        self.metrics.batch_size.observe(n as f64);
        let (recs, replies): (Vec<Prepared>, Vec<Option<Reply>>) =
            batch.into_iter().map(|p| (p.rec, p.reply)).unzip();
        // Fail closed while the store does not take records: what the journal acknowledges
        // must reach the officers' log soon, not whenever the store is back. The indexer is
        // asked to try again at once, so the first batch after the store is back goes through.
        if self.state.index_failing.load(Ordering::Acquire) {
            let mut attempts = self.state.attempts.subscribe();
            let seen = *attempts.borrow_and_update();
            self.state.retry.notify_one();
            let _ = tokio::time::timeout(RETRY_WAIT, attempts.wait_for(|&a| a > seen)).await;
        }
        if self.state.lag.load(Ordering::Acquire) + n as u64 > MAX_INDEX_LAG {
            let mut indexed = self.state.indexed.subscribe();
            let lag = &self.state.lag;
            let _ = tokio::time::timeout(
                RETRY_WAIT,
                indexed.wait_for(|_| lag.load(Ordering::Acquire) + n as u64 <= MAX_INDEX_LAG),
            )
            .await;
        }
        let lag = self.state.lag.load(Ordering::Acquire);
        let refused = if self.store_down.load(Ordering::Acquire) {
            Some("the audit store is unreachable".to_string())
        } else if self.state.index_failing.load(Ordering::Acquire) {
            Some("the audit store does not take records".to_string())
        } else if let Some(ms) = self.state.stalled_for_ms() {
            Some(format!("the audit store has not answered for {ms} ms"))
        } else if lag + n as u64 > MAX_INDEX_LAG {
            Some(format!(
                "{lag} audit records are still waiting for the store"
            ))
        } else {
            None
        };
        let result = match refused {
            Some(why) => Err(why),
            None => {
                let started = Instant::now();
                // On the journal's own thread: blocking here holds up nothing else.
                let done = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    self.journal
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .append(recs.iter().map(|r| r.json.as_bytes()))
                }));
                self.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                match done {
                    Ok(Ok(first)) => Ok(first),
                    Ok(Err(e)) => {
                        self.failed_at_ms.store(unix_ms().max(1), Ordering::Release);
                        Err(format!("{e:#}"))
                    }
                    Err(_) => {
                        self.failed_at_ms.store(unix_ms().max(1), Ordering::Release);
                        Err("the journal write stopped (it panicked)".to_string())
                    }
                }
            }
        };
        match result {
            Ok(first) => {
                self.failed_at_ms.store(0, Ordering::Release);
                let next = first + n as u64;
                let lag = self.state.lag.fetch_add(n as u64, Ordering::AcqRel) + n as u64;
                self.metrics.index_lag.set(lag as i64);
                self.state.journaled.store(next, Ordering::Release);
                self.metrics.records.inc_by(n as u64);
                // The indexer stops only after this thread has dropped its sender.
                let _ = self.to_index.send(Journaled { recs, next });
                answer(replies, Ok(first));
            }
            Err(msg) => {
                self.metrics.failures.inc_by(n as u64);
                tracing::error!(records = n, error = %msg, "audit records not made durable");
                answer(replies, Err(AuditError::Commit(msg)));
            }
        }
    }
}

/// The indexer's thread (`sekisho-index`): it runs the indexer's future on the gateway's
/// runtime (its I/O and timers) but is woken as a thread of its own, not queued behind the
/// request tasks.
struct Indexer {
    done: oneshot::Receiver<()>,
    stop: Arc<tokio::sync::Notify>,
}

impl Indexer {
    fn start(
        runtime: &tokio::runtime::Handle,
        index: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Indexer> {
        let (done_tx, done) = oneshot::channel();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let runtime = runtime.clone();
        std::thread::Builder::new()
            .name("sekisho-index".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = index => {}
                        _ = stopped.notified() => {}
                    }
                });
                let _ = done_tx.send(());
            })
            .context("cannot start the audit indexer's thread")?;
        Ok(Indexer { done, stop })
    }

    /// Whether the indexer ended (its queue closed and written) within `wait`.
    async fn finished_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, &mut self.done).await.is_ok()
    }

    /// Stops it where it is (what it had not written stays in the journal) and waits until
    /// its thread has let go of everything.
    async fn stop(mut self) {
        self.stop.notify_one();
        if tokio::time::timeout(Duration::from_secs(5), &mut self.done)
            .await
            .is_err()
        {
            tracing::warn!(
                "the audit indexer did not stop within 5 s; it may still hold the journal's lock"
            );
        }
    }
}

/// Tells each waiting caller of a batch its record's position (the batch's first plus its
/// place in the batch), or the batch's error.
fn answer(replies: Vec<Option<Reply>>, result: Result<u64, AuditError>) {
    for (i, reply) in replies.into_iter().enumerate() {
        if let Some(reply) = reply {
            let _ = reply.send(match &result {
                Ok(first) => Ok(first + i as u64),
                Err(e) => Err(e.clone()),
            });
        }
    }
}

impl Writer {
    /// Opens the journal, indexes what it holds past the store's mark (a crash's leftovers),
    /// and returns it with the state the journal thread and the indexer share.
    async fn replay(&mut self, dir: PathBuf) -> Result<(Arc<Mutex<Journal>>, Arc<JournalState>)> {
        let mark: Option<i64> =
            sqlx::query_scalar("SELECT next_seq FROM audit_journal_marks WHERE node = $1")
                .bind(self.node.as_str())
                .fetch_optional(self.store.pool())
                .await
                .context("cannot read the audit journal's mark")?;
        let mark = mark.map_or(0, |m| m.max(0) as u64);
        let (journal, replay) = tokio::task::spawn_blocking(move || Journal::open(&dir, mark))
            .await
            .context("the audit journal could not be opened")??;
        let pending = replay.frames.len();
        let mut at = replay.first;
        let mut frames = replay.frames.into_iter().peekable();
        while frames.peek().is_some() {
            let node = SharedText::from(self.node.as_str());
            let chunk = frames
                .by_ref()
                .take(INDEX_BATCH)
                .map(|json| Prepared::from_json(&json, &node))
                .collect::<Result<Vec<_>>>()?;
            at += chunk.len() as u64;
            let refs: Vec<&Prepared> = chunk.iter().collect();
            tokio::time::timeout(COMMIT_TIMEOUT, self.write_batch(&refs, Some(at)))
                .await
                .map_err(|_| anyhow!("the store did not take the journal's records in time"))?
                .context("cannot index the audit journal's records")?;
            self.metrics.indexed.inc_by(chunk.len() as u64);
        }
        if pending > 0 {
            tracing::info!(
                records = pending,
                "indexed the audit records the journal held past the store's mark (the last run stopped before indexing them)"
            );
        }
        let next = journal.next_seq();
        let (indexed, _) = watch::channel(next);
        Ok((
            Arc::new(Mutex::new(journal)),
            Arc::new(JournalState {
                journaled: AtomicU64::new(next),
                indexed,
                lag: AtomicU64::new(0),
                index_failing: AtomicBool::new(false),
                retry: tokio::sync::Notify::new(),
                attempts: watch::channel(0).0,
                busy_since_ms: AtomicU64::new(0),
            }),
        ))
    }

    /// The indexer: appends what the journal made durable to the SQL log, many journal
    /// batches per transaction, retrying (every [`PROBE_EVERY`]) until the store takes it.
    async fn index(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Journaled>,
        journal: Arc<Mutex<Journal>>,
        state: Arc<JournalState>,
    ) {
        let mut pending: VecDeque<Journaled> = VecDeque::new();
        let mut failing_since: Option<Instant> = None;
        loop {
            if pending.is_empty() {
                match rx.recv().await {
                    Some(j) => pending.push_back(j),
                    None => break,
                }
            }
            let mut count: usize = pending.iter().map(|j| j.recs.len()).sum();
            let deadline = tokio::time::Instant::now() + INDEX_GATHER;
            while count < INDEX_BATCH {
                let next = match rx.try_recv() {
                    Ok(j) => Some(j),
                    Err(TryRecvError::Disconnected) => None,
                    Err(TryRecvError::Empty) => tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten(),
                };
                let Some(j) = next else { break };
                count += j.recs.len();
                pending.push_back(j);
            }
            // Whole journal batches, up to INDEX_BATCH records (at least one batch).
            let mut take = 0;
            let mut n = 0;
            for j in &pending {
                if take > 0 && n + j.recs.len() > INDEX_BATCH {
                    break;
                }
                n += j.recs.len();
                take += 1;
            }
            let next = pending[take - 1].next;
            let batch: Vec<&Prepared> = pending.iter().take(take).flat_map(|j| &j.recs).collect();
            let started = Instant::now();
            state
                .busy_since_ms
                .store(unix_ms().max(1), Ordering::Release);
            let result =
                match tokio::time::timeout(COMMIT_TIMEOUT, self.write_batch(&batch, Some(next)))
                    .await
                {
                    Ok(r) => r.map_err(|e| format!("{e:#}")),
                    Err(_) => {
                        self.start_probe();
                        Err(format!("timed out after {} s", COMMIT_TIMEOUT.as_secs()))
                    }
                };
            drop(batch);
            self.metrics
                .index_seconds
                .observe(started.elapsed().as_secs_f64());
            let failed = result.is_err();
            state.busy_since_ms.store(0, Ordering::Release);
            match result {
                Ok(_) => {
                    pending.drain(..take);
                    let lag = state.lag.fetch_sub(n as u64, Ordering::AcqRel) - n as u64;
                    self.metrics.index_lag.set(lag as i64);
                    self.metrics.indexed.inc_by(n as u64);
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            after_ms = since.elapsed().as_millis() as u64,
                            "the audit store takes records again"
                        );
                        self.failed_at_ms.store(0, Ordering::Release);
                    }
                    state.index_failing.store(false, Ordering::Release);
                    state.indexed.send_replace(next);
                    journal
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .retire(next);
                }
                Err(msg) => {
                    if let Some(conn) = self.conn.take() {
                        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
                    }
                    state.index_failing.store(true, Ordering::Release);
                    self.failed_at_ms.store(unix_ms().max(1), Ordering::Release);
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        tracing::error!(records = n, error = %msg,
                            "audit records are durable in the journal but the store does not take them; refusing new ones until it does");
                    }
                }
            }
            state.attempts.send_modify(|a| *a += 1);
            if failed {
                tokio::select! {
                    _ = tokio::time::sleep(PROBE_EVERY) => {}
                    _ = state.retry.notified() => {}
                }
            }
        }
        if let Some(p) = self.probe.take() {
            p.abort();
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reconnects to a store that is down; returns the first connection that answers.
async fn probe(store: Store, down: Arc<AtomicBool>) -> DirectConnection {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let attempt = async {
            let mut c = store.connect_direct().await?;
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
///
/// On SQLite it is `INSERT OR FAIL`: a plain multi-row insert inside a transaction may have to
/// undo its own rows alone, so SQLite copies every page it touches into a statement journal, a
/// temporary file (most of the indexer's `pwrite`s under load). With `OR FAIL` it keeps no such
/// journal; a failed insert fails the whole batch here anyway (the transaction is rolled back).
pub fn insert_sql(rows: usize, kind: DbKind) -> String {
    const COLS: usize = 15;
    let mut sql = String::from(match kind {
        DbKind::Sqlite => "INSERT OR FAIL",
        DbKind::Postgres => "INSERT",
    });
    sql.push_str(
        " INTO audit_records (idx, leaf_hash, record, ts, request_id, event, decision, node, \
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
    use super::{Msg, Pending, Prepared, mpsc, top_up};
    use crate::record::AuditRecord;

    fn record(id: &str) -> Msg {
        let rec = AuditRecord {
            request_id: id.into(),
            ..Default::default()
        };
        Msg::Record(Box::new(Pending {
            rec: Prepared::new(rec, &"gw".into()),
            reply: None,
        }))
    }

    #[test]
    fn the_group_commit_takes_what_is_queued_up_to_the_batch_limit_and_no_more() {
        let (tx, mut rx) = mpsc::channel(16);
        for id in ["a", "b", "c", "d"] {
            assert!(tx.try_send(record(id)).is_ok());
        }
        let mut batch = Vec::new();
        top_up(&mut rx, &mut batch, 3);
        let ids: Vec<_> = batch.iter().map(|p| p.rec.request_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        // The fourth stays queued for the next batch; an empty queue ends the top-up at once.
        top_up(&mut rx, &mut batch, 8);
        assert_eq!(batch.len(), 4);
        top_up(&mut rx, &mut batch, 8);
        assert_eq!(batch.len(), 4);
    }

    #[test]
    fn a_shutdown_met_while_topping_up_closes_the_queue_and_keeps_what_came_before() {
        let (tx, mut rx) = mpsc::channel(16);
        assert!(tx.try_send(record("a")).is_ok());
        assert!(tx.try_send(Msg::Shutdown).is_ok());
        assert!(tx.try_send(record("b")).is_ok());
        let mut batch = Vec::new();
        top_up(&mut rx, &mut batch, 8);
        // Records queued before the shutdown are still written; nothing new is taken.
        assert!(tx.try_send(record("c")).is_err(), "the queue is closed");
        top_up(&mut rx, &mut batch, 8);
        let ids: Vec<_> = batch.iter().map(|p| p.rec.request_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn insert_sql_numbers_every_parameter() {
        let sql = super::insert_sql(2, sekisho_store::DbKind::Postgres);
        assert!(sql.ends_with("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15), ($16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)"), "{sql}");
        assert!(sql.starts_with("INSERT INTO audit_records "), "{sql}");
        let sql = super::insert_sql(2, sekisho_store::DbKind::Sqlite);
        assert!(
            sql.starts_with("INSERT OR FAIL INTO audit_records "),
            "{sql}"
        );
        assert!(
            sql.ends_with(
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            "{sql}"
        );
    }
}

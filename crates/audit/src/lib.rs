//! Sekisho's audit log (R-LOG-1: access logs kept, protected and reviewable): every gateway
//! decision is appended, durably, before the request goes on. Records are leaves of a Merkle tree with RFC 6962/9162 hashing; each
//! committed batch ends with a signed checkpoint (C2SP tlog-checkpoint in a C2SP signed note,
//! Ed25519). `verify` recomputes the tree from the stored records and checks every checkpoint,
//! so an edited, inserted or removed record is found.
//!
//! - `record`: the record and its canonical JSON (the hashed bytes);
//! - `merkle`: leaf/node hashing and the compact range (the tree's right edge, all a writer keeps);
//! - `checkpoint`: the signing key, checkpoints, signed notes, verifier keys;
//! - `journal`: the node's append-only journal, the durability point when the gateway serves;
//! - `writer`: [`AuditLog`], the group-commit writer (one journal write + fdatasync per batch,
//!   or one transaction per batch without a journal) and the indexer behind the journal;
//! - `verify`: the offline check behind `sekisho audit verify` (and `--witness`);
//! - `witness`: copies of the signed checkpoints off the machine (a directory, an HTTPS
//!   endpoint), the gateway's copier, and the receiving side of the HTTPS protocol;
//! - `search`: the console's search, a page at a time, with each record's standing in the tree;
//! - `retention`: pruning the bodies of records past their kind's retention (R-OPS-5), leaves kept.
//!
//! Several gateway replicas may append to one PostgreSQL log: each batch transaction first
//! updates the single `audit_head` row (SQLite's write lock, PostgreSQL's row lock), then reads
//! the head, appends, signs and writes the new head, so batches of different replicas
//! serialise and the tree stays one sequence. Replicas sharing a log should share the
//! checkpoint key and the origin (`verify` accepts several verifier keys if they do not).

pub mod checkpoint;
pub mod client;
#[cfg(any(test, feature = "test-util"))]
pub mod forge;
pub mod journal;
pub mod merkle;
mod record;
pub mod retention;
pub mod search;
mod verify;
pub mod witness;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use checkpoint::{CheckpointKey, SignedCheckpoint, Verifier};
pub use record::{AuditRecord, Decision, Event, format_time};
pub use verify::{PrunedRange, VerifyReport, verify, verify_witnessed};
/// The writer's multi-row INSERT, for the search benchmark's bulk load (the same columns).
#[doc(hidden)]
pub use writer::insert_sql;
pub use writer::{AuditLog, MAX_INDEX_LAG};

/// How many records may wait for the writer; beyond that `append` fails at once.
pub const QUEUE_CAPACITY: usize = 65_536;

#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Most records in one batch (one transaction, one checkpoint). Default 512.
    pub max_batch: usize,
    /// How long the writer waits to fill a batch after its first record. Default none: the
    /// records queued while the previous batch committed are the next batch.
    pub max_wait: Duration,
    /// This gateway node's name, written into records that do not name one.
    pub node: String,
    /// The checkpoint origin line, e.g. "sekisho.<hostname>/audit"; one per log, so replicas
    /// sharing a PostgreSQL log should use the same origin.
    pub origin: String,
    /// The node's journal directory (`journal::dir_for`): the durability point, with the SQL
    /// log filled behind it. None: each batch's SQL transaction is the durability point (the
    /// command line, tools, and `[audit] journal = false`).
    pub journal: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            max_batch: 512,
            max_wait: Duration::ZERO,
            node: "sekisho".into(),
            origin: "sekisho/audit".into(),
            journal: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("the audit queue is full")]
    QueueFull,
    #[error("the audit writer is not running")]
    Closed,
    #[error("the audit batch was not committed: {0}")]
    Commit(String),
}

#[derive(Clone, Debug)]
pub struct AuditMetrics {
    /// Records per committed (or failed) batch.
    pub batch_size: Histogram,
    /// Time to make one batch durable: the journal's write and fdatasync, or without a journal
    /// the batch transaction (lock wait and commit included).
    pub commit_seconds: Histogram,
    /// With a journal: one indexer transaction (many journal batches).
    pub index_seconds: Histogram,
    /// With a journal: records durable and not yet in the store's tables.
    pub index_lag: Gauge,
    /// With a journal: records the indexer put in the store.
    pub indexed: Counter,
    /// Records that were not written: failed batches, a full queue, a stopped writer.
    pub failures: Counter,
    /// Records committed.
    pub records: Counter,
    /// The witnesses' copies (`witness::WitnessPump`).
    pub witness: witness::WitnessMetrics,
}

impl AuditMetrics {
    /// Metrics not registered anywhere (tests, tools).
    pub fn new() -> Self {
        AuditMetrics {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            commit_seconds: Histogram::new(exponential_buckets(0.000_025, 2.0, 20)),
            index_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            index_lag: Gauge::default(),
            indexed: Counter::default(),
            failures: Counter::default(),
            records: Counter::default(),
            witness: witness::WitnessMetrics::default(),
        }
    }

    pub fn register(reg: &mut Registry) -> Self {
        let mut m = AuditMetrics::new();
        m.witness = witness::WitnessMetrics::register(reg);
        reg.register(
            "sekisho_audit_batch_size",
            "Audit records per batch",
            m.batch_size.clone(),
        );
        reg.register(
            "sekisho_audit_commit_seconds",
            "Time to make one audit batch durable (the journal's write and fdatasync; without a journal the whole transaction)",
            m.commit_seconds.clone(),
        );
        reg.register(
            "sekisho_audit_index_seconds",
            "Time of one indexer transaction putting journaled audit records into the store",
            m.index_seconds.clone(),
        );
        reg.register(
            "sekisho_audit_index_lag_records",
            "Audit records durable in the journal and not yet in the store",
            m.index_lag.clone(),
        );
        reg.register(
            "sekisho_audit_indexed_records",
            "Audit records the indexer put into the store",
            m.indexed.clone(),
        );
        // Counters get their `_total` suffix from the encoder.
        reg.register(
            "sekisho_audit_failures",
            "Audit records that could not be written (failed batch, full queue, writer stopped)",
            m.failures.clone(),
        );
        reg.register(
            "sekisho_audit_records",
            "Audit records made durable",
            m.records.clone(),
        );
        m
    }
}

impl Default for AuditMetrics {
    fn default() -> Self {
        AuditMetrics::new()
    }
}

#[cfg(test)]
mod tests;

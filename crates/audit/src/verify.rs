//! `sekisho audit verify`: recompute the tree from the stored records, in order, a page at a
//! time, and check every checkpoint (its signature, and its root against the recomputed root at
//! its size), that leaf indexes run from 0 without gaps, that each stored leaf hash matches its
//! record, that no record lies after the last signed checkpoint, and that the head agrees.
//!
//! A record whose body was pruned (R-OPS-5, `retention.rs`) is taken by its stored leaf hash,
//! provided its index lies in a range recorded in `audit_pruned` by a run that an
//! `audit_prune_started` record in the log names; the checkpoints then vouch for that hash. An
//! emptied body anywhere else is a problem.
//!
//! Everything is read in one read-only transaction (one snapshot), so appends that commit
//! meanwhile are simply not seen.
//!
//! Problems start with what they concern: `record 17: …`, `records 10-19: …` (a range when only
//! a checkpoint root mismatch shows that something in it is wrong), or `head: …`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use anyhow::{Context, Result, bail};
use sqlx::Row;

use super::checkpoint::{Verifier, parse_checkpoint};
use super::merkle::{CompactRange, empty_root, leaf_hash};
use super::witness::check::{WitnessCheck, WitnessCopy};
use sekisho_store::{DbKind, Store};

const PAGE: i64 = 10_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read.
    pub records: u64,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// What is wrong; empty for an intact log.
    pub problems: Vec<String>,
    /// What the witnesses' copies confirmed, one line per witness (`verify_witnessed`).
    pub witnessed: Vec<String>,
    /// The ranges retention pruned, by index (`audit_pruned`), and how many records read had
    /// their body pruned (taken by their leaf hash).
    pub pruned: Vec<PrunedRange>,
    pub pruned_records: u64,
}

/// One prune run's range, as `audit_pruned` records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrunedRange {
    pub run: String,
    pub first_idx: u64,
    pub last_idx: u64,
    /// Records the run emptied in the range (records of kinds kept longer stay whole in it).
    pub records: u64,
    /// The kinds it emptied, comma-separated.
    pub events: String,
    /// The newest record time among them (Unix ms).
    pub newest_ts: i64,
    /// Unix seconds.
    pub pruned_at: i64,
    pub pruned_by: String,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the whole log. `verifier_key` is the verifier key string of the checkpoint key
/// (`<name>+<hash>+<key>`); several, separated by whitespace, when replicas sign with keys of
/// their own. Err only when the check itself cannot run (bad key, database error).
pub async fn verify(store: &Store, verifier_key: &str) -> Result<VerifyReport> {
    verify_witnessed(store, verifier_key, Vec::new()).await
}

/// [`verify`], and that the log holds every checkpoint the witnesses hold: it reaches each
/// one's tree size, and its root at that size is the witnessed root. A log truncated after a
/// witness saw a checkpoint (the newest batches deleted with their checkpoints and the head,
/// which `verify` alone cannot see) or rewritten and re-signed (a fork) fails, naming the
/// witness and the sizes.
pub async fn verify_witnessed(
    store: &Store,
    verifier_key: &str,
    witnesses: Vec<WitnessCopy>,
) -> Result<VerifyReport> {
    let verifiers = verifier_key
        .split_whitespace()
        .map(Verifier::parse)
        .collect::<Result<Vec<_>>>()?;
    if verifiers.is_empty() {
        bail!("no verifier key given");
    }
    let mut tx = store.pool().begin().await?;
    if store.kind() == DbKind::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    let pruned = sqlx::query(
        "SELECT run, first_idx, last_idx, records, events, newest_ts, pruned_at, pruned_by
         FROM audit_pruned ORDER BY first_idx, run",
    )
    .fetch_all(&mut *tx)
    .await
    .context("cannot read the pruned ranges")?
    .iter()
    .map(|r| {
        Ok(PrunedRange {
            run: r.try_get(0)?,
            first_idx: r.try_get::<i64, _>(1)?.max(0) as u64,
            last_idx: r.try_get::<i64, _>(2)?.max(0) as u64,
            records: r.try_get::<i64, _>(3)?.max(0) as u64,
            events: r.try_get(4)?,
            newest_ts: r.try_get(5)?,
            pruned_at: r.try_get(6)?,
            pruned_by: r.try_get(7)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let mut walk = Walk::new(verifiers.clone());
    walk.pruned = Pruned::new(&pruned);
    if !witnesses.is_empty() {
        walk.witness = Some(WitnessCheck::new(verifiers, witnesses));
        walk.reach();
    }
    let mut cps = Checkpoints::default();

    let mut cursor = i64::MIN;
    loop {
        let rows = sqlx::query("SELECT idx, leaf_hash, record FROM audit_records WHERE idx >= $1 ORDER BY idx LIMIT $2")
            .bind(cursor)
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await
            .context("cannot read the audit records")?;
        let Some(last) = rows.last() else { break };
        let last_idx: i64 = last.try_get(0)?;
        for row in &rows {
            let idx: i64 = row.try_get(0)?;
            // Checkpoints that end at or before this record come first.
            while let Some((size, note)) = cps.next_if_at_most(&mut tx, idx).await? {
                walk.checkpoint(size, &note);
            }
            let stored: Option<Vec<u8>> = row.try_get(1).ok();
            let record: Option<String> = row.try_get(2).ok();
            walk.record(idx, stored.as_deref(), record.as_deref());
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
        match last_idx.checked_add(1) {
            Some(c) => cursor = c,
            None => break,
        }
    }
    while let Some((size, note)) = cps.next_if_at_most(&mut tx, i64::MAX).await? {
        walk.checkpoint(size, &note);
    }
    let head = sqlx::query("SELECT tree_size, frontier FROM audit_head WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await
        .context("cannot read the audit head")?;
    let head = match head {
        Some(row) => Some((row.try_get::<i64, _>(0)?, row.try_get::<Vec<u8>, _>(1)?)),
        None => None,
    };
    tx.rollback().await.ok();
    let mut report = walk.finish(head);
    report.pruned = pruned;
    Ok(report)
}

/// Checkpoints in tree-size order, fetched a page at a time.
#[derive(Default)]
struct Checkpoints {
    buf: VecDeque<(i64, String)>,
    after: Option<i64>,
    done: bool,
}

impl Checkpoints {
    async fn next_if_at_most(
        &mut self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        limit: i64,
    ) -> Result<Option<(i64, String)>> {
        if self.buf.is_empty() && !self.done {
            let rows = sqlx::query(
                "SELECT tree_size, note FROM audit_checkpoints WHERE tree_size > $1 ORDER BY tree_size LIMIT $2",
            )
            .bind(self.after.unwrap_or(i64::MIN))
            .bind(PAGE)
            .fetch_all(&mut **tx)
            .await
            .context("cannot read the audit checkpoints")?;
            self.done = (rows.len() as i64) < PAGE;
            for row in rows {
                let size: i64 = row.try_get(0)?;
                // An unreadable note is kept as an empty one: it then fails its signature check.
                let note: String = row.try_get(1).unwrap_or_default();
                self.after = Some(size);
                self.buf.push_back((size, note));
            }
        }
        match self.buf.front() {
            Some((size, _)) if *size <= limit => Ok(self.buf.pop_front()),
            _ => Ok(None),
        }
    }
}

/// `record a` or `records a-b` for the records with indexes in `from..to`.
fn span(from: u64, to: u64) -> String {
    if to <= from + 1 {
        format!("record {from}")
    } else {
        format!("records {}-{}", from, to - 1)
    }
}

struct Walk {
    verifiers: Vec<Verifier>,
    /// The tree recomputed from the records read so far (while `intact`).
    range: CompactRange,
    /// The index the next record should have.
    next: u64,
    /// False once a gap, an out-of-order record or a root mismatch makes later roots meaningless.
    intact: bool,
    /// Size of the last checkpoint whose root matched.
    last_good: u64,
    /// Size of the last checkpoint with a valid signature.
    last_signed: u64,
    /// Size of the previous checkpoint (the start of the current checkpoint's batch).
    prev_checkpoint: u64,
    /// Checkpoints whose roots could not be compared because the tree had broken before them.
    unchecked: u64,
    /// The largest signed checkpoint beyond the last record.
    beyond_end: Option<u64>,
    records: u64,
    checkpoints: u64,
    problems: Vec<String>,
    witness: Option<WitnessCheck>,
    pruned: Pruned,
}

/// The recorded pruned ranges, merged, walked in step with the records; and the runs the log's
/// own `audit_prune_started` records name.
#[derive(Default)]
struct Pruned {
    /// Disjoint, ascending, inclusive.
    spans: Vec<(u64, u64)>,
    at: usize,
    /// (run, first, last) of every recorded range.
    runs: Vec<(String, u64, u64)>,
    started: BTreeSet<String>,
    /// What each run's closing `audit_pruned` record says it emptied.
    done: BTreeMap<String, (u64, u64)>,
    records: u64,
}

impl Pruned {
    fn new(ranges: &[PrunedRange]) -> Pruned {
        let mut spans: Vec<(u64, u64)> = ranges.iter().map(|r| (r.first_idx, r.last_idx)).collect();
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Pruned {
            spans: merged,
            runs: ranges
                .iter()
                .map(|r| (r.run.clone(), r.first_idx, r.last_idx))
                .collect(),
            ..Default::default()
        }
    }

    /// Whether `i` lies in a recorded range; `i` only grows from call to call.
    fn covers(&mut self, i: u64) -> bool {
        while self.spans.get(self.at).is_some_and(|s| s.1 < i) {
            self.at += 1;
        }
        self.spans.get(self.at).is_some_and(|s| s.0 <= i)
    }
}

impl Walk {
    fn new(verifiers: Vec<Verifier>) -> Walk {
        Walk {
            verifiers,
            range: CompactRange::new(),
            next: 0,
            intact: true,
            last_good: 0,
            last_signed: 0,
            prev_checkpoint: 0,
            unchecked: 0,
            beyond_end: None,
            records: 0,
            checkpoints: 0,
            problems: Vec::new(),
            witness: None,
            pruned: Pruned::default(),
        }
    }

    fn record(&mut self, idx: i64, stored: Option<&[u8]>, record: Option<&str>) {
        self.append(idx, stored, record);
        self.reach();
    }

    /// Hands the witness check the root at the walk's position when a witness holds a
    /// checkpoint of that size (or says it cannot be had, for sizes the walk jumped over).
    fn reach(&mut self) {
        let Some(w) = &mut self.witness else { return };
        if w.next_size().is_some_and(|s| s <= self.next) {
            let whole = self.intact && self.range.size() == self.next;
            let root = match self.next {
                0 => Some(empty_root()),
                _ if whole && w.next_size() == Some(self.next) => Some(self.range.root()),
                _ => None,
            };
            w.at(self.next, root);
        }
    }

    fn append(&mut self, idx: i64, stored: Option<&[u8]>, record: Option<&str>) {
        self.records += 1;
        let i = match u64::try_from(idx) {
            Ok(i) if i >= self.next => i,
            _ => {
                self.problems.push(format!(
                    "record {idx}: inserted (index out of sequence, expected {})",
                    self.next
                ));
                self.intact = false;
                return;
            }
        };
        if i > self.next {
            let what = if self.next == 0 {
                format!("removed (the log starts at index {i})")
            } else {
                format!("removed (leaf indexes jump from {} to {i})", self.next - 1)
            };
            self.problems
                .push(format!("{}: {what}", span(self.next, i)));
            self.intact = false;
        }
        self.next = i + 1;
        let Some(record) = record else {
            self.problems
                .push(format!("record {i}: changed (the record is unreadable)"));
            self.intact = false;
            return;
        };
        if record.is_empty() {
            // Pruned: the stored leaf hash stands for the body, and the checkpoints vouch for it.
            let Some(leaf) = stored.and_then(|s| <[u8; 32]>::try_from(s).ok()) else {
                self.problems.push(format!(
                    "record {i}: changed (body pruned and its stored leaf hash is unreadable)"
                ));
                self.intact = false;
                return;
            };
            if self.pruned.covers(i) {
                self.pruned.records += 1;
            } else {
                self.problems.push(format!(
                    "record {i}: body missing and not recorded as pruned"
                ));
            }
            if self.intact {
                self.range.append(leaf);
            }
            return;
        }
        if let Some(run) = crate::retention::started_run(record) {
            self.pruned.started.insert(run);
        } else if let Some((run, span)) = crate::retention::done_span(record) {
            self.pruned.done.insert(run, span);
        }
        let leaf = leaf_hash(record.as_bytes());
        if stored != Some(&leaf[..]) {
            self.problems.push(format!(
                "record {i}: changed (its stored leaf hash does not match its content)"
            ));
        }
        if self.intact {
            self.range.append(leaf);
        }
    }

    fn checkpoint(&mut self, size: i64, note: &str) {
        self.checkpoints += 1;
        let Ok(size) = u64::try_from(size) else {
            self.problems.push(format!(
                "checkpoint at tree size {size}: inserted (negative size)"
            ));
            return;
        };
        let batch = span(self.prev_checkpoint, size);
        self.prev_checkpoint = size;
        let Some(text) = self.verifiers.iter().find_map(|v| v.open(note).ok()) else {
            self.problems.push(format!(
                "{batch}: bad signature (checkpoint at tree size {size})"
            ));
            return;
        };
        let cp = match parse_checkpoint(text) {
            Ok(cp) => cp,
            Err(e) => {
                self.problems.push(format!(
                    "{batch}: malformed checkpoint at tree size {size}: {e:#}"
                ));
                return;
            }
        };
        if cp.size != size {
            self.problems.push(format!(
                "{batch}: the checkpoint stored at tree size {size} is signed for tree size {}",
                cp.size
            ));
            return;
        }
        self.last_signed = self.last_signed.max(size);
        if size > self.next {
            // Only at the end: checkpoints are taken in order before the record at their size.
            self.beyond_end = Some(size);
            return;
        }
        if !self.intact || self.range.size() != size {
            self.unchecked += 1;
            return;
        }
        if self.range.root() == cp.root {
            self.last_good = size;
        } else {
            self.problems.push(format!(
                "{}: changed, inserted or removed (the recomputed root at tree size {size} differs from the signed checkpoint)",
                span(self.last_good, size)
            ));
            self.intact = false;
        }
    }

    fn finish(mut self, head: Option<(i64, Vec<u8>)>) -> VerifyReport {
        if let Some(end) = self.beyond_end {
            let ends = match self.next {
                0 => "there are no records".to_string(),
                n => format!("the records end at index {}", n - 1),
            };
            self.problems.push(format!(
                "{}: removed (covered by the signed checkpoint at tree size {end}; {ends})",
                span(self.next, end)
            ));
        }
        if self.unchecked > 0 && self.next > self.last_good {
            self.problems.push(format!(
                "{}: unchecked ({} later checkpoints cannot match after the problem above)",
                span(self.last_good, self.next),
                self.unchecked
            ));
        }
        if self.next > self.last_signed {
            self.problems.push(format!(
                "{}: unsigned tail (after the last signed checkpoint, at tree size {})",
                span(self.last_signed, self.next),
                self.last_signed
            ));
        }
        match head {
            None => self.problems.push("head: the audit_head row is missing".into()),
            Some((size, _)) if size != self.next as i64 => {
                self.problems.push(format!("head: tree size {size}, but the log has {} leaves", self.next))
            }
            Some((_, frontier)) if self.intact && frontier != self.range.frontier_bytes() => self
                .problems
                .push("head: the stored frontier does not match the records (the next batch would sign a wrong root)".into()),
            Some(_) => {}
        }
        for (run, a, b) in &self.pruned.runs {
            if !self.pruned.started.contains(run) {
                self.problems.push(format!(
                    "{}: recorded as pruned by run {run}, but no audit_prune_started record in the log names that run",
                    span(*a, b + 1)
                ));
            } else if let Some((da, db)) = self.pruned.done.get(run)
                && (a < da || b > db)
            {
                // A run cut short has no closing record; its range stands on the started one.
                self.problems.push(format!(
                    "{}: recorded as pruned by run {run}, but its audit_pruned record says it emptied idx {da}-{db}",
                    span(*a, b + 1)
                ));
            }
        }
        let mut witnessed = Vec::new();
        if let Some(w) = self.witness.take() {
            let (problems, confirmed) = w.finish(self.next);
            self.problems.extend(problems);
            witnessed = confirmed;
        }
        VerifyReport {
            records: self.records,
            checkpoints: self.checkpoints,
            problems: self.problems,
            witnessed,
            pruned: Vec::new(),
            pruned_records: self.pruned.records,
        }
    }
}

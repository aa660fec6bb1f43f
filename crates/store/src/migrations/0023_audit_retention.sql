-- Retention of the audit log (R-OPS-5, docs/audit.md "Retention"). Pruning empties the bodies
-- (`record`) and the personal search copies of records past their kind's retention and keeps
-- `idx`, `leaf_hash`, `ts`, `event`, `decision` and `node`, so the tree and every checkpoint
-- still verify. `audit verify` accepts an empty body only inside a range recorded here, and only
-- when the run that recorded it is named by an `audit_prune_started` record in the log itself.
--
-- One row per prune run, grown batch by batch in the same transaction as the rows it covers:
-- `first_idx`..`last_idx` is the span the run emptied records in (records of kinds kept longer
-- may lie inside it, still whole); `events` the kinds it emptied, `newest_ts` (Unix ms) the
-- newest time among them.
CREATE TABLE audit_pruned (
    run         TEXT PRIMARY KEY,
    first_idx   BIGINT NOT NULL,
    last_idx    BIGINT NOT NULL,
    records     BIGINT NOT NULL,
    events      TEXT NOT NULL,
    newest_ts   BIGINT NOT NULL,
    pruned_at   BIGINT NOT NULL,
    pruned_by   TEXT NOT NULL
);
-- Per kind: every record of it older than `pruned_below_ts` (Unix ms) has been pruned, so the
-- next run reads the time index from there instead of from the start of the log.
CREATE TABLE audit_retention_marks (
    event           TEXT PRIMARY KEY,
    pruned_below_ts BIGINT NOT NULL
);
-- One prune at a time across replicas and the CLI: a lease, renewed by every batch (whose first
-- statement is that renewal: SQLite's write lock is taken before anything is read, and on
-- PostgreSQL the row lock serialises batches). A holder that died lets it expire.
CREATE TABLE audit_prune_lease (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    holder      TEXT,
    expires_at  BIGINT NOT NULL,
    seq         BIGINT NOT NULL
);
INSERT INTO audit_prune_lease (id, holder, expires_at, seq) VALUES (1, NULL, 0, 0);

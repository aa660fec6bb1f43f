-- The audit log (DESIGN.md "Audit log"): an append-only Merkle tree (RFC 6962/9162 hashing).
-- `record` holds the exact bytes that were hashed (canonical JSON); the other columns of
-- audit_records are copies for searching, never trusted by `sekisho audit verify`.
CREATE TABLE audit_records (
    idx             BIGINT PRIMARY KEY,
    leaf_hash       BLOB NOT NULL,
    record          TEXT NOT NULL,
    ts              BIGINT NOT NULL,
    request_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    decision        TEXT NOT NULL,
    node            TEXT NOT NULL,
    terminal        TEXT,
    user_id         TEXT,
    patient         TEXT,
    break_glass_id  TEXT
);
CREATE INDEX audit_records_ts ON audit_records (ts);
CREATE INDEX audit_records_request_id ON audit_records (request_id);
CREATE INDEX audit_records_patient ON audit_records (patient, ts);
CREATE INDEX audit_records_user_id ON audit_records (user_id, ts);
CREATE INDEX audit_records_break_glass_id ON audit_records (break_glass_id);
-- One signed checkpoint (C2SP tlog-checkpoint in a signed note) per committed batch.
CREATE TABLE audit_checkpoints (
    tree_size   BIGINT PRIMARY KEY,
    note        TEXT NOT NULL,
    node        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
-- The tree head: size and the compact-range frontier (the roots of the perfect subtrees that
-- make up the tree, largest first, 32 bytes each). Every batch first updates this row
-- (lock_seq), which serialises writers, then reads it inside the same transaction.
CREATE TABLE audit_head (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    tree_size   BIGINT NOT NULL,
    frontier    BLOB NOT NULL,
    lock_seq    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO audit_head (id, tree_size, frontier, lock_seq, updated_at) VALUES (1, 0, X'', 0, 0);

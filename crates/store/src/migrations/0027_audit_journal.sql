-- The gateway's audit journal (docs/audit.md, "The durability point"): how far each node's
-- journal has been appended to the log. Written in the same transaction as the records, so a
-- restart indexes exactly the frames after it.
CREATE TABLE audit_journal_marks (
    node TEXT PRIMARY KEY,
    next_seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Audit export (docs/audit.md, "Export"): each destination's place in the log. `next_idx` is
-- the first record the destination has not been given yet; records are exported in leaf order
-- and the cursor moves only after the destination has them, so an outage resumes where it
-- stopped, without gaps. One replica at a time exports to a destination: the one holding the
-- lease (`holder` until `lease_until`, Unix milliseconds), renewed as it goes, so a replica
-- that dies hands the destination to another within a lease.
CREATE TABLE audit_export_cursors (
    destination  TEXT PRIMARY KEY,
    next_idx     BIGINT NOT NULL,
    holder       TEXT,
    lease_until  BIGINT NOT NULL,
    delivered_at BIGINT,
    updated_at   BIGINT NOT NULL
);

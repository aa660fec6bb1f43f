-- The officers' console searches the audit log by facility, reason and route too. Copies for
-- searching, like the other columns beside `record` (never trusted by `audit verify`); filled
-- by the writer from now on. The records already written are filled by the gateways a range at
-- a time (`sekisho_audit::search::backfill`), not here: one UPDATE of a large log in this
-- migration's transaction would stop every gateway's audit writer for its length. No index: a search by
-- one of these walks the time index newest first and stops at a page (refusals by reason over
-- the last day, a facility's records in a month), and every index costs the writer's batch.
ALTER TABLE audit_records ADD COLUMN facility TEXT;
ALTER TABLE audit_records ADD COLUMN reason TEXT;
ALTER TABLE audit_records ADD COLUMN route TEXT;

-- Search indexes of the audit log only for the rows that have the value. Most records name no
-- break-glass declaration, and connection, TLS and many terminal-level records name no patient
-- or user: each such row cost an index entry in the audit writer's batch that no search could
-- find. A search `column = value` implies `column IS NOT NULL`, so SQLite and PostgreSQL both
-- still use these indexes for it.
DROP INDEX audit_records_patient;
DROP INDEX audit_records_user_id;
DROP INDEX audit_records_break_glass_id;
CREATE INDEX audit_records_patient ON audit_records (patient, ts) WHERE patient IS NOT NULL;
CREATE INDEX audit_records_user_id ON audit_records (user_id, ts) WHERE user_id IS NOT NULL;
CREATE INDEX audit_records_break_glass_id ON audit_records (break_glass_id) WHERE break_glass_id IS NOT NULL;

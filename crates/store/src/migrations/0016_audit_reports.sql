-- The officers' own acts in the audit log (event 'report': searches, access histories, runs
-- of `sekisho audit verify`, anomaly findings) by reason, so the console's dashboard finds the
-- last verification without walking the log. Partial: these records are few, and the writer's
-- batches of requests and outcomes pay nothing for it.
CREATE INDEX audit_records_reports ON audit_records (reason, idx) WHERE event = 'report';

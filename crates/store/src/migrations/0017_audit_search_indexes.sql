-- The console's searches by facility and by terminal, and the refusals by reason, each with
-- an index of its own ending in the leaf index, so a page of the newest matches is read straight
-- from it (measured at 10 million records, `cargo bench -p sekisho-audit --bench search`:
-- without them a terminal's page took p95 0.6 s on SQLite and a facility with no records a full
-- scan, 36–80 s). Refusals are a few per cent of the records: that index is partial. Each
-- costs the writer one index entry per record (the facility and terminal ones) — measured in
-- the issue's note with the `durable` bench.
CREATE INDEX audit_records_facility ON audit_records (facility, idx) WHERE facility IS NOT NULL;
CREATE INDEX audit_records_terminal ON audit_records (terminal, idx) WHERE terminal IS NOT NULL;
CREATE INDEX audit_records_refusals ON audit_records (reason, idx) WHERE decision = 'deny';

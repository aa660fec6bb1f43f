-- Findings of the anomaly rules (R-LOG-3, R-LOG-4; issue 12 item 5): one row per rule, person
-- and period (`dedupe`), so that replicas scanning the same records agree on one finding and
-- officers are told once. An officer closes a finding: dismissed (nothing wrong), or acted on
-- (the person or the facility was suspended from it).
CREATE TABLE anomaly_findings (
    id          TEXT PRIMARY KEY,
    rule        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    facility    TEXT,
    dedupe      TEXT NOT NULL UNIQUE,
    count       BIGINT NOT NULL,
    detail      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'dismissed', 'acted')),
    closed_by   TEXT,
    closed_at   BIGINT,
    note        TEXT
);
CREATE INDEX anomaly_findings_open ON anomaly_findings (status, created_at);

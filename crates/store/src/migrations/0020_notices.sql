-- Notices to the network's users and maintenance windows (issue 13, R-OPS-1). A notice is
-- shown from `starts_at` until `ends_at`. A maintenance window is announced from when it is
-- scheduled, runs from `started_at` (an early or emergency start) or else `starts_at`, until
-- `ends_at` (its expected end), unless `ended_at` ended it first; while it runs, requests of
-- its audience's terminals are answered 503, except those of the terminals and people named
-- for the maintenance. Audience and exemptions: ids separated by spaces, empty for all.
-- `ended_at` also marks a notice removed.
CREATE TABLE notices (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('notice', 'maintenance')),
    text_ja           TEXT NOT NULL,
    text_en           TEXT NOT NULL,
    starts_at         BIGINT NOT NULL,
    ends_at           BIGINT NOT NULL,
    audience          TEXT NOT NULL,
    exempt_terminals  TEXT NOT NULL,
    exempt_users      TEXT NOT NULL,
    started_at        BIGINT,
    ended_at          BIGINT,
    created_by        TEXT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX notices_current ON notices (ends_at) WHERE ended_at IS NULL;

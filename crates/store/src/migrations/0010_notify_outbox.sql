-- The notification outbox (issue 11 items 7 and 8, issue 12 item 5): security officers are told
-- of break-glass declarations, of declarations left unreviewed and of anomalies. A notice is
-- written with one delivery row per configured channel in one transaction, and each delivery is
-- sent by a gateway's sender until it succeeds or is given up, so a notice survives a restart of
-- the gateway and an outage of the receiver.
CREATE TABLE notify_notices (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- The notice as the webhook receives it (JSON), fixed at enqueue so every retry sends the
    -- same body.
    body        TEXT NOT NULL
);

-- One row per notice and channel. `id` is the delivery id receivers deduplicate on. A sender
-- claims a due row by setting `claimed_by` and `lease_until` in a conditional UPDATE; a claim
-- whose lease has run out (its replica died mid-send) may be taken by another replica.
-- `attempts` counts claims (a send cut short by a crash counts too). A delivered row keeps
-- `delivered_at`; a row given up keeps `gave_up_at`; both keep the last error.
CREATE TABLE notify_deliveries (
    id               TEXT PRIMARY KEY,
    notice_id        TEXT NOT NULL REFERENCES notify_notices (id),
    channel          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    claimed_by       TEXT,
    lease_until      BIGINT,
    delivered_at     BIGINT,
    gave_up_at       BIGINT,
    last_error       TEXT
);
CREATE INDEX notify_deliveries_pending ON notify_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX notify_deliveries_notice ON notify_deliveries (notice_id);

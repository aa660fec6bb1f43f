-- Emergency access (break-glass: R-PAT-4, R-BG-1..3). A declaration is begun by an HPKI
-- physician (status 'choose_patient' or 'awaiting_signature'), signed by the card the physician
-- signed in with, recorded durably in the audit log, and then grants access to that patient for
-- that physician until `expires_at` ('active'); child-protection declarations wait for a second
-- person's approval ('awaiting_approval'). Officers review every declaration.
CREATE TABLE break_glass (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    facility            TEXT NOT NULL,
    terminal            TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    -- The card (issuer and serial) the physician signed in and signs with: the grant holds
    -- wherever that card is signed in.
    card                TEXT NOT NULL,
    patient_id          TEXT,
    category            TEXT NOT NULL,
    justification       TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('choose_patient', 'awaiting_signature',
                            'awaiting_approval', 'active', 'ended', 'expired', 'rejected')),
    allows_write        BIGINT NOT NULL,
    hours               BIGINT NOT NULL,
    ends_with_session   BIGINT NOT NULL,
    follow_up_required  BIGINT NOT NULL,
    outside_care_team   BIGINT,
    created_at          BIGINT NOT NULL,
    draft_expires_at    BIGINT NOT NULL,
    nonce_hash          TEXT,
    declared_at_text    TEXT,
    signed_text         TEXT,
    certificate         TEXT,
    signature           TEXT,
    declared_at         BIGINT,
    starts_at           BIGINT,
    expires_at          BIGINT,
    approved_by         TEXT,
    approved_at         BIGINT,
    ended_at            BIGINT,
    ended_by            TEXT,
    end_reason          TEXT,
    follow_up_at        BIGINT,
    follow_up_kind      TEXT,
    follow_up_sha256    TEXT,
    follow_up_by        TEXT,
    review_finding      TEXT CHECK (review_finding IN ('justified', 'not_justified', 'follow_up_needed')),
    reviewed_by         TEXT,
    reviewed_at         BIGINT,
    review_comment      TEXT,
    renotified_at       BIGINT
);
CREATE INDEX break_glass_patient ON break_glass (patient_id, status);
CREATE INDEX break_glass_status ON break_glass (status, declared_at);
CREATE INDEX break_glass_user ON break_glass (user_id, declared_at);
-- The card a session was opened with: a declaration must be signed by the same card.
ALTER TABLE sessions ADD COLUMN card TEXT;

-- Grants are patient facts gateways keep in memory (the change log, see 0009).
CREATE TRIGGER break_glass_ins AFTER INSERT ON break_glass WHEN NEW.patient_id IS NOT NULL BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', NEW.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER break_glass_upd AFTER UPDATE ON break_glass WHEN NEW.patient_id IS NOT NULL BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', NEW.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;

-- R-PAT-2: patient IC cards issued by Sekisho's patient-card CA. A card is revoked here (lost,
-- replaced, consent ended), not by a CRL: the gateway checks this row on every use.
CREATE TABLE patient_cards (
    serial      TEXT PRIMARY KEY,
    patient_id  TEXT NOT NULL REFERENCES patients (patient_id),
    status      TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    issued_at   BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    issued_by   TEXT NOT NULL,
    revoked_at  BIGINT,
    revoked_by  TEXT
);
CREATE INDEX patient_cards_patient ON patient_cards (patient_id);
-- Challenges for the patient card, bound to the sign-in session that asked for them.
CREATE TABLE consent_challenges (
    nonce_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
-- Consent windows: opened for one user and one patient by the patient's card (or, where the
-- deployment allows it, by staff attestation of the card's id), for a fixed time.
CREATE TABLE consent_windows (
    window_id    TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    patient_id   TEXT NOT NULL,
    terminal     TEXT NOT NULL,
    basis        TEXT NOT NULL CHECK (basis IN ('patient_card', 'staff_attested')),
    card_serial  TEXT,
    opened_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    closed_at    BIGINT
);
CREATE INDEX consent_windows_user_patient ON consent_windows (user_id, patient_id, expires_at);
-- R-ROLE-2: assistants' entries as the gateway saw them, so that a confirmation can be decided
-- on who entered it (the entry's facility), not on what the request claims.
CREATE TABLE entries (
    entry_id    TEXT PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    author      TEXT NOT NULL,
    facility    TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

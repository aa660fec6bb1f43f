-- Patients who can be shared (R-PAT-1): consent state and its history, facility-local ids,
-- the minimal identifying data used to match records (名寄せ), and care teams (R-PAT-3).
CREATE TABLE patients (
    patient_id          TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    kana                TEXT,
    birth_date          TEXT,
    sex                 TEXT,
    consent             TEXT NOT NULL CHECK (consent IN ('none', 'granted', 'withdrawn', 'suspended')),
    consent_changed_at  BIGINT NOT NULL,
    consent_changed_by  TEXT NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE TABLE patient_local_ids (
    facility    TEXT NOT NULL,
    local_id    TEXT NOT NULL,
    patient_id  TEXT NOT NULL REFERENCES patients (patient_id),
    PRIMARY KEY (facility, local_id)
);
CREATE TABLE consent_events (
    patient_id  TEXT NOT NULL,
    consent     TEXT NOT NULL,
    at          BIGINT NOT NULL,
    by_whom     TEXT NOT NULL,
    note        TEXT
);
CREATE INDEX consent_events_patient ON consent_events (patient_id, at);
-- member_kind 'user' (member = user id) or 'facility' (member = facility id).
CREATE TABLE care_team (
    patient_id   TEXT NOT NULL REFERENCES patients (patient_id),
    member_kind  TEXT NOT NULL CHECK (member_kind IN ('user', 'facility')),
    member       TEXT NOT NULL,
    added_at     BIGINT NOT NULL,
    added_by     TEXT NOT NULL,
    PRIMARY KEY (patient_id, member_kind, member)
);

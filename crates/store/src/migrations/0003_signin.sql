-- People (R-ACCT-1), how an HPKI card maps to them (R-ACCT-4), lockout counters (R-ACCT-5),
-- login challenges and sessions.
CREATE TABLE users (
    user_id          TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    facility         TEXT NOT NULL,
    roles            TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    hpki_issuer      TEXT,
    hpki_serial      TEXT,
    hpki_holder_id   TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_login_at    BIGINT
);
CREATE UNIQUE INDEX users_hpki_cert ON users (hpki_issuer, hpki_serial);
CREATE UNIQUE INDEX users_hpki_holder ON users (hpki_holder_id);
-- scope 'account' (subject = user id) or 'terminal' (subject = terminal id).
CREATE TABLE lockouts (
    scope            TEXT NOT NULL,
    subject          TEXT NOT NULL,
    failures         BIGINT NOT NULL,
    last_failure_at  BIGINT NOT NULL,
    locked_at        BIGINT,
    PRIMARY KEY (scope, subject)
);
CREATE TABLE challenges (
    nonce_hash   TEXT PRIMARY KEY,
    terminal     TEXT NOT NULL,
    cert_serial  TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE TABLE sessions (
    session_id           TEXT PRIMARY KEY,
    terminal             TEXT NOT NULL,
    user_id              TEXT NOT NULL,
    method               TEXT NOT NULL,
    qualification        TEXT,
    created_at           BIGINT NOT NULL,
    absolute_expires_at  BIGINT NOT NULL,
    ended_at             BIGINT,
    end_reason           TEXT
);
CREATE INDEX sessions_open ON sessions (terminal, ended_at);

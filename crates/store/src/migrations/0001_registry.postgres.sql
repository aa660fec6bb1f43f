-- Terminal registry (R-TERM-1, R-TERM-4), certificates, one-time enrollment codes (R-TERM-2).
CREATE TABLE terminals (
    terminal    TEXT PRIMARY KEY,
    facility    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE TABLE certificates (
    serial             TEXT PRIMARY KEY,
    terminal           TEXT NOT NULL REFERENCES terminals (terminal),
    not_before         BIGINT NOT NULL,
    not_after          BIGINT NOT NULL,
    issued_at          BIGINT NOT NULL,
    revoked_at         BIGINT,
    revocation_reason  TEXT
);
CREATE INDEX certificates_terminal ON certificates (terminal);
CREATE TABLE enroll_codes (
    code_hash      TEXT PRIMARY KEY,
    pin_hash       TEXT NOT NULL,
    facility       TEXT NOT NULL,
    terminal       TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    attempts_left  BIGINT NOT NULL,
    used_at        BIGINT
);
-- The CRL the issuing CA last signed; number grows by one per issue.
CREATE TABLE crl_state (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    crl_number   BIGINT NOT NULL,
    der          BYTEA NOT NULL,
    next_update  BIGINT NOT NULL
);
-- Bumped by every change a running gateway must see (registry, CRL); gateways poll it.
CREATE TABLE generation (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    value  BIGINT NOT NULL
);
INSERT INTO generation (id, value) VALUES (1, 0);

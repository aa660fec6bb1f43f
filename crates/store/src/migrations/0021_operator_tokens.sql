-- Credentials for the management listener's API (issue 13, R-OPS-4: remote maintenance goes
-- through it, on record). Only the SHA-256 of each token is kept; the token (256 random bits)
-- is shown once when it is made. In the store, so every replica accepts it at once. `scopes`:
-- what the token may do (space-separated: status, audit, notices, maintenance, facilities).
CREATE TABLE operator_tokens (
    name        TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at  BIGINT
);

-- Passwords for staff without HPKI cards (R-ACCT-2): hash, profile, age, history.
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN password_profile TEXT;
ALTER TABLE users ADD COLUMN password_changed_at BIGINT;
ALTER TABLE users ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
CREATE TABLE password_history (
    user_id     TEXT NOT NULL,
    hash        TEXT NOT NULL,
    changed_at  BIGINT NOT NULL
);
CREATE INDEX password_history_user ON password_history (user_id, changed_at);

-- Idle timeout and card presence (docs/signin.md): when a session last had a request
-- attributed to it (written at most every few seconds per session, not per request) and when
-- its HPKI card last proved it is in the reader. NULL: not since the session opened.
ALTER TABLE sessions ADD COLUMN last_activity_at BIGINT;
ALTER TABLE sessions ADD COLUMN last_presence_at BIGINT;
-- Every replica looks for lapsed open sessions every 2 s, while ended ones pile up: find the
-- open ones (ended_at IS NULL, the index partial) without reading the rest.
CREATE INDEX sessions_open_expiry ON sessions (absolute_expires_at) WHERE ended_at IS NULL;

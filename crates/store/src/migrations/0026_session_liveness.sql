-- Idle timeout and card presence (docs/signin.md): when a session last had a request
-- attributed to it (written at most every few seconds per session, not per request) and when
-- its HPKI card last proved it is in the reader. NULL: not since the session opened.
ALTER TABLE sessions ADD COLUMN last_activity_at BIGINT;
ALTER TABLE sessions ADD COLUMN last_presence_at BIGINT;

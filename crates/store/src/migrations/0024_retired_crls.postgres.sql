-- The CRLs of retired issuing CAs (`sekisho ca rotate-issuing`): signed with the current one,
-- with the same number, so every replica installs them together. DER, each prefixed by its
-- length as 8 hex digits; empty or NULL when no issuing CA is retired. A release that does not
-- know the column ignores it (and trusts only the current issuing CA).
ALTER TABLE crl_state ADD COLUMN retired_crls BYTEA;

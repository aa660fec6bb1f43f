-- WireGuard (R-TERM-3): each terminal's tunnel public key and its fixed tunnel address. The
-- gateway's peers are the rows whose terminal is active; revoking or suspending a terminal
-- removes its peer.
CREATE TABLE tunnel_peers (
    terminal    TEXT PRIMARY KEY REFERENCES terminals (terminal),
    public_key  TEXT NOT NULL UNIQUE,
    address     TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

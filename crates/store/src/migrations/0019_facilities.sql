-- The facility registry (issue 13; R-LOG-3, R-OPS-1): each facility of the network with its
-- status. A suspended facility's terminals are refused and its people's sessions end; a
-- closed one's terminals are revoked for good. Terminals and people keep naming their
-- facility by id; every facility they already name is registered here, named by its id until
-- the secretariat gives it a name.
CREATE TABLE facilities (
    facility    TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    contact     TEXT,
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'closed')),
    note        TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO facilities (facility, name, kind, status, created_at, updated_at)
SELECT facility, facility, 'unspecified', 'active', MIN(created_at), MIN(created_at)
FROM (SELECT facility, created_at FROM terminals UNION ALL SELECT facility, created_at FROM users) named
GROUP BY facility;

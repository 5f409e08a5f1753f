-- Items and API keys. The CHECKs and the UNIQUE index are the database's second line of
-- defence: model.invariants validates every value before it gets here.
CREATE TABLE items (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200 AND name = trim(name)),
    name_key   TEXT NOT NULL,
    qty        INTEGER NOT NULL CHECK (qty BETWEEN 0 AND 9007199254740991),
    version    INTEGER NOT NULL CHECK (version >= 1),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (tenant, name_key)
) STRICT, WITHOUT ROWID;

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL CHECK (length(tenant) BETWEEN 1 AND 100),
    role       TEXT NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    key_hash   BLOB NOT NULL CHECK (length(key_hash) = 32),
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;

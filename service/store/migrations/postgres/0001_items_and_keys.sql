-- Items and API keys, as in the SQLite backend. name_key is compared byte-wise
-- (COLLATE "C"), which for UTF-8 is code-point order: the same order SQLite gives.
-- Timestamps are kept as the RFC 3339 text the API shows, so both backends (and an
-- export moved between them) hold identical values.
CREATE TABLE items (
    id         text PRIMARY KEY,
    tenant     text NOT NULL,
    name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200 AND name = btrim(name)),
    name_key   text COLLATE "C" NOT NULL,
    qty        bigint NOT NULL CHECK (qty BETWEEN 0 AND 9007199254740991),
    version    bigint NOT NULL CHECK (version >= 1),
    created_at text NOT NULL,
    updated_at text NOT NULL,
    UNIQUE (tenant, name_key)
);

CREATE TABLE api_keys (
    id         text PRIMARY KEY,
    tenant     text NOT NULL CHECK (char_length(tenant) BETWEEN 1 AND 100),
    role       text NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    key_hash   bytea NOT NULL CHECK (length(key_hash) = 32),
    created_at text NOT NULL,
    revoked_at text
);

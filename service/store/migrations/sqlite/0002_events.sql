-- The ledger: one event per successful change of an item, appended in the change's own
-- transaction. seq numbers each tenant's events 1, 2, 3, ... in commit order; feeds holds
-- the last one taken. The CHECKs and UNIQUEs are the database's second line of defence.
CREATE TABLE events (
    tenant     TEXT NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    item_id    TEXT NOT NULL,
    type       TEXT NOT NULL CHECK (type IN ('created', 'updated', 'adjusted', 'deleted')),
    version    INTEGER NOT NULL CHECK (version >= 1),
    qty        INTEGER NOT NULL CHECK (qty BETWEEN 0 AND 9007199254740991),
    delta      INTEGER NOT NULL CHECK (delta BETWEEN -9007199254740991 AND 9007199254740991),
    name       TEXT NOT NULL,
    reason     TEXT,
    key_id     TEXT NOT NULL,
    request_id TEXT,
    batch_id   TEXT,
    at         TEXT NOT NULL,
    PRIMARY KEY (tenant, seq),
    UNIQUE (tenant, item_id, version)
) STRICT, WITHOUT ROWID;

CREATE TABLE feeds (
    tenant   TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL CHECK (last_seq >= 1)
) STRICT, WITHOUT ROWID;

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
    key_id     TEXT,
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

-- Items that exist when the ledger begins get an opening event: `created` at the version
-- they stand at, with their qty as its delta. What happened to them before was never
-- recorded; from here on every change is. (README, "The ledger".)
INSERT INTO events (tenant, seq, item_id, type, version, qty, delta, name, reason, key_id,
                    request_id, batch_id, at)
SELECT tenant, ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY created_at, id), id, 'created',
       version, qty, qty, name, 'ledger opened', NULL, NULL, NULL, updated_at
FROM items;

INSERT INTO feeds (tenant, last_seq) SELECT tenant, MAX(seq) FROM events GROUP BY tenant;

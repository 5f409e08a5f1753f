-- The ledger, as in the SQLite backend. feeds.last_seq is taken with a row lock inside each
-- writing transaction, so a tenant's events commit in seq order even with many writer
-- processes: a follower reading "seq > cursor" can never skip one (README, "The ledger").
CREATE TABLE events (
    tenant     text NOT NULL,
    seq        bigint NOT NULL CHECK (seq >= 1),
    item_id    text NOT NULL,
    type       text NOT NULL CHECK (type IN ('created', 'updated', 'adjusted', 'deleted')),
    version    bigint NOT NULL CHECK (version >= 1),
    qty        bigint NOT NULL CHECK (qty BETWEEN 0 AND 9007199254740991),
    delta      bigint NOT NULL CHECK (delta BETWEEN -9007199254740991 AND 9007199254740991),
    name       text NOT NULL,
    reason     text,
    key_id     text,
    request_id text,
    batch_id   text,
    at         text NOT NULL,
    PRIMARY KEY (tenant, seq),
    UNIQUE (tenant, item_id, version)
);

CREATE TABLE feeds (
    tenant   text PRIMARY KEY,
    last_seq bigint NOT NULL CHECK (last_seq >= 1)
);

-- Items that exist when the ledger begins get an opening event: `created` at the version
-- they stand at, with their qty as its delta. What happened to them before was never
-- recorded; from here on every change is. (README, "The ledger".)
INSERT INTO events (tenant, seq, item_id, type, version, qty, delta, name, reason, key_id,
                    request_id, batch_id, at)
SELECT tenant, ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY created_at, id), id, 'created',
       version, qty, qty, name, 'ledger opened', NULL, NULL, NULL, updated_at
FROM items;

INSERT INTO feeds (tenant, last_seq) SELECT tenant, MAX(seq) FROM events GROUP BY tenant;

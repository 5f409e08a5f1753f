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
    key_id     text NOT NULL,
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

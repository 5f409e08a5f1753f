-- Idempotent retries, as in the SQLite backend. Concurrent first uses of one key are kept
-- apart by a transaction-scoped advisory lock on (tenant, key), taken before the lookup.
CREATE TABLE idempotency (
    tenant      text NOT NULL,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint text NOT NULL,
    status      integer NOT NULL CHECK (status BETWEEN 200 AND 599),
    headers     text NOT NULL,
    body        bytea NOT NULL,
    created_at  text NOT NULL,
    PRIMARY KEY (tenant, key)
);

CREATE INDEX idempotency_by_age ON idempotency (created_at);

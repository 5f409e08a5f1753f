-- Idempotent retries: the stored answer of each (tenant, Idempotency-Key), written in the
-- same transaction as the change it answers (README, "Idempotent retries"). headers is a
-- JSON array of [name, value] pairs; body the answer's bytes. Records older than the
-- retention time are ignored, replaced on reuse, and purged by age (the index).
CREATE TABLE idempotency (
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint TEXT NOT NULL,
    status      INTEGER NOT NULL CHECK (status BETWEEN 200 AND 599),
    headers     TEXT NOT NULL,
    body        BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
) STRICT, WITHOUT ROWID;

CREATE INDEX idempotency_by_age ON idempotency (created_at);

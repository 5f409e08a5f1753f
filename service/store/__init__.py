"""Storage: the ``Store`` protocol, its records, and the two backends behind it.

``open_store`` picks the backend from the database URL: ``postgresql://`` (or
``postgres://``) is PostgreSQL, anything else a SQLite file. Storage raises the domain
errors of ``service.problems`` and imports no web framework.
"""

from __future__ import annotations

from service.store.idempotency import DEFAULT_TTL
from service.store.postgres import PostgresStore
from service.store.protocol import StateReader, Store
from service.store.records import (
    ApiKey,
    Author,
    Event,
    Item,
    Page,
    PageRequest,
    State,
    utc_now,
)
from service.store.sqlite import SqliteStore, sqlite_path

__all__ = [
    "ApiKey",
    "Author",
    "Event",
    "Item",
    "Page",
    "PageRequest",
    "State",
    "StateReader",
    "Store",
    "is_postgres",
    "open_store",
    "utc_now",
]


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (else it is a SQLite file)."""
    return url.startswith(("postgresql://", "postgres://"))


async def open_store(url: str, idempotency_ttl: float = DEFAULT_TTL) -> Store:
    """Open (and migrate) the database that ``url`` names; stored answers of
    Idempotency-Keys are kept ``idempotency_ttl`` seconds."""
    if is_postgres(url):
        return await PostgresStore.open(url, idempotency_ttl=idempotency_ttl)
    return await SqliteStore.open(sqlite_path(url), idempotency_ttl)

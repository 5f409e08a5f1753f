"""Reading the database straight from storage, behind the service's back.

Tests compare these snapshots before and after a request: a rejected request must leave
every row of every table exactly as it was. Both backends are read the same way: a
``Path`` is a SQLite file, a ``PostgresDatabase`` a database on the test server.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

Snapshot = dict[str, list[tuple[Any, ...]]]


@dataclass(frozen=True)
class PostgresDatabase:
    """A PostgreSQL database made for this test run."""

    url: str

    def __str__(self) -> str:
        return self.url


Database = Path | PostgresDatabase


def url_of(database: Database) -> str:
    """The ``--database`` URL of ``database``."""
    return database.url if isinstance(database, PostgresDatabase) else f"sqlite:///{database}"


def snapshot(database: Database) -> Snapshot:
    """Every row of every table, in a stable order."""
    tables = ("api_keys", "items", "events", "feeds", "schema_migrations")
    return {table: sorted(_rows(database, f"SELECT * FROM {table}")) for table in tables}


def items(database: Database, tenant: str | None = None) -> list[dict[str, Any]]:
    """The stored items (of ``tenant``, if given), as dicts, ordered by tenant and name key."""
    query = "SELECT * FROM items ORDER BY tenant, name_key"
    return [row for row in _dicts(database, query) if tenant is None or row["tenant"] == tenant]


def events(database: Database, tenant: str | None = None) -> list[dict[str, Any]]:
    """The stored events (of ``tenant``, if given), as dicts, ordered by tenant and seq."""
    query = "SELECT * FROM events ORDER BY tenant, seq"
    return [row for row in _dicts(database, query) if tenant is None or row["tenant"] == tenant]


def _rows(database: Database, query: str) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in _dicts(database, query)]


def _dicts(database: Database, query: str) -> list[dict[str, Any]]:
    if isinstance(database, PostgresDatabase):
        return asyncio.run(_postgres_dicts(database.url, query))
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(query)]


async def _postgres_dicts(url: str, query: str) -> list[dict[str, Any]]:
    db = await asyncpg.connect(url)
    try:
        return [dict(row) for row in await db.fetch(query)]
    finally:
        await db.close()


def execute(database: Database, sql: str) -> None:
    """Run one statement behind the service's back (only to reset state between examples)."""
    if isinstance(database, PostgresDatabase):
        asyncio.run(_postgres_execute(database.url, sql))
        return
    with sqlite3.connect(database, timeout=10) as db:
        db.execute(sql)


def empty_items(database: Database) -> None:
    """Remove every item and its whole ledger (keys stay): an empty inventory again."""
    for table in ("items", "events", "feeds"):
        execute(database, f"DELETE FROM {table}")


async def _postgres_execute(url: str, sql: str) -> None:
    db = await asyncpg.connect(url)
    try:
        await db.execute(sql)
    finally:
        await db.close()


def key_id(key: str) -> str:
    """The public id of an API key: what lies between its first and second ``_``."""
    return key.split("_")[1]


def secret_part(key: str) -> str:
    """What follows the second ``_`` of an API key: its random secret."""
    return key.split("_", 2)[2]


def assert_no_secret_in_files(database: Path, keys: list[str]) -> None:
    """No key, nor its secret part, in the raw bytes of any file of the SQLite database."""
    files = [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]
    present = [path for path in files if path.exists()]
    assert database in present
    for path in present:
        raw = path.read_bytes()
        for key in keys:
            assert key.encode() not in raw, f"{key} in {path.name}"
            assert secret_part(key).encode() not in raw, f"the secret of {key} in {path.name}"

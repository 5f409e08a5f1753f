"""Reading the database straight from storage, behind the service's back.

Tests compare these snapshots before and after a request: a rejected request must leave
every row of every table exactly as it was. Both backends are read the same way: a
``Path`` is a SQLite file, a ``PostgresDatabase`` a database on the test server.
"""

from __future__ import annotations

import asyncio
import atexit
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import asyncpg

Snapshot = dict[str, list[tuple[Any, ...]]]
T = TypeVar("T")


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
    tables = ("api_keys", "items", "events", "feeds", "idempotency", "schema_migrations")
    present = _table_names(database)  # a database stopped before a migration lacks its table
    return {
        table: sorted(_rows(database, f"SELECT * FROM {table}"))
        for table in tables
        if table in present
    }


def _table_names(database: Database) -> set[str]:
    query = (
        "SELECT table_name AS name FROM information_schema.tables"
        " WHERE table_schema = current_schema()"
        if isinstance(database, PostgresDatabase)
        else "SELECT name FROM sqlite_master WHERE type = 'table'"
    )
    return {row["name"] for row in _dicts(database, query)}


def items(database: Database, tenant: str | None = None) -> list[dict[str, Any]]:
    """The stored items (of ``tenant``, if given), as dicts, ordered by tenant and name key."""
    query = "SELECT * FROM items ORDER BY tenant, name_key"
    return [row for row in _dicts(database, query) if tenant is None or row["tenant"] == tenant]


def events(database: Database, tenant: str | None = None) -> list[dict[str, Any]]:
    """The stored events (of ``tenant``, if given), as dicts, ordered by tenant and seq."""
    query = "SELECT * FROM events ORDER BY tenant, seq"
    return [row for row in _dicts(database, query) if tenant is None or row["tenant"] == tenant]


def answers(database: Database, tenant: str | None = None) -> list[dict[str, Any]]:
    """The stored Idempotency-Key answers (of ``tenant``, if given), as dicts (``body`` as
    bytes), ordered by tenant and key."""
    query = "SELECT * FROM idempotency ORDER BY tenant, key"
    rows = [row for row in _dicts(database, query) if tenant is None or row["tenant"] == tenant]
    return [{**row, "body": bytes(row["body"])} for row in rows]


def _rows(database: Database, query: str) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in _dicts(database, query)]


def _dicts(database: Database, query: str) -> list[dict[str, Any]]:
    if isinstance(database, PostgresDatabase):
        return _Postgres.run(database.url, lambda db: _postgres_dicts(db, query))
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(query)]


async def _postgres_dicts(db: asyncpg.Connection, query: str) -> list[dict[str, Any]]:
    return [dict(row) for row in await db.fetch(query)]


class _Postgres:
    """One connection per database, on an event loop of its own, kept for the whole run.

    Connecting anew for every read made the state machine on PostgreSQL, which reads the
    database after every step, seven times slower than on SQLite. A connection that broke
    (its database dropped and made again, say) is replaced once.
    """

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _connections: ClassVar[dict[str, asyncpg.Connection]] = {}

    @classmethod
    def run(cls, url: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        with cls._lock:
            if cls._loop is None:
                cls._loop = asyncio.new_event_loop()
                atexit.register(cls._close)
            try:
                return cls._loop.run_until_complete(work(cls._connection(url)))
            except (asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError):
                cls._connections.pop(url, None)
                return cls._loop.run_until_complete(work(cls._connection(url)))

    @classmethod
    def _connection(cls, url: str) -> asyncpg.Connection:
        assert cls._loop is not None
        db = cls._connections.get(url)
        if db is None or db.is_closed():
            db = cls._connections[url] = cls._loop.run_until_complete(asyncpg.connect(url))
        return db

    @classmethod
    def _close(cls) -> None:
        assert cls._loop is not None
        for db in cls._connections.values():
            cls._loop.run_until_complete(db.close())
        cls._loop.close()


def execute(database: Database, sql: str) -> None:
    """Run one statement behind the service's back (only to reset state between examples)."""
    if isinstance(database, PostgresDatabase):
        _Postgres.run(database.url, lambda db: db.execute(sql))
        return
    with sqlite3.connect(database, timeout=10) as db:
        db.execute(sql)


def empty_items(database: Database) -> None:
    """Remove every item, its whole ledger and every kept answer (API keys stay): an empty
    inventory again."""
    for table in ("items", "events", "feeds", "idempotency"):
        execute(database, f"DELETE FROM {table}")


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

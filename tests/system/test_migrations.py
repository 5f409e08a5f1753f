"""Migrations over data that was already there: 0003 recomputes every name key.

Each test builds a database as the previous release left it (the SQL migrations 0001 and
0002 applied, keys computed the old way: ``casefold(NFC(name))``), then opens the store,
which migrates it, on a SQLite file and on a PostgreSQL database of the test's own.
"""

from __future__ import annotations

import asyncio
import sqlite3
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path

import asyncpg
import pytest

from model.invariants import name_key
from service.store import open_store
from service.store.shared import MigrationStopped, pending_migrations
from tests.support import db, postgres
from tests.support.db import Database, PostgresDatabase

RELEASED = ("0001_items_and_keys.sql", "0002_events.sql")
NOW = "2024-01-01T00:00:00Z"
SCHEMA_MIGRATIONS = "CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"


@pytest.fixture(params=["sqlite", "postgres"])
def released(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database whose schema stands at 0002, as the previous release left it."""
    if request.param == "sqlite":
        yield tmp_path / "inventory.db"
        return
    request.getfixturevalue("postgres_url")  # skips (or fails in CI) without a server
    url = postgres.create_database()
    try:
        yield PostgresDatabase(url)
    finally:
        postgres.drop_database(url)


def old_key(name: str) -> str:
    """How 0001 and 0002 computed a name key."""
    return unicodedata.normalize("NFC", name).casefold()


def at_0002(database: Database, items: list[tuple[str, str, str]]) -> None:
    """Bring ``database`` to 0002 holding ``items`` (tenant, id, name) with the old keys."""
    scripts = [step for name, step in pending_migrations(backend(database), set())]
    statements = [SCHEMA_MIGRATIONS, *(s for s in scripts[: len(RELEASED)] if isinstance(s, str))]
    rows = [(t, i, n, old_key(n), 1, 1, NOW, NOW) for t, i, n in items]
    insert = "INSERT INTO items (tenant, id, name, name_key, qty, version, created_at, updated_at)"
    if isinstance(database, PostgresDatabase):
        asyncio.run(_postgres_at_0002(database.url, statements, insert, rows))
        return
    with sqlite3.connect(database) as conn:
        for statement in statements:
            conn.executescript(statement)
        conn.executemany(f"{insert} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        applied = [(name, NOW) for name in RELEASED]
        conn.executemany("INSERT INTO schema_migrations VALUES (?, ?)", applied)


async def _postgres_at_0002(
    url: str, statements: list[str], insert: str, rows: Sequence[tuple[object, ...]]
) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
        await conn.executemany(f"{insert} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", rows)
        await conn.executemany(
            "INSERT INTO schema_migrations VALUES ($1, $2)", [(r, NOW) for r in RELEASED]
        )
    finally:
        await conn.close()


def backend(database: Database) -> str:
    return "postgres" if isinstance(database, PostgresDatabase) else "sqlite"


def migrate(database: Database) -> None:
    """Open the store on ``database`` (which applies every pending migration) and close it."""

    async def run() -> None:
        store = await open_store(db.url_of(database))
        await store.close()

    asyncio.run(run())


def test_the_released_migrations_are_the_first_two() -> None:
    for each in ("sqlite", "postgres"):
        assert [name for name, _ in pending_migrations(each, set())][:2] == list(RELEASED)


def test_migrating_from_0002_recomputes_every_name_key_canonically_caselessly(
    released: Database,
) -> None:
    items = [
        ("acme", "i1", "Apple"),
        ("acme", "i2", "\u0390"),  # old key: three code points; new: U+0390 again
        ("acme", "i3", "W\u030a"),  # old key "w" + ring; new: U+1E98
        ("acme", "i4", "\u00df\u0323"),  # old key "ß̣" folded to "ss" + dot; new "s" + "ṣ"
        ("globex", "i5", "\u0399\u0308\u0301"),  # the same name as i2, in another tenant
        ("globex", "i6", "\u1fb3"),  # alpha with ypogegrammeni: a key that changes
    ]
    at_0002(released, items)
    assert any(old_key(name) != name_key(name) for _, _, name in items)

    migrate(released)

    stored = {row["id"]: row for row in db.items(released)}
    assert {i: row["name_key"] for i, row in stored.items()} == {
        i: name_key(name) for _, i, name in items
    }
    assert {i: (row["tenant"], row["name"]) for i, row in stored.items()} == {
        i: (t, name) for t, i, name in items
    }
    applied = [row[0] for row in db.snapshot(released)["schema_migrations"]]
    assert applied == [*RELEASED, "0003_canonical_caseless_keys.py", "0004_idempotency.sql"]


def test_migrating_two_names_of_one_tenant_that_now_match_stops_and_changes_nothing(
    released: Database,
) -> None:
    at_0002(
        released,
        [("acme", "i1", "Apple"), ("acme", "i2", "\u0390"), ("acme", "i3", "\u0399\u0308\u0301")],
    )
    before = db.snapshot(released)

    with pytest.raises(MigrationStopped) as stopped:
        migrate(released)

    message = str(stopped.value)
    assert "changed nothing" in message
    assert all(part in message for part in ("'acme'", "i2", "i3", "'\u0390'", "D145"))
    assert db.snapshot(released) == before
    with pytest.raises(MigrationStopped):  # and stops again, until someone renames one
        migrate(released)
    assert db.snapshot(released) == before

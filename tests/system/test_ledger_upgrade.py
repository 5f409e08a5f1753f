"""A database made before the ledger: its items get opening events when 0002 runs.

The database is built at migration 0001 exactly as wave 1 left it (items, keys, no events),
then any ``inventory`` command opens it and migrates it. Every item must then have one
opening ``created`` event where it stands, the feeds must continue after them, and
``inventory check`` must pass; the next change continues the item's versions.
"""

from __future__ import annotations

import asyncio
import sqlite3
from importlib import resources
from pathlib import Path

import asyncpg

from tests.support import db
from tests.support.db import Database, PostgresDatabase, url_of
from tests.support.processes import run_inventory

NOW = "2025-01-02T03:04:05.000006Z"
ITEMS = [  # (tenant, id, name, qty, version)
    ("acme", "01900000-0000-7000-8000-000000000001", "apple", 5, 3),
    ("acme", "01900000-0000-7000-8000-000000000002", "pear", 0, 1),
    ("globex", "01900000-0000-7000-8000-000000000003", "apple", 9, 7),
]


def _migration_0001(backend: str) -> str:
    folder = resources.files(f"service.store.migrations.{backend}")
    return (folder / "0001_items_and_keys.sql").read_text(encoding="utf-8")


def _inserts() -> list[str]:
    return [
        "INSERT INTO items (id, tenant, name, name_key, qty, version, created_at, updated_at)"
        f" VALUES ('{i}', '{t}', '{n}', '{n}', {q}, {v}, '{NOW}', '{NOW}')"
        for t, i, n, q, v in ITEMS
    ]


def build_wave_one(database: Database) -> None:
    """The schema and rows of a database that wave 1 (migration 0001 alone) left."""
    if isinstance(database, PostgresDatabase):
        asyncio.run(_build_postgres(database.url))
        return
    with sqlite3.connect(database) as conn:
        conn.executescript(
            "CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            f" STRICT;\n{_migration_0001('sqlite')}\n"
            f"INSERT INTO schema_migrations VALUES ('0001_items_and_keys.sql', '{NOW}');\n"
            + ";\n".join(_inserts())
            + ";"
        )


async def _build_postgres(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at text NOT NULL)"
        )
        await conn.execute(_migration_0001("postgres"))
        await conn.execute(
            f"INSERT INTO schema_migrations VALUES ('0001_items_and_keys.sql', '{NOW}')"
        )
        for insert in _inserts():
            await conn.execute(insert)
    finally:
        await conn.close()


def test_items_older_than_the_ledger_get_one_opening_event_each_and_check_passes(
    tmp_path: Path, fresh_postgres: PostgresDatabase
) -> None:
    for database in (tmp_path / "wave1.db", fresh_postgres):
        build_wave_one(database)

        checked = run_inventory("check", "--database", url_of(database))

        assert checked.returncode == 0, checked.stdout + checked.stderr
        events = db.events(database)
        assert [
            (e["tenant"], e["seq"], e["item_id"], e["type"], e["version"], e["qty"], e["delta"])
            for e in events
        ] == [
            (t, n, i, "created", v, q, q)
            for n, (t, i, _, q, v) in zip([1, 2, 1], ITEMS, strict=True)
        ]
        assert {(e["reason"], e["key_id"], e["at"]) for e in events} == {
            ("ledger opened", None, NOW)
        }
        assert sorted(db.snapshot(database)["feeds"]) == [("acme", 2), ("globex", 1)]

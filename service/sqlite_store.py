"""The embedded backend: SQLite through aiosqlite, durable writes with group commit.

Every transition is a plain function ``(sqlite3.Connection, ...) -> result`` that runs on
aiosqlite's database thread. Writes are queued; the commit loop takes everything queued
so far and applies it in one transaction, each write inside its own SAVEPOINT (a rejected
write rolls back alone), then commits once (one fsync under ``synchronous=FULL``) and
answers every waiter. Under load many requests share an fsync; alone, a write is simply
its own transaction. The database thread is crossed once per batch, not per statement.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import aiosqlite

from model.invariants import QTY_MAX, name_key
from service.ids import new_id
from service.problems import NameTaken, NotFound, PreconditionFailed, QuantityOutOfRange
from service.store import ApiKey, Item, Page, PageRequest, key_successor, page_of, utc_now

T = TypeVar("T")
Transition = Callable[[sqlite3.Connection], Any]

_ITEM_COLUMNS = "id, name, qty, version, created_at, updated_at"
_KEY_COLUMNS = "id, tenant, role, key_hash, created_at, revoked_at"


def sqlite_path(url: str) -> str:
    """The file a database URL names: ``sqlite:///rel.db``, ``sqlite:////abs.db`` or a path."""
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url


@dataclass
class _Pending:
    transition: Transition
    done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SqliteStore:
    """The ``Store`` on one SQLite file (WAL, ``synchronous=FULL``), one writer."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._committer = asyncio.create_task(self._commit_loop())

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        """Open the file (created if missing) and bring its schema up to date."""
        conn = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
        await _on_db_thread(conn, _prepare)
        return cls(conn)

    async def create_item(self, tenant: str, fields: Mapping[str, Any]) -> Item:
        return await self._write(_create_item, tenant, fields["name"], fields["qty"], new_id())

    async def get_item(self, tenant: str, item_id: str) -> Item:
        row = await self._read(_fetch_item, tenant, item_id)
        if row is None:
            raise NotFound(f"no item {item_id}")
        return _item(row)

    async def list_items(self, tenant: str, request: PageRequest) -> Page:
        return await self._read(_list_items, tenant, request)

    async def update_item(
        self,
        tenant: str,
        item_id: str,
        changes: Mapping[str, Any],
        expected_versions: frozenset[int] | None,
    ) -> Item:
        return await self._write(_update_item, tenant, item_id, changes, expected_versions)

    async def delete_item(self, tenant: str, item_id: str) -> None:
        await self._write(_delete_item, tenant, item_id)

    async def adjust_item(self, tenant: str, item_id: str, delta: int) -> Item:
        return await self._write(_adjust_item, tenant, item_id, delta)

    async def add_key(self, key: ApiKey) -> None:
        await self._write(_add_key, key)

    async def find_key(self, key_id: str) -> ApiKey | None:
        return await self._read(_find_key, key_id)

    async def list_keys(self, tenant: str | None) -> list[ApiKey]:
        return await self._read(_list_keys, tenant)

    async def revoke_key(self, tenant: str | None, key_id: str) -> bool:
        return await self._write(_revoke_key, tenant, key_id)

    async def export_items(
        self, after: tuple[str, str] | None, limit: int
    ) -> list[tuple[str, Item]]:
        return await self._read(_export_items, after, limit)

    async def import_state(self, keys: Sequence[ApiKey], items: Sequence[tuple[str, Item]]) -> None:
        await self._write(_import_state, keys, items)

    async def ping(self) -> None:
        await self._read(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        await self._committer
        await self._conn.close()

    async def _read(self, query: Callable[..., T], *args: Any) -> T:
        return await _on_db_thread(self._conn, query, *args)

    async def _write(self, transition: Callable[..., T], *args: Any) -> T:
        if self._closing:
            raise RuntimeError("the store is closing")
        pending = _Pending(lambda db: transition(db, *args))
        self._queue.append(pending)
        self._wakeup.set()
        result: T = await pending.done
        return result

    async def _commit_loop(self) -> None:
        while not (self._closing and not self._queue):
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        transitions = [p.transition for p in batch]
        try:
            outcomes = await _on_db_thread(self._conn, _apply_batch, transitions)
        except Exception as error:  # the commit itself failed: nothing of the batch holds
            outcomes = [(False, error)] * len(batch)
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            if not pending.done.done():
                (pending.done.set_result if ok else pending.done.set_exception)(value)


async def _on_db_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(db, *args)`` on aiosqlite's database thread: one thread hop per call.

    aiosqlite's public API hops once per statement; its ``_execute`` is the hook it uses
    itself to run any function on that thread, and the only private API used here.
    """
    result: T = await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call]
    return result


def _apply_batch(db: sqlite3.Connection, transitions: list[Transition]) -> list[tuple[bool, Any]]:
    """One transaction, each transition in its own savepoint; one commit for all."""
    outcomes: list[tuple[bool, Any]] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for transition in transitions:
            db.execute("SAVEPOINT request")
            try:
                outcomes.append((True, transition(db)))
            except Exception as error:
                db.execute("ROLLBACK TO request")
                outcomes.append((False, error))
            db.execute("RELEASE request")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return outcomes


def _prepare(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA foreign_keys = ON")
    migrate(db)


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet applied, in order, each atomically; their names."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL) STRICT"
    )
    applied = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
    done = []
    for script in sorted(resources.files("service.migrations.sqlite").iterdir(), key=str):
        if script.name.endswith(".sql") and script.name not in applied:
            db.executescript(
                f"BEGIN IMMEDIATE;\n{script.read_text(encoding='utf-8')}\n"
                f"INSERT INTO schema_migrations VALUES ('{script.name}', '{utc_now()}');\nCOMMIT;"
            )
            done.append(script.name)
    return done


def _item(row: tuple[Any, ...]) -> Item:
    return Item(*row)


def _fetch_item(db: sqlite3.Connection, tenant: str, item_id: str) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = db.execute(
        f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ? AND tenant = ?", (item_id, tenant)
    ).fetchone()
    return row


def _name_is_taken(db: sqlite3.Connection, tenant: str, key: str, except_id: str = "") -> bool:
    query = "SELECT 1 FROM items WHERE tenant = ? AND name_key = ? AND id != ?"
    return db.execute(query, (tenant, key, except_id)).fetchone() is not None


def _create_item(db: sqlite3.Connection, tenant: str, name: str, qty: int, item_id: str) -> Item:
    key = name_key(name)
    if _name_is_taken(db, tenant, key):
        raise NameTaken(f"an item named {name!r} (ignoring case) already exists")
    now = utc_now()
    db.execute(
        "INSERT INTO items (id, tenant, name, name_key, qty, version, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
        (item_id, tenant, name, key, qty, now, now),
    )
    return Item(item_id, name, qty, 1, now, now)


def _update_item(
    db: sqlite3.Connection,
    tenant: str,
    item_id: str,
    changes: Mapping[str, Any],
    expected_versions: frozenset[int] | None,
) -> Item:
    row = _fetch_item(db, tenant, item_id)
    if row is None:
        raise NotFound(f"no item {item_id}")
    current = _item(row)
    if expected_versions is not None and current.version not in expected_versions:
        raise PreconditionFailed(f'the item is at ETag "{current.version}"')
    name = changes.get("name", current.name)
    if "name" in changes and _name_is_taken(db, tenant, name_key(name), item_id):
        raise NameTaken(f"another item named {name!r} (ignoring case) already exists")
    qty = changes.get("qty", current.qty)
    row = db.execute(
        "UPDATE items SET name = ?, name_key = ?, qty = ?, version = version + 1, updated_at = ?"
        f" WHERE id = ? AND version = ? RETURNING {_ITEM_COLUMNS}",
        (name, name_key(name), qty, utc_now(), item_id, current.version),
    ).fetchone()
    return _item(row)


def _adjust_item(db: sqlite3.Connection, tenant: str, item_id: str, delta: int) -> Item:
    row = db.execute(
        "UPDATE items SET qty = qty + ?, version = version + 1, updated_at = ?"
        " WHERE id = ? AND tenant = ? AND qty + ? BETWEEN 0 AND ?"
        f" RETURNING {_ITEM_COLUMNS}",
        (delta, utc_now(), item_id, tenant, delta, QTY_MAX),
    ).fetchone()
    if row is not None:
        return _item(row)
    current = _fetch_item(db, tenant, item_id)
    if current is None:
        raise NotFound(f"no item {item_id}")
    raise QuantityOutOfRange(
        f"qty {current[2]} + delta {delta} is outside [0, {QTY_MAX}]; nothing changed"
    )


def _delete_item(db: sqlite3.Connection, tenant: str, item_id: str) -> None:
    db.execute("DELETE FROM items WHERE id = ? AND tenant = ?", (item_id, tenant))


def _list_items(db: sqlite3.Connection, tenant: str, request: PageRequest) -> Page:
    clauses, params = ["tenant = ?"], [tenant]
    if request.after_key is not None:
        clauses.append("name_key > ?")
        params.append(request.after_key)
    if request.prefix_key:
        clauses.append("name_key >= ?")
        params.append(request.prefix_key)
        upper = key_successor(request.prefix_key)
        if upper is not None:
            clauses.append("name_key < ?")
            params.append(upper)
    rows = db.execute(
        f"SELECT {_ITEM_COLUMNS}, name_key FROM items WHERE {' AND '.join(clauses)}"
        " ORDER BY name_key LIMIT ?",
        (*params, request.limit + 1),
    ).fetchall()
    return page_of(rows, request.limit)


def _add_key(db: sqlite3.Connection, key: ApiKey) -> None:
    db.execute(
        f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (key.id, key.tenant, key.role, key.key_hash, key.created_at, key.revoked_at),
    )


def _find_key(db: sqlite3.Connection, key_id: str) -> ApiKey | None:
    row = db.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return ApiKey(*row) if row else None


def _list_keys(db: sqlite3.Connection, tenant: str | None) -> list[ApiKey]:
    rows = db.execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE ? IS NULL OR tenant = ?"
        " ORDER BY created_at, id",
        (tenant, tenant),
    ).fetchall()
    return [ApiKey(*row) for row in rows]


def _revoke_key(db: sqlite3.Connection, tenant: str | None, key_id: str) -> bool:
    cursor = db.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND (? IS NULL OR tenant = ?)"
        " AND revoked_at IS NULL",
        (utc_now(), key_id, tenant, tenant),
    )
    return cursor.rowcount == 1


def _export_items(
    db: sqlite3.Connection, after: tuple[str, str] | None, limit: int
) -> list[tuple[str, Item]]:
    tenant, item_id = after or (None, None)
    rows = db.execute(
        f"SELECT tenant, {_ITEM_COLUMNS} FROM items WHERE ? IS NULL OR (tenant, id) > (?, ?)"
        " ORDER BY tenant, id LIMIT ?",
        (tenant, tenant, item_id, limit),
    ).fetchall()
    return [(row[0], _item(row[1:])) for row in rows]


def _import_state(
    db: sqlite3.Connection, keys: Sequence[ApiKey], items: Sequence[tuple[str, Item]]
) -> None:
    if db.execute("SELECT 1 FROM items UNION ALL SELECT 1 FROM api_keys LIMIT 1").fetchone():
        raise ValueError("the target database is not empty; import only into an empty one")
    db.executemany(
        f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        [(k.id, k.tenant, k.role, k.key_hash, k.created_at, k.revoked_at) for k in keys],
    )
    db.executemany(
        f"INSERT INTO items (tenant, name_key, {_ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (t, name_key(i.name), i.id, i.name, i.qty, i.version, i.created_at, i.updated_at)
            for t, i in items
        ],
    )

"""The embedded backend: one SQLite file, durable writes with group commit, reads apart.

Writes: every transition is a plain function ``(sqlite3.Connection, ...) -> result`` run
on a writer thread of our own that owns the write connection (the datasette pattern).
Writes are queued; the commit loop takes everything queued so far and applies it in one
transaction, each write inside its own SAVEPOINT (a rejected write rolls back alone), then
commits once (one fsync under ``synchronous=FULL``) and answers every waiter. The writer
thread is crossed once per batch, not per statement. aiosqlite has no public way to run a
function on its thread (only ``Connection._execute``), hence the thread of our own.

Reads: a second connection through aiosqlite's public API, one statement and one thread
hop each. Under WAL a reader sees the last commit and never waits for the writer, so a
read is never queued behind a write batch.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiosqlite

from model.invariants import QTY_MAX, Adjustment, Batch, ItemChanges, NewItem, name_key
from service import metrics
from service.ids import new_id
from service.problems import NameTaken, NotFound, Rejected
from service.store import idempotency, records, shared
from service.store.faults import Episodes, Readiness, wait_budget
from service.store.feed import FeedSignal, follow
from service.store.idempotency import Refused
from service.store.protocol import StateReader
from service.store.records import ApiKey, Author, Event, Item, utc_now

T = TypeVar("T")
Transition = Callable[[sqlite3.Connection], Any]
_FAULTS = {  # SQLite's primary result codes that mean "not now": (kind, Retry-After)
    sqlite3.SQLITE_BUSY: ("busy", 1),
    sqlite3.SQLITE_LOCKED: ("locked", 1),
    sqlite3.SQLITE_READONLY: ("read-only", 5),
    sqlite3.SQLITE_IOERR: ("I/O error", 5),
    sqlite3.SQLITE_FULL: ("disk full", 5),
    sqlite3.SQLITE_CANTOPEN: ("cannot open the file", 5),
}
_SELECT_ITEM = f"SELECT {shared.ITEM_COLUMNS} FROM items WHERE id = ? AND tenant = ?"
_ANY_EVENT = "SELECT 1 FROM events WHERE tenant = ? AND item_id = ? LIMIT 1"
_HISTORY = shared.history_query(lambda _: "?")
_FEED = shared.feed_query(lambda _: "?")
_NEXT_SEQ = shared.next_seq(lambda _: "?")
_APPEND_EVENT = f"INSERT INTO events ({shared.EVENT_ROW_COLUMNS}) VALUES ({', '.join('?' * 13)})"
_FIND_ANSWER = idempotency.find_query(lambda _: "?")
_STORE_ANSWER = idempotency.store_statement(lambda _: "?")
_PURGE_ANSWERS = idempotency.purge_statement(lambda _: "?")


def _export(columns: str, table: str, key: str, after: Any, limit: int) -> tuple[str, Any]:
    query, params = shared.export_query(columns, table, key, after, limit, lambda _: "?")
    return query, *params


def sqlite_path(url: str) -> str:
    """The file a database URL names: ``sqlite:///rel.db``, ``sqlite:////abs.db`` or a path."""
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url


def _fault_of(error: BaseException) -> tuple[str, int] | None:
    """The kind of database fault ``error`` is and its Retry-After; None for anything else."""
    if isinstance(error, sqlite3.Error) and not isinstance(error, sqlite3.IntegrityError):
        return _FAULTS.get(getattr(error, "sqlite_errorcode", 0) & 0xFF)
    if isinstance(error, FileNotFoundError):  # the file or its folder was deleted
        return "the database file is gone", 5
    return ("I/O error", 5) if isinstance(error, OSError) else None


class _StateReads:
    """Reads through one aiosqlite connection: the store's own, or one snapshot's."""

    def __init__(self, reader: aiosqlite.Connection) -> None:
        self._reader = reader
        self._read_faults = Episodes("reads", _fault_of)

    async def list_keys(self, tenant: str | None) -> list[ApiKey]:
        rows = await self._fetch(
            f"SELECT {shared.KEY_COLUMNS} FROM api_keys WHERE ? IS NULL OR tenant = ?"
            " ORDER BY created_at, id",
            tenant, tenant,
        )  # fmt: skip
        return [ApiKey(*row) for row in rows]

    async def export_items(self, after: str | None, limit: int) -> list[tuple[str, Item]]:
        columns = f"tenant, {shared.ITEM_COLUMNS}"
        at = None if after is None else (after,)
        rows = await self._fetch(*_export(columns, "items", "id", at, limit))
        return [(row[0], Item(*row[1:])) for row in rows]

    async def export_events(
        self, after: tuple[str, int] | None, limit: int
    ) -> list[tuple[str, Event]]:
        columns = f"tenant, {shared.EVENT_COLUMNS}"
        rows = await self._fetch(*_export(columns, "events", "tenant, seq", after, limit))
        return [(row[0], Event(*row[1:])) for row in rows]

    async def export_answers(
        self, after: tuple[str, str] | None, limit: int
    ) -> list[idempotency.Record]:
        columns = idempotency.COLUMNS
        rows = await self._fetch(*_export(columns, "idempotency", "tenant, key", after, limit))
        return [idempotency.record_of(row) for row in rows]

    async def _fetch(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with self._read_faults.answering():
            rows = await self._reader.execute_fetchall(query, params)
        return [tuple(row) for row in rows]


class SqliteStore(_StateReads):
    """The ``Store`` on one SQLite file (WAL, ``synchronous=FULL``), one writer."""

    migrations_applied: tuple[str, ...] = ()

    def __init__(
        self, path: str, writer: _WriterThread, reader: aiosqlite.Connection, ttl: float
    ) -> None:
        super().__init__(reader)
        self._path = path
        self._writer = writer
        self._batcher = _GroupCommit(writer)
        self._signal = FeedSignal()
        self._readiness = Readiness(self._probe)
        self._ttl = ttl
        self.answers = idempotency.Purger(ttl, self._purge_answers)

    @classmethod
    async def open(cls, path: str, idempotency_ttl: float = idempotency.DEFAULT_TTL) -> SqliteStore:
        """Open the file (created if missing), bring its schema up to date, and start
        purging expired idempotency records."""
        writer = await _WriterThread.open(path)
        try:
            applied = await writer.run(migrate)
            reader = await aiosqlite.connect(path, isolation_level=None, timeout=wait_budget())
        except BaseException:
            await writer.close()
            raise
        store = cls(path, writer, reader, idempotency_ttl)
        store.migrations_applied = tuple(applied)
        store.answers.start()
        return store

    async def create_item(self, author: Author, fields: NewItem) -> Item:
        return await self._logged(author, _create_item, fields, new_id())

    async def get_item(self, tenant: str, item_id: str) -> Item:
        rows = await self._fetch(_SELECT_ITEM, item_id, tenant)
        if not rows:
            raise NotFound.item(item_id)
        return Item(*rows[0])

    async def list_items(self, tenant: str, request: records.PageRequest) -> records.Page:
        query, params = shared.list_query(tenant, request, lambda _: "?")
        return shared.page_of(await self._fetch(query, *params), request.limit)

    async def update_item(
        self, author: Author, item_id: str, changes: ItemChanges, expected: records.Versions
    ) -> Item:
        return await self._logged(author, _update_item, item_id, changes, expected)

    async def delete_item(self, author: Author, item_id: str, reason: str | None) -> None:
        await self._logged(author, _delete_item, item_id, reason)

    async def adjust_item(
        self, author: Author, item_id: str, adjustment: Adjustment, expected: records.Versions
    ) -> Item:
        return await self._logged(author, _adjust_item, item_id, adjustment, expected)

    async def apply_batch(self, author: Author, batch: Batch) -> records.BatchResult:
        author = replace(author, batch_id=new_id())
        return await self._logged(author, _apply_steps, shared.batch_steps(batch))

    async def item_events(
        self, tenant: str, item_id: str, after: int, limit: int
    ) -> records.EventPage:
        page = shared.event_page(
            await self._fetch(_HISTORY, tenant, item_id, after, limit + 1), limit
        )
        if not page.events and not await self._fetch(_ANY_EVENT, tenant, item_id):
            raise NotFound.item(item_id)
        return page

    async def feed(self, tenant: str, after: int, limit: int, wait: float) -> list[Event]:
        async def read() -> list[Event]:
            rows = await self._fetch(_FEED, tenant, after, limit)
            return [Event(*row) for row in rows]

        return await follow(self._signal, tenant, wait, read)

    async def add_key(self, key: ApiKey, author: Author | None = None) -> None:
        await self._write(author, _add_key, key)

    async def find_key(self, key_id: str) -> ApiKey | None:
        rows = await self._fetch(f"SELECT {shared.KEY_COLUMNS} FROM api_keys WHERE id = ?", key_id)
        return ApiKey(*rows[0]) if rows else None

    async def revoke_key(self, tenant: str | None, key_id: str) -> bool:
        return await self._batcher.write(_revoke_key, tenant, key_id)

    async def import_state(self, state: records.State) -> None:
        await self._batcher.write(_import_state, state)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[StateReader]:
        async with aiosqlite.connect(self._path, isolation_level=None) as reader:
            await reader.execute("BEGIN")  # one read transaction: one consistent WAL snapshot
            try:
                yield _StateReads(reader)
            finally:
                await reader.execute("COMMIT")

    async def ping(self) -> None:
        await self._readiness.check()

    async def _probe(self) -> None:
        """A read on the reader, then a real write (committed, synced) through the group
        commit, which also checks that the file is still the one opened."""
        await self._fetch("SELECT 1 FROM schema_migrations LIMIT 1")
        await self._batcher.write(_rewrite_user_version)

    async def close(self) -> None:
        await self.answers.stop()
        await self._batcher.close()
        await self._reader.close()
        await self._writer.close()

    async def _logged(self, author: Author, transition: Callable[..., T], *args: Any) -> T:
        """Run a transition that appends its events, then wake the tenant's followers."""
        result = await self._write(author, transition, *args)
        self._signal.wake(author.tenant)
        return result

    async def _write(self, author: Author | None, transition: Callable[..., T], *args: Any) -> T:
        """Run ``transition(db, author, *args)`` in the next batch, under its author's
        Idempotency-Key if it has one (``_keyed``)."""
        if author is None or author.claim is None:
            result = await self._batcher.write(transition, author, *args)
        else:
            expired = idempotency.cutoff(self._ttl)
            result = await self._batcher.write(_keyed, author, expired, transition, *args)
        if isinstance(result, Refused):
            raise result.problem  # its record committed; the change did not
        kept: T = result
        return kept

    async def _purge_answers(self, expired: str, limit: int) -> int:
        return await self._batcher.write(_purge_answers, expired, limit)


class _WriterThread:
    """One thread that owns the write connection; work is shipped to it as ``fn(db)``."""

    def __init__(self, executor: ThreadPoolExecutor, db: sqlite3.Connection, path: str) -> None:
        self._executor = executor
        self._db = db
        self._path = path
        self._identity = _identity(path)  # None for a database that is no file
        self._read_only = False  # the last batch met a read-only database: reconnect first

    @classmethod
    async def open(cls, path: str) -> _WriterThread:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        try:
            db = await asyncio.get_running_loop().run_in_executor(executor, _connect, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, db, path)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(db, *args)`` on the writer thread: one thread hop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._db, *args)

    async def run_batch(self, transitions: list[Transition]) -> list[tuple[bool, Any]]:
        """``_apply_batch`` on the writer thread, unless the file was deleted or replaced:
        a write to an unlinked file would be acknowledged and then lost.

        SQLite opens a file it may not write read-only and stays so; after a batch met that,
        the next one connects anew, so writes resume by themselves once the file is writable.
        """
        if self._read_only:
            self._db = await self.run(_reconnect, self._path)
        try:
            outcomes = await self.run(_apply_batch, transitions, self._path, self._identity)
        except sqlite3.Error as error:
            self._read_only = _is_read_only(error)
            raise
        self._read_only = any(not ok and _is_read_only(value) for ok, value in outcomes)
        return outcomes

    async def close(self) -> None:
        await self.run(sqlite3.Connection.close)
        self._executor.shutdown(wait=True)


@dataclass
class _Pending:
    transition: Transition
    done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _GroupCommit:
    """Queues writes and commits whatever has queued up as one transaction, one fsync."""

    def __init__(self, writer: _WriterThread) -> None:
        self._writer = writer
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._faults = Episodes("writes", _fault_of)
        self._committer = asyncio.create_task(self._commit_loop())

    async def write(self, transition: Callable[..., T], *args: Any) -> T:
        """Run ``transition(db, *args)`` in the next batch; its result or its error."""
        if self._closing:
            raise RuntimeError("the store is closing")
        pending = _Pending(lambda db: transition(db, *args))
        self._queue.append(pending)
        self._wakeup.set()
        result: T = await pending.done
        return result

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        await self._committer

    async def _commit_loop(self) -> None:
        while not (self._closing and not self._queue):
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        transitions = [p.transition for p in batch]
        started = time.perf_counter()
        try:
            outcomes = await self._writer.run_batch(transitions)
        except Exception as error:  # the commit itself failed: nothing of the batch holds
            outcomes = [(False, self._faults.translate(error)) for _ in batch]
        else:
            self._faults.recovered()
            outcomes = [
                (ok, value if ok else self._faults.translate(value)) for ok, value in outcomes
            ]
        metrics.record_batch(len(batch), time.perf_counter() - started)
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            if not pending.done.done():
                (pending.done.set_result if ok else pending.done.set_exception)(value)


def _is_read_only(error: object) -> bool:
    code = getattr(error, "sqlite_errorcode", 0) if isinstance(error, sqlite3.Error) else 0
    return code & 0xFF == sqlite3.SQLITE_READONLY


def _reconnect(db: sqlite3.Connection, path: str) -> sqlite3.Connection:
    """A new write connection to ``path`` in place of ``db`` (closed once the new one is open)."""
    fresh = _connect(path)
    db.close()
    return fresh


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _same_file(path: str, identity: tuple[int, int] | None) -> None:
    """FileNotFoundError if the file at ``path`` is no longer the one opened."""
    if identity is not None and _identity(path) != identity:
        raise FileNotFoundError(f"{path} was deleted or replaced while open")


def _apply_batch(
    db: sqlite3.Connection,
    transitions: list[Transition],
    path: str,
    identity: tuple[int, int] | None,
) -> list[tuple[bool, Any]]:
    """One transaction, each transition in its own savepoint; one commit for all."""
    outcomes: list[tuple[bool, Any]] = []
    _same_file(path, identity)
    if db.in_transaction:  # a failed ROLLBACK of an earlier batch (disk full, I/O error)
        db.execute("ROLLBACK")
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


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        _refuse_foreign(db, path)  # before the first write (journal_mode rewrites the header)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute(f"PRAGMA busy_timeout = {round(wait_budget() * 1000)}")
        db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        db.close()
        raise
    return db


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet applied, in order, each atomically; their names."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL) STRICT"
    )
    pending = shared.pending_migrations("sqlite", _applied(db))
    for name, step in pending:
        if isinstance(step, str):
            db.executescript(
                f"BEGIN IMMEDIATE;\n{step}\n"
                f"INSERT INTO schema_migrations VALUES ('{name}', '{utc_now()}');\nCOMMIT;"
            )
        else:
            _rekey_items(db, name, step)
    return [name for name, _ in pending]


def _rekey_items(db: sqlite3.Connection, name: str, rekey: shared.Rekey) -> None:
    """Apply a key-recomputing migration in one transaction; on any error, nothing changes."""
    park, write = shared.rekey_statements(lambda _: "?")
    db.execute("BEGIN IMMEDIATE")
    try:
        changed = rekey(db.execute(shared.ITEM_KEYS).fetchall())
        db.executemany(park, [(shared.PARKED_KEY, item_id) for _, item_id in changed])
        db.executemany(write, changed)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, utc_now()))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _refuse_foreign(db: sqlite3.Connection, path: str) -> None:
    """NotAnInventoryDatabase for another application's file or a newer inventory's."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    applied = _applied(db) if "schema_migrations" in tables else set()
    shared.refuse_foreign(path, "sqlite", tables, applied)


def _applied(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM schema_migrations")}


def _fetch_item(db: sqlite3.Connection, tenant: str, item_id: str) -> Item | None:
    row = db.execute(_SELECT_ITEM, (item_id, tenant)).fetchone()
    return Item(*row) if row else None


def _create_item(db: sqlite3.Connection, author: Author, fields: NewItem, item_id: str) -> Item:
    name, qty, now = fields["name"], fields["qty"], utc_now()
    with _unique_name(name):
        db.execute(
            "INSERT INTO items (id, tenant, name, name_key, qty, version, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
            (item_id, author.tenant, name, name_key(name), qty, now, now),
        )
    item = Item(item_id, name, qty, 1, now, now)
    _append(db, author, item, "created", qty, fields.get("reason"))
    return item


def _update_item(
    db: sqlite3.Connection,
    author: Author,
    item_id: str,
    changes: ItemChanges,
    expected: records.Versions,
) -> Item:
    current = shared.updatable(_fetch_item(db, author.tenant, item_id), item_id, expected)
    name, key, qty = shared.updated_values(current, changes)
    with _unique_name(name):
        row = db.execute(
            "UPDATE items SET name = ?, name_key = ?, qty = ?, version = version + 1,"
            f" updated_at = ? WHERE id = ? AND version = ? RETURNING {shared.ITEM_COLUMNS}",
            (name, key, qty, utc_now(), item_id, current.version),
        ).fetchone()
    item = Item(*row)
    _append(db, author, item, "updated", item.qty - current.qty, changes.get("reason"))
    return item


def _adjust_item(
    db: sqlite3.Connection,
    author: Author,
    item_id: str,
    adjustment: Adjustment,
    expected: records.Versions,
) -> Item:
    delta = adjustment["delta"]
    if expected is not None:  # If-Match: 404 or 412 before the range is looked at
        shared.updatable(_fetch_item(db, author.tenant, item_id), item_id, expected)
    row = db.execute(
        "UPDATE items SET qty = qty + ?, version = version + 1, updated_at = ?"
        " WHERE id = ? AND tenant = ? AND qty + ? BETWEEN 0 AND ?"
        f" RETURNING {shared.ITEM_COLUMNS}",
        (delta, utc_now(), item_id, author.tenant, delta, QTY_MAX),
    ).fetchone()
    if row is None:
        current = _fetch_item(db, author.tenant, item_id)
        raise shared.adjustment_refused(item_id, current.qty if current else None, delta)
    item = Item(*row)
    _append(db, author, item, "adjusted", delta, adjustment.get("reason"))
    return item


def _create_new(db: sqlite3.Connection, author: Author, fields: NewItem) -> Item:
    return _create_item(db, author, fields, new_id())


def _apply_steps(
    db: sqlite3.Connection, author: Author, steps: list[shared.Step]
) -> records.BatchResult:
    """A batch's steps in order, each seeing the effects of those before; the first one
    refused refuses the batch (the group commit's savepoint undoes the others)."""
    results: list[Item | None] = []
    for index, (kind, args) in enumerate(steps):
        try:
            results.append(_STEPS[kind](db, author, *args))
        except Rejected as problem:
            raise problem.in_operation(index) from None
    assert author.batch_id is not None
    return records.BatchResult(author.batch_id, results)


def _delete_item(db: sqlite3.Connection, author: Author, item_id: str, reason: str | None) -> None:
    row = db.execute(
        f"DELETE FROM items WHERE id = ? AND tenant = ? RETURNING {shared.ITEM_COLUMNS}",
        (item_id, author.tenant),
    ).fetchone()
    if row is not None:
        gone = Item(*row)
        last = gone._replace(qty=0, version=gone.version + 1, updated_at=utc_now())
        _append(db, author, last, "deleted", -gone.qty, reason)


_STEPS: dict[str, Callable[..., Item | None]] = {
    "create": _create_new,
    "update": _update_item,
    "adjust": _adjust_item,
    "delete": _delete_item,
}


def _append(
    db: sqlite3.Connection, author: Author, item: Item, kind: str, delta: int, reason: str | None
) -> None:
    """Append the event that left ``item`` as it is to its tenant's ledger."""
    (seq,) = db.execute(_NEXT_SEQ, (author.tenant,)).fetchone()
    db.execute(_APPEND_EVENT, shared.event_values(author, seq, item, kind, delta, reason))


def _keyed(
    db: sqlite3.Connection,
    author: Author,
    expired: str,
    transition: Callable[..., Any],
    *args: Any,
) -> Any:
    """``transition`` under ``author``'s Idempotency-Key: the stored answer replayed, or the
    transition run in a savepoint and its answer stored beside its effect (the module
    docstring of ``service.store.idempotency``)."""
    claim = author.claim
    assert claim is not None
    row = db.execute(_FIND_ANSWER, (author.tenant, claim.key, expired)).fetchone()
    if row is not None:
        raise idempotency.replay_of(row, claim)
    db.execute("SAVEPOINT effect")
    try:
        result = transition(db, author, *args)
    except Rejected as problem:
        db.execute("ROLLBACK TO effect")
        result = Refused(problem)
    db.execute("RELEASE effect")
    answer = claim.render(result)
    db.execute(_STORE_ANSWER, idempotency.record_row(author.tenant, claim, answer, utc_now()))
    return result


def _purge_answers(db: sqlite3.Connection, expired: str, limit: int) -> int:
    return db.execute(_PURGE_ANSWERS, (expired, limit)).rowcount


def _rewrite_user_version(db: sqlite3.Connection) -> None:
    """The smallest real write: the header's user_version (unused) set to its own value."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    db.execute(f"PRAGMA user_version = {int(version)}")


def _add_keys(db: sqlite3.Connection, keys: Sequence[ApiKey]) -> None:
    db.executemany(
        f"INSERT INTO api_keys ({shared.KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        shared.key_rows(keys),
    )


def _add_key(db: sqlite3.Connection, author: Author | None, key: ApiKey) -> None:
    """A key added (by a request's ``author``, or by the CLI: None), as a transition."""
    _add_keys(db, [key])


def _revoke_key(db: sqlite3.Connection, tenant: str | None, key_id: str) -> bool:
    cursor = db.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND (? IS NULL OR tenant = ?)"
        " AND revoked_at IS NULL",
        (utc_now(), key_id, tenant, tenant),
    )
    return cursor.rowcount == 1


def _import_state(db: sqlite3.Connection, state: records.State) -> None:
    if db.execute(shared.ANY_ROW).fetchone():
        raise shared.DatabaseNotEmpty
    _add_keys(db, state.keys)
    db.executemany(
        f"INSERT INTO items ({shared.ITEM_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        shared.item_rows(state.items),
    )
    db.executemany(_APPEND_EVENT, shared.event_rows(state.events))
    db.execute(shared.FEEDS_FROM_EVENTS)
    db.executemany(
        f"INSERT INTO idempotency ({idempotency.COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        idempotency.rows_of(state.answers),
    )


@contextmanager
def _unique_name(name: str) -> Iterator[None]:
    """Turn the UNIQUE (tenant, name_key) violation of the statement inside into NameTaken."""
    try:
        yield
    except sqlite3.IntegrityError as error:
        if "items.name_key" not in str(error):
            raise
        raise NameTaken.by(name) from None

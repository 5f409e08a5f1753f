"""The scale-out backend: PostgreSQL through an asyncpg pool.

Any number of service processes may share one database. Each transition is one
transaction at READ COMMITTED: adjustments are a single conditional UPDATE (no lost
update, qty never leaves its range), updates lock their row in the same statement
(a subquery ``FOR UPDATE``: the version checked and the delta logged are the replaced row's),
and the UNIQUE index settles two concurrent creates of one name (the loser gets 409).
PostgreSQL groups concurrent commits itself, so no batching is done here.

Each change and its ledger event are one statement (``_logged``): the change, then the
tenant's next feed number (a row lock held to commit, so a tenant's events commit in seq
order), the event, and a NOTIFY that wakes the followers in every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, TypeVar

import asyncpg

from model.invariants import QTY_MAX, Adjustment, Batch, ItemChanges, NewItem, name_key
from service import metrics
from service.ids import new_id
from service.problems import IdempotencyInFlight, NameTaken, NotFound, Rejected, Unavailable
from service.store import idempotency, records, shared
from service.store.faults import Episodes, Readiness, wait_budget
from service.store.feed import FeedSignal, follow
from service.store.idempotency import Refused
from service.store.key_cache import KeyCache
from service.store.protocol import StateReader
from service.store.records import ApiKey, Author, Event, Item, utc_now

T = TypeVar("T")
Change = Callable[..., Awaitable[T]]

log = logging.getLogger("inventory")
_MIGRATION_LOCK = 0x1A7E7100  # pg_advisory_xact_lock id: one migrator at a time
_SELECT_ITEM = f"SELECT {shared.ITEM_COLUMNS} FROM items WHERE id = $1 AND tenant = $2"
_CHANNEL = "inventory_events"
_KEYS_CHANNEL = "inventory_revoked_keys"  # each revocation's key id, from its transaction
_REVOKE = (
    "WITH revoked AS (UPDATE api_keys SET revoked_at = $1 WHERE id = $2"
    " AND ($3::text IS NULL OR tenant = $3) AND revoked_at IS NULL RETURNING id)"
    f" SELECT pg_notify('{_KEYS_CHANNEL}', id) FROM revoked"
)
_ANY_EVENT = "SELECT 1 FROM events WHERE tenant = $1 AND item_id = $2 LIMIT 1"
_HISTORY = shared.history_query(lambda n: f"${n}")
_FEED = shared.feed_query(lambda n: f"${n}")
_FIND_ANSWER = idempotency.find_query(lambda n: f"${n}")
_STORE_ANSWER = idempotency.store_statement(lambda n: f"${n}")
_PURGE_ANSWERS = idempotency.purge_statement(lambda n: f"${n}")
_CLAIM_KEY = (  # the key's lock if free (held to commit), and its unexpired answer if any
    "SELECT pg_try_advisory_xact_lock(hashtext($1), hashtext($2)), a.fingerprint, a.status,"
    " a.headers, a.body FROM (SELECT 1) AS one LEFT JOIN idempotency a"
    " ON a.tenant = $1 AND a.key = $2 AND a.created_at > $3"
)
_LOCK_ITEMS = (
    "SELECT 1 FROM items WHERE tenant = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE"
)
_LOCK_BATCHES = "SELECT pg_advisory_xact_lock(hashtextextended('batches of ' || $1, 0))"
_DEADLOCK_TRIES = 3
_LIMIT_RETRY = 0.02  # seconds between tries for a connection while at the server's limit
_NO_TIMEOUTS = "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0"  # migrate, import
_FAULTS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str, int], ...] = (
    (TimeoutError, "no connection free in time", 1),  # pool acquire (an OSError: first)
    (asyncpg.TooManyConnectionsError, "connection limit reached", 2),
    (asyncpg.QueryCanceledError, "statement timeout", 1),  # or an administrator's cancel
    (asyncpg.LockNotAvailableError, "lock timeout", 1),
    (asyncpg.ReadOnlySQLTransactionError, "read-only", 5),
    (asyncpg.InsufficientResourcesError, "out of resources", 5),  # disk full, out of memory
    (asyncpg.OperatorInterventionError, "shutting down or refusing connections", 2),
    (asyncpg.PostgresConnectionError, "connection lost", 2),
    # a pooled connection whose session the server ended while it was idle: asyncpg's
    # protocol is left mid-state ("cannot switch to state 12"); the connection is dropped
    (asyncpg.InternalClientError, "connection lost", 2),
    (OSError, "unreachable", 5),
)


def _logged(change: str, kind: str) -> str:
    """``change`` and, in the same statement, its event: the statement to send.

    ``change`` returns the item's columns after it and its ``delta`` (nothing if it changed
    nothing: then no event either). Parameters $1 to $5 are the tenant, the reason, the key
    id, the request id and the batch id; the change's own parameters start at $6.
    """
    return (
        f"WITH changed AS ({change}),"
        " seq AS (INSERT INTO feeds (tenant, last_seq) SELECT $1, 1 FROM changed"
        " ON CONFLICT (tenant) DO UPDATE SET last_seq = feeds.last_seq + 1 RETURNING last_seq),"
        f" logged AS (INSERT INTO events ({shared.EVENT_ROW_COLUMNS})"
        f" SELECT $1, seq.last_seq, c.id, '{kind}', c.version, c.qty, c.delta, c.name, $2, $3, $4,"
        " $5, c.updated_at FROM changed c, seq RETURNING tenant),"
        f" notified AS (SELECT pg_notify('{_CHANNEL}', tenant) FROM logged)"
        f" SELECT {shared.ITEM_COLUMNS} FROM changed, notified"
    )


_CREATE = _logged(
    "INSERT INTO items (id, tenant, name, name_key, qty, version, created_at, updated_at)"
    " VALUES ($6, $1, $7, $8, $9, 1, $10, $10) ON CONFLICT (tenant, name_key) DO NOTHING"
    f" RETURNING {shared.ITEM_COLUMNS}, qty AS delta",
    "created",
)
_UPDATE = _logged(  # the row locked first (old): the latest version, which no one can change
    # now; so the version is checked, and the delta taken, against what is replaced
    "UPDATE items i SET name = COALESCE($6::text, i.name),"
    " name_key = COALESCE($7::text, i.name_key), qty = COALESCE($8::bigint, i.qty),"
    " version = i.version + 1, updated_at = $9"
    " FROM (SELECT id, qty FROM items WHERE id = $10 AND tenant = $1 FOR UPDATE) AS old"
    " WHERE i.id = old.id AND ($11::bigint[] IS NULL OR i.version = ANY($11::bigint[]))"
    " RETURNING i.id, i.name, i.qty, i.version, i.created_at, i.updated_at,"
    " i.qty - old.qty AS delta",
    "updated",
)
_NAME_CONSTRAINT = "items_tenant_name_key_key"  # UNIQUE (tenant, name_key), migration 0001
_RACED_TRIES = 3  # a conditional write that missed, read as fitting, and missed again
_ADJUST = _logged(
    "UPDATE items SET qty = qty + $6, version = version + 1, updated_at = $7"
    " WHERE id = $8 AND tenant = $1 AND qty + $6 BETWEEN 0 AND $9"
    " AND ($10::bigint[] IS NULL OR version = ANY($10::bigint[]))"
    f" RETURNING {shared.ITEM_COLUMNS}, $6::bigint AS delta",
    "adjusted",
)
_DELETE = _logged(
    "DELETE FROM items WHERE id = $6 AND tenant = $1 RETURNING id, name, 0::bigint AS qty,"
    " version + 1 AS version, created_at, $7::text AS updated_at, -qty AS delta",
    "deleted",
)


class _StateReads:
    """Reading the whole state in pages, from the pool or from one snapshot's connection."""

    def __init__(self, db: asyncpg.Pool | asyncpg.Connection) -> None:
        self._db = db

    async def list_keys(self, tenant: str | None) -> list[ApiKey]:
        rows = await self._db.fetch(
            f"SELECT {shared.KEY_COLUMNS} FROM api_keys WHERE $1::text IS NULL OR tenant = $1"
            " ORDER BY created_at, id",
            tenant,
        )
        return [ApiKey(*row) for row in rows]

    async def export_items(self, after: str | None, limit: int) -> list[tuple[str, Item]]:
        columns = f"tenant, {shared.ITEM_COLUMNS}"
        at = None if after is None else (after,)
        rows = await self._fetch_page(columns, "items", "id", at, limit)
        return [(row[0], Item(*row[1:])) for row in rows]

    async def export_events(
        self, after: tuple[str, int] | None, limit: int
    ) -> list[tuple[str, Event]]:
        columns = f"tenant, {shared.EVENT_COLUMNS}"
        rows = await self._fetch_page(columns, "events", "tenant, seq", after, limit)
        return [(row[0], Event(*row[1:])) for row in rows]

    async def export_answers(
        self, after: tuple[str, str] | None, limit: int
    ) -> list[idempotency.Record]:
        rows = await self._fetch_page(
            idempotency.COLUMNS, "idempotency", "tenant, key", after, limit
        )
        return [idempotency.record_of(row) for row in rows]

    async def _fetch_page(
        self, columns: str, table: str, key: str, after: Any, limit: int
    ) -> list[Any]:
        query, params = shared.export_query(columns, table, key, after, limit, lambda n: f"${n}")
        rows: list[Any] = await self._db.fetch(query, *params)
        return rows


class PostgresStore(_StateReads):
    """The ``Store`` on a PostgreSQL database shared by any number of processes."""

    migrations_applied: tuple[str, ...] = ()

    def __init__(self, pool: asyncpg.Pool, url: str, ttl: float) -> None:
        timed = _TimedPool(pool)
        super().__init__(timed)
        self._pool = timed
        self._signal = FeedSignal()
        self._keys = KeyCache()
        self._listener = _Listener(url, self._signal, self._keys)
        self._readiness = Readiness(self._probe)
        self._ttl = ttl
        self.answers = idempotency.Purger(ttl, self._purge_answers)

    @classmethod
    async def open(
        cls, url: str, max_size: int = 10, idempotency_ttl: float = idempotency.DEFAULT_TTL
    ) -> PostgresStore:
        """Connect a pool and a listener for the feed, bring the schema up to date, and
        start purging expired idempotency records."""
        budget_ms = round(wait_budget() * 1000)
        timeouts = {"lock_timeout": str(budget_ms), "statement_timeout": str(2 * budget_ms)}
        pool = await asyncpg.create_pool(  # min_size 0: no floor for asyncpg to restore in the
            # background while the server is refusing (a logged traceback per retry); connections
            # are made on demand, and an idle one is kept for asyncpg's 300 s
            url,
            min_size=0,
            max_size=max_size,
            reset=_keep_session,
            server_settings=timeouts,
        )
        try:
            async with pool.acquire() as db:
                applied = await migrate(db)
            store = cls(pool, url, idempotency_ttl)
            await store._listener.start()
        except BaseException:
            await pool.close()
            raise
        store.migrations_applied = tuple(applied)
        store.answers.start()
        return store

    async def create_item(self, author: Author, fields: NewItem) -> Item:
        return await self._logged(author, _create_item, fields)

    async def get_item(self, tenant: str, item_id: str) -> Item:
        row = await self._pool.fetchrow(_SELECT_ITEM, item_id, tenant)
        if row is None:
            raise NotFound.item(item_id)
        return Item(*row)

    async def list_items(self, tenant: str, request: records.PageRequest) -> records.Page:
        query, params = shared.list_query(tenant, request, lambda n: f"${n}")
        return shared.page_of(await self._pool.fetch(query, *params), request.limit)

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
        ids = sorted({op["item_id"] for op in batch["operations"] if "item_id" in op})
        return await self._logged(author, _apply_steps, shared.batch_steps(batch), ids)

    async def item_events(
        self, tenant: str, item_id: str, after: int, limit: int
    ) -> records.EventPage:
        rows = await self._pool.fetch(_HISTORY, tenant, item_id, after, limit + 1)
        page = shared.event_page(rows, limit)
        if not page.events and not await self._pool.fetchval(_ANY_EVENT, tenant, item_id):
            raise NotFound.item(item_id)
        return page

    async def feed(self, tenant: str, after: int, limit: int, wait: float) -> list[Event]:
        async def read() -> list[Event]:
            rows = await self._pool.fetch(_FEED, tenant, after, limit)
            return [Event(*row) for row in rows]

        return await follow(self._signal, tenant, wait, read)

    async def add_key(self, key: ApiKey, author: Author | None = None) -> None:
        await self._write(author, _add_key, key)

    async def find_key(self, key_id: str) -> ApiKey | None:
        """The key, from this process's cache while it hears every revocation
        (``service.store.key_cache``), else from the database."""
        if (kept := self._keys.get(key_id)) is not None:
            return kept
        read_at = self._keys.generation
        row = await self._pool.fetchrow(
            f"SELECT {shared.KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id
        )
        if row is None:
            return None
        key = ApiKey(*row)
        self._keys.keep(key, read_at)
        return key

    async def revoke_key(self, tenant: str | None, key_id: str) -> bool:
        """Revoke it, and tell every process (NOTIFY, in the same transaction)."""
        revoked = await self._pool.fetch(_REVOKE, utc_now(), key_id, tenant)
        self._keys.revoked(key_id)
        return len(revoked) == 1

    async def import_state(self, state: records.State) -> None:
        async with self._pool.acquire() as db, db.transaction():
            await db.execute(_NO_TIMEOUTS)  # a large import takes its time
            await db.execute("LOCK TABLE items, api_keys, events, feeds IN EXCLUSIVE MODE")
            if await db.fetchval(shared.ANY_ROW):
                raise shared.DatabaseNotEmpty
            for table, columns, records in (
                ("api_keys", shared.KEY_COLUMNS, shared.key_rows(state.keys)),
                ("items", shared.ITEM_ROW_COLUMNS, shared.item_rows(state.items)),
                ("events", shared.EVENT_ROW_COLUMNS, shared.event_rows(state.events)),
            ):
                await db.copy_records_to_table(table, columns=columns.split(", "), records=records)
            await db.execute(shared.FEEDS_FROM_EVENTS)
            await db.copy_records_to_table(
                "idempotency",
                columns=idempotency.COLUMNS.split(", "),
                records=idempotency.rows_of(state.answers),
            )

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[StateReader]:
        async with (
            self._pool.acquire() as db,
            db.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield _StateReads(db)

    async def ping(self) -> None:
        await self._readiness.check()

    async def _probe(self) -> None:
        """A read, and a write's first step: a transaction id (refused by a standby), in a
        transaction that may write (not so where ``default_transaction_read_only`` is on)."""
        async with self._pool.acquire() as db, db.transaction():
            await db.fetchval("SELECT 1 FROM schema_migrations LIMIT 1")
            await db.fetchval("SELECT txid_current()")
            if await db.fetchval("SELECT current_setting('transaction_read_only')") == "on":
                raise asyncpg.ReadOnlySQLTransactionError("the database is read-only")

    async def close(self) -> None:
        await self.answers.stop()
        await self._listener.close()
        await self._pool.close()

    async def _logged(self, author: Author, change: Change[T], *args: Any) -> T:
        """Run a change that appends its events, then wake this process's followers (the
        NOTIFY wakes the others')."""
        result = await self._write(author, change, *args)
        self._signal.wake(author.tenant)
        return result

    async def _write(self, author: Author | None, change: Change[T], *args: Any) -> T:
        """``_write_once``, again when PostgreSQL broke a deadlock by aborting it (batches of a
        tenant run one at a time and lock their items in id order, but a single create can
        still meet a batch creating the same name): a few times, then 503. Safe to repeat:
        the aborted attempt's transaction, or single statement, changed nothing."""
        for _ in range(_DEADLOCK_TRIES - 1):
            try:
                return await self._write_once(author, change, *args)
            except asyncpg.DeadlockDetectedError:
                log.warning("deadlock broken by the database; writing again")
        try:
            return await self._write_once(author, change, *args)
        except asyncpg.DeadlockDetectedError:
            raise Unavailable("deadlocked with another write; retry", retry_after=1) from None

    async def _write_once(self, author: Author | None, change: Change[T], *args: Any) -> T:
        """``change(db, author, *args)`` on a pooled connection, under its author's
        Idempotency-Key if it has one (``_keyed``), whose problem is raised once the
        transaction holding its record has committed."""
        async with self._pool.acquire() as db:
            if author is None or author.claim is None:
                return await change(db, author, *args)
            async with db.transaction():
                expired = idempotency.cutoff(self._ttl)
                result = await _keyed(db, author, expired, change, *args)
        if isinstance(result, Refused):
            raise result.problem
        return result

    async def _purge_answers(self, expired: str, limit: int) -> int:
        status = await self._pool.execute(_PURGE_ANSWERS, expired, limit)
        return int(status.split()[-1])


async def _keyed(
    db: asyncpg.Connection, author: Author, expired: str, change: Change[T], *args: Any
) -> T | Refused:
    """``change`` under ``author``'s Idempotency-Key, inside the caller's transaction: the
    stored answer replayed (however many retries ask at once), else the key's lock (held to
    commit; held by another request still running: ``IdempotencyInFlight``), then the
    change run (in a savepoint, unless it refuses before changing anything and without a
    database error: ``_REFUSING_UNCHANGED``) and its answer stored."""
    claim = author.claim
    assert claim is not None
    free, *found = await db.fetchrow(_CLAIM_KEY, author.tenant, claim.key, expired)
    if found[0] is not None:
        raise idempotency.replay_of(found, claim)
    if not free:
        raise IdempotencyInFlight()
    # The lock is ours now. An answer its last holder committed after the statement above
    # began is visible to the next one (READ COMMITTED: a new snapshot per statement).
    row = await db.fetchrow(_FIND_ANSWER, author.tenant, claim.key, expired)
    if row is not None:
        raise idempotency.replay_of(row, claim)
    result = await _refusable(db, author, change, *args)
    answer = claim.render(result)
    await db.execute(
        _STORE_ANSWER, *idempotency.record_row(author.tenant, claim, answer, utc_now())
    )
    return result


async def _fetch_item(db: asyncpg.Connection, tenant: str, item_id: str) -> Item | None:
    row = await db.fetchrow(_SELECT_ITEM, item_id, tenant)
    return Item(*row) if row else None


async def _refusable(
    db: asyncpg.Connection, author: Author, change: Change[T], *args: Any
) -> T | Refused:
    """``change``'s result, or its refusal with nothing of it left in the transaction: in a
    savepoint, unless it refuses only after changing nothing (``_REFUSING_UNCHANGED``)."""
    try:
        if change in _REFUSING_UNCHANGED:
            return await change(db, author, *args)
        async with db.transaction():  # a savepoint: undone alone if refused
            return await change(db, author, *args)
    except Rejected as problem:
        return Refused(problem)


async def _create_item(db: asyncpg.Connection, author: Author, fields: NewItem) -> Item:
    """One statement; a taken name inserts nothing (ON CONFLICT DO NOTHING, which waits for a
    concurrent insert of the name to commit or roll back, as the UNIQUE index would), so the
    refusal is no database error and leaves a surrounding transaction usable."""
    name = fields["name"]
    row = await db.fetchrow(
        _CREATE, *_who(author, fields.get("reason")),
        new_id(), name, name_key(name), fields["qty"], utc_now(),
    )  # fmt: skip
    if row is None:
        raise NameTaken.by(name)
    return Item(*row)


async def _update_item(
    db: asyncpg.Connection,
    author: Author,
    item_id: str,
    changes: ItemChanges,
    expected: records.Versions,
) -> Item:
    """One statement (one round trip): lock the row, check its version, change what
    ``changes`` names, log the event. When it changed nothing, a read says why (404, 412);
    should the item have reached an expected version in between, the update runs again."""
    name = changes.get("name")
    key = None if name is None else name_key(name)
    versions = None if expected is None else sorted(expected)
    while True:
        async with _unique_name(name):
            row = await db.fetchrow(
                _UPDATE, *_who(author, changes.get("reason")),
                name, key, changes.get("qty"), utc_now(), item_id, versions,
            )  # fmt: skip
        if row is not None:
            return Item(*row)
        shared.updatable(await _fetch_item(db, author.tenant, item_id), item_id, expected)


async def _apply_steps(
    db: asyncpg.Connection, author: Author, steps: list[shared.Step], ids: list[str]
) -> records.BatchResult:
    """A batch's steps in order in one transaction; the first step refused refuses the batch.

    Locks come first: the tenant's batch lock, so that one batch of a tenant runs at a time
    (two batches creating the same names in different orders would otherwise deadlock, each
    waiting for the other's new name or for the feed row the other took with its first
    event, also when the tenant has no feed row yet); then the items the batch names, in id
    order, as a single write locks its item before the feed row, so that a batch and single
    writes of the same items wait for each other instead of deadlocking."""
    results: list[Item | None] = []
    async with db.transaction():
        await db.execute(_LOCK_BATCHES, author.tenant)
        await db.execute(_LOCK_ITEMS, author.tenant, ids)
        for index, (kind, args) in enumerate(steps):
            try:
                results.append(await _STEPS[kind](db, author, *args))
            except Rejected as problem:
                raise problem.in_operation(index) from None
    assert author.batch_id is not None
    return records.BatchResult(author.batch_id, results)


async def _delete_item(
    db: asyncpg.Connection, author: Author, item_id: str, reason: str | None
) -> None:
    await db.execute(_DELETE, *_who(author, reason), item_id, utc_now())


async def _adjust_item(
    db: asyncpg.Connection,
    author: Author,
    item_id: str,
    adjustment: Adjustment,
    expected: records.Versions,
) -> Item:
    """One conditional UPDATE (range, and version with If-Match): one round trip. When it
    changed nothing, a read says why, 404 before 412 before 409; should the item have moved,
    between the two, to where the adjustment fits, it runs again, a few times: a quantity
    can move back and forth (a version only grows), so past that the answer is a 503."""
    delta = adjustment["delta"]
    versions = None if expected is None else sorted(expected)
    for _ in range(_RACED_TRIES):
        row = await db.fetchrow(
            _ADJUST, *_who(author, adjustment.get("reason")),
            delta, utc_now(), item_id, QTY_MAX, versions,
        )  # fmt: skip
        if row is not None:
            return Item(*row)
        current = shared.updatable(await _fetch_item(db, author.tenant, item_id), item_id, expected)
        if not 0 <= current.qty + delta <= QTY_MAX:
            raise shared.adjustment_refused(item_id, current.qty, delta)
    raise Unavailable("the item kept changing under this adjustment; retry", retry_after=1)


_REFUSING_UNCHANGED: frozenset[Callable[..., Awaitable[Any]]] = frozenset(
    {_create_item, _adjust_item, _delete_item}
)
"""Changes of one statement that refuse (``Rejected``) only after it changed nothing and
raised nothing: run under an Idempotency-Key without a savepoint (two round trips fewer).
An update can meet the UNIQUE index (an error, which aborts the transaction); a batch can
refuse after earlier steps changed rows: those keep theirs."""

_STEPS: dict[str, Callable[..., Awaitable[Item | None]]] = {
    "create": _create_item,
    "update": _update_item,
    "adjust": _adjust_item,
    "delete": _delete_item,
}


async def _add_key(db: asyncpg.Connection, author: Author | None, key: ApiKey) -> None:
    await db.execute(
        f"INSERT INTO api_keys ({shared.KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
        *shared.key_rows([key])[0],
    )


def _who(author: Author, reason: str | None) -> tuple[str, str | None, str, str | None, str | None]:
    """Parameters $1 to $5 of a ``_logged`` statement."""
    return author.tenant, reason, author.key_id, author.request_id, author.batch_id


def _fault_of(error: BaseException) -> tuple[str, int] | None:
    """The kind of database fault ``error`` is and its Retry-After; None for anything else."""
    if isinstance(error, asyncpg.InterfaceError) and "closed" in str(error):
        return "connection lost", 2
    for kinds, kind, retry_after in _FAULTS:
        if isinstance(error, kinds):
            return kind, retry_after
    return None


class _CannotConnect(ConnectionError):
    """The pool could not make a connection (the server refused it: any reason)."""


class _Listener:
    """The LISTEN connection that wakes this process's followers when another process
    commits, and drops a revoked key from this process's cache. When the server ends it, the
    key cache is switched off (every lookup reads the database) until it is connected again
    (with backoff); then every follower is woken, to read what committed in between."""

    def __init__(self, url: str, signal: FeedSignal, keys: KeyCache) -> None:
        self._url = url
        self._signal = signal
        self._keys = keys
        self._db: asyncpg.Connection | None = None
        self._again: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        db = await asyncpg.connect(self._url, timeout=wait_budget())
        try:
            await db.add_listener(_CHANNEL, self._notified)
            await db.add_listener(_KEYS_CHANNEL, self._revoked)
        except BaseException:
            db.terminate()
            raise
        db.add_termination_listener(self._lost)
        self._db = db
        self._keys.switch(on=True)

    async def close(self) -> None:
        self._closing = True
        if self._again is not None:
            self._again.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._again
        if self._db is not None:
            await self._db.close()

    def _notified(self, _: object, __: int, ___: str, tenant: str) -> None:
        """An event of ``tenant`` committed, in this process or another."""
        self._signal.wake(tenant)

    def _revoked(self, _: object, __: int, ___: str, key_id: str) -> None:
        """A key was revoked, in this process or another."""
        self._keys.revoked(key_id)

    def _lost(self, _: object) -> None:
        self._keys.switch(on=False)  # no revocation can reach this process now
        if not self._closing and self._again is None:
            self._again = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        log.warning("feed listener connection lost; connecting again")
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                await self.start()
            except Exception:  # whatever the reason, try again later
                delay = min(2 * delay, 30.0)
            else:
                break
        self._again = None
        log.warning("feed listener connected again")
        self._signal.wake_all()


class _TimedPool:
    """The asyncpg pool, with every wait for a connection timed (``metrics``) and bounded
    (the wait budget), and every database fault of a request answered as ``Unavailable``:
    each query method takes a connection through ``acquire``, as asyncpg's own do."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._timeout = wait_budget()
        self._faults = Episodes("connections", _fault_of)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        with self._faults.answering():
            db = await self._take()
            try:
                yield db
            except Exception as error:
                if _fault_of(error) is not None:
                    # Never handed out again: the pool makes a new one. A connection the
                    # server ended may already be back in the pool (asyncpg returns it):
                    # then there is nothing left to end.
                    with contextlib.suppress(asyncpg.InterfaceError):
                        db.terminate()
                raise
            finally:
                await self._pool.release(db)

    async def _take(self) -> asyncpg.Connection:
        """A pooled connection within the wait budget. Where the server's connection limit
        stops the pool from growing, wait (and try again) for one of its own to be released."""
        started = time.perf_counter()
        while True:
            left = self._timeout - (time.perf_counter() - started)
            try:
                db = await self._pool.acquire(timeout=max(left, 0.001))
            except asyncpg.TooManyConnectionsError:
                if left <= _LIMIT_RETRY:
                    raise  # the budget is spent
                await asyncio.sleep(_LIMIT_RETRY)
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                if _fault_of(error) is not None:
                    raise
                raise _CannotConnect(f"{type(error).__name__}: {error}") from error
            else:
                metrics.record_pool_wait(time.perf_counter() - started)
                return db

    async def execute(self, query: str, *args: Any) -> Any:
        async with self.acquire() as db:
            return await db.execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> Any:
        async with self.acquire() as db:
            return await db.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self.acquire() as db:
            return await db.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as db:
            return await db.fetchval(query, *args)

    async def close(self) -> None:
        await self._pool.close()


@asynccontextmanager
async def _unique_name(name: str | None) -> AsyncIterator[None]:
    """Turn the UNIQUE (tenant, name_key) violation of the statement inside, which only a
    new ``name`` can meet, into NameTaken; any other violation (of the ledger's keys: a
    database whose feed numbers were tampered with) stays what it is, a fault to see."""
    try:
        yield
    except asyncpg.UniqueViolationError as error:
        if name is None or error.constraint_name != _NAME_CONSTRAINT:
            raise
        raise NameTaken.by(name) from None


async def _keep_session(db: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on every release, a second round trip per query.

    Safe because no request changes session state: no SET, LISTEN, cursor or session-level
    lock (the migration lock is transaction-scoped). An open transaction is still rolled back.
    """


async def migrate(db: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied, in order, each atomically; their names."""
    async with db.transaction():
        await db.execute(_NO_TIMEOUTS)  # a migration of a large table takes its time
        await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await _refuse_foreign(db)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY,"
            " applied_at text NOT NULL)"
        )
        applied = {row[0] for row in await db.fetch("SELECT name FROM schema_migrations")}
        pending = shared.pending_migrations("postgres", applied)
        for name, step in pending:
            await (db.execute(step) if isinstance(step, str) else _rekey_items(db, step))
            await db.execute("INSERT INTO schema_migrations VALUES ($1, $2)", name, utc_now())
    return [name for name, _ in pending]


async def _rekey_items(db: asyncpg.Connection, rekey: shared.Rekey) -> None:
    """A key-recomputing migration's reads and writes, inside the migration's transaction."""
    park, write = shared.rekey_statements(lambda n: f"${n}")
    await db.execute("LOCK TABLE items IN EXCLUSIVE MODE")  # no write slips in between
    changed = rekey([tuple(row) for row in await db.fetch(shared.ITEM_KEYS)])
    await db.executemany(park, [(shared.PARKED_KEY, item_id) for _, item_id in changed])
    await db.executemany(write, changed)


async def _refuse_foreign(db: asyncpg.Connection) -> None:
    """NotAnInventoryDatabase if the database holds another application's tables."""
    tables = {
        row[0]
        for row in await db.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    }
    applied: list[str] = []
    if "schema_migrations" in tables:
        applied = [row[0] for row in await db.fetch("SELECT name FROM schema_migrations")]
    where = f"the PostgreSQL database {await db.fetchval('SELECT current_database()')}"
    shared.refuse_foreign(where, "postgres", tables, applied)

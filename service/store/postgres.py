"""The scale-out backend: PostgreSQL through an asyncpg pool.

Any number of service processes may share one database. Each transition is one
transaction at READ COMMITTED: adjustments are a single conditional UPDATE (no lost
update, qty never leaves its range), updates lock the row they read (``FOR UPDATE``),
and the UNIQUE index settles two concurrent creates of one name (the loser gets 409).
PostgreSQL groups concurrent commits itself, so no batching is done here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg

import service.store.shared as shared
from model.invariants import QTY_MAX, ItemChanges, NewItem, name_key
from service.ids import new_id
from service.problems import NameTaken, NotFound
from service.store.records import ApiKey, Item, Page, PageRequest, Versions, utc_now

_MIGRATION_LOCK = 0x1A7E7100  # pg_advisory_xact_lock id: one migrator at a time
_SELECT_ITEM = f"SELECT {shared.ITEM_COLUMNS} FROM items WHERE id = $1 AND tenant = $2"


class PostgresStore:
    """The ``Store`` on a PostgreSQL database shared by any number of processes."""

    migrations_applied: tuple[str, ...] = ()

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, max_size: int = 10) -> PostgresStore:
        """Connect a pool and bring the schema up to date."""
        pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size, reset=_keep_session)
        try:
            async with pool.acquire() as db:
                applied = await migrate(db)
        except BaseException:
            await pool.close()
            raise
        store = cls(pool)
        store.migrations_applied = tuple(applied)
        return store

    async def create_item(self, tenant: str, fields: NewItem) -> Item:
        name, qty, now, item_id = fields["name"], fields["qty"], utc_now(), new_id()
        async with _unique_name(name):
            await self._pool.execute(
                "INSERT INTO items (id, tenant, name, name_key, qty, version, created_at,"
                " updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
                item_id, tenant, name, name_key(name), qty, now,
            )  # fmt: skip
        return Item(item_id, name, qty, 1, now, now)

    async def get_item(self, tenant: str, item_id: str) -> Item:
        row = await self._pool.fetchrow(_SELECT_ITEM, item_id, tenant)
        if row is None:
            raise NotFound.item(item_id)
        return Item(*row)

    async def list_items(self, tenant: str, request: PageRequest) -> Page:
        query, params = shared.list_query(tenant, request, lambda n: f"${n}")
        return shared.page_of(await self._pool.fetch(query, *params), request.limit)

    async def update_item(
        self, tenant: str, item_id: str, changes: ItemChanges, expected: Versions
    ) -> Item:
        async with self._pool.acquire() as db, db.transaction():
            row = await db.fetchrow(f"{_SELECT_ITEM} FOR UPDATE", item_id, tenant)
            current = shared.updatable(Item(*row) if row else None, item_id, expected)
            name, key, qty = shared.updated_values(current, changes)
            async with _unique_name(name):
                row = await db.fetchrow(
                    "UPDATE items SET name = $1, name_key = $2, qty = $3, version = version + 1,"
                    f" updated_at = $4 WHERE id = $5 RETURNING {shared.ITEM_COLUMNS}",
                    name, key, qty, utc_now(), item_id,
                )  # fmt: skip
        return Item(*row)

    async def delete_item(self, tenant: str, item_id: str) -> None:
        await self._pool.execute("DELETE FROM items WHERE id = $1 AND tenant = $2", item_id, tenant)

    async def adjust_item(self, tenant: str, item_id: str, delta: int) -> Item:
        async with self._pool.acquire() as db:
            row = await db.fetchrow(
                "UPDATE items SET qty = qty + $1, version = version + 1, updated_at = $2"
                " WHERE id = $3 AND tenant = $4 AND qty + $1 BETWEEN 0 AND $5"
                f" RETURNING {shared.ITEM_COLUMNS}",
                delta, utc_now(), item_id, tenant, QTY_MAX,
            )  # fmt: skip
            if row is not None:
                return Item(*row)
            qty = await db.fetchval(
                "SELECT qty FROM items WHERE id = $1 AND tenant = $2", item_id, tenant
            )
        raise shared.adjustment_refused(item_id, qty, delta)

    async def add_key(self, key: ApiKey) -> None:
        await self._pool.execute(
            f"INSERT INTO api_keys ({shared.KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
            *shared.key_rows([key])[0],
        )

    async def find_key(self, key_id: str) -> ApiKey | None:
        row = await self._pool.fetchrow(
            f"SELECT {shared.KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id
        )
        return ApiKey(*row) if row else None

    async def list_keys(self, tenant: str | None) -> list[ApiKey]:
        rows = await self._pool.fetch(
            f"SELECT {shared.KEY_COLUMNS} FROM api_keys WHERE $1::text IS NULL OR tenant = $1"
            " ORDER BY created_at, id",
            tenant,
        )
        return [ApiKey(*row) for row in rows]

    async def revoke_key(self, tenant: str | None, key_id: str) -> bool:
        status = await self._pool.execute(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2"
            " AND ($3::text IS NULL OR tenant = $3) AND revoked_at IS NULL",
            utc_now(), key_id, tenant,
        )  # fmt: skip
        return bool(status == "UPDATE 1")

    async def export_items(
        self, after: tuple[str, str] | None, limit: int
    ) -> list[tuple[str, Item]]:
        rows = await self._pool.fetch(
            f"SELECT tenant, {shared.ITEM_COLUMNS} FROM items WHERE $1::text IS NULL"
            " OR (tenant, id) > ($1, $2) ORDER BY tenant, id LIMIT $3",
            *(after or (None, None)), limit,
        )  # fmt: skip
        return [(row[0], Item(*row[1:])) for row in rows]

    async def import_state(self, keys: Sequence[ApiKey], items: Sequence[tuple[str, Item]]) -> None:
        async with self._pool.acquire() as db, db.transaction():
            await db.execute("LOCK TABLE items, api_keys IN EXCLUSIVE MODE")
            if await db.fetchval(shared.ANY_ROW):
                raise shared.DatabaseNotEmpty
            await db.copy_records_to_table(
                "api_keys", columns=shared.KEY_COLUMNS.split(", "), records=shared.key_rows(keys)
            )
            await db.copy_records_to_table(
                "items",
                columns=shared.ITEM_ROW_COLUMNS.split(", "),
                records=shared.item_rows(items),
            )

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def close(self) -> None:
        await self._pool.close()


@asynccontextmanager
async def _unique_name(name: str) -> AsyncIterator[None]:
    """Turn the UNIQUE (tenant, name_key) violation of the statement inside into NameTaken."""
    try:
        yield
    except asyncpg.UniqueViolationError:
        raise NameTaken.by(name) from None


async def _keep_session(db: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on every release, a second round trip per query.

    Safe because no request changes session state: no SET, LISTEN, cursor or session-level
    lock (the migration lock is transaction-scoped). An open transaction is still rolled back.
    """


async def migrate(db: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied, in order, each atomically; their names."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await _refuse_foreign(db)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY,"
            " applied_at text NOT NULL)"
        )
        applied = {row[0] for row in await db.fetch("SELECT name FROM schema_migrations")}
        pending = shared.pending_migrations("postgres", applied)
        for name, script in pending:
            await db.execute(script)
            await db.execute("INSERT INTO schema_migrations VALUES ($1, $2)", name, utc_now())
    return [name for name, _ in pending]


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

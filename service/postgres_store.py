"""The scale-out backend: PostgreSQL through an asyncpg pool.

Any number of service processes may share one database. Each transition is one
transaction at READ COMMITTED: adjustments are a single conditional UPDATE (no lost
update, qty never leaves its range), updates lock the row they read (``FOR UPDATE``),
and the UNIQUE index settles two concurrent creates of one name (the loser gets 409).
PostgreSQL groups concurrent commits itself, so no batching is done here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import asyncpg

from model.invariants import QTY_MAX, name_key
from service.ids import new_id
from service.problems import NameTaken, NotFound, PreconditionFailed, QuantityOutOfRange
from service.store import ApiKey, Item, Page, PageRequest, key_successor, page_of, utc_now

_ITEM_COLUMNS = "id, name, qty, version, created_at, updated_at"
_KEY_COLUMNS = "id, tenant, role, key_hash, created_at, revoked_at"
_MIGRATION_LOCK = 0x1A7E7100  # pg_advisory_xact_lock id: one migrator at a time


class PostgresStore:
    """The ``Store`` on a PostgreSQL database shared by any number of processes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, max_size: int = 10) -> PostgresStore:
        """Connect a pool and bring the schema up to date."""
        pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size, reset=_keep_session)
        async with pool.acquire() as db:
            await migrate(db)
        return cls(pool)

    async def create_item(self, tenant: str, fields: Mapping[str, Any]) -> Item:
        name, key, now, item_id = fields["name"], name_key(fields["name"]), utc_now(), new_id()
        async with self._pool.acquire() as db:
            try:
                await db.execute(
                    "INSERT INTO items (id, tenant, name, name_key, qty, version, created_at,"
                    " updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
                    item_id, tenant, name, key, fields["qty"], now,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise NameTaken(f"an item named {name!r} (ignoring case) already exists") from None
        return Item(item_id, name, fields["qty"], 1, now, now)

    async def get_item(self, tenant: str, item_id: str) -> Item:
        row = await self._pool.fetchrow(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = $1 AND tenant = $2", item_id, tenant
        )
        if row is None:
            raise NotFound(f"no item {item_id}")
        return Item(*row)

    async def list_items(self, tenant: str, request: PageRequest) -> Page:
        clauses, params = ["tenant = $1"], [tenant]
        bounds = [(">", request.after_key), (">=", request.prefix_key)]
        if request.prefix_key:
            bounds.append(("<", key_successor(request.prefix_key)))
        for operator, value in bounds:
            if value:
                params.append(value)
                clauses.append(f"name_key {operator} ${len(params)}")
        rows = await self._pool.fetch(
            f"SELECT {_ITEM_COLUMNS}, name_key FROM items WHERE {' AND '.join(clauses)}"
            f" ORDER BY name_key LIMIT ${len(params) + 1}",
            *params,
            request.limit + 1,
        )
        return page_of(rows, request.limit)

    async def update_item(
        self,
        tenant: str,
        item_id: str,
        changes: Mapping[str, Any],
        expected_versions: frozenset[int] | None,
    ) -> Item:
        async with self._pool.acquire() as db, db.transaction():
            row = await db.fetchrow(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = $1 AND tenant = $2 FOR UPDATE",
                item_id, tenant,
            )  # fmt: skip
            if row is None:
                raise NotFound(f"no item {item_id}")
            current = Item(*row)
            if expected_versions is not None and current.version not in expected_versions:
                raise PreconditionFailed(f'the item is at ETag "{current.version}"')
            name, qty = changes.get("name", current.name), changes.get("qty", current.qty)
            try:
                row = await db.fetchrow(
                    "UPDATE items SET name = $1, name_key = $2, qty = $3, version = version + 1,"
                    f" updated_at = $4 WHERE id = $5 RETURNING {_ITEM_COLUMNS}",
                    name, name_key(name), qty, utc_now(), item_id,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise NameTaken(f"another item named {name!r} (ignoring case) exists") from None
        return Item(*row)

    async def delete_item(self, tenant: str, item_id: str) -> None:
        await self._pool.execute("DELETE FROM items WHERE id = $1 AND tenant = $2", item_id, tenant)

    async def adjust_item(self, tenant: str, item_id: str, delta: int) -> Item:
        async with self._pool.acquire() as db:
            row = await db.fetchrow(
                "UPDATE items SET qty = qty + $1, version = version + 1, updated_at = $2"
                " WHERE id = $3 AND tenant = $4 AND qty + $1 BETWEEN 0 AND $5"
                f" RETURNING {_ITEM_COLUMNS}",
                delta, utc_now(), item_id, tenant, QTY_MAX,
            )  # fmt: skip
            if row is not None:
                return Item(*row)
            qty = await db.fetchval(
                "SELECT qty FROM items WHERE id = $1 AND tenant = $2", item_id, tenant
            )
        if qty is None:
            raise NotFound(f"no item {item_id}")
        raise QuantityOutOfRange(f"qty {qty} + delta {delta} is outside [0, {QTY_MAX}]")

    async def add_key(self, key: ApiKey) -> None:
        await self._pool.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
            key.id, key.tenant, key.role, key.key_hash, key.created_at, key.revoked_at,
        )  # fmt: skip

    async def find_key(self, key_id: str) -> ApiKey | None:
        row = await self._pool.fetchrow(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id
        )
        return ApiKey(*row) if row else None

    async def list_keys(self, tenant: str | None) -> list[ApiKey]:
        rows = await self._pool.fetch(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE $1::text IS NULL OR tenant = $1"
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
            f"SELECT tenant, {_ITEM_COLUMNS} FROM items WHERE $1::text IS NULL"
            " OR (tenant, id) > ($1, $2) ORDER BY tenant, id LIMIT $3",
            *(after or (None, None)), limit,
        )  # fmt: skip
        return [(row[0], Item(*row[1:])) for row in rows]

    async def import_state(self, keys: Sequence[ApiKey], items: Sequence[tuple[str, Item]]) -> None:
        async with self._pool.acquire() as db, db.transaction():
            await db.execute("LOCK TABLE items, api_keys IN EXCLUSIVE MODE")
            if await db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM items UNION ALL SELECT 1 FROM api_keys)"
            ):
                raise ValueError("the target database is not empty; import only into an empty one")
            await db.copy_records_to_table(
                "api_keys",
                columns=_KEY_COLUMNS.split(", "),
                records=[
                    (k.id, k.tenant, k.role, k.key_hash, k.created_at, k.revoked_at) for k in keys
                ],
            )
            await db.copy_records_to_table(
                "items",
                columns=["tenant", "name_key", *_ITEM_COLUMNS.split(", ")],
                records=[
                    (
                        t,
                        name_key(i.name),
                        i.id,
                        i.name,
                        i.qty,
                        i.version,
                        i.created_at,
                        i.updated_at,
                    )
                    for t, i in items
                ],
            )

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def close(self) -> None:
        await self._pool.close()


async def _keep_session(db: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on every release, a second round trip per query.

    Safe because no request changes session state: no SET, LISTEN, cursor or session-level
    lock (the migration lock is transaction-scoped). An open transaction is still rolled back.
    """


async def migrate(db: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied, in order, each atomically; their names."""
    done = []
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY,"
            " applied_at text NOT NULL)"
        )
        applied = {row[0] for row in await db.fetch("SELECT name FROM schema_migrations")}
        for script in sorted(resources.files("service.migrations.postgres").iterdir(), key=str):
            if script.name.endswith(".sql") and script.name not in applied:
                await db.execute(script.read_text(encoding="utf-8"))
                await db.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2)", script.name, utc_now()
                )
                done.append(script.name)
    return done

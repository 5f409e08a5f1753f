"""What both backends do the same way, written once: columns, queries, rejections, migrations.

Each backend keeps only what truly differs (placeholders, how a statement is sent, how a
transaction is held). Everything here is pure: SQL text and parameters in, records or
domain errors out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from importlib import resources
from typing import Any

from model.invariants import ItemChanges, name_key
from service.problems import NotFound, PreconditionFailed, QuantityOutOfRange
from service.store.records import ApiKey, Item, Page, PageRequest, Versions

ITEM_COLUMNS = "id, name, qty, version, created_at, updated_at"
"""The columns an ``Item`` is built from, in its field order."""
KEY_COLUMNS = "id, tenant, role, key_hash, created_at, revoked_at"
"""The columns an ``ApiKey`` is built from, in its field order."""
ITEM_ROW_COLUMNS = f"tenant, name_key, {ITEM_COLUMNS}"
"""The columns of a whole stored item, as ``item_rows`` orders them."""
ANY_ROW = "SELECT 1 FROM items UNION ALL SELECT 1 FROM api_keys LIMIT 1"

Placeholder = Callable[[int], str]
"""The n-th (1-based) bound parameter's spelling: ``?`` for SQLite, ``$n`` for PostgreSQL."""


class DatabaseNotEmpty(ValueError):
    """An import was aimed at a database that already holds items or keys."""

    def __init__(self) -> None:
        super().__init__("the target database is not empty; import only into an empty one")


class NotAnInventoryDatabase(ValueError):
    """The database holds tables no inventory migration made, or migrations this version
    does not know: it is refused before anything is written to it."""


def refuse_foreign(
    where: str, backend: str, tables: Collection[str], applied: Collection[str]
) -> None:
    """Raise NotAnInventoryDatabase unless ``tables`` (with ``applied`` migrations) are ours."""
    if tables and "schema_migrations" not in tables:
        raise NotAnInventoryDatabase(
            f"{where} is not an inventory database (it has tables {', '.join(sorted(tables)[:5])}"
            " but no schema_migrations); nothing was written to it: choose another database"
        )
    known = {name for name, _ in pending_migrations(backend, ())}
    if unknown := sorted(set(applied) - known):
        raise NotAnInventoryDatabase(
            f"{where} has migrations this version does not know ({', '.join(unknown)}):"
            " it belongs to a newer inventory; upgrade inventory to use it"
        )


def list_query(
    tenant: str, request: PageRequest, placeholder: Placeholder
) -> tuple[str, list[Any]]:
    """The query for one page of ``request``, in name key order, and its parameters.

    It asks for one row more than the page holds: that row only says there is more.
    """
    params: list[Any] = [tenant]
    clauses = [f"tenant = {placeholder(1)}"]
    bounds = [(">", request.after_key), (">=", request.prefix_key)]
    if request.prefix_key:
        bounds.append(("<", key_successor(request.prefix_key)))
    for operator, value in bounds:
        if value:
            params.append(value)
            clauses.append(f"name_key {operator} {placeholder(len(params))}")
    params.append(request.limit + 1)
    query = (
        f"SELECT {ITEM_COLUMNS}, name_key FROM items WHERE {' AND '.join(clauses)}"
        f" ORDER BY name_key LIMIT {placeholder(len(params))}"
    )
    return query, params


def page_of(rows: Sequence[Sequence[Any]], limit: int) -> Page:
    """The page in ``rows``: up to ``limit + 1`` rows of item columns, then the name key.

    The extra row only says that there is more; the cursor then points after the last
    row shown.
    """
    items = [Item(*row[:-1]) for row in rows[:limit]]
    return Page(items, rows[limit - 1][-1] if len(rows) > limit else None)


def key_successor(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (code-point order).

    None when there is none (the prefix is all U+10FFFF). Surrogates are skipped: they
    cannot be stored, so U+D7FF is followed by U+E000.
    """
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    last = ord(stripped[-1]) + 1
    return stripped[:-1] + chr(0xE000 if 0xD800 <= last <= 0xDFFF else last)


def updatable(current: Item | None, item_id: str, expected: Versions) -> Item:
    """``current``, if an update may apply to it; else NotFound or PreconditionFailed."""
    if current is None:
        raise NotFound.item(item_id)
    if expected is not None and current.version not in expected:
        raise PreconditionFailed.at(current.version)
    return current


def updated_values(current: Item, changes: ItemChanges) -> tuple[str, str, int]:
    """The name, name key and qty of ``current`` once ``changes`` apply."""
    name = changes.get("name", current.name)
    return name, name_key(name), changes.get("qty", current.qty)


def adjustment_refused(item_id: str, qty: int | None, delta: int) -> NotFound | QuantityOutOfRange:
    """Why an adjustment matched no row: the item (at ``qty``) is missing or would leave range."""
    return NotFound.item(item_id) if qty is None else QuantityOutOfRange.after(qty, delta)


def key_rows(keys: Sequence[ApiKey]) -> list[tuple[Any, ...]]:
    """``keys`` as rows of KEY_COLUMNS."""
    return [(k.id, k.tenant, k.role, k.key_hash, k.created_at, k.revoked_at) for k in keys]


def item_rows(items: Sequence[tuple[str, Item]]) -> list[tuple[Any, ...]]:
    """``(tenant, item)`` pairs as rows of ITEM_ROW_COLUMNS."""
    return [
        (tenant, name_key(i.name), i.id, i.name, i.qty, i.version, i.created_at, i.updated_at)
        for tenant, i in items
    ]


def pending_migrations(backend: str, applied: Collection[str]) -> list[tuple[str, str]]:
    """(name, SQL) of each migration of ``backend`` not yet ``applied``, in order."""
    folder = resources.files(f"service.store.migrations.{backend}")
    scripts = sorted((s for s in folder.iterdir() if s.name.endswith(".sql")), key=str)
    return [(s.name, s.read_text(encoding="utf-8")) for s in scripts if s.name not in applied]

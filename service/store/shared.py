"""What both backends do the same way, written once: columns, queries, rejections, migrations.

Each backend keeps only what truly differs (placeholders, how a statement is sent, how a
transaction is held). Everything here is pure: SQL text and parameters in, records or
domain errors out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from importlib import import_module, resources
from typing import Any

from model.invariants import Batch, ItemChanges, name_key
from service.problems import NotFound, PreconditionFailed, QuantityOutOfRange
from service.store.records import (
    ApiKey,
    Author,
    Event,
    EventPage,
    Item,
    Page,
    PageRequest,
    Versions,
)

ITEM_COLUMNS = "id, name, qty, version, created_at, updated_at"
"""The columns an ``Item`` is built from, in its field order."""
KEY_COLUMNS = "id, tenant, role, key_hash, created_at, revoked_at"
"""The columns an ``ApiKey`` is built from, in its field order."""
ITEM_ROW_COLUMNS = f"tenant, name_key, {ITEM_COLUMNS}"
"""The columns of a whole stored item, as ``item_rows`` orders them."""
EVENT_COLUMNS = (
    "seq, item_id, type, version, qty, delta, name, reason, key_id, request_id, batch_id, at"
)
"""The columns an ``Event`` is built from, in its field order."""
EVENT_ROW_COLUMNS = f"tenant, {EVENT_COLUMNS}"
"""The columns of a whole stored event, as ``event_rows`` orders them."""
ANY_ROW = (
    "SELECT 1 FROM items UNION ALL SELECT 1 FROM api_keys UNION ALL SELECT 1 FROM events LIMIT 1"
)
FEEDS_FROM_EVENTS = (
    "INSERT INTO feeds (tenant, last_seq) SELECT tenant, MAX(seq) FROM events GROUP BY tenant"
)
"""After an import: each tenant's feed continues after its last imported event."""

Placeholder = Callable[[int], str]
"""The n-th (1-based) bound parameter's spelling: ``?`` for SQLite, ``$n`` for PostgreSQL."""


KeyedItem = tuple[str, str, str, str]
"""An item as a key-recomputing migration reads it: tenant, id, name, stored name key."""
Rekey = Callable[[Sequence[KeyedItem]], list[tuple[str, str]]]
"""A Python migration: every item in, (new name key, id) of each item whose key changes out."""
Migration = tuple[str, str | Rekey]
"""A migration's name (as schema_migrations records it) and its SQL script or Python step."""
ITEM_KEYS = "SELECT tenant, id, name, name_key FROM items"
PARKED_KEY = "\x01"
"""Starts the key an item holds while keys are rewritten: no name key holds a control
character, so ``PARKED_KEY + id`` collides with nothing, whatever order the rows change in."""


class MigrationStopped(RuntimeError):
    """A migration would leave data that breaks an invariant; it changed nothing."""


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


def export_query(
    columns: str, table: str, key: str, after: Sequence[Any] | None, limit: int, p: Placeholder
) -> tuple[str, list[Any]]:
    """A page of a whole table in the order of ``key`` (an index's columns), after the
    position ``after``: a range search on that index. (A single statement with
    ``? IS NULL OR (...) > (...)`` cannot use it: every page would scan the table from its
    start, and an export of a million rows would take hours.)"""
    if after is None:
        return f"SELECT {columns} FROM {table} ORDER BY {key} LIMIT {p(1)}", [limit]
    places = ", ".join(p(n) for n in range(1, len(after) + 1))
    return (
        f"SELECT {columns} FROM {table} WHERE ({key}) > ({places})"
        f" ORDER BY {key} LIMIT {p(len(after) + 1)}",
        [*after, limit],
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


def next_seq(placeholder: Placeholder) -> str:
    """The statement that takes the tenant's next feed number (the tenant is parameter 1).

    Its row lock is held until the transaction ends, so one tenant's events commit in seq
    order whatever the number of writers.
    """
    return (
        f"INSERT INTO feeds (tenant, last_seq) VALUES ({placeholder(1)}, 1) ON CONFLICT (tenant)"
        " DO UPDATE SET last_seq = feeds.last_seq + 1 RETURNING last_seq"
    )


def history_query(placeholder: Placeholder) -> str:
    """One item's events after a version, oldest first (tenant, item, after, limit)."""
    p = placeholder
    return (
        f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant = {p(1)} AND item_id = {p(2)}"
        f" AND version > {p(3)} ORDER BY version LIMIT {p(4)}"
    )


def feed_query(placeholder: Placeholder) -> str:
    """A tenant's events after a seq, oldest first (tenant, after, limit)."""
    p = placeholder
    return (
        f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant = {p(1)} AND seq > {p(2)}"
        f" ORDER BY seq LIMIT {p(3)}"
    )


def event_page(rows: Sequence[Sequence[Any]], limit: int) -> EventPage:
    """The page in up to ``limit + 1`` rows of event columns; the extra row says there is more."""
    events = [Event(*row) for row in rows[:limit]]
    return EventPage(events, events[-1].version if len(rows) > limit else None)


def event_values(
    author: Author, seq: int, item: Item, kind: str, delta: int, reason: str | None
) -> tuple[Any, ...]:
    """The row (EVENT_ROW_COLUMNS) of the event that left ``item`` as it is."""
    return (
        author.tenant, seq, item.id, kind, item.version, item.qty, delta, item.name, reason,
        author.key_id, author.request_id, author.batch_id, item.updated_at,
    )  # fmt: skip


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


Step = tuple[str, tuple[Any, ...]]
"""One operation of a batch as a transition to run: its kind (create, update, adjust,
delete) and its arguments after the author, as the backend's transition of that kind takes
them (a create's new id is the backend's to make)."""


def batch_steps(batch: Batch) -> list[Step]:
    """The transitions a batch runs, in order, each with the batch's reason."""
    reason = batch.get("reason")
    because = {} if reason is None else {"reason": reason}
    steps: list[Step] = []
    for op in batch["operations"]:
        expected = frozenset({op["if_match"]}) if "if_match" in op else None
        fields = {k: v for k, v in op.items() if k in ("name", "qty")}
        match op["op"]:
            case "create":
                steps.append(("create", ({**fields, **because},)))
            case "update":
                steps.append(("update", (op["item_id"], {**fields, **because}, expected)))
            case "adjust":
                adjustment = {"delta": op["delta"], **because}
                steps.append(("adjust", (op["item_id"], adjustment, expected)))
            case "delete":
                steps.append(("delete", (op["item_id"], reason)))
    return steps


def key_rows(keys: Sequence[ApiKey]) -> list[tuple[Any, ...]]:
    """``keys`` as rows of KEY_COLUMNS."""
    return [(k.id, k.tenant, k.role, k.key_hash, k.created_at, k.revoked_at) for k in keys]


def item_rows(items: Sequence[tuple[str, Item]]) -> list[tuple[Any, ...]]:
    """``(tenant, item)`` pairs as rows of ITEM_ROW_COLUMNS."""
    return [
        (tenant, name_key(i.name), i.id, i.name, i.qty, i.version, i.created_at, i.updated_at)
        for tenant, i in items
    ]


def event_rows(events: Sequence[tuple[str, Event]]) -> list[tuple[Any, ...]]:
    """``(tenant, event)`` pairs as rows of EVENT_ROW_COLUMNS (an event's fields are in
    EVENT_COLUMNS order)."""
    return [(tenant, *event) for tenant, event in events]


def pending_migrations(backend: str, applied: Collection[str]) -> list[Migration]:
    """Each migration of ``backend`` not yet ``applied``, in name order.

    A migration is an SQL script in the backend's folder, or a Python module in
    ``service.store.migrations`` itself (both backends share it) whose ``rekey`` function
    computes what SQL cannot; each backend does its reads and writes (``rekey_items``).
    """
    package = "service.store.migrations"
    found: dict[str, str | Rekey] = {}
    for script in resources.files(f"{package}.{backend}").iterdir():
        if script.name.endswith(".sql") and script.name not in applied:
            found[script.name] = script.read_text(encoding="utf-8")
    for module in resources.files(package).iterdir():
        name = module.name
        if name[:4].isdigit() and name.endswith(".py") and name not in applied:
            found[name] = import_module(f"{package}.{name.removesuffix('.py')}").rekey
    return sorted(found.items())


def rekey_statements(placeholder: Placeholder) -> tuple[str, str]:
    """The statements that park an item's key (PARKED_KEY, id) and then set it (key, id)."""
    p = placeholder
    return (
        f"UPDATE items SET name_key = {p(1)} || id WHERE id = {p(2)}",
        f"UPDATE items SET name_key = {p(1)} WHERE id = {p(2)}",
    )

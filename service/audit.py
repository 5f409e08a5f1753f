"""Checking a whole state against every invariant: ``inventory check``, and every import.

``audit`` looks at items and events as they are stored (or about to be), not at requests:
names normalized and valid, quantities in range, versions from 1, names unique per tenant
ignoring case, and the ledger (``model.invariants.ledger_problems``): every item's events
add up to it, and each tenant's feed is numbered 1..n. It returns one line per violation,
naming the tenant and the item.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from model.invariants import (
    LedgerEntry,
    feed_problem,
    ledger_problems,
    name_key,
    normalize_text,
    qty_problem,
    text_problem,
)
from service.store import Event, Item, Store

_PAGE = 1000


def audit(items: Sequence[tuple[str, Item]], events: Sequence[tuple[str, Event]]) -> list[str]:
    """One line per violated invariant; none for a healthy state."""
    problems = [f"tenant {t!r}, item {i.id}: {why}" for t, i in items if (why := item_problem(i))]
    problems += _name_clashes(items)
    current: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for tenant, item in items:
        current[tenant][item.id] = (item.qty, item.version)
    ledgers: dict[str, list[Event]] = defaultdict(list)
    for tenant, event in events:
        ledgers[tenant].append(event)
    for tenant in sorted(current.keys() | ledgers.keys()):
        problems += _tenant_ledger_problems(tenant, current[tenant], ledgers[tenant])
    return problems


def item_problem(item: Item) -> str | None:
    """Why a stored item breaks an item invariant, or None."""
    if normalize_text(item.name) != item.name or (why := text_problem(item.name)):
        return f"name {item.name!r} is not a valid normalized name"
    if why := qty_problem(item.qty):
        return f"qty {why}"
    if item.version < 1:
        return "version must be at least 1"
    return None


def _name_clashes(items: Sequence[tuple[str, Item]]) -> list[str]:
    first: dict[tuple[str, str], str] = {}
    problems = []
    for tenant, item in items:
        key = (tenant, name_key(item.name))
        if key in first:
            problems.append(f"tenant {tenant!r}, item {item.id}: name taken by item {first[key]}")
        first.setdefault(key, item.id)
    return problems


def _tenant_ledger_problems(
    tenant: str, current: dict[str, tuple[int, int]], events: list[Event]
) -> list[str]:
    entries = [LedgerEntry(e.item_id, e.type, e.version, e.qty, e.delta) for e in events]
    problems = [
        f"tenant {tenant!r}, item {item_id}: {why}"
        for item_id, why in ledger_problems(current, entries)
    ]
    if why := feed_problem([e.seq for e in events]):
        problems.append(f"tenant {tenant!r}: {why}")
    return problems


async def audit_store(store: Store) -> list[str]:
    """``audit`` of everything ``store`` holds, as of one moment."""
    async with store.snapshot() as state:
        items = [pair async for pair in every_record(state.export_items, lambda p: (p[0], p[1].id))]
        events = [
            pair async for pair in every_record(state.export_events, lambda p: (p[0], p[1].seq))
        ]
    return audit(items, events)


async def every_record(
    read: Callable[[Any, int], Awaitable[list[Any]]], position: Callable[[Any], Any]
) -> AsyncIterator[Any]:
    """Every record ``read`` pages through, in order."""
    after = None
    while page := await read(after, _PAGE):
        for record in page:
            yield record
        after = position(page[-1])

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
    state = _Audit()
    for tenant, item in items:
        state.add_item(tenant, item)
    for tenant, event in events:
        state.add_event(tenant, event)
    return state.problems()


class _Audit:
    """The audit, fed one record at a time: it keeps only what the checks across records
    need (each item's qty and version, each name key, each event's ledger entry), so that
    ``inventory check`` of a million items and events holds no million records."""

    def __init__(self) -> None:
        self._problems: list[str] = []
        self._names: dict[tuple[str, str], str] = {}
        self._current: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
        self._ledgers: dict[str, list[tuple[LedgerEntry, int]]] = defaultdict(list)

    def add_item(self, tenant: str, item: Item) -> None:
        if why := item_problem(item):
            self._problems.append(f"tenant {tenant!r}, item {item.id}: {why}")
        first = self._names.setdefault((tenant, name_key(item.name)), item.id)
        if first != item.id:
            self._problems.append(f"tenant {tenant!r}, item {item.id}: name taken by item {first}")
        self._current[tenant][item.id] = (item.qty, item.version)

    def add_event(self, tenant: str, e: Event) -> None:
        entry = LedgerEntry(e.item_id, e.type, e.version, e.qty, e.delta)
        self._ledgers[tenant].append((entry, e.seq))

    def problems(self) -> list[str]:
        problems = list(self._problems)
        for tenant in sorted(self._current.keys() | self._ledgers.keys()):
            problems += _tenant_ledger_problems(
                tenant, self._current[tenant], self._ledgers[tenant]
            )
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


def _tenant_ledger_problems(
    tenant: str, current: dict[str, tuple[int, int]], ledger: list[tuple[LedgerEntry, int]]
) -> list[str]:
    problems = [
        f"tenant {tenant!r}, item {item_id}: {why}"
        for item_id, why in ledger_problems(current, [entry for entry, _ in ledger])
    ]
    if why := feed_problem([seq for _, seq in ledger]):
        problems.append(f"tenant {tenant!r}: {why}")
    return problems


async def audit_store(store: Store) -> list[str]:
    """``audit`` of everything ``store`` holds, as of one moment, read a page at a time."""
    state = _Audit()
    async with store.snapshot() as snapshot:
        async for tenant, item in every_record(snapshot.export_items, lambda p: p[1].id):
            state.add_item(tenant, item)
        async for tenant, event in every_record(snapshot.export_events, lambda p: (p[0], p[1].seq)):
            state.add_event(tenant, event)
    return state.problems()


async def every_record(
    read: Callable[[Any, int], Awaitable[list[Any]]], position: Callable[[Any], Any]
) -> AsyncIterator[Any]:
    """Every record ``read`` pages through, in order."""
    after = None
    while page := await read(after, _PAGE):
        for record in page:
            yield record
        after = position(page[-1])

"""The storage interface: one ``Store`` protocol, one call per transition.

Handlers talk to storage only through this protocol. Every write method is one atomic
transaction that validates inside the transaction (uniqueness, range, version) and raises
a ``service.problems`` error, changing nothing, when the transition is rejected. Every
successful change of an item appends its event to the ledger in that same transaction.

A write whose ``author`` carries an Idempotency-Key ``Claim`` may instead raise ``Replay``
(the key's stored answer) or ``IdempotencyKeyReused``, and on PostgreSQL
``IdempotencyInFlight``, changing nothing; otherwise its answer is stored with its effect
(``service.store.idempotency``).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from model.invariants import Adjustment, Batch, ItemChanges, NewItem
from service.store.idempotency import Record
from service.store.records import (
    ApiKey,
    Author,
    BatchResult,
    Event,
    EventPage,
    Item,
    Page,
    PageRequest,
    State,
    Versions,
)


class StateReader(Protocol):
    """The whole state, read in pages: what export and ``inventory check`` walk."""

    async def list_keys(self, tenant: str | None) -> list[ApiKey]:
        """The keys of ``tenant`` (of every tenant for None), oldest first."""
        ...

    async def export_items(self, after: str | None, limit: int) -> list[tuple[str, Item]]:
        """Up to ``limit`` (tenant, item) pairs after item id ``after``, in id order."""
        ...

    async def export_events(
        self, after: tuple[str, int] | None, limit: int
    ) -> list[tuple[str, Event]]:
        """Up to ``limit`` (tenant, event) pairs after ``after`` in (tenant, seq) order."""
        ...

    async def export_answers(self, after: tuple[str, str] | None, limit: int) -> list[Record]:
        """Up to ``limit`` kept Idempotency-Key answers after ``after`` in (tenant, key) order."""
        ...


class Store(StateReader, Protocol):
    """The state of the inventory; every method is one atomic transition."""

    migrations_applied: tuple[str, ...]
    """The migrations that opening this store applied, in order (none: it was up to date)."""

    async def create_item(self, author: Author, fields: NewItem) -> Item:
        """Insert a new item; raises NameTaken."""
        ...

    async def get_item(self, tenant: str, item_id: str) -> Item:
        """The item; raises NotFound."""
        ...

    async def list_items(self, tenant: str, request: PageRequest) -> Page:
        """A page of the tenant's items, ordered by name key."""
        ...

    async def update_item(
        self, author: Author, item_id: str, changes: ItemChanges, expected: Versions
    ) -> Item:
        """Apply ``changes``, version + 1; raises NotFound, PreconditionFailed, NameTaken."""
        ...

    async def delete_item(self, author: Author, item_id: str, reason: str | None) -> None:
        """Delete the item if the tenant has it."""
        ...

    async def adjust_item(
        self, author: Author, item_id: str, adjustment: Adjustment, expected: Versions
    ) -> Item:
        """Add the delta to qty, version + 1; raises NotFound, PreconditionFailed,
        QuantityOutOfRange."""
        ...

    async def apply_batch(self, author: Author, batch: Batch) -> BatchResult:
        """Apply every operation in order, as one transaction, each event carrying the new
        batch id; the first operation refused (NotFound, PreconditionFailed, NameTaken,
        QuantityOutOfRange, its ``operation`` set) refuses the batch, changing nothing."""
        ...

    async def item_events(self, tenant: str, item_id: str, after: int, limit: int) -> EventPage:
        """The item's events after version ``after``; NotFound if the tenant never had it."""
        ...

    async def feed(self, tenant: str, after: int, limit: int, wait: float) -> list[Event]:
        """Up to ``limit`` of the tenant's events after seq ``after``; with none yet, wait up
        to ``wait`` seconds for one to commit."""
        ...

    async def add_key(self, key: ApiKey, author: Author | None = None) -> None:
        """Store a new API key record (made by ``author``'s request, if any)."""
        ...

    async def find_key(self, key_id: str) -> ApiKey | None:
        """The key with this id, revoked or not."""
        ...

    async def revoke_key(self, tenant: str | None, key_id: str) -> bool:
        """Revoke the key if it exists (in ``tenant``) and is live; True if it did."""
        ...

    async def import_state(self, state: State) -> None:
        """Insert all of it in one transaction; DatabaseNotEmpty if there is anything."""
        ...

    def snapshot(self) -> AbstractAsyncContextManager[StateReader]:
        """One consistent, read-only view of the whole state, for as long as it is open."""
        ...

    async def ping(self) -> None:
        """Return if the database can be read and written (probed at most once a second);
        ``Unavailable`` if not, the SQLite file or its folder gone included."""
        ...

    async def close(self) -> None:
        """Finish pending work and close the database."""
        ...

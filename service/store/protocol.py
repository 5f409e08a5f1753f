"""The storage interface: one ``Store`` protocol, one call per transition.

Handlers talk to storage only through this protocol. Every write method is one atomic
transaction that validates inside the transaction (uniqueness, range, version) and raises
a ``service.problems`` error, changing nothing, when the transition is rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from model.invariants import ItemChanges, NewItem
from service.store.records import ApiKey, Item, Page, PageRequest, Versions


class Store(Protocol):
    """The state of the inventory; every method is one atomic transition."""

    migrations_applied: tuple[str, ...]
    """The migrations that opening this store applied, in order (none: it was up to date)."""

    async def create_item(self, tenant: str, fields: NewItem) -> Item:
        """Insert a new item; raises NameTaken."""
        ...

    async def get_item(self, tenant: str, item_id: str) -> Item:
        """The item; raises NotFound."""
        ...

    async def list_items(self, tenant: str, request: PageRequest) -> Page:
        """A page of the tenant's items, ordered by name key."""
        ...

    async def update_item(
        self, tenant: str, item_id: str, changes: ItemChanges, expected: Versions
    ) -> Item:
        """Apply ``changes``, version + 1; raises NotFound, PreconditionFailed, NameTaken."""
        ...

    async def delete_item(self, tenant: str, item_id: str) -> None:
        """Delete the item if the tenant has it."""
        ...

    async def adjust_item(self, tenant: str, item_id: str, delta: int) -> Item:
        """Add ``delta`` to qty, version + 1; raises NotFound, QuantityOutOfRange."""
        ...

    async def add_key(self, key: ApiKey) -> None:
        """Store a new API key record."""
        ...

    async def find_key(self, key_id: str) -> ApiKey | None:
        """The key with this id, revoked or not."""
        ...

    async def list_keys(self, tenant: str | None) -> list[ApiKey]:
        """The keys of ``tenant`` (of every tenant for None), oldest first."""
        ...

    async def revoke_key(self, tenant: str | None, key_id: str) -> bool:
        """Revoke the key if it exists (in ``tenant``) and is live; True if it did."""
        ...

    async def export_items(
        self, after: tuple[str, str] | None, limit: int
    ) -> list[tuple[str, Item]]:
        """Up to ``limit`` (tenant, item) pairs after ``after`` in (tenant, id) order."""
        ...

    async def import_state(self, keys: Sequence[ApiKey], items: Sequence[tuple[str, Item]]) -> None:
        """Insert all of it in one transaction; DatabaseNotEmpty if there is anything."""
        ...

    async def ping(self) -> None:
        """Raise unless the database answers."""
        ...

    async def close(self) -> None:
        """Finish pending work and close the database."""
        ...

"""The storage interface: one ``Store`` protocol, one call per transition.

Handlers talk to storage only through this protocol; ``open_store`` picks the backend from
the database URL. Every write method is one atomic transaction that validates inside the
transaction (uniqueness, range, version) and raises a ``service.problems`` error, changing
nothing, when the transition is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

ROLES = ("reader", "writer", "admin")


@dataclass(frozen=True, slots=True)
class Item:
    """An item as stored (without its tenant and name key)."""

    id: str
    name: str
    qty: int
    version: int
    created_at: str
    updated_at: str

    def as_json(self) -> dict[str, Any]:
        """The item's JSON representation."""
        return {
            "id": self.id,
            "name": self.name,
            "qty": self.qty,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``last_key`` is the name key to continue after, if any."""

    items: list[Item]
    last_key: str | None


def page_of(rows: Sequence[Sequence[Any]], limit: int) -> Page:
    """The page in ``rows``: up to ``limit + 1`` rows of item columns, then the name key.

    The extra row only says that there is more; the cursor then points after the last
    row shown.
    """
    items = [Item(*row[:-1]) for row in rows[:limit]]
    return Page(items, rows[limit - 1][-1] if len(rows) > limit else None)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's public record; ``key_hash`` is SHA-256 of the whole key."""

    id: str
    tenant: str
    role: str
    key_hash: bytes
    created_at: str
    revoked_at: str | None

    def as_json(self) -> dict[str, Any]:
        """The key's JSON representation (never the hash)."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "role": self.role,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Which slice of a tenant's items to list, in name key order."""

    limit: int
    after_key: str | None = None
    prefix_key: str | None = None


class Store(Protocol):
    """The state of the inventory; every method is one atomic transition."""

    async def create_item(self, tenant: str, fields: Mapping[str, Any]) -> Item:
        """Insert a new item; raises NameTaken."""
        ...

    async def get_item(self, tenant: str, item_id: str) -> Item:
        """The item; raises NotFound."""
        ...

    async def list_items(self, tenant: str, request: PageRequest) -> Page:
        """A page of the tenant's items, ordered by name key."""
        ...

    async def update_item(
        self,
        tenant: str,
        item_id: str,
        changes: Mapping[str, Any],
        expected_versions: frozenset[int] | None,
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
        """Insert all of it in one transaction; ValueError if the database is not empty."""
        ...

    async def ping(self) -> None:
        """Raise unless the database answers."""
        ...

    async def close(self) -> None:
        """Finish pending work and close the database."""
        ...


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


def utc_now() -> str:
    """The current time in RFC 3339, UTC, with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (else it is a SQLite file)."""
    return url.startswith(("postgresql://", "postgres://"))


async def open_store(url: str) -> Store:
    """Open (and migrate) the database that ``url`` names."""
    if is_postgres(url):
        from service.postgres_store import PostgresStore

        return await PostgresStore.open(url)
    from service.sqlite_store import SqliteStore, sqlite_path

    return await SqliteStore.open(sqlite_path(url))

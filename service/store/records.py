"""What storage holds and hands back: items, API keys, pages, and the clock that stamps them.

Plain frozen records; the HTTP layer turns them into JSON (``as_json``), storage builds
them from rows in the column order of ``service.store.shared``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


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


Versions = frozenset[int] | None
"""The versions of an item that a condition (If-Match) accepts; None accepts any."""


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Which slice of a tenant's items to list, in name key order."""

    limit: int
    after_key: str | None = None
    prefix_key: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``last_key`` is the name key to continue after, if any."""

    items: list[Item]
    last_key: str | None


def utc_now() -> str:
    """The current time in RFC 3339, UTC, with microseconds: every stored timestamp."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

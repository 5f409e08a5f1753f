"""Migration 0003: recompute every name key under canonical caseless matching (Unicode D145).

Keys were ``casefold(NFC(name))``; ``model.invariants.name_key`` is now
``NFC(NFD(casefold(NFD(name))))``. Names that were two names before can be one name now
(``ΐ`` U+0390 and ``Ϊ́`` U+0399 U+0308 U+0301): then the migration stops, changes nothing,
and names the tenant and both items, so an operator can rename or delete one and migrate
again.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.invariants import name_key
from service.store.shared import KeyedItem, MigrationStopped


def rekey(items: Sequence[KeyedItem]) -> list[tuple[str, str]]:
    """(new key, id) of each item whose key changes; MigrationStopped on a collision."""
    holders: dict[tuple[str, str], tuple[str, str]] = {}
    changed: list[tuple[str, str]] = []
    for tenant, item_id, name, stored_key in sorted(items):
        key = name_key(name)
        if (tenant, key) in holders:
            raise _collision(tenant, holders[(tenant, key)], (item_id, name))
        holders[(tenant, key)] = (item_id, name)
        if key != stored_key:
            changed.append((key, item_id))
    return changed


def _collision(tenant: str, first: tuple[str, str], second: tuple[str, str]) -> MigrationStopped:
    return MigrationStopped(
        f"migration 0003_canonical_caseless_keys stopped and changed nothing: in tenant"
        f" {tenant!r}, item {first[0]} ({first[1]!r}) and item {second[0]} ({second[1]!r})"
        " are the same name under canonical caseless matching (Unicode D145); rename or"
        " delete one of them, then migrate again"
    )
